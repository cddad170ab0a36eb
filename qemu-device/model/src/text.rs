// SPDX-License-Identifier: GPL-2.0-or-later
//! The elapsed time as the original's text: C's `%.2f seconds`.

use core::fmt::{self, Write};

use stopwatch_abi::{shared::DATA_CAPACITY, NANOS_PER_SEC};

/// The text UPDATE writes into `data`, NUL-terminated.
#[derive(Clone, Copy)]
pub struct ElapsedText {
    bytes: [u8; DATA_CAPACITY],
    len: usize,
}

impl ElapsedText {
    /// The text without its NUL.
    pub fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole `str`s.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// The text and its NUL, as written into `data`.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        &self.bytes[..=self.len]
    }

    /// `data_len`: the length including the NUL, as the original counted.
    pub const fn len_with_nul(&self) -> usize {
        self.len + 1
    }
}

impl fmt::Debug for ElapsedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Write for ElapsedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the NUL.
        let end = self.len + s.len();
        if end >= DATA_CAPACITY {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formats nanoseconds as the original did seconds: `%.2f seconds`.
///
/// Rust's float formatting rounds the exact binary value half-to-even, as
/// glibc's `printf` does, so both print the same digits.
pub fn format_elapsed(elapsed_ns: u64) -> ElapsedText {
    let mut text = ElapsedText {
        bytes: [0; DATA_CAPACITY],
        len: 0,
    };
    let seconds = elapsed_ns as f64 / NANOS_PER_SEC as f64;
    // The longest possible text (u64::MAX ns) is 23 bytes: it always fits.
    let _ = write!(text, "{seconds:.2} seconds");
    text
}
