// SPDX-License-Identifier: GPL-2.0-or-later
//! The original project's demo script, step by step, now with assertions:
//! the elapsed time after each step lies between the counter reads that
//! bracket its commands, UPDATE's text agrees, and each timeout raises
//! exactly one interrupt.

use stopwatch_abi::{Command, NANOS_PER_SEC};

use super::time_page::compare_text;
use super::{elapsed, page_reading, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;

fn ticks_to_ns(ticks: u64) -> u64 {
    timer::clock().ticks_to_ns(ticks)
}

/// Sends `command` between two counter reads: (before, after).
fn bracketed(stopwatch: &Stopwatch, command: Command) -> (u64, u64) {
    let before = timer::counter();
    stopwatch.command(command);
    (before, timer::counter())
}

/// The original project's demo, now with assertions.
pub(super) fn original_demo(t: &Checker, stopwatch: &Stopwatch) {
    let tick = timer::clock().tick_ns();
    let interrupts_before = stopwatch.timeouts();
    // Whether `found` lies in `shortest..=longest` give or take a tick.
    let within = |found: u64, shortest: u64, longest: u64| {
        found + tick >= shortest && found <= longest + tick
    };

    // reset, start, sleep 1, pause, show: about 1 s.
    stopwatch.reset();
    let (start_before, start_after) = bracketed(stopwatch, Command::Start);
    timer::wait_ns(NANOS_PER_SEC);
    let (pause_before, pause_after) = bracketed(stopwatch, Command::Pause);
    let first_run = elapsed(t, stopwatch);
    let shortest = ticks_to_ns(pause_before - start_after);
    let longest = ticks_to_ns(pause_after - start_before);
    let one_second = within(first_run, shortest, longest) && first_run >= NANOS_PER_SEC;
    check!(t, one_second, else "first run {first_run} ns, expected {shortest}..{longest} ns");
    compare_text(t, stopwatch, "after 1 s");

    // start, timeout 1, sleep 2, timeout 1, sleep 2, show: about 5 s.
    let (start_before, start_after) = bracketed(stopwatch, Command::Start);
    stopwatch.timeout_secs(1);
    timer::wait_ns(2 * NANOS_PER_SEC);
    let interrupts = stopwatch.timeouts() - interrupts_before;
    check!(t, interrupts == 1, else "first timeout: {interrupts} interrupts");
    stopwatch.timeout_secs(1);
    timer::wait_ns(2 * NANOS_PER_SEC);
    if let Some(reading) = page_reading(t, stopwatch) {
        // Running: the reading used the counter.
        check!(t, reading.counter.is_some(), else "a running stopwatch read without the counter");
        let counter = reading.counter.unwrap_or(0);
        let shortest = first_run + ticks_to_ns(counter.saturating_sub(start_after));
        let longest = first_run + ticks_to_ns(counter.saturating_sub(start_before));
        let total = reading.elapsed_ns;
        let five_seconds = within(total, shortest, longest) && total >= 5 * NANOS_PER_SEC;
        check!(t, five_seconds, else "after 5 s: {total} ns, expected {shortest}..{longest} ns");
    }
    compare_text(t, stopwatch, "after 5 s");

    // timeout: exactly 2 interrupts.
    let interrupts = stopwatch.timeouts() - interrupts_before;
    check!(t, interrupts == 2, else "{interrupts} timeout interrupts, expected 2");

    // reset, show: 0 s.
    stopwatch.reset();
    let left = elapsed(t, stopwatch);
    check!(t, left == 0, else "{left} ns left after RESET");
    let text = stopwatch.update_text();
    check!(t, text.as_str() == "0.00 seconds", else "after RESET the text is '{}'", text.as_str());
}
