// SPDX-License-Identifier: GPL-2.0-or-later
//! The differential run's pipeline: the real machine and the simulated
//! one side by side. Each operation runs on the model at once and queues
//! its qtest commands with what their answers must be; a batch goes to
//! QEMU in one write and the answers are checked in order. System reset
//! and migration run on both machines between batches.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Result};
use serde_json::json;
use stopwatch_abi::{regs, shared};
use stopwatch_model::{Simulation, Stopwatch};

use super::qemu::{access_verb, base_args, decode_hex, describe_block_difference, Machine};
use super::simulated::mask;
use super::{Failure, Op, Region, Stats, CHECKED_BLOCK};
use crate::{parse_number, IrqEvent, Layout};

/// What one queued qtest answer must be.
pub(super) enum Expect {
    /// A store: just `OK`.
    Done,
    /// A load: this value.
    Value(u64),
    /// A clock step: the clock after it.
    Clock(u64),
    /// STATUS, read with an 8-byte load.
    Status(u64),
    /// The checked block of the pass-through memory.
    Block(Box<[u8; CHECKED_BLOCK]>),
}

/// A check of the queue: an answer, or the interrupt line's level after
/// the operation (no command of its own).
pub(super) enum Check {
    Answer(Expect),
    IrqLevel(bool),
}

/// The real machine and the simulated one, side by side.
pub(super) struct Runner {
    pub(super) qemu: PathBuf,
    pub(super) scratch: PathBuf,
    pub(super) machine: Machine,
    pub(super) instance: u32,
    pub(super) shared_base: u64,
    pub(super) registers_base: u64,
    pub(super) model: Stopwatch,
    pub(super) env: Simulation,
    /// The device's interrupt line as qtest reported it.
    pub(super) device_irq: bool,
    /// Commands not yet sent, and what their answers must be.
    pub(super) commands: String,
    pub(super) checks: Vec<(usize, Check)>,
    pub(super) queued_ops: usize,
    /// Guest errors the model reported that the log has not yet shown.
    pub(super) model_errors_counted: usize,
    pub(super) stats: Stats,
}

impl Runner {
    pub(super) fn start(qemu: &Path, scratch: &Path) -> Result<Runner> {
        std::fs::create_dir_all(scratch)?;
        let layout = Layout::dump(qemu, scratch, "virt", &base_args()[2..])?;
        let node = layout
            .devices
            .first()
            .ok_or_else(|| anyhow!("the device tree has no stopwatch"))?;
        let machine = Machine::start(qemu, scratch, 0, None)?;
        let mut env = Simulation::new();
        let mut model = Stopwatch::new();
        // The device's default, start_at_boot=true, at power-on.
        model.power_on_reset(&mut env, true);
        Ok(Runner {
            qemu: qemu.to_owned(),
            scratch: scratch.to_owned(),
            machine,
            instance: 0,
            shared_base: node.shared_memory.0,
            registers_base: node.registers.0,
            model,
            env,
            device_irq: false,
            commands: String::new(),
            checks: Vec::new(),
            queued_ops: 0,
            model_errors_counted: 0,
            stats: Stats::default(),
        })
    }

    fn base(&self, region: Region) -> u64 {
        match region {
            Region::Shared => self.shared_base,
            Region::Registers => self.registers_base,
        }
    }

    fn send(&mut self, step: usize, command: fmt::Arguments, expect: Expect) {
        use std::fmt::Write;
        let _ = writeln!(self.commands, "{command}");
        self.checks.push((step, Check::Answer(expect)));
    }

