// SPDX-License-Identifier: GPL-2.0-or-later
//! The time page: present and cleared after RESET, its zero-exit reads
//! never go back in time, read the counter only while running, and agree
//! with UPDATE's text (the original interface) within the text's
//! resolution.

use stopwatch_abi::NANOS_PER_SEC;

use super::{elapsed, page_reading, reading, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;

/// Tolerance between the time page and UPDATE's `%.2f` text: the text's
/// 0.01 s resolution (its rounding) plus one counter tick, added at use.
const TEXT_RESOLUTION_NS: u64 = NANOS_PER_SEC / 100;

/// The device has a time page, cleared by RESET, with no clock offset on
/// `virt`.
pub(super) fn time_page_present(t: &Checker, stopwatch: &Stopwatch) {
    check!(t, stopwatch.has_time_page(), else "time page magic/version missing");
    let Some(reading) = page_reading(t, stopwatch) else {
        return;
    };
    let (accumulated, deadline) = (
        reading.snapshot.accumulated_ns,
        reading.snapshot.timeout_deadline_ns,
    );
    let cleared = accumulated == 0 && deadline == 0;
    check!(t, cleared, else "after RESET: accumulated {accumulated} ns, deadline {deadline} ns");
    let offset = reading.snapshot.clock_offset_ns;
    check!(t, offset == 0, else "clock offset {:#x} ns on virt (expected 0)", offset as u64);
}

/// Checks that UPDATE's text lies between two zero-exit reads taken just
/// before and just after it, within the text's resolution.
pub(super) fn compare_text(t: &Checker, stopwatch: &Stopwatch, step: &str) {
    let tolerance = TEXT_RESOLUTION_NS + timer::clock().tick_ns();
    let before = elapsed(t, stopwatch);
    let text = stopwatch.update_text();
    let after = elapsed(t, stopwatch);
    let Some(text_ns) = text.to_ns() else {
        fail!(t, "{step}: text '{}' unreadable", text.as_str());
        return;
    };
    let within = text_ns + tolerance >= before && text_ns <= after + tolerance;
    let text = text.as_str();
    check!(t, within, else "{step}: '{text}' outside [{before}, {after}] ns +- {tolerance} ns");
}

/// Zero-exit reads and UPDATE's text agree, whatever the state.
pub(super) fn zero_exit_matches_text(t: &Checker, stopwatch: &Stopwatch) {
    compare_text(t, stopwatch, "reset");
    stopwatch.start();
    for _ in 0..20 {
        timer::wait_ns(23_000_000);
        compare_text(t, stopwatch, "running");
    }
    stopwatch.pause();
    for _ in 0..3 {
        compare_text(t, stopwatch, "paused");
        timer::wait_ns(10_000_000);
    }
    stopwatch.start();
    timer::wait_ns(50_000_000);
    compare_text(t, stopwatch, "running again");
    stopwatch.reset();
    compare_text(t, stopwatch, "reset again");
    let text = stopwatch.update_text();
    check!(t, text.as_str() == "0.00 seconds", else "after RESET the text is '{}'", text.as_str());
}

/// Zero-exit reads while running never go back, and time passes.
pub(super) fn zero_exit_monotonic(t: &Checker, stopwatch: &Stopwatch) {
    stopwatch.start();
    let mut previous = 0;
    for _ in 0..10_000 {
        let now = elapsed(t, stopwatch);
        if now < previous {
            fail!(t, "time went back: {previous} -> {now} ns");
            break;
        }
        previous = now;
    }
    check!(t, previous > 0, else "no time passed while running");
}

/// A stopwatch that is not running has its exact time on the page: the
/// zero-exit read must not read the counter then (a PAUSED read costs the
/// page alone), and must read it, inside the call, while running.
pub(super) fn counter_only_while_running(t: &Checker, stopwatch: &Stopwatch) {
    stopwatch.reset();
    let reset = reading(t, stopwatch);
    check!(t, reset.counter.is_none() && reset.elapsed_ns == 0, else "RESET: {reset:?}");
    stopwatch.start();
    timer::wait_ns(5_000_000);
    let before = timer::counter();
    let running = reading(t, stopwatch);
    let after = timer::counter();
    let counter = running.counter;
    let inside = counter.is_some_and(|counter| (before..=after).contains(&counter));
    check!(t, inside, else "RUNNING: counter {counter:?}, expected {before}..={after}");
    stopwatch.pause();
    let paused = reading(t, stopwatch);
    timer::wait_ns(2_000_000);
    let later = reading(t, stopwatch);
    let frozen = paused.counter.is_none()
        && paused.elapsed_ns == paused.snapshot.accumulated_ns
        && later.elapsed_ns == paused.elapsed_ns
        && paused.elapsed_ns >= 5_000_000;
    check!(t, frozen, else "PAUSED: {paused:?}, then {later:?}");
    stopwatch.reset();
}

/// The zero-exit read's patience, on made-up counter values (a patience of
/// 100 ticks): a reader descheduled through the deadline in the middle of
/// one attempt gets one more attempt; a writer stuck mid-update fails every
/// attempt, and the reader gives up at the first failure after the
/// deadline has been seen once.
pub(super) fn patience_outlasts_a_descheduled_reader(t: &Checker, _: Option<&Stopwatch>) {
    use crate::drivers::stopwatch::patience_exhausted_at;
    const LIMIT: u64 = 100;
    // Failures at 0, then (one attempt descheduled) at 250, then at 251.
    let mut first_failure = None;
    let answers = [0, 250, 251].map(|now| patience_exhausted_at(&mut first_failure, now, LIMIT));
    check!(t, answers == [false, false, true],
        else "descheduled reader: gave up {:?} at failures 0, 250, 251 (expected only at 251)", answers);
    // A stuck writer: failures every 30 ticks.
    let mut first_failure = None;
    let first_give_up =
        (0..10u64).find(|&i| patience_exhausted_at(&mut first_failure, i * 30, LIMIT));
    check!(t, first_give_up == Some(5),
        else "stuck writer: gave up at failure {:?} (expected 5, at 150 ticks: 120 is the first past the deadline)", first_give_up);
}
