// SPDX-License-Identifier: GPL-2.0-or-later
//! PERIODIC in the guest: an interrupt every period, each taken and
//! acknowledged by the kernel's handler; the shared page shows the period
//! and deadlines on the command's grid; PAUSE ends it.

use super::{snapshot, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::{device_time_ns, PendingTimeout, Stopwatch};

// tutorial:periodic-selftest begin
/// Four periods of 5 ms: four interrupts, the last handled after the
/// fourth deadline; the next deadline on the grid; none after PAUSE.
pub(super) fn periodic_interrupts(t: &Checker, stopwatch: &Stopwatch) {
    const PERIOD_NS: u64 = 5_000_000;
    stopwatch.start();
    let before = stopwatch.timeouts();
    stopwatch.periodic(PERIOD_NS);
    let armed = stopwatch.pending_timeout();
    let first = match armed {
        Ok(pending) if pending.period() == Some(PERIOD_NS) => pending.deadline_ns,
        _ => {
            check!(t, false, else "after PERIODIC the page shows {armed:?}");
            return;
        }
    };
    let limit = timer::counter() + timer::clock().ns_to_ticks(1_000_000_000);
    let arrived = timer::wait_until_or(limit, || stopwatch.timeouts() - before >= 4);
    let count = stopwatch.timeouts() - before;
    check!(t, arrived, else "{count} interrupts within 1 s of a {PERIOD_NS} ns period");
    let entry = device_time_ns(&snapshot(t, stopwatch), stopwatch.last_interrupt_counter());
    let fourth = first + 3 * PERIOD_NS;
    check!(t, entry >= fourth, else "interrupt {count} handled at {entry} ns, before {fourth} ns");
    let next = stopwatch
        .pending_timeout()
        .map(|pending| pending.deadline_ns);
    let on_grid = next.is_ok_and(|next| next > fourth && (next - first) % PERIOD_NS == 0);
    check!(t, on_grid, else "next deadline {next:?} is not {first} + k * {PERIOD_NS} ns");

    stopwatch.pause();
    // A period that expired just before the PAUSE is still handled.
    timer::wait_ns(PERIOD_NS);
    let paused = stopwatch.timeouts();
    let none = PendingTimeout {
        deadline_ns: 0,
        period_ns: 0,
    };
    let pending = stopwatch.pending_timeout();
    check!(t, pending == Ok(none), else "after PAUSE the page shows {pending:?}");
    timer::wait_ns(4 * PERIOD_NS);
    let late = stopwatch.timeouts() - paused;
    check!(t, late == 0, else "{late} interrupts after PAUSE");
}
// tutorial:periodic-selftest end
