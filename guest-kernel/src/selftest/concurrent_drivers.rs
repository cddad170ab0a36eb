// SPDX-License-Identifier: GPL-2.0-or-later
//! Several CPUs driving different stopwatches at once (boot argument
//! `concurrent-drivers` or `concurrent-drivers=SEED`, test kernel; the
//! system test `concurrency::each_device_follows_its_own_commands` boots
//! it with as many stopwatches as CPUs and replays what it prints through
//! the device's model).
//!
//! CPU k (k = 0..N-1, N the CPUs online, at most the stopwatches) drives
//! stopwatch k with its own seeded random mix of START, PAUSE, RESET, LAP,
//! TIMEOUT, `TIMEOUT_NS`, PERIODIC and `TIMEOUT_ACK`, all CPUs at once
//! (they start together, and random gaps shuffle how their exits
//! interleave in QEMU). After each command the CPU reads its device back
//! (the time page, the laps, the trapping STATUS register): nobody else
//! writes that device, so what it reads is what its command left.
//!
//! What the outcome depends on is pinned down, so that the host can
//! replay it exactly: every timeout is at least [`MIN_TIMEOUT_NS`] away,
//! longer than the run, so none fires (the commands alone change the
//! device); and the guest counter is read just before and just after
//! each command, so the host knows within a bracket when the device took
//! it (the counter and the device count the same virtual clock).
//!
//! Printed (numbers in hex), first each CPU's, in CPU order, by the CPU
//! itself from its own stack (the records take no `.bss`: the test image
//! must stay within the 1 MiB its PC-relative addressing reaches):
//!
//! `DRIVERS-START cpu sequence status accumulated_ns run_start_ns deadline_ns lap_count`
//! `DRIVERS-COMMAND cpu index code argument before_ns after_ns sequence status accumulated_ns run_start_ns deadline_ns lap_count last_lap_ns status_register`
//!
//! then each device's state once every CPU had finished (read by CPU 0):
//!
//! `DRIVERS-FINAL device sequence status accumulated_ns run_start_ns deadline_ns lap_count last_lap_ns status_register`
//!
//! then `DRIVERS {"seed":..,"cpus":..,"commands":..,"tick_ns":..,"errors":..}`
//! (`errors`: reads of a device that failed, then printed as all ones).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::cpu::{self, MAX_CPUS};
use crate::arch::timer;
use crate::drivers::stopwatch::{device_time_ns, Stopwatch};
use crate::smp::{self, Job};
use crate::{devices, print, println};
use stopwatch_abi::{Command, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, NANOS_PER_SEC};
use stopwatch_test_rng::TestRng;

/// Commands each CPU sends.
const COMMANDS_PER_CPU: usize = 150;
/// The longest pause between two commands of one CPU (asleep, so the
/// host runs the other vCPUs meanwhile).
const MAX_GAP_NS: u64 = 200_000;
/// How many commands a CPU may run ahead of the slowest: the CPUs keep
/// close, so their commands interleave however the host schedules the
/// vCPU threads (a starved one holds the others back).
const MAX_LEAD: usize = 8;
/// The shortest timeout or period armed: longer than any run (a fraction
/// of a second), so that none fires while the CPUs drive.
const MIN_TIMEOUT_NS: u64 = 8 * NANOS_PER_SEC;
/// How long CPU 0 waits for the others to get ready, to finish, to print.
const JOB_TIMEOUT_NS: u64 = 10_000_000_000;
/// The seed without `=SEED`.
pub const DEFAULT_SEED: u64 = 0xd15c_0de5_5eed_0002;
/// How long a waiting CPU sleeps before it looks again: a spinning vCPU
/// takes host time from the ones it waits for (2 host cores here).
const NAP_NS: u64 = 20_000;
/// What a failed read of the device prints instead.
const UNREADABLE: u64 = u64::MAX;

/// CPUs with their device reset and first state recorded.
static READY: AtomicUsize = AtomicUsize::new(0);
/// Set by CPU 0 when every CPU is ready: all start at once.
static GO: AtomicBool = AtomicBool::new(false);
/// Commands each CPU has sent, by CPU.
static PROGRESS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// CPUs that sent all their commands.
static FINISHED: AtomicUsize = AtomicUsize::new(0);
/// Set by CPU 0 once it has read every device's final state.
static FINALS_READ: AtomicBool = AtomicBool::new(false);
/// The CPU whose turn it is to print its records.
static TURN: AtomicUsize = AtomicUsize::new(0);
/// Failed reads of a device, all CPUs.
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// What one command did, as its CPU saw it.
#[derive(Clone, Copy, Default)]
struct Record {
    code: u64,
    /// DATA_LEN for TIMEOUT, `TIMEOUT_NS` and PERIODIC, else 0.
    argument: u64,
    /// Device-clock time just before and just after the command.
    before_ns: u64,
    after_ns: u64,
    /// The device read back after it ([`UNREADABLE`] if that failed).
    state: DeviceState,
}

