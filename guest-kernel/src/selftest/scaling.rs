// SPDX-License-Identifier: GPL-2.0-or-later
//! Read throughput with several CPUs reading at once (boot argument
//! `bench-scaling`, test kernel; `cargo xtask bench` boots it with
//! `-smp 2` and `-smp 4`), printed as one machine-readable line:
//!
//! `SCALING {"cpus":2,"counter_hz":..,"repetitions":..,"interval_ns":..,
//! "read_zero_exit":{"1":[ops/s,..],"2":[..]},"read_trap_update":{..},
//! "read_page":{..},"read_status_reg":{..},"read_c_device_reg":{..}}`
//!
//! For each kind of read and each count N of CPUs (1, 2, 4, up to those
//! online), CPUs 0..N-1 run the same loop over the same guest-counter
//! interval, starting at the same counter value; each counts its reads and
//! the ticks it ran, and the figure is the sum of their rates (reads per
//! second of guest time). Repetition by repetition every kind and count
//! runs in turn, so each sees the same host load.
//!
//! The kinds: the zero-exit read (time page + counter), the time page
//! alone (what a reader of a PAUSED stopwatch pays), the original read
//! (UPDATE + the text), one read of the STATUS register (an MMIO exit to
//! the Rust device), and one read of the data register (RTCDR) of the
//! PL031 RTC that QEMU implements in C on the same board: the floor of an
//! MMIO exit's cost. The RTC is the device tree's `arm,pl031` node
//! (`BoardInfo::rtc`), mapped by the boot in this mode only and recognised
//! by its PrimeCell identification registers before it is read.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use board_discovery::Region;

use crate::arch::cpu::{PerCpu, MAX_CPUS};
use crate::arch::{mmio, timer};
use crate::drivers::stopwatch::Stopwatch;
use crate::smp::{self, Job};
use crate::{devices, print, println};

/// PrimeCell PeriphID0, PeriphID1 and CellID0 of a PL031, at 0xFE0,
/// 0xFE4 and 0xFF0.
const PL031_IDS: [(u64, u32); 3] = [(0xfe0, 0x31), (0xfe4, 0x10), (0xff0, 0x0d)];

/// Guest time each CPU reads for, per measurement.
const INTERVAL_NS: u64 = 100_000_000;
/// How far ahead of the go the common start is: time for every CPU to see it.
const START_MARGIN_NS: u64 = 2_000_000;
/// Measurements per kind and CPU count.
const REPETITIONS: usize = 5;
/// Reads between two looks at the counter, by kind: enough that the
/// look costs little beside them. Under TCG a counter read (CNTVCT_EL0,
/// an `ARM_CP_IO` register) takes QEMU's big lock like an MMIO exit, so
/// the page alone (8-10 ns a read) needs long batches to measure the page
/// and not the lock.
const BATCHES: [u64; 5] = [16, 1024, 16, 16, 16];
/// How long a CPU may take to finish its share.
const JOB_TIMEOUT_NS: u64 = 5_000_000_000;

/// The kinds of read, in printing order; a job's argument is the index.
const KINDS: [&str; 5] = [
    "read_zero_exit",
    "read_page",
    "read_trap_update",
    "read_status_reg",
    "read_c_device_reg",
];

/// CPU counts measured (those up to the CPUs online).
const COUNTS: [usize; 3] = [1, 2, 4];

/// The common start, in counter ticks (0: not given yet).
static START: AtomicU64 = AtomicU64::new(0);
/// The common end, in counter ticks.
static END: AtomicU64 = AtomicU64::new(0);
/// CPUs that took their job and wait for the start.
static READY: AtomicUsize = AtomicUsize::new(0);
/// The PL031's base address, set before the first measurement (the
/// jobs' argument is the kind of read).
static RTC_BASE: AtomicU64 = AtomicU64::new(0);

/// What one CPU measured.
struct Share {
    /// Reads done.
    reads: AtomicU64,
    /// Counter ticks from its start to its last look at the counter.
    ticks: AtomicU64,
}

static SHARES: PerCpu<Share> = PerCpu::new(
    [const {
        Share {
            reads: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
        }
    }; MAX_CPUS],
);

