// SPDX-License-Identifier: GPL-2.0-or-later
//! In-guest measurements (boot argument `bench`, or the `bench` command),
//! printed as one machine-readable line:
//!
//! `BENCH {"read_zero_exit_ns":{"median":..,"min":..,"max":..},...,
//! "irq_latency_ns":{"median":..,"p99":..,"min":..,"max":..,"samples":..}}`
//!
//! Costs are in nanoseconds of guest counter time per operation, over
//! [`REPETITIONS`] loops of [`ITERATIONS`] operations each. The interrupt
//! latency runs from the device's deadline (time page TIMEOUT_DEADLINE_NS)
//! to the IRQ handler's entry, over [`TIMEOUTS`] short TIMEOUT_NS timeouts;
//! its floor (`irq_latency_floor_ns`) is the same measurement with the
//! CPU's own virtual timer (deadline CNTV_CVAL_EL0 to the same handler
//! entry), alternated with the stopwatch's timeouts in the same run.

use core::hint::black_box;

use crate::arch::timer;
use crate::drivers::stopwatch::{device_time_ns, Stopwatch, TimePageError};
use crate::sync::IrqsMasked;
use crate::{print, println};

/// Operations per timed loop.
const ITERATIONS: u64 = 50_000;
/// Timed loops per measurement.
const REPETITIONS: usize = 15;
/// Timeouts whose interrupt latency is measured (enough for a p99 that is
/// not simply the maximum).
const TIMEOUTS: usize = 200;
/// Length of each of those timeouts.
const SHORT_TIMEOUT_NS: u64 = 200_000;

/// A word of RAM for the baseline read.
static RAM_WORD: u64 = 0x5eed;

/// Runs every measurement on `stopwatch` and prints the `BENCH` line.
pub fn run_and_print(stopwatch: &Stopwatch) {
    // Every measurement but one needs the page; without it they would
    // time the error path.
    if let Err(error) = stopwatch.read_time_page() {
        println!("BENCH {{\"error\":\"{error}\"}}");
        return;
    }
    println!(
        "bench: {ITERATIONS} iterations x {REPETITIONS} per access, {TIMEOUTS} timeouts (resets the stopwatch)"
    );
    stopwatch.reset();
    stopwatch.start();
    // The zero-exit read and its floor's parts (the page alone, one
    // counter read), measured in turn repetition by repetition: each sees the same host load, so their
    // ratios hold on a busy machine. Under TCG a counter read ends the
    // translation block and runs a helper, as an MMIO access does; under
    // KVM it is a native instruction.
    let [mut zero_exit, mut page, mut counter, mut zero_exit_paused] = [[0u64; REPETITIONS]; 4];
    for repetition in 0..REPETITIONS {
        // The elapsed time is what a reader wants (and is computed from
        // every field the read loads); black-boxing the whole reading
        // would time eight stores of it too, as much as the page read.
        zero_exit[repetition] = cost_per_operation(|| {
            black_box(
                stopwatch
                    .read_zero_exit()
                    .map_or(0, |reading| reading.elapsed_ns),
            );
        });
        page[repetition] = cost_per_operation(|| {
            // Only whether it worked: black-boxing the whole snapshot
            // would time a copy of it too. The section's loads all stay.
            black_box(stopwatch.read_time_page().is_ok());
        });
        counter[repetition] = cost_per_operation(|| {
            black_box(timer::counter());
        });
    }
    // A paused stopwatch: the page alone gives the (frozen) time, so the
    // zero-exit read has no counter to read. In a block of its own: a
    // PAUSE and a START around every repetition made the paused loops
    // several times slower under TCG.
    stopwatch.pause();
    for cost in &mut zero_exit_paused {
        *cost = cost_per_operation(|| {
            black_box(
                stopwatch
                    .read_zero_exit()
                    .map_or(0, |reading| reading.elapsed_ns),
            );
        });
    }
    for costs in [
        &mut zero_exit,
        &mut page,
        &mut counter,
        &mut zero_exit_paused,
    ] {
        sort(costs);
    }
    let trap = repeated(|| {
        black_box(stopwatch.update_text().as_str().len());
    });
    let status = repeated(|| {
        let _ = black_box(stopwatch.status());
    });
    let ram = repeated(|| {
        // SAFETY: A volatile read of a static: always valid. The baseline
        // the device accesses are compared with (RAM, not MMIO).
        black_box(unsafe { (&raw const RAM_WORD).read_volatile() });
    });
    stopwatch.reset();
    let mut device_latencies = [0u64; TIMEOUTS];
    let mut timer_latencies = [0u64; TIMEOUTS];
    let (device_measured, timer_measured) =
        interrupt_latencies(stopwatch, &mut device_latencies, &mut timer_latencies);
    print!("BENCH {{");
    for (name, costs) in [
        ("read_zero_exit_ns", &zero_exit),
        ("read_zero_exit_paused_ns", &zero_exit_paused),
        ("read_trap_update_ns", &trap),
        ("read_status_reg_ns", &status),
        ("read_ram_ns", &ram),
        ("read_page_ns", &page),
        ("counter_read_ns", &counter),
    ] {
        print!(
            "\"{name}\":{{\"median\":{},\"min\":{},\"max\":{}}},",
            Tenths(costs[REPETITIONS / 2]),
            Tenths(costs[0]),
            Tenths(costs[REPETITIONS - 1])
        );
    }
    print_latencies("irq_latency_ns", &mut device_latencies[..device_measured]);
    print_latencies(
        "irq_latency_floor_ns",
        &mut timer_latencies[..timer_measured],
    );
    println!(
        "\"iterations\":{ITERATIONS},\"repetitions\":{REPETITIONS},\"counter_hz\":{}}}",
        timer::clock().frequency_hz
    );
}

