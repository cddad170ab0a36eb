// SPDX-License-Identifier: GPL-2.0-or-later
//! What the state machine needs from the machine it is plugged into.

use stopwatch_abi::{Command, Status, TimeSnapshot};

use crate::{GuestError, SharedMemory};
// Named by the documentation only.
#[cfg(doc)]
use crate::Stopwatch;

/// Everything the device needs from the machine it is plugged into.
pub trait Environment {
    /// The device clock: QEMU's virtual clock, in nanoseconds. It is
    /// deterministic under qtest and stops while the VM is stopped.
    fn now_ns(&self) -> u64;
    /// Sets the level of the timeout interrupt line.
    fn set_irq(&mut self, level: bool);
    /// Arms the one-shot timer: [`Stopwatch::timer_expired`] is called once
    /// the clock reaches `deadline_ns`.
    fn arm_timer(&mut self, deadline_ns: u64);
    /// Disarms the timer.
    fn cancel_timer(&mut self);
    /// Reports a guest mistake (QEMU logs it with `-d guest_errors`).
    fn guest_error(&mut self, error: GuestError);
    /// The pass-through memory.
    fn shared_memory(&mut self) -> &mut dyn SharedMemory;
    /// Device clock minus the guest's virtual counter in nanoseconds. Zero
    /// on QEMU's Arm boards, whose generic timer counts the virtual clock.
    fn guest_counter_offset_ns(&self) -> i64 {
        0
    }

    // Observation only, for tracing (QEMU's trace events): the state
    // machine reports what it did and ignores the answer.

    /// A value was written to COMMAND: the command (`None` for an unknown
    /// code) and the status before and after (equal when it was refused).
    fn command_executed(&mut self, _command: Option<Command>, _before: Status, _after: Status) {}
    /// The armed timeout expired at `deadline_ns`; the line goes high next.
    fn timeout_fired(&mut self, _deadline_ns: u64) {}
    /// The time page was rewritten with `snapshot`; `sequence` is the even
    /// value it now holds.
    fn time_page_published(&mut self, _sequence: u32, _snapshot: &TimeSnapshot) {}
    /// LAP recorded `elapsed_ns` into lap slot `slot`.
    fn lap_recorded(&mut self, _slot: usize, _elapsed_ns: u64) {}
    /// PERIODIC armed a periodic timeout of `period_ns`, first firing at
    /// `first_deadline_ns` (each period then fires as a timeout does).
    fn periodic_armed(&mut self, _period_ns: u64, _first_deadline_ns: u64) {}
}