/// Whether a PL031 is at `rtc` (its identification registers say so).
///
/// # Safety
///
/// `rtc` must be mapped as Device memory, and reads of its identification
/// registers must have no effect (the device tree says a PL031 is there).
unsafe fn pl031_present(rtc: Region) -> bool {
    PL031_IDS.iter().all(|&(offset, id)| {
        // SAFETY: The caller's promise: mapped as Device memory; a PL031's
        // identification registers are aligned 32-bit read-only
        // registers whose reads have no effect.
        let value = unsafe { mmio::read_u32((rtc.base + offset) as *const u32) };
        value & 0xff == id
    })
}

/// One read of the PL031's RTCDR (offset 0) at `base`.
///
/// # Safety
///
/// `base` must be where [`pl031_present`] found a PL031, mapped as Device
/// memory.
#[inline(always)]
unsafe fn read_rtc_data(base: u64) -> u32 {
    // SAFETY: The caller's promise: RTCDR is an aligned 32-bit read-only
    // register whose read has no effect.
    unsafe { mmio::read_u32(base as *const u32) }
}

/// Runs every measurement and prints the `SCALING` line. `rtc`: the
/// device tree's PL031 (none: no measurement).
///
/// # Safety
///
/// `rtc`, if there is one, must be mapped as Device memory.
pub unsafe fn run_and_print(stopwatch: Option<&Stopwatch>, rtc: Option<Region>) {
    let Some(stopwatch) = stopwatch else {
        println!("SCALING {{\"error\":\"no stopwatch device\"}}");
        return;
    };
    if let Err(error) = stopwatch.read_time_page() {
        println!("SCALING {{\"error\":\"{error}\"}}");
        return;
    }
    let Some(rtc) = rtc else {
        println!("SCALING {{\"error\":\"no usable arm,pl031 in the device tree\"}}");
        return;
    };
    // SAFETY: The caller's promise: mapped as Device memory; the device
    // tree says a PL031 is there.
    if !unsafe { pl031_present(rtc) } {
        println!("SCALING {{\"error\":\"no PL031 at {:#x}\"}}", rtc.base);
        return;
    }
    RTC_BASE.store(rtc.base, Ordering::Relaxed);
    let online = smp::online();
    let counts = COUNTS.iter().copied().filter(|&count| count <= online);
    let count_slots = counts.clone().count();
    println!(
        "bench-scaling: {online} CPUs, {REPETITIONS} x {} ms per read and CPU count",
        INTERVAL_NS / 1_000_000
    );
    stopwatch.reset();
    stopwatch.start();
    // rates[kind][count slot][repetition], reads per second.
    let mut rates = [[[0u64; REPETITIONS]; COUNTS.len()]; KINDS.len()];
    for repetition in 0..REPETITIONS {
        for (kind, kind_rates) in rates.iter_mut().enumerate() {
            for (slot, count) in counts.clone().enumerate() {
                match measure(kind, count) {
                    Ok(rate) => kind_rates[slot][repetition] = rate,
                    Err(cpu) => {
                        println!("SCALING {{\"error\":\"CPU {cpu} did not finish its share\"}}");
                        return;
                    }
                }
            }
        }
    }
    stopwatch.reset();
    print!(
        "SCALING {{\"cpus\":{online},\"counter_hz\":{},\"repetitions\":{REPETITIONS},\"interval_ns\":{INTERVAL_NS}",
        timer::clock().frequency_hz
    );
    for (name, kind_rates) in KINDS.iter().zip(&rates) {
        print!(",\"{name}\":{{");
        for (slot, count) in counts.clone().enumerate() {
            let separator = if slot + 1 < count_slots { "," } else { "" };
            print!("\"{count}\":[");
            for (repetition, rate) in kind_rates[slot].iter().enumerate() {
                let comma = if repetition + 1 < REPETITIONS {
                    ","
                } else {
                    ""
                };
                print!("{rate}{comma}");
            }
            print!("]{separator}");
        }
        print!("}}");
    }
    println!("}}");
}

