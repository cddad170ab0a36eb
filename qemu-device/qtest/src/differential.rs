// SPDX-License-Identifier: GPL-2.0-or-later
//! Differential fuzzing: the real device inside QEMU against its model.
//!
//! A seeded stream of [`Op`]s (guest accesses anywhere in and just beyond
//! both regions, at every size and alignment, valid and invalid commands,
//! `data_len` garbage, clock steps from 1 ns to 11 s and onto deadlines,
//! system resets and migrations into a new QEMU) goes to the real device over qtest and to
//! [`stopwatch_model::Stopwatch`] in a [`Simulation`] that mirrors the
//! machine's address space. After every operation STATUS, `data_len`, the
//! `data` text, the time page and the interrupt line must agree; the guest
//! error log must hold one line per mistake the model reported; QEMU must
//! never exit.
//!
//! Speed comes from pipelining: the model runs ahead and records what each
//! answer must be, the commands of a whole batch go to QEMU in one write,
//! and the answers are checked in order afterwards (qtest answers strictly
//! in order, and reports an interrupt change before the answer of the
//! command that caused it, so every check still belongs to one operation).
//! The state is compared with one `read` of the block that holds
//! `data_len`, `data` and the time page.
//!
//! A failure names its operation; [`shrink`] then finds a short operation
//! list that still fails, printed by [`script`] in a form [`parse_script`]
//! reads back.

use std::{
    fmt,
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use stopwatch_abi::{
    regs, shared, time_page, Command, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, MIN_PERIOD_NS,
};
use stopwatch_model::{Simulation, Stopwatch};
use stopwatch_test_rng::TestRng;

use crate::{parse_number, IrqEvent, Layout, Qmp, Qtest};

/// The pass-through block compared after every operation: `data_len`,
/// `data`, the time page, the laps and the period (and the reserved bytes
/// between them): everything the device writes.
const CHECKED_BLOCK: usize = shared::GUEST_FREE as usize;

/// Operations per pipelined batch.
const BATCH_OPS: usize = 256;

/// How far beyond a region's end accesses go.
const BEYOND_END: u64 = 16;

/// The device's QOM id in every machine.
const DEVICE_ID: &str = "sw0";

/// The two memory regions of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Region 0: the pass-through RAM.
    Shared,
    /// Region 1: the trapping registers.
    Registers,
}

impl Region {
    fn name(self) -> &'static str {
        match self {
            Region::Shared => "shared",
            Region::Registers => "registers",
        }
    }
}

/// One step of a differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A guest store of `size` bytes at `offset` from the region's base
    /// (which may reach beyond the region).
    Write {
        region: Region,
        offset: u64,
        size: u32,
        value: u64,
    },
    /// A guest load.
    Read {
        region: Region,
        offset: u64,
        size: u32,
    },
    /// `clock_step`: the virtual clock moves by this many nanoseconds.
    ClockStep(u64),
    /// `clock_step` onto the armed timeout's deadline plus this many
    /// nanoseconds (-1, 0 or 1: the edges where a timer is most easily
    /// wrong); 1 ns if no timeout is armed or the target is not ahead.
    StepToDeadline(i8),
    /// QMP `system_reset`.
    SystemReset,
    /// The machine is saved to a file and a new QEMU continues from it.
    Migrate,
}

impl fmt::Display for Op {
    /// The script form, one line: `write registers 0x0 8 0x5`,
    /// `read shared 0xffc 8`, `clock_step 1500`, `system_reset`, `migrate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Write {
                region,
                offset,
                size,
                value,
            } => write!(f, "write {} {offset:#x} {size} {value:#x}", region.name()),
            Op::Read {
                region,
                offset,
                size,
            } => write!(f, "read {} {offset:#x} {size}", region.name()),
            Op::ClockStep(ns) => write!(f, "clock_step {ns}"),
            Op::StepToDeadline(delta) => write!(f, "step_to_deadline {delta}"),
            Op::SystemReset => write!(f, "system_reset"),
            Op::Migrate => write!(f, "migrate"),
        }
    }
}