    /// Runs `op` on the model and queues it for QEMU, with the checks.
    pub(super) fn queue(&mut self, step: usize, op: &Op) {
        let raised_before = self.model.irq_level();
        match *op {
            Op::Write {
                region,
                offset,
                size,
                value,
            } => {
                let address = self.base(region) + offset;
                let value = value & mask(size);
                self.model_store(address, size, value);
                let verb = access_verb("write", size);
                self.send(
                    step,
                    format_args!("{verb} {address:#x} {value:#x}"),
                    Expect::Done,
                );
            }
            Op::Read {
                region,
                offset,
                size,
            } => {
                let address = self.base(region) + offset;
                let value = self.model_load(address, size);
                let verb = access_verb("read", size);
                self.send(
                    step,
                    format_args!("{verb} {address:#x}"),
                    Expect::Value(value),
                );
            }
            Op::ClockStep(ns) => self.clock_step(step, ns),
            Op::StepToDeadline(delta) => {
                let now = self.env.now_ns;
                let ns = match self.model.timeout().deadline_ns() {
                    Some(deadline_ns) => deadline_ns
                        .saturating_add_signed(delta.into())
                        .checked_sub(now)
                        .filter(|&ns| ns > 0)
                        .unwrap_or(1),
                    None => 1,
                };
                self.clock_step(step, ns);
            }
            Op::SystemReset | Op::Migrate => unreachable!("run() handles {op}"),
        }
        // Rises of the line: a periodic timeout's coalesced periods count
        // once per rise.
        if !raised_before && self.model.irq_level() {
            self.stats.timeouts_fired += 1;
        }
        self.queue_checks(step);
    }

    fn clock_step(&mut self, step: usize, ns: u64) {
        self.env.advance(&mut self.model, ns);
        let now = self.env.now_ns;
        self.send(step, format_args!("clock_step {ns}"), Expect::Clock(now));
    }

    /// Queues the comparison of the whole observable state after `step`.
    pub(super) fn queue_checks(&mut self, step: usize) {
        let status = self.registers_base + regs::STATUS;
        let code = self.model.status().code();
        self.send(
            step,
            format_args!("readq {status:#x}"),
            Expect::Status(code),
        );
        let mut block = Box::new([0; CHECKED_BLOCK]);
        block.copy_from_slice(&self.env.memory[..CHECKED_BLOCK]);
        let shared_base = self.shared_base;
        self.send(
            step,
            format_args!("read {shared_base:#x} {CHECKED_BLOCK:#x}"),
            Expect::Block(block),
        );
        self.checks.push((step, Check::IrqLevel(self.env.irq)));
        self.queued_ops += 1;
    }

    /// Sends the queued commands and checks every answer in order.
    /// `first_step` is the first operation of the batch, for messages.
    pub(super) fn flush(&mut self, first_step: usize) -> Result<(), Failure> {
        let commands = std::mem::take(&mut self.commands);
        let checks = std::mem::take(&mut self.checks);
        self.queued_ops = 0;
        let mut last_step = first_step;
        let qemu_failed = |step: usize, error: anyhow::Error| Failure {
            step: Some(step),
            message: format!("QEMU failed: {error:#}"),
        };
        self.machine
            .qtest
            .send(&commands)
            .map_err(|e| qemu_failed(first_step, e))?;
        for (step, check) in checks {
            last_step = step;
            let mismatch = |message: String| Failure {
                step: Some(step),
                message,
            };
            let expect = match check {
                Check::IrqLevel(level) => {
                    for event in self.machine.qtest.take_irq_events() {
                        self.device_irq = matches!(event, IrqEvent::Raise(0));
                    }
                    if self.device_irq != level {
                        return Err(mismatch(format!(
                            "interrupt line: device {}, model {}",
                            high_low(self.device_irq),
                            high_low(level)
                        )));
                    }
                    continue;
                }
                Check::Answer(expect) => expect,
            };
            let answer = self
                .machine
                .qtest
                .answer("a pipelined command")
                .map_err(|e| qemu_failed(step, e))?;
            let number = || parse_number(&answer).map_err(|e| mismatch(format!("{e:#}")));
            match expect {
                Expect::Done => {}
                Expect::Value(value) => {
                    let got = number()?;
                    if got != value {
                        return Err(mismatch(format!(
                            "the load read {got:#x} from the device, {value:#x} from the model"
                        )));
                    }
                }
                Expect::Clock(now) => {
                    let got = number()?;
                    if got != now {
                        return Err(mismatch(format!("clock {got} ns, the model's {now} ns")));
                    }
                    self.machine.qtest.note_clock(got);
                }
                Expect::Status(code) => {
                    let got = number()?;
                    if got != code {
                        return Err(mismatch(format!(
                            "STATUS: device {got:#x}, model {code:#x}"
                        )));
                    }
                }
                Expect::Block(block) => {
                    let device = decode_hex(&answer).map_err(|e| mismatch(format!("{e:#}")))?;
                    if device[..] != block[..] {
                        return Err(mismatch(describe_block_difference(&device, &block[..])));
                    }
                }
            }
        }
        self.check_guest_error_log(first_step, last_step)
    }