/// A device as a CPU reads it back.
#[derive(Clone, Copy, Default)]
struct DeviceState {
    sequence: u64,
    status: u64,
    accumulated_ns: u64,
    run_start_ns: u64,
    deadline_ns: u64,
    lap_count: u64,
    /// The latest lap, 0 if none.
    last_lap_ns: u64,
    /// The trapping STATUS register's value.
    status_register: u64,
}

impl DeviceState {
    /// Reads `stopwatch` back: its time page, its laps and its STATUS
    /// register.
    fn read(stopwatch: &Stopwatch) -> DeviceState {
        let (Ok(reading), Ok(laps)) = (stopwatch.read_zero_exit(), stopwatch.laps()) else {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            return DeviceState {
                sequence: UNREADABLE,
                ..DeviceState::default()
            };
        };
        let snapshot = reading.snapshot;
        DeviceState {
            sequence: u64::from(reading.sequence),
            status: snapshot.status.code(),
            accumulated_ns: snapshot.accumulated_ns,
            run_start_ns: snapshot.run_start_ns,
            deadline_ns: snapshot.timeout_deadline_ns,
            lap_count: laps.as_slice().len() as u64,
            last_lap_ns: laps.as_slice().last().copied().unwrap_or(0),
            status_register: stopwatch
                .status()
                .map_or_else(|code| code, |status| status.code()),
        }
    }

    /// Its fields, in the order the lines print them.
    fn fields(&self) -> [u64; 8] {
        [
            self.sequence,
            self.status,
            self.accumulated_ns,
            self.run_start_ns,
            self.deadline_ns,
            self.lap_count,
            self.last_lap_ns,
            self.status_register,
        ]
    }
}

/// Each device's state once all CPUs finished, by device (the first
/// field, the sequence, [`UNREADABLE`] if unread).
static FINALS: [[AtomicU64; 8]; MAX_CPUS] =
    [const { [const { AtomicU64::new(UNREADABLE) }; 8] }; MAX_CPUS];

/// The seed of CPU `cpu`'s commands, from the run's.
fn cpu_seed(seed: u64, cpu: usize) -> u64 {
    seed ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Runs the mode (on CPU 0) and prints its result.
pub fn run_and_print(stopwatch_count: usize, seed: u64) {
    let drivers = smp::online().min(stopwatch_count);
    if drivers < 2 {
        println!(
            "DRIVERS {{\"error\":\"{} CPUs online, {stopwatch_count} stopwatches: two of each needed\"}}",
            smp::online()
        );
        return;
    }
    println!("concurrent-drivers: seed {seed:#x}, {drivers} CPUs each driving its own stopwatch");
    for flag in [&GO, &FINALS_READ] {
        flag.store(false, Ordering::Relaxed);
    }
    for count in PROGRESS.iter().chain([&READY, &FINISHED, &TURN]) {
        count.store(0, Ordering::Relaxed);
    }
    let mut tickets = [0u64; MAX_CPUS];
    for (cpu, ticket) in tickets.iter_mut().enumerate().take(drivers).skip(1) {
        match smp::post(
            cpu,
            Job {
                run: drive,
                argument: seed as usize,
            },
        ) {
            Ok(posted) => *ticket = posted,
            Err(_) => {
                println!("DRIVERS {{\"error\":\"CPU {cpu} took no job\"}}");
                return;
            }
        }
    }
    // CPU 0 drives too; it gives the start signal once all are ready, and
    // reads every device's final state once all have finished.
    let clock = timer::clock();
    let patience = || timer::counter() + clock.ns_to_ticks(JOB_TIMEOUT_NS);
    let wait_for = |count: &AtomicUsize, what: &str| {
        let until = patience();
        while count.load(Ordering::Acquire) < drivers {
            if timer::counter() > until {
                println!("DRIVERS {{\"error\":\"a CPU did not {what}\"}}");
                return false;
            }
            timer::wait_ns(NAP_NS);
        }
        true
    };
    let own = Own {
        drivers,
        wait_for: &wait_for,
    };
    if !drive_as(0, seed, Some(&own)) {
        return;
    }
    for (cpu, &ticket) in tickets.iter().enumerate().take(drivers).skip(1) {
        if !smp::wait_done(cpu, ticket, JOB_TIMEOUT_NS) {
            println!("DRIVERS {{\"error\":\"CPU {cpu} did not finish\"}}");
            return;
        }
    }
    for (device, finals) in FINALS.iter().enumerate().take(drivers) {
        let fields = finals.each_ref().map(|field| field.load(Ordering::Relaxed));
        print!("DRIVERS-FINAL {device}");
        print_fields(&fields);
    }
    println!(
        "DRIVERS {{\"seed\":{seed},\"cpus\":{drivers},\"commands\":{COMMANDS_PER_CPU},\"tick_ns\":{},\"errors\":{}}}",
        clock.tick_ns(),
        ERRORS.load(Ordering::Relaxed)
    );
}

/// CPU 0's part beyond driving: how many drive, and how to wait for them.
struct Own<'a> {
    drivers: usize,
    wait_for: &'a dyn Fn(&AtomicUsize, &str) -> bool,
}

