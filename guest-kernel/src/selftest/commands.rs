// SPDX-License-Identifier: GPL-2.0-or-later
//! The command state machine: START, PAUSE and RESET move the stopwatch
//! between RESET, RUNNING and PAUSED (seen in the STATUS register and the
//! time page alike), and the commands a guest gets wrong (out of order,
//! unknown codes, an acknowledgement with nothing pending) change nothing.

use stopwatch_abi::{Command, Status};

use super::{elapsed, expect_status, snapshot, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;

/// Every transition of the state machine, and RESET clears the time.
pub(super) fn status_transitions(t: &Checker, stopwatch: &Stopwatch) {
    expect_status(t, stopwatch, Status::Reset, "after RESET");
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "RESET + START");
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Paused, "RUNNING + PAUSE");
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "PAUSED + START");
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "RUNNING + RESET");
    stopwatch.start();
    stopwatch.pause();
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "PAUSED + RESET");
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "RESET + RESET");
    let left = elapsed(t, stopwatch);
    check!(t, left == 0, else "RESET left {left} ns");
}

/// Commands that make no sense in the current state, and codes that are
/// no command, leave the state and the time as they were.
pub(super) fn guest_mistakes(t: &Checker, stopwatch: &Stopwatch) {
    // PAUSE while RESET: still RESET at zero.
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Reset, "RESET + PAUSE");
    let counted = elapsed(t, stopwatch);
    check!(t, counted == 0, else "PAUSE while RESET counted {counted} ns");

    // START while RUNNING: the run goes on from its original start.
    stopwatch.start();
    let started = snapshot(t, stopwatch).run_start_ns;
    timer::wait_ns(5_000_000);
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "RUNNING + START");
    let restarted = snapshot(t, stopwatch).run_start_ns;
    check!(t, restarted == started, else "START while RUNNING: start {started} -> {restarted} ns");

    // PAUSE while PAUSED: the time stays.
    stopwatch.pause();
    let paused = elapsed(t, stopwatch);
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Paused, "PAUSED + PAUSE");
    let now = elapsed(t, stopwatch);
    check!(t, now == paused, else "PAUSE while PAUSED changed the time: {paused} -> {now} ns");

    // TIMEOUT_ACK with nothing pending, and invalid codes: no change.
    let before = stopwatch.timeouts();
    for code in [Command::TimeoutAck.code(), 9, 0x100, u64::MAX] {
        stopwatch.write_command_code(code);
        expect_status(t, stopwatch, Status::Paused, "stray command");
        let now = elapsed(t, stopwatch);
        check!(t, now == paused, else "command {code:#x} changed the time: {paused} -> {now} ns");
    }
    timer::wait_ns(20_000_000);
    let after = stopwatch.timeouts();
    check!(t, after == before, else "stray commands raised interrupts: {before} -> {after}");
}