impl std::str::FromStr for Op {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Op> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let region = |word: &str| match word {
            "shared" => Ok(Region::Shared),
            "registers" => Ok(Region::Registers),
            _ => Err(anyhow!("{word:?} is not a region (shared, registers)")),
        };
        let size = |word: &str| match word.parse() {
            Ok(size @ (1 | 2 | 4 | 8)) => Ok(size),
            _ => Err(anyhow!("{word:?} is not an access size (1, 2, 4, 8)")),
        };
        match words[..] {
            ["write", r, offset, s, value] => Ok(Op::Write {
                region: region(r)?,
                offset: parse_number(offset)?,
                size: size(s)?,
                value: parse_number(value)?,
            }),
            ["read", r, offset, s] => Ok(Op::Read {
                region: region(r)?,
                offset: parse_number(offset)?,
                size: size(s)?,
            }),
            ["clock_step", ns] => match parse_number(ns)? {
                0 => bail!("clock_step 0: qtest refuses a step of 0"),
                ns => Ok(Op::ClockStep(ns)),
            },
            ["step_to_deadline", delta] => match delta.parse() {
                Ok(delta @ -1..=1) => Ok(Op::StepToDeadline(delta)),
                _ => bail!("step_to_deadline {delta}: give -1, 0 or 1"),
            },
            ["system_reset"] => Ok(Op::SystemReset),
            ["migrate"] => Ok(Op::Migrate),
            _ => bail!(
                "{line:?} is not an operation (write REGION OFFSET SIZE VALUE, \
                 read REGION OFFSET SIZE, clock_step NS, step_to_deadline -1|0|1, \
                 system_reset, migrate)"
            ),
        }
    }
}

/// The script of `ops`: one operation per line, as [`parse_script`] reads.
pub fn script(ops: &[Op]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

/// Reads a script: one operation per line; `#` starts a comment.
pub fn parse_script(text: &str) -> Result<Vec<Op>> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.split('#').next().unwrap_or("").trim();
            (!line.is_empty()).then(|| {
                line.parse()
                    .with_context(|| format!("script line {}", index + 1))
            })
        })
        .collect()
}

/// How often the rare operations come.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// One system reset per this many operations, on average.
    pub ops_per_reset: u64,
    /// One migration per this many operations, on average.
    pub ops_per_migration: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            ops_per_reset: 1_000,
            ops_per_migration: 10_000,
        }
    }
}

/// `count` operations of the stream of `seed`: the same seed always gives
/// the same operations.
pub fn generate(seed: u64, count: usize, rates: Rates) -> Vec<Op> {
    let mut random = TestRng::new(seed);
    (0..count).map(|_| random_op(&mut random, rates)).collect()
}