/// Costs of `operation` over [`REPETITIONS`] loops, sorted.
fn repeated(operation: impl Fn()) -> [u64; REPETITIONS] {
    let mut costs = [0u64; REPETITIONS];
    for cost in &mut costs {
        *cost = cost_per_operation(&operation);
    }
    sort(&mut costs);
    costs
}

/// Cost of `operation` over one loop of [`ITERATIONS`], in tenths of a
/// nanosecond.
///
/// In a section of its own: LLVM's machine outliner never outlines from a
/// function with an explicit section, so each timed loop runs its
/// operation as compiled inline, not split into calls to shared
/// `OUTLINED_FUNCTION`s that come and go with unrelated changes elsewhere
/// in the kernel (under TCG each such call and return is a block lookup,
/// 20-25 ns: as much as the time page read itself).
#[inline(never)]
#[unsafe(link_section = ".text.bench_loops")]
fn cost_per_operation(operation: impl Fn()) -> u64 {
    let start = timer::counter();
    for _ in 0..ITERATIONS {
        operation();
    }
    let ticks = timer::counter() - start;
    timer::clock().ticks_to_ns(ticks) * 10 / ITERATIONS
}

/// Prints `"name":{"median":..,"p99":..,"min":..,"max":..,"samples":..},`
/// for `latencies` (nothing if there are none).
fn print_latencies(name: &str, latencies: &mut [u64]) {
    sort(latencies);
    let measured = latencies.len();
    if let (Some(min), Some(max)) = (latencies.first(), latencies.last()) {
        // Nearest rank: the smallest value with 99% of samples at or below.
        let p99 = latencies[(measured * 99).div_ceil(100) - 1];
        print!(
            "\"{name}\":{{\"median\":{},\"p99\":{p99},\"min\":{min},\"max\":{max},\"samples\":{measured}}},",
            latencies[measured / 2]
        );
    }
}

/// Fills `device` with the stopwatch's deadline-to-handler times and
/// `timer` with the virtual timer's, alternately (so that both see the
/// same host load); returns how many of each delivered their interrupt.
fn interrupt_latencies(
    stopwatch: &Stopwatch,
    device: &mut [u64],
    timer: &mut [u64],
) -> (usize, usize) {
    let (mut device_measured, mut timer_measured) = (0, 0);
    for _ in 0..device.len() {
        match device_latency(stopwatch) {
            Ok(Some(latency)) => {
                device[device_measured] = latency;
                device_measured += 1;
            }
            Ok(None) => {}
            Err(error) => {
                println!("bench: {error}: interrupt latency measured {device_measured} times");
                break;
            }
        }
        if let Some(latency) = timer_latency() {
            timer[timer_measured] = latency;
            timer_measured += 1;
        }
    }
    (device_measured, timer_measured)
}

