// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU side of a differential run: the machine under qtest with its
//! monitor and guest-error log, the qtest command names for guest
//! accesses, and the answers decoded and compared field by field.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Result};
use stopwatch_abi::{shared, time_page};

use super::DEVICE_ID;
use crate::{Qmp, Qtest};

pub(super) struct Machine {
    pub(super) qtest: Qtest,
    pub(super) qmp: Qmp,
    log: PathBuf,
    /// How much of `log` has been counted.
    log_read: u64,
}

impl Machine {
    fn args(scratch: &Path, instance: u32) -> (Vec<String>, PathBuf, PathBuf) {
        let socket = scratch.join(format!("qmp-{instance}.sock"));
        let log = scratch.join(format!("guest-errors-{instance}.log"));
        let mut args = base_args();
        args.extend([
            "-d".to_owned(),
            "guest_errors".to_owned(),
            "-D".to_owned(),
            log.display().to_string(),
            "-qmp".to_owned(),
            Qmp::qemu_argument(&socket),
        ]);
        (args, socket, log)
    }

    pub(super) fn start(
        qemu: &Path,
        scratch: &Path,
        instance: u32,
        incoming: Option<&Path>,
    ) -> Result<Self> {
        let (mut args, socket, log) = Self::args(scratch, instance);
        if incoming.is_some() {
            // Deferred, so that the interrupt line is watched before the
            // state (and a high line) comes in.
            args.extend(["-incoming".to_owned(), "defer".to_owned()]);
        }
        let _ = std::fs::remove_file(&socket);
        let mut qtest = Qtest::start(qemu, &args)?;
        qtest.intercept_irqs(&format!("/machine/peripheral/{DEVICE_ID}"))?;
        let mut qmp = Qmp::connect(&socket)?;
        if let Some(file) = incoming {
            qmp.migrate_incoming_from_file(file)?;
        }
        Ok(Machine {
            qtest,
            qmp,
            log,
            log_read: 0,
        })
    }

    /// The device's guest-error lines logged since the last call.
    pub(super) fn new_guest_errors(&mut self) -> Result<u64> {
        let mut file = match File::open(&self.log) {
            Ok(file) => file,
            Err(_) => return Ok(0),
        };
        file.seek(SeekFrom::Start(self.log_read))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // Whole lines only: QEMU may be between writes of one.
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        self.log_read += complete as u64;
        let prefix = format!("stopwatch {DEVICE_ID}: ");
        Ok(text[..complete]
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .count() as u64)
    }
}

/// The machine every run uses: small RAM (migration streams it all).
pub(super) fn base_args() -> Vec<String> {
    ["-M", "virt", "-m", "32M", "-device"]
        .map(String::from)
        .into_iter()
        .chain([format!("stopwatch,id={DEVICE_ID}")])
        .collect()
}

/// The qtest command for a load or store of `size` bytes: `readb`,
/// `writeq`...
pub(super) fn access_verb(kind: &str, size: u32) -> String {
    let suffix = match size {
        1 => 'b',
        2 => 'w',
        4 => 'l',
        _ => 'q',
    };
    format!("{kind}{suffix}")
}

/// The bytes of a qtest `read` answer (`0x` and two hex digits a byte).
pub(super) fn decode_hex(answer: &str) -> Result<Vec<u8>> {
    let hex = answer
        .strip_prefix("0x")
        .ok_or_else(|| anyhow!("unexpected `read` answer {answer:?}"))?
        .as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(anyhow!("bad hex digit in `read` answer")),
    };
    hex.chunks(2)
        .map(|pair| match pair {
            [high, low] => Ok(nibble(*high)? << 4 | nibble(*low)?),
            _ => Err(anyhow!("odd-length `read` answer")),
        })
        .collect()
}

/// Names the fields of the checked block that differ, with both values.
pub(super) fn describe_block_difference(device: &[u8], model: &[u8]) -> String {
    if device.len() != model.len() {
        return format!(
            "`read` returned {} bytes, not {}",
            device.len(),
            model.len()
        );
    }
    let page = |offset: u64| (shared::TIME_PAGE + offset) as usize;
    let fields: [(&str, usize, usize); 14] = [
        ("data_len", shared::DATA_LEN as usize, 8),
        ("data", shared::DATA as usize, shared::DATA_CAPACITY),
        (
            "reserved bytes after data",
            shared::ORIGINAL_END as usize,
            (shared::TIME_PAGE - shared::ORIGINAL_END) as usize,
        ),
        ("time page magic", page(time_page::MAGIC_OFFSET), 4),
        ("time page version", page(time_page::VERSION_OFFSET), 4),
        ("time page sequence", page(time_page::SEQUENCE), 4),
        ("time page status", page(time_page::STATUS), 4),
        (
            "time page accumulated_ns",
            page(time_page::ACCUMULATED_NS),
            8,
        ),
        ("time page run_start_ns", page(time_page::RUN_START_NS), 8),
        (
            "time page clock_offset_ns",
            page(time_page::CLOCK_OFFSET_NS),
            8,
        ),
        (
            "time page timeout_deadline_ns",
            page(time_page::TIMEOUT_DEADLINE_NS),
            8,
        ),
        ("lap_count", shared::LAP_COUNT as usize, 8),
        (
            "laps",
            shared::LAPS as usize,
            (shared::LAPS_END - shared::LAPS) as usize,
        ),
        ("timeout_period_ns", shared::TIMEOUT_PERIOD_NS as usize, 8),
    ];
    let show = |bytes: &[u8], len: usize| {
        if len == (shared::LAPS_END - shared::LAPS) as usize {
            let words: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes")))
                .collect();
            format!("{words:?}")
        } else if len == 8 || len == 4 {
            let mut word = [0; 8];
            word[..len].copy_from_slice(bytes);
            format!("{}", u64::from_le_bytes(word))
        } else {
            format!("{:?}", String::from_utf8_lossy(bytes))
        }
    };
    let differences: Vec<String> = fields
        .iter()
        .filter(|(_, at, len)| device[*at..at + len] != model[*at..at + len])
        .map(|(name, at, len)| {
            format!(
                "{name}: device {}, model {}",
                show(&device[*at..at + len], *len),
                show(&model[*at..at + len], *len)
            )
        })
        .collect();
    format!("pass-through memory differs: {}", differences.join("; "))
}