fn random_op(random: &mut TestRng, rates: Rates) -> Op {
    if random.chance(1, rates.ops_per_migration) {
        return Op::Migrate;
    }
    if random.chance(1, rates.ops_per_reset) {
        return Op::SystemReset;
    }
    let size = |random: &mut TestRng| *random.pick(&[1, 2, 4, 8]);
    match random.below(100) {
        // A command the usual way, mostly a valid one.
        0..=29 => {
            let value = match random.below(10) {
                0..=7 => random.pick(&Command::ALL).code(),
                8 => random.below(16),
                _ => random.next_u64(),
            };
            let (offset, size) = *random.pick(&[(regs::COMMAND, 8), (regs::COMMAND, 4)]);
            Op::Write {
                region: Region::Registers,
                offset,
                size,
                value,
            }
        }
        // data_len for the next TIMEOUT / TIMEOUT_NS / PERIODIC: around
        // their limits, or garbage.
        30..=44 => {
            let value = match random.below(7) {
                0 => random.below(MAX_TIMEOUT_SECS + 2),
                1 => random.in_range(1..=2_000),
                2 => random.below(3_000_000_000),
                3 => MAX_TIMEOUT_NS + random.below(3) - 1,
                4 => u64::MAX - random.below(2),
                // A short period, whose timeout fires many times per step.
                5 => random.in_range(MIN_PERIOD_NS - 1..=50 * MIN_PERIOD_NS),
                _ => random.next_u64(),
            };
            Op::Write {
                region: Region::Shared,
                offset: shared::DATA_LEN,
                size: if random.chance(7, 8) { 8 } else { size(random) },
                value,
            }
        }
        // Onto a deadline, or just before or after it.
        45..=49 => Op::StepToDeadline(random.in_range(0..=2) as i8 - 1),
        // The clock: 1 ns to 11 s, every scale equally likely.
        50..=69 => {
            let scale = *random.pick(&[
                10,
                1_000,
                100_000,
                10_000_000,
                1_000_000_000,
                11_000_000_000,
            ]);
            Op::ClockStep(random.in_range(1..=scale))
        }
        // Any access to either region, inside or just beyond it.
        _ => {
            let region = if random.chance(1, 2) {
                Region::Registers
            } else {
                Region::Shared
            };
            let offset = match (region, random.below(4)) {
                (Region::Registers, 0 | 1) => random.below(2 * regs::WIDTH + 1),
                (Region::Shared, 0 | 1) => random.below(CHECKED_BLOCK as u64 + 8),
                (Region::Registers, 2) => regs::SIZE - random.in_range(1..=BEYOND_END),
                (Region::Shared, 2) => shared::SIZE - random.in_range(1..=BEYOND_END),
                (Region::Registers, _) => random.below(regs::SIZE + BEYOND_END),
                (Region::Shared, _) => random.below(shared::SIZE + BEYOND_END),
            };
            let size = size(random);
            if random.chance(1, 2) {
                Op::Read {
                    region,
                    offset,
                    size,
                }
            } else {
                Op::Write {
                    region,
                    offset,
                    size,
                    value: random.next_u64(),
                }
            }
        }
    }
}

/// What a run covered and how fast.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Operations run.
    pub ops: usize,
    /// Timeouts that fired.
    pub timeouts_fired: u64,
    /// Guest mistakes the model reported (each also logged by QEMU).
    pub guest_errors: u64,
    pub resets: u64,
    pub migrations: u64,
    pub elapsed: Duration,
}

impl Stats {
    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops in {:.1} s, {:.0} ops/s ({} timeouts fired, {} guest mistakes, \
             {} system resets, {} migrations)",
            thousands(self.ops as u64),
            self.elapsed.as_secs_f64(),
            self.ops_per_second(),
            thousands(self.timeouts_fired),
            thousands(self.guest_errors),
            self.resets,
            self.migrations
        )
    }
}

