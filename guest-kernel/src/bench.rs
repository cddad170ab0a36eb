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
//! to the IRQ handler's entry, over [`TIMEOUTS`] short TIMEOUT_NS timeouts.

use core::hint::black_box;

use crate::arch::timer;
use crate::drivers::stopwatch::{device_time_ns, Stopwatch};
use crate::{print, println};

/// Operations per timed loop.
const ITERATIONS: u64 = 100_000;
/// Timed loops per measurement.
const REPETITIONS: usize = 7;
/// Timeouts whose interrupt latency is measured (enough for a p99 that is
/// not simply the maximum).
const TIMEOUTS: usize = 200;
/// Length of each of those timeouts.
const SHORT_TIMEOUT_NS: u64 = 200_000;

/// A word of RAM for the baseline read.
static RAM_WORD: u64 = 0x5eed;

/// Runs every measurement and prints the `BENCH` line.
pub fn run_and_print() {
    let Some(stopwatch) = crate::stopwatch() else {
        println!("BENCH {{\"error\":\"no stopwatch device\"}}");
        return;
    };
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
    let zero_exit = cost_per_operation(|| {
        let _ = black_box(stopwatch.read_zero_exit());
    });
    let trap = cost_per_operation(|| {
        black_box(stopwatch.update_text().as_str().len());
    });
    let status = cost_per_operation(|| {
        let _ = black_box(stopwatch.status());
    });
    // The zero-exit read's two parts: the page alone, and the counter read
    // (under TCG a counter read ends the translation block, as an MMIO
    // access does; under KVM it is a native instruction).
    let page = cost_per_operation(|| {
        // Only whether it worked: black-boxing the whole snapshot would
        // time a copy of it too. The page's loads are volatile, so they
        // all stay.
        black_box(stopwatch.read_time_page().is_ok());
    });
    let counter = cost_per_operation(|| {
        black_box(timer::counter());
    });
    let ram = cost_per_operation(|| {
        // SAFETY: A volatile read of a static: always valid. The baseline
        // the device accesses are compared with (RAM, not MMIO).
        black_box(unsafe { (&raw const RAM_WORD).read_volatile() });
    });
    stopwatch.reset();
    let mut latencies = [0u64; TIMEOUTS];
    let measured = interrupt_latencies(stopwatch, &mut latencies);
    let latencies = &mut latencies[..measured];
    sort(latencies);
    print!("BENCH {{");
    for (name, costs) in [
        ("read_zero_exit_ns", zero_exit),
        ("read_trap_update_ns", trap),
        ("read_status_reg_ns", status),
        ("read_ram_ns", ram),
        ("read_page_ns", page),
        ("counter_read_ns", counter),
    ] {
        print!(
            "\"{name}\":{{\"median\":{},\"min\":{},\"max\":{}}},",
            Tenths(costs[REPETITIONS / 2]),
            Tenths(costs[0]),
            Tenths(costs[REPETITIONS - 1])
        );
    }
    if let (Some(min), Some(max)) = (latencies.first(), latencies.last()) {
        // Nearest rank: the smallest value with 99% of samples at or below.
        let p99 = latencies[(measured * 99).div_ceil(100) - 1];
        print!(
            "\"irq_latency_ns\":{{\"median\":{},\"p99\":{p99},\"min\":{min},\"max\":{max},\"samples\":{measured}}},",
            latencies[measured / 2]
        );
    }
    println!(
        "\"iterations\":{ITERATIONS},\"repetitions\":{REPETITIONS},\"counter_hz\":{}}}",
        timer::clock().frequency_hz
    );
}

/// Costs of `operation` per repetition, sorted, in tenths of a nanosecond.
fn cost_per_operation(operation: impl Fn()) -> [u64; REPETITIONS] {
    let mut costs = [0u64; REPETITIONS];
    for cost in &mut costs {
        let start = timer::counter();
        for _ in 0..ITERATIONS {
            operation();
        }
        let ticks = timer::counter() - start;
        *cost = timer::clock().ticks_to_ns(ticks) * 10 / ITERATIONS;
    }
    sort(&mut costs);
    costs
}

/// Fills `latencies` with deadline-to-handler times; returns how many
/// timeouts delivered their interrupt.
fn interrupt_latencies(stopwatch: &Stopwatch, latencies: &mut [u64]) -> usize {
    let mut measured = 0;
    for _ in 0..latencies.len() {
        let before = stopwatch.timeouts();
        stopwatch.timeout_ns(SHORT_TIMEOUT_NS);
        let reading = match stopwatch.read_zero_exit() {
            Ok(reading) => reading,
            Err(error) => {
                println!("bench: {error}: interrupt latency measured {measured} times");
                break;
            }
        };
        let deadline_ns = reading.snapshot.timeout_deadline_ns;
        // Spin with IRQs unmasked, so the interrupt is taken at once (no
        // wake-up from WFI in the measurement); give up after 100 ms.
        let limit = timer::counter() + timer::clock().ns_to_ticks(100_000_000);
        while stopwatch.timeouts() == before && timer::counter() < limit {
            core::hint::spin_loop();
        }
        if stopwatch.timeouts() == before {
            continue;
        }
        let entry_ns = device_time_ns(&reading.snapshot, stopwatch.last_interrupt_counter());
        latencies[measured] = entry_ns.saturating_sub(deadline_ns);
        measured += 1;
    }
    measured
}

/// Insertion sort: quadratic, but the most it sorts is the [`TIMEOUTS`]
/// latencies (200, about 20,000 steps at worst: well under a millisecond).
/// The standard library's `sort_unstable` would add about 3.7 KB to the
/// image, which must stay within 64 KiB.
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