/// Prints ` field field ...` in hex and ends the line.
fn print_fields(fields: &[u64]) {
    for field in fields {
        print!(" {field:x}");
    }
    println!();
}

/// A CPU's job (CPUs 1..N-1): [`drive_as`] its own index.
fn drive(seed: usize) {
    drive_as(cpu::index(), seed as u64, None);
}

/// Drives stopwatch `cpu` and prints what it saw, in its turn. `own`:
/// CPU 0's part (see [`Own`]). Whether all went as planned.
fn drive_as(cpu: usize, seed: u64, own: Option<&Own<'_>>) -> bool {
    let Some(stopwatch) = devices::stopwatch(cpu) else {
        println!("DRIVERS {{\"error\":\"no stopwatch {cpu}\"}}");
        return false;
    };
    let mut random = TestRng::new(cpu_seed(seed, cpu));
    let clock = timer::clock();
    stopwatch.reset();
    let start = DeviceState::read(stopwatch);
    // The page's clock offset turns counter values into device time.
    let Ok(snapshot) = stopwatch.read_time_page() else {
        println!("DRIVERS {{\"error\":\"stopwatch {cpu}'s time page unreadable\"}}");
        return false;
    };
    let device_now = || device_time_ns(&snapshot, timer::counter());
    let mut records = [Record::default(); COMMANDS_PER_CPU];
    READY.fetch_add(1, Ordering::AcqRel);
    if let Some(own) = own {
        if !(own.wait_for)(&READY, "get ready") {
            return false;
        }
        GO.store(true, Ordering::Release);
    }
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let drivers = READY.load(Ordering::Acquire);
    for (index, record) in records.iter_mut().enumerate() {
        // At most MAX_LEAD commands ahead of the slowest CPU.
        let until = timer::counter() + clock.ns_to_ticks(JOB_TIMEOUT_NS);
        while PROGRESS[..drivers]
            .iter()
            .any(|progress| progress.load(Ordering::Relaxed) + MAX_LEAD < index)
        {
            if timer::counter() > until {
                println!("DRIVERS {{\"error\":\"CPU {cpu} waited too long for the others\"}}");
                return false;
            }
            timer::wait_ns(NAP_NS);
        }
        // START twice as often: most time-dependent results need a run.
        let (command, argument) = match random.next_u64() % 10 {
            0 | 1 => (Command::Start, 0),
            2 => (Command::Pause, 0),
            3 => (Command::Reset, 0),
            4 | 5 => (Command::Lap, 0),
            6 => (
                Command::Timeout,
                random.in_range(MIN_TIMEOUT_NS / NANOS_PER_SEC..=MAX_TIMEOUT_SECS),
            ),
            7 => (
                Command::TimeoutNs,
                random.in_range(MIN_TIMEOUT_NS..=MAX_TIMEOUT_NS),
            ),
            8 => (
                Command::Periodic,
                random.in_range(MIN_TIMEOUT_NS..=MAX_TIMEOUT_NS),
            ),
            _ => (Command::TimeoutAck, 0),
        };
        if argument != 0 {
            stopwatch.write_data_len(argument);
        }
        let before_ns = device_now();
        stopwatch.command(command);
        let after_ns = device_now();
        *record = Record {
            code: command.code(),
            argument,
            before_ns,
            after_ns,
            state: DeviceState::read(stopwatch),
        };
        PROGRESS[cpu].store(index + 1, Ordering::Relaxed);
        timer::wait_ns(random.in_range(0..=MAX_GAP_NS));
    }
    FINISHED.fetch_add(1, Ordering::AcqRel);
    if let Some(own) = own {
        if !(own.wait_for)(&FINISHED, "finish") {
            return false;
        }
        // Every device as its own commands left it; then RESET, so that
        // no timeout fires while the lines are printed.
        for (device, finals) in FINALS.iter().enumerate().take(own.drivers) {
            let Some(stopwatch) = devices::stopwatch(device) else {
                continue;
            };
            for (field, value) in finals.iter().zip(DeviceState::read(stopwatch).fields()) {
                field.store(value, Ordering::Relaxed);
            }
            stopwatch.reset();
        }
        FINALS_READ.store(true, Ordering::Release);
    }
    while !FINALS_READ.load(Ordering::Acquire) || TURN.load(Ordering::Acquire) != cpu {
        timer::wait_ns(NAP_NS);
    }
    let start = start.fields();
    print!("DRIVERS-START {cpu}");
    print_fields(&start[..6]);
    for (index, record) in records.iter().enumerate() {
        print!(
            "DRIVERS-COMMAND {cpu} {index:x} {:x} {:x} {:x} {:x}",
            record.code, record.argument, record.before_ns, record.after_ns
        );
        print_fields(&record.state.fields());
    }
    TURN.fetch_add(1, Ordering::AcqRel);
    if let Some(own) = own {
        if !(own.wait_for)(&TURN, "print") {
            return false;
        }
    }
    true
}