/// 100000 as "100,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Why a run failed.
#[derive(Debug)]
pub struct Failure {
    /// The operation after which the disagreement showed (an index into
    /// the operations), if known.
    pub step: Option<usize>,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "after operation {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Runs `ops` against a fresh QEMU (`qemu`, scratch files in `scratch`)
/// and the model.
pub fn run(qemu: &Path, scratch: &Path, ops: &[Op]) -> Result<Stats, Failure> {
    run_with_progress(qemu, scratch, ops, &mut |_| {})
}

/// [`run`], calling `progress` with the figures so far about every
/// 100,000 operations.
pub fn run_with_progress(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    progress: &mut dyn FnMut(&Stats),
) -> Result<Stats, Failure> {
    const PROGRESS_EVERY: usize = 100_000;
    let started = Instant::now();
    let setup = |error: anyhow::Error| Failure {
        step: None,
        message: format!("{error:#}"),
    };
    let mut runner = Runner::start(qemu, scratch).map_err(setup)?;
    let mut batch_start = 0;
    let mut next_progress = PROGRESS_EVERY;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::SystemReset | Op::Migrate => {
                runner.flush(batch_start)?;
                batch_start = step;
                // What the operations so far stored anywhere.
                runner.full_check(step.saturating_sub(1))?;
                if *op == Op::SystemReset {
                    runner.system_reset(step)?;
                } else {
                    runner.migrate(step)?;
                }
                runner.queue_checks(step);
            }
            _ => runner.queue(step, op),
        }
        if runner.queued_ops >= BATCH_OPS {
            runner.flush(batch_start)?;
            batch_start = step + 1;
            if batch_start >= next_progress {
                next_progress += PROGRESS_EVERY;
                runner.stats.ops = batch_start;
                runner.stats.elapsed = started.elapsed();
                progress(&runner.stats);
            }
        }
    }
    runner.flush(batch_start)?;
    runner.full_check(ops.len().saturating_sub(1))?;
    runner.stats.ops = ops.len();
    runner.stats.elapsed = started.elapsed();
    Ok(runner.stats)
}

/// One QEMU under qtest with a QMP socket and a guest-error log.
struct Machine {
    qtest: Qtest,
    qmp: Qmp,
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

