// SPDX-License-Identifier: GPL-2.0-or-later
//! The CPU's own virtual timer, the bench's interrupt latency floor: its
//! interrupt is counted once and its entry stamped, so the floor measures
//! the interrupt and nothing else.

use stopwatch_abi::NANOS_PER_SEC;

use super::Checker;
use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;

/// A virtual timer interrupt armed 0.5 ms ahead arrives once, and its IRQ
/// entry is stamped at or after its deadline, within a second.
pub(super) fn entry_stamped(t: &Checker, _: Option<&Stopwatch>) {
    if !timer::interrupt_routed() {
        fail!(t, "the virtual timer interrupt is not routed");
        return;
    }
    let before = timer::interrupts();
    let deadline = timer::counter() + timer::clock().ns_to_ticks(500_000);
    timer::arm_interrupt(deadline);
    let limit = deadline + timer::clock().ns_to_ticks(NANOS_PER_SEC);
    while timer::interrupts() == before && timer::counter() < limit {
        core::hint::spin_loop();
    }
    let taken = timer::interrupts() - before;
    let entry = timer::last_interrupt_counter();
    let in_time = entry >= deadline && entry < limit;
    let once = taken == 1;
    check!(t, once && in_time, else "{taken} interrupts, entry {entry}, deadline {deadline} ticks");
}
