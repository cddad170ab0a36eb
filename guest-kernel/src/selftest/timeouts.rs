// SPDX-License-Identifier: GPL-2.0-or-later
//! Timeouts: TIMEOUT and TIMEOUT_NS refuse arguments out of range, a
//! second one while one is pending changes nothing, RESET cancels a
//! pending one, and the interrupt arrives once, not before its deadline.

use stopwatch_abi::{Command, Status, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, NANOS_PER_SEC};

use super::{expect_status, snapshot, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::{device_time_ns, Stopwatch};

/// Arguments out of range arm nothing.
pub(super) fn bad_timeouts(t: &Checker, stopwatch: &Stopwatch) {
    // The shell's parser refuses these (see `shell_answers`); sent to the
    // device anyway, it must refuse them too.
    let cases = [
        (Command::Timeout, 0),
        (Command::Timeout, MAX_TIMEOUT_SECS + 1),
        (Command::TimeoutNs, 0),
        (Command::TimeoutNs, MAX_TIMEOUT_NS + 1),
    ];
    for (command, argument) in cases {
        stopwatch.write_data_len(argument);
        stopwatch.command(command);
        let deadline = snapshot(t, stopwatch).timeout_deadline_ns;
        let name = command.name();
        check!(t, deadline == 0, else "{name} {argument} armed a timeout at {deadline} ns");
    }
    expect_status(t, stopwatch, Status::Reset, "after bad timeouts");
}

/// TIMEOUT while one is pending keeps the first deadline: one interrupt.
pub(super) fn second_timeout(t: &Checker, stopwatch: &Stopwatch) {
    let before = stopwatch.timeouts();
    stopwatch.timeout_secs(1);
    let first = snapshot(t, stopwatch).timeout_deadline_ns;
    timer::wait_ns(200_000_000);
    stopwatch.timeout_secs(1);
    let second = snapshot(t, stopwatch).timeout_deadline_ns;
    check!(t, first == second && first != 0, else "second TIMEOUT: deadline {first} -> {second}");
    timer::wait_ns(1_500_000_000);
    let arrived = stopwatch.timeouts() - before;
    check!(t, arrived == 1, else "{arrived} interrupts, expected 1");
}

/// RESET clears the deadline, and the timeout never fires.
pub(super) fn reset_cancels_timeout(t: &Checker, stopwatch: &Stopwatch) {
    let before = stopwatch.timeouts();
    stopwatch.timeout_secs(1);
    stopwatch.reset();
    let deadline = snapshot(t, stopwatch).timeout_deadline_ns;
    check!(t, deadline == 0, else "deadline {deadline} ns after RESET");
    timer::wait_ns(1_300_000_000);
    let fired = stopwatch.timeouts() - before;
    check!(t, fired == 0, else "the cancelled timeout fired ({fired} interrupts)");
}

/// TIMEOUT_NS: the deadline is the arming time plus the timeout, and the
/// handler is entered within 1 s, not before the deadline.
pub(super) fn timeout_ns_interrupt(t: &Checker, stopwatch: &Stopwatch) {
    const TIMEOUT_NS: u64 = 20_000_000;
    let before = stopwatch.timeouts();
    let armed_at_counter = timer::counter();
    stopwatch.timeout_ns(TIMEOUT_NS);
    let page = snapshot(t, stopwatch);
    let deadline = page.timeout_deadline_ns;
    let armed = device_time_ns(&page, armed_at_counter);
    let expected = armed + TIMEOUT_NS..armed + 2 * TIMEOUT_NS;
    check!(t, expected.contains(&deadline), else "deadline {deadline} ns, armed at {armed} ns");
    let limit = timer::counter() + timer::clock().ns_to_ticks(NANOS_PER_SEC);
    let arrived = timer::wait_until_or(limit, || stopwatch.timeouts() > before);
    check!(t, arrived, else "no interrupt within 1 s");
    let entry = device_time_ns(&page, stopwatch.last_interrupt_counter());
    check!(t, entry >= deadline, else "handler entered at {entry} ns, deadline {deadline} ns");
}
