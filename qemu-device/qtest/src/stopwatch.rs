// SPDX-License-Identifier: GPL-2.0-or-later
//! The stopwatch as a qtest sees it: register and shared-memory accesses
//! at the addresses the device tree gives.

use anyhow::{anyhow, Result};
use stopwatch_abi::{regs, shared, time_page, Command, Status, TimeSnapshot};

use crate::{DeviceNode, Qtest};

/// One stopwatch instance of a machine under qtest.
#[derive(Clone, Debug)]
pub struct Stopwatch {
    /// Base of the pass-through memory.
    pub shared_base: u64,
    /// Base of the registers.
    pub registers_base: u64,
}

impl Stopwatch {
    /// The device a device-tree node describes.
    pub fn at(node: &DeviceNode) -> Stopwatch {
        Stopwatch {
            shared_base: node.shared_memory.0,
            registers_base: node.registers.0,
        }
    }

    /// Address of a register.
    pub fn register(&self, offset: u64) -> u64 {
        self.registers_base + offset
    }

    /// Address in the pass-through memory.
    pub fn shared(&self, offset: u64) -> u64 {
        self.shared_base + offset
    }

    /// Writes a command with an 8-byte access.
    pub fn command(&self, qtest: &mut Qtest, command: Command) -> Result<()> {
        qtest.writeq(self.register(regs::COMMAND), command.code())
    }

    /// Reads STATUS with an 8-byte access.
    pub fn status(&self, qtest: &mut Qtest) -> Result<Status> {
        let code = qtest.readq(self.register(regs::STATUS))?;
        Status::from_code(code).ok_or_else(|| anyhow!("invalid status code {code}"))
    }

    /// Writes `data_len`.
    pub fn set_data_len(&self, qtest: &mut Qtest, value: u64) -> Result<()> {
        qtest.writeq(self.shared(shared::DATA_LEN), value)
    }

    /// Arms a timeout of `seconds` the original way.
    pub fn timeout(&self, qtest: &mut Qtest, seconds: u64) -> Result<()> {
        self.set_data_len(qtest, seconds)?;
        self.command(qtest, Command::Timeout)
    }

    /// UPDATE, then the text in `data` (checked against `data_len`).
    pub fn update_text(&self, qtest: &mut Qtest) -> Result<String> {
        self.command(qtest, Command::Update)?;
        self.data_text(qtest)
    }

    /// The text in `data`, as the last UPDATE left it.
    pub fn data_text(&self, qtest: &mut Qtest) -> Result<String> {
        let len = qtest.readq(self.shared(shared::DATA_LEN))? as usize;
        if !(1..=shared::DATA_CAPACITY).contains(&len) {
            return Err(anyhow!("data_len {len} out of range"));
        }
        let bytes = qtest.read_bytes(self.shared(shared::DATA), len)?;
        match bytes.split_last() {
            Some((0, text)) => Ok(String::from_utf8(text.to_vec())?),
            _ => Err(anyhow!("data is not NUL-terminated at data_len: {bytes:?}")),
        }
    }

    // tutorial:lap-qtest-helper begin
    /// The laps in the shared page, as the guest reads them: `LAP_COUNT`
    /// slots of `LAPS` (the slots after them must read 0).
    pub fn laps(&self, qtest: &mut Qtest) -> Result<Vec<u64>> {
        let count = qtest.readq(self.shared(shared::LAP_COUNT))?;
        if count > shared::LAP_SLOTS as u64 {
            return Err(anyhow!("lap count {count} over {}", shared::LAP_SLOTS));
        }
        let mut laps = Vec::new();
        for slot in 0..shared::LAP_SLOTS as u64 {
            let lap = qtest.readq(self.shared(shared::LAPS + 8 * slot))?;
            if slot < count {
                laps.push(lap);
            } else if lap != 0 {
                return Err(anyhow!("lap slot {slot} after the count holds {lap}"));
            }
        }
        Ok(laps)
    }
    // tutorial:lap-qtest-helper end

    /// The time page, read as the guest reads it (one consistent snapshot).
    pub fn time_page(&self, qtest: &mut Qtest) -> Result<TimeSnapshot> {
        let page = |offset| self.shared(shared::TIME_PAGE + offset);
        let magic = qtest.readl(page(time_page::MAGIC_OFFSET))?;
        if magic != time_page::MAGIC {
            return Err(anyhow!("time page magic is {magic:#x}"));
        }
        // The VM does not run under qtest: the page cannot change while
        // it is read, but its sequence must be even (no write in progress).
        let sequence = qtest.readl(page(time_page::SEQUENCE))?;
        if sequence % 2 != 0 {
            return Err(anyhow!("time page sequence {sequence} is odd"));
        }
        let status_code = u64::from(qtest.readl(page(time_page::STATUS))?);
        Ok(TimeSnapshot {
            status: Status::from_code(status_code)
                .ok_or_else(|| anyhow!("time page status {status_code}"))?,
            accumulated_ns: qtest.readq(page(time_page::ACCUMULATED_NS))?,
            run_start_ns: qtest.readq(page(time_page::RUN_START_NS))?,
            clock_offset_ns: qtest.readq(page(time_page::CLOCK_OFFSET_NS))? as i64,
            timeout_deadline_ns: qtest.readq(page(time_page::TIMEOUT_DEADLINE_NS))?,
        })
    }
}