    fn start(qemu: &Path, scratch: &Path, instance: u32, incoming: Option<&Path>) -> Result<Self> {
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
    fn new_guest_errors(&mut self) -> Result<u64> {
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
fn base_args() -> Vec<String> {
    ["-M", "virt", "-m", "32M", "-device"]
        .map(String::from)
        .into_iter()
        .chain([format!("stopwatch,id={DEVICE_ID}")])
        .collect()
}

/// What one queued qtest answer must be.
enum Expect {
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
enum Check {
    Answer(Expect),
    IrqLevel(bool),
}

/// The real machine and the simulated one, side by side.
struct Runner {
    qemu: PathBuf,
    scratch: PathBuf,
    machine: Machine,
    instance: u32,
    shared_base: u64,
    registers_base: u64,
    model: Stopwatch,
    env: Simulation,
    /// The device's interrupt line as qtest reported it.
    device_irq: bool,
    /// Commands not yet sent, and what their answers must be.
    commands: String,
    checks: Vec<(usize, Check)>,
    queued_ops: usize,
    /// Guest errors the model reported that the log has not yet shown.
    model_errors_counted: usize,
    stats: Stats,
}

impl Runner {
    fn start(qemu: &Path, scratch: &Path) -> Result<Runner> {
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
    fn queue(&mut self, step: usize, op: &Op) {
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
    fn queue_checks(&mut self, step: usize) {
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
    fn flush(&mut self, first_step: usize) -> Result<(), Failure> {
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
    fn full_check(&mut self, step: usize) -> Result<(), Failure> {
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
    fn system_reset(&mut self, step: usize) -> Result<(), Failure> {
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
    fn migrate(&mut self, step: usize) -> Result<(), Failure> {
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

    /// A guest store as the memory core splits it over RAM, the registers
    /// and unassigned space.
    fn model_store(&mut self, address: u64, size: u32, value: u64) {
        for piece in self.pieces(address, size) {
            let bytes = (value >> (8 * piece.skip)) & mask(piece.len);
            match piece.target {
                Target::Ram(offset) => {
                    let at = offset as usize;
                    self.env.memory[at..at + piece.len as usize]
                        .copy_from_slice(&bytes.to_le_bytes()[..piece.len as usize]);
                }
                Target::Registers(offset) => {
                    self.model.write(&mut self.env, offset, bytes, piece.len);
                }
                Target::Unassigned => {}
            }
        }
    }

    /// A guest load, split likewise; unassigned space reads 0.
    fn model_load(&mut self, address: u64, size: u32) -> u64 {
        let mut value = 0;
        for piece in self.pieces(address, size) {
            let bytes = match piece.target {
                Target::Ram(offset) => {
                    let mut bytes = [0; 8];
                    let at = offset as usize;
                    bytes[..piece.len as usize]
                        .copy_from_slice(&self.env.memory[at..at + piece.len as usize]);
                    u64::from_le_bytes(bytes)
                }
                Target::Registers(offset) => {
                    self.model.read(&mut self.env, offset, piece.len) & mask(piece.len)
                }
                Target::Unassigned => 0,
            };
            value |= bytes << (8 * piece.skip);
        }
        value
    }

    /// How QEMU's memory core (`flatview_read_continue`) splits an access:
    /// RAM takes what lies inside it; an MMIO region gets the largest
    /// power-of-two piece of at most its maximum size, even if that runs
    /// past its end (QEMU does not clamp MMIO accesses to their region:
    /// the registers see an 8-byte access at 0xffa); unassigned space
    /// takes at most 4 bytes, aligned, and reads 0.
    fn pieces(&self, address: u64, size: u32) -> Vec<Piece> {
        let shared = self.shared_base..self.shared_base + shared::SIZE;
        let registers = self.registers_base..self.registers_base + regs::SIZE;
        let pow2floor = |len: u64| 1 << (63 - len.leading_zeros());
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < size {
            let at = address + u64::from(done);
            let left = u64::from(size - done);
            let (target, len) = if shared.contains(&at) {
                (Target::Ram(at - shared.start), left.min(shared.end - at))
            } else if registers.contains(&at) {
                // The registers allow any size up to 8 and any alignment.
                (
                    Target::Registers(at - registers.start),
                    pow2floor(left.min(8)),
                )
            } else {
                // QEMU's unassigned region: 4 bytes at most, and no more
                // than the address's alignment.
                let alignment = at & at.wrapping_neg();
                let mut most = 4;
                if alignment != 0 && alignment < most {
                    most = alignment;
                }
                (Target::Unassigned, pow2floor(left.min(most)))
            };
            let len = len as u32;
            pieces.push(Piece {
                target,
                skip: done,
                len,
            });
            done += len;
        }
        pieces
    }
}

/// Part of an access that lands in one place.
struct Piece {
    target: Target,
    /// Bytes of the access before this piece.
    skip: u32,
    len: u32,
}

enum Target {
    Ram(u64),
    Registers(u64),
    Unassigned,
}

/// The qtest command for a load or store of `size` bytes: `readb`,
/// `writeq`...
fn access_verb(kind: &str, size: u32) -> String {
    let suffix = match size {
        1 => 'b',
        2 => 'w',
        4 => 'l',
        _ => 'q',
    };
    format!("{kind}{suffix}")
}

fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1 << (size * 8)) - 1
    }
}

fn high_low(level: bool) -> &'static str {
    if level {
        "high"
    } else {
        "low"
    }
}

/// The bytes of a qtest `read` answer (`0x` and two hex digits a byte).
fn decode_hex(answer: &str) -> Result<Vec<u8>> {
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
fn describe_block_difference(device: &[u8], model: &[u8]) -> String {
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

/// How long [`shrink`] may try.
pub const SHRINK_BUDGET: Duration = Duration::from_secs(120);

/// A short operation list that still fails, from `ops` that failed with
/// `failure`: the failing prefix, cut down by binary search, then without
/// every chunk (halves, quarters, ... single operations) whose removal
/// keeps it failing, within [`SHRINK_BUDGET`]. `progress` hears each
/// improvement.
pub fn shrink(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    failure: &Failure,
    mut progress: impl FnMut(&str),
) -> Vec<Op> {
    let started = Instant::now();
    let fails = |candidate: &[Op]| run(qemu, scratch, candidate).err();
    let mut best: Vec<Op> = match failure.step {
        Some(step) => ops[..(step + 1).min(ops.len())].to_vec(),
        None => ops.to_vec(),
    };
    // The shortest failing prefix (failures show after their operation,
    // or at the end of the run for the guest-error log).
    let (mut passing, mut failing) = (0, best.len());
    while failing - passing > 1 && started.elapsed() < SHRINK_BUDGET {
        let middle = (passing + failing) / 2;
        if fails(&best[..middle]).is_some() {
            failing = middle;
        } else {
            passing = middle;
        }
    }
    best.truncate(failing);
    progress(&format!(
        "shortest failing prefix: {} operations",
        best.len()
    ));
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut at = best.len();
        while at > 0 && started.elapsed() < SHRINK_BUDGET {
            let start = at.saturating_sub(chunk);
            let candidate: Vec<Op> = best[..start].iter().chain(&best[at..]).copied().collect();
            if let Some(failure) = fails(&candidate) {
                let keep = failure
                    .step
                    .map_or(candidate.len(), |step| (step + 1).min(candidate.len()));
                best = candidate[..keep].to_vec();
                progress(&format!("down to {} operations", best.len()));
                at = start.min(best.len());
            } else {
                at = start;
            }
        }
        if chunk == 1 || started.elapsed() >= SHRINK_BUDGET {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// After a failed run: shrinks `ops`, writes the short script to
/// `script_file` and returns the whole story as an error: what failed
/// (`origin` says which stream), the script, and how to replay it
/// (`replay`, a command line that takes the script file).
pub fn report_failure(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    failure: &Failure,
    origin: &str,
    script_file: &Path,
    replay: &str,
) -> anyhow::Error {
    eprintln!("differential run failed ({origin}): {failure}");
    eprintln!("shrinking (replaying shorter operation lists)...");
    let short = shrink(qemu, &scratch.join("shrink"), ops, failure, |note| {
        eprintln!("  {note}")
    });
    let text = script(&short);
    if let Err(error) = std::fs::write(script_file, &text) {
        eprintln!("could not write {}: {error}", script_file.display());
    }
    let replayed = run(qemu, &scratch.join("replay"), &short)
        .err()
        .map_or("it passed when replayed: a flaky failure".to_owned(), |f| {
            format!("replayed, it fails {f}")
        });
    anyhow!(
        "the device and its model disagree ({origin}): {failure}\n\
         Shortest failing script ({} operations; {replayed}):\n{text}\
         Written to {}; replay it with: {replay}",
        short.len(),
        script_file.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_round_trip() {
        let ops = generate(7, 5_000, Rates::default());
        assert!(ops.contains(&Op::SystemReset));
        let text = format!("# a comment\n\n{}", script(&ops));
        assert_eq!(parse_script(&text).unwrap(), ops);
        assert!(parse_script("write shared 0x0 3 0x1").is_err());
        assert!(parse_script("clock_step 0").is_err());
        assert!(parse_script("step_to_deadline 2").is_err());
        assert!(ops.contains(&Op::StepToDeadline(-1)));
        assert!(parse_script("jump 3").is_err());
    }

    #[test]
    fn generated_traffic_covers_the_space() {
        let ops = generate(1, 20_000, Rates::default());
        let beyond = |op: &Op| match *op {
            Op::Read { region, offset, .. } | Op::Write { region, offset, .. } => {
                let size = match region {
                    Region::Shared => shared::SIZE,
                    Region::Registers => regs::SIZE,
                };
                offset >= size
            }
            _ => false,
        };
        assert!(ops.iter().any(beyond), "accesses beyond a region");
        assert!(ops
            .iter()
            .any(|op| matches!(op, Op::ClockStep(ns) if *ns > 10_000_000_000)));
        assert!(ops.iter().any(|op| matches!(op, Op::ClockStep(1..=10))));
        assert!(ops.contains(&Op::Migrate));
        for size in [1, 2, 4, 8] {
            assert!(ops.iter().any(
                |op| matches!(op, Op::Read { size: s, offset, .. } if *s == size && offset % 8 != 0)
            ));
        }
    }

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