    /// Every mistake the model reported since the last check must be one
    /// line in QEMU's guest-error log.
    fn check_guest_error_log(
        &mut self,
        first_step: usize,
        last_step: usize,
    ) -> Result<(), Failure> {
        let logged = self.machine.new_guest_errors().map_err(|e| Failure {
            step: Some(last_step),
            message: format!("reading the guest-error log: {e:#}"),
        })?;
        let reported = (self.env.error_count - self.model_errors_counted) as u64;
        self.model_errors_counted = self.env.error_count;
        self.stats.guest_errors += reported;
        if logged != reported {
            return Err(Failure {
                step: Some(last_step),
                message: format!(
                    "operations {first_step}..={last_step}: the device logged {logged} guest \
                     errors, the model reported {reported} (last: {:?})",
                    self.env.last_error
                ),
            });
        }
        Ok(())
    }

    /// Compares the whole pass-through memory (what the guest stored
    /// anywhere in it), not just the checked block.
    pub(super) fn full_check(&mut self, step: usize) -> Result<(), Failure> {
        let failed = |message: String| Failure {
            step: Some(step),
            message,
        };
        let answer = self
            .machine
            .qtest
            .command(&format!("read {:#x} {:#x}", self.shared_base, shared::SIZE))
            .map_err(|e| failed(format!("QEMU failed: {e:#}")))?;
        let device = decode_hex(&answer).map_err(|e| failed(format!("{e:#}")))?;
        if let Some(at) = (0..device.len()).find(|&at| device[at] != self.env.memory[at]) {
            return Err(failed(format!(
                "pass-through memory differs at offset {at:#x}: device {:#04x}, model {:#04x}",
                device[at], self.env.memory[at]
            )));
        }
        Ok(())
    }

    /// QMP `system_reset`, waited for; the model gets its power-on reset.
    pub(super) fn system_reset(&mut self, step: usize) -> Result<(), Failure> {
        let qmp = &mut self.machine.qmp;
        let reset = qmp
            .execute("system_reset", json!({}))
            .and_then(|_| qmp.wait_for_event("RESET"));
        reset.map_err(|e| Failure {
            step: Some(step),
            message: format!("system_reset: {e:#}"),
        })?;
        self.model.power_on_reset(&mut self.env, true);
        self.stats.resets += 1;
        Ok(())
    }

    /// Saves the machine into a file, ends that QEMU, starts a new one
    /// from the file; the model goes through its own save and restore.
    pub(super) fn migrate(&mut self, step: usize) -> Result<(), Failure> {
        let failed = |message: String| Failure {
            step: Some(step),
            message,
        };
        let file = self.scratch.join("migration.bin");
        let _ = std::fs::remove_file(&file);
        self.machine
            .qmp
            .migrate_to_file(&file)
            .map_err(|e| failed(format!("migrate: {e:#}")))?;
        let saved_at = self.machine.qtest.last_clock();
        self.instance += 1;
        let mut target = Machine::start(&self.qemu, &self.scratch, self.instance, Some(&file))
            .map_err(|e| failed(format!("the new QEMU did not take the migration: {e:#}")))?;
        // qtest's clock starts at 0 in every process; a real migration
        // carries the virtual clock.
        if saved_at > 0 {
            let answer = target
                .qtest
                .command(&format!("clock_set {saved_at}"))
                .map_err(|e| failed(format!("clock_set: {e:#}")))?;
            target.qtest.note_clock(saved_at);
            if parse_number(&answer).ok() != Some(saved_at) {
                return Err(failed(format!("clock_set {saved_at} answered {answer}")));
            }
        }
        self.machine = target;
        // The new QEMU reports the restored line as a change from low.
        self.device_irq = false;
        let saved = self.model.save();
        self.model = Stopwatch::restore(&mut self.env, &saved)
            .map_err(|e| failed(format!("the model refused its own saved state: {e}")))?;
        self.stats.migrations += 1;
        Ok(())
    }
}

fn high_low(level: bool) -> &'static str {
    if level {
        "high"
    } else {
        "low"
    }
}