/// Reads of kind `kind` per second with CPUs 0..`count` reading at once;
/// or the index of a CPU that did not finish its share.
fn measure(kind: usize, count: usize) -> Result<u64, usize> {
    START.store(0, Ordering::Relaxed);
    READY.store(0, Ordering::Relaxed);
    let mut tickets = [0u64; MAX_CPUS];
    for (cpu, ticket) in tickets.iter_mut().enumerate().take(count).skip(1) {
        let job = Job {
            run: share,
            argument: kind,
        };
        *ticket = smp::post(cpu, job).map_err(|_| cpu)?;
    }
    // Every other CPU is in its job before the start is given, so none
    // starts late for having been asleep.
    let patience = timer::counter() + timer::clock().ns_to_ticks(JOB_TIMEOUT_NS);
    while READY.load(Ordering::Acquire) < count - 1 {
        if timer::counter() > patience {
            return Err(READY.load(Ordering::Relaxed) + 1);
        }
        core::hint::spin_loop();
    }
    let start = timer::counter() + timer::clock().ns_to_ticks(START_MARGIN_NS);
    END.store(
        start + timer::clock().ns_to_ticks(INTERVAL_NS),
        Ordering::Relaxed,
    );
    // Release: END is visible to whoever sees START.
    START.store(start, Ordering::Release);
    share(kind);
    for (cpu, &ticket) in tickets.iter().enumerate().take(count).skip(1) {
        if !smp::wait_done(cpu, ticket, JOB_TIMEOUT_NS) {
            return Err(cpu);
        }
    }
    let frequency = u128::from(timer::clock().frequency_hz);
    let rate = SHARES
        .iter()
        .take(count)
        .map(|share| {
            let reads = u128::from(share.reads.load(Ordering::Acquire));
            let ticks = u128::from(share.ticks.load(Ordering::Acquire)).max(1);
            reads * frequency / ticks
        })
        .sum::<u128>();
    Ok(rate as u64)
}

/// One CPU's share (a job on the others, a call on CPU 0): waits for the
/// common start, reads until the common end, records what it did.
fn share(kind: usize) {
    READY.fetch_add(1, Ordering::AcqRel);
    let start = loop {
        let start = START.load(Ordering::Acquire);
        if start != 0 {
            break start;
        }
        core::hint::spin_loop();
    };
    let end = END.load(Ordering::Relaxed);
    let stopwatch = devices::stopwatch(0);
    // Set before the first START, whose release this CPU acquired.
    let rtc_base = RTC_BASE.load(Ordering::Relaxed);
    let batch = BATCHES[kind];
    let (reads, ticks) = match (kind, stopwatch) {
        (0, Some(stopwatch)) => timed_loop(start, end, batch, || {
            black_box(
                stopwatch
                    .read_zero_exit()
                    .map_or(0, |reading| reading.elapsed_ns),
            );
        }),
        (1, Some(stopwatch)) => timed_loop(start, end, batch, || {
            // Only whether it worked, as in the single-CPU bench.
            black_box(stopwatch.read_time_page().is_ok());
        }),
        (2, Some(stopwatch)) => timed_loop(start, end, batch, || {
            black_box(stopwatch.update_text().as_str().len());
        }),
        (3, Some(stopwatch)) => timed_loop(start, end, batch, || {
            let _ = black_box(stopwatch.status());
        }),
        (4, _) => timed_loop(start, end, batch, || {
            // SAFETY: `run_and_print` sets RTC_BASE, before it posts any
            // job, only where `pl031_present` found the RTC in the Device
            // mapping its caller promised.
            black_box(unsafe { read_rtc_data(rtc_base) });
        }),
        _ => (0, 0),
    };
    let mine = SHARES.this();
    mine.reads.store(reads, Ordering::Relaxed);
    // Release: the boot CPU reads both after `wait_done` (or its own).
    mine.ticks.store(ticks, Ordering::Release);
}

/// Runs `read` in batches of `batch` from counter value `start` until
/// the counter passes `end`; returns the reads done and the ticks taken.
/// In a section of its own, as the single-CPU bench's loop (see
/// `bench::cost_per_operation`): the read runs as compiled inline.
#[inline(never)]
#[unsafe(link_section = ".text.bench_loops")]
fn timed_loop(start: u64, end: u64, batch: u64, read: impl Fn()) -> (u64, u64) {
    while timer::counter() < start {
        core::hint::spin_loop();
    }
    let begin = timer::counter();
    let mut reads = 0;
    loop {
        for _ in 0..batch {
            read();
        }
        reads += batch;
        let now = timer::counter();
        if now >= end {
            return (reads, now - begin);
        }
    }
}
