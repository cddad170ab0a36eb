// SPDX-License-Identifier: GPL-2.0-or-later
//! Corrupted device trees, for the tests that show [`BoardInfo::from_dtb`]
//! (and the kernel booted with one) never panics: single words and bytes,
//! truncations, and edits aimed at what a reader trusts (the header's
//! offsets and sizes, tokens, property lengths and name offsets, the cells
//! of property values). Host only: the `mutations` feature, which the
//! kernel never enables.
//!
//! [`BoardInfo::from_dtb`]: crate::BoardInfo::from_dtb

extern crate std;

use core::fmt;
use std::vec::Vec;

use stopwatch_test_rng::TestRng;

/// One corruption of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The big-endian word at `offset` set to `value`.
    Word {
        /// Byte offset (a multiple of 4).
        offset: usize,
        /// New value.
        value: u32,
        /// What the word was: `header`, `token`, `property length`,
        /// `name offset`, `value` or `any`.
        aim: &'static str,
    },
    /// The byte at `offset` set to `value`.
    Byte {
        /// Byte offset.
        offset: usize,
        /// New value.
        value: u8,
    },
    /// The blob cut to `len` bytes; with `header_too`, the header's
    /// `totalsize` says so too (else it still claims the whole blob).
    Truncate {
        /// New length.
        len: usize,
        /// Whether `totalsize` was set to `len`.
        header_too: bool,
    },
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mutation::Word { offset, value, aim } => {
                write!(f, "word at {offset:#x} ({aim}) = {value:#x}")
            }
            Mutation::Byte { offset, value } => write!(f, "byte at {offset:#x} = {value:#x}"),
            Mutation::Truncate { len, header_too } => write!(
                f,
                "cut to {len} bytes{}",
                if header_too { ", totalsize too" } else { "" }
            ),
        }
    }
}

impl Mutation {
    /// `blob` with this corruption.
    pub fn apply(&self, blob: &[u8]) -> Vec<u8> {
        let mut mutated = blob.to_vec();
        match *self {
            Mutation::Word { offset, value, .. } => {
                mutated[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
            }
            Mutation::Byte { offset, value } => mutated[offset] = value,
            Mutation::Truncate { len, header_too } => {
                mutated.truncate(len);
                if header_too && len >= 8 {
                    mutated[4..8].copy_from_slice(&(len as u32).to_be_bytes());
                }
            }
        }
        mutated
    }
}

/// Where the words worth aiming at are in one (valid) blob.
pub struct Mutator<'a> {
    blob: &'a [u8],
    /// Offsets of tokens (`FDT_BEGIN_NODE`, `FDT_PROP`, ...).
    tokens: Vec<usize>,
    /// Offsets of property lengths.
    lengths: Vec<usize>,
    /// Offsets of property name offsets.
    name_offsets: Vec<usize>,
    /// Offsets of whole words inside property values (cells).
    cells: Vec<usize>,
}

/// The header's offsets and sizes: totalsize, off_dt_struct,
/// off_dt_strings, off_mem_rsvmap, version, last_comp_version,
/// size_dt_strings, size_dt_struct.
const HEADER_FIELDS: [usize; 8] = [4, 8, 12, 16, 20, 24, 32, 36];

fn word(blob: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap())
}

impl<'a> Mutator<'a> {
    /// The words of `blob` to aim at; `blob` must be a valid device tree
    /// (one of the fixtures).
    pub fn new(blob: &'a [u8]) -> Self {
        let mut mutator = Mutator {
            blob,
            tokens: Vec::new(),
            lengths: Vec::new(),
            name_offsets: Vec::new(),
            cells: Vec::new(),
        };
        let mut at = word(blob, 8) as usize;
        loop {
            mutator.tokens.push(at);
            let token = word(blob, at);
            at += 4;
            match token {
                1 => {
                    let name_len = blob[at..].iter().position(|&byte| byte == 0).unwrap();
                    at += (name_len + 1).next_multiple_of(4);
                }
                3 => {
                    let len = word(blob, at) as usize;
                    mutator.lengths.push(at);
                    mutator.name_offsets.push(at + 4);
                    mutator
                        .cells
                        .extend((at + 8..at + 8 + len / 4 * 4).step_by(4));
                    at += 8 + len.next_multiple_of(4);
                }
                9 => break,
                _ => {}
            }
        }
        mutator
    }

    /// A random corruption.
    pub fn mutation(&self, rng: &mut TestRng) -> Mutation {
        let blob = self.blob;
        let aimed = |offsets: &[usize], aim, rng: &mut TestRng| {
            let offset = *rng.pick(offsets);
            let value = edited(word(blob, offset), rng);
            Mutation::Word { offset, value, aim }
        };
        match rng.below(100) {
            0..=19 => {
                let offset = rng.below(blob.len() as u64 / 4) as usize * 4;
                aimed(&[offset], "any", rng)
            }
            20..=29 => aimed(&HEADER_FIELDS, "header", rng),
            30..=39 => aimed(&self.tokens, "token", rng),
            40..=47 => aimed(&self.lengths, "property length", rng),
            48..=54 => aimed(&self.name_offsets, "name offset", rng),
            55..=79 => aimed(&self.cells, "value", rng),
            80..=91 => {
                let offset = rng.below(blob.len() as u64) as usize;
                let old = blob[offset];
                let value = if rng.chance(1, 2) {
                    old ^ (1 << rng.below(8))
                } else {
                    rng.below(256) as u8
                };
                Mutation::Byte { offset, value }
            }
            _ => Mutation::Truncate {
                len: rng.below(blob.len() as u64) as usize,
                header_too: rng.chance(1, 2),
            },
        }
    }
}

/// A new value for a word that was `old`: near it, a bit of it flipped, a
/// value readers treat specially, or anything.
fn edited(old: u32, rng: &mut TestRng) -> u32 {
    const SPECIAL: [u32; 16] = [
        0,
        1,
        2,
        3,
        4,
        5,
        9,
        0x10,
        0x3fb,
        0x1000,
        0xfff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fff0,
        0xffff_fffc,
        u32::MAX,
    ];
    match rng.below(5) {
        0 => old.wrapping_add(rng.in_range(1..=16) as u32),
        1 => old.wrapping_sub(rng.in_range(1..=16) as u32),
        2 => old ^ (1 << rng.below(32)),
        3 => *rng.pick(&SPECIAL),
        _ => rng.next_u64() as u32,
    }
}