/// How long to wait for an interrupt before giving up on it.
const INTERRUPT_PATIENCE_NS: u64 = 100_000_000;

/// One short stopwatch timeout: nanoseconds from its deadline to the IRQ
/// handler's entry, or `None` if it did not come.
fn device_latency(stopwatch: &Stopwatch) -> Result<Option<u64>, TimePageError> {
    let before = stopwatch.timeouts();
    // Armed and its deadline read at once, with IRQs masked (the handler
    // cannot run in between). On a busy host the vCPU may still stall past
    // the deadline in between: the device has then fired, and the page,
    // which shows no deadline once fired, says 0.
    let (armed_at, reading) = {
        let _masked = IrqsMasked::new();
        let armed_at = timer::counter();
        stopwatch.timeout_ns(SHORT_TIMEOUT_NS);
        (armed_at, stopwatch.read_zero_exit()?)
    };
    let mut deadline_ns = reading.snapshot.timeout_deadline_ns;
    if deadline_ns == 0 {
        // Fired before the read: the deadline is at least the device time
        // of the counter read before arming, plus the timeout. Measuring
        // from that bound overstates this sample's latency (by at most the
        // command's own duration) and keeps the stall in it, as the
        // virtual timer's samples keep theirs: dropping such samples would
        // favour the device.
        deadline_ns = device_time_ns(&reading.snapshot, armed_at) + SHORT_TIMEOUT_NS;
    }
    // Spin with IRQs unmasked, so the interrupt is taken at once (no
    // wake-up from WFI in the measurement).
    let limit = timer::counter() + timer::clock().ns_to_ticks(INTERRUPT_PATIENCE_NS);
    while stopwatch.timeouts() == before && timer::counter() < limit {
        core::hint::spin_loop();
    }
    if stopwatch.timeouts() == before {
        return Ok(None);
    }
    let entry_ns = device_time_ns(&reading.snapshot, stopwatch.last_interrupt_counter());
    Ok(Some(entry_ns.saturating_sub(deadline_ns)))
}

/// The same with the CPU's own virtual timer, the floor: nanoseconds from
/// its deadline (CNTV_CVAL_EL0) to the same IRQ handler's entry, or `None`
/// if it did not come (or its interrupt is not routed).
fn timer_latency() -> Option<u64> {
    if !timer::interrupt_routed() {
        return None;
    }
    let clock = timer::clock();
    let before = timer::interrupts();
    let deadline = timer::counter() + clock.ns_to_ticks(SHORT_TIMEOUT_NS);
    timer::arm_interrupt(deadline);
    let limit = deadline + clock.ns_to_ticks(INTERRUPT_PATIENCE_NS);
    while timer::interrupts() == before && timer::counter() < limit {
        core::hint::spin_loop();
    }
    (timer::interrupts() != before)
        .then(|| clock.ticks_to_ns(timer::last_interrupt_counter().saturating_sub(deadline)))
}

/// Insertion sort: quadratic, but the most it sorts is the [`TIMEOUTS`]
/// latencies (200, about 20,000 steps at worst: well under a millisecond).
/// The standard library's `sort_unstable` would add 3.4 KB to the shipped
/// image (2.8 KB of code, 0.6 KB of data, measured with the 80 KiB
/// budget): a fifth of its headroom for these eight lines.
fn sort(values: &mut [u64]) {
    for index in 1..values.len() {
        let mut position = index;
        while position > 0 && values[position - 1] > values[position] {
            values.swap(position - 1, position);
            position -= 1;
        }
    }
}

/// Tenths of a unit, printed with one decimal.
struct Tenths(u64);

impl core::fmt::Display for Tenths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}
