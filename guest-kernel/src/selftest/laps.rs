// SPDX-License-Identifier: GPL-2.0-or-later
//! Laps: LAP records the elapsed time into the next of the time page's
//! lap slots, the one after the last slot is refused, and RESET clears
//! them all.

use stopwatch_abi::shared::LAP_SLOTS;

use super::{elapsed, Checker};
use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;

// tutorial:lap-selftest begin
/// LAP in the guest: each lap lies between the elapsed times read just
/// before and after it (from the time page); the ninth is refused; RESET clears them all.
pub(super) fn laps_recorded_and_cleared(t: &Checker, stopwatch: &Stopwatch) {
    let laps = || stopwatch.laps().map(|laps| (laps.as_slice().len(), laps));
    check!(t, matches!(laps(), Ok((0, _))), else "laps after RESET: {:?}", laps());
    stopwatch.start();
    for slot in 0..LAP_SLOTS {
        timer::wait_ns(1_000_000);
        let before = elapsed(t, stopwatch);
        stopwatch.lap();
        // Plus a counter tick: the guest's reading rounds down to one.
        let after = elapsed(t, stopwatch) + timer::clock().tick_ns();
        let lap = laps()
            .ok()
            .and_then(|(_, laps)| laps.as_slice().get(slot).copied());
        let within = lap.is_some_and(|lap| (before..=after).contains(&lap));
        check!(t, within, else "lap {slot}: {lap:?} ns, not within {before}..={after} ns");
    }
    let full = laps();
    let filled = full.is_ok_and(|(count, laps)| count == LAP_SLOTS && laps.is_full());
    check!(t, filled, else "{LAP_SLOTS} laps do not fill the slots: {full:?}");
    // The ninth: refused by the device (it logs a guest error).
    stopwatch.lap();
    let after_ninth = laps();
    let unchanged =
        matches!((full, after_ninth), (Ok((_, a)), Ok((_, b))) if a.as_slice() == b.as_slice());
    check!(t, unchanged, else "the ninth LAP changed the laps: {full:?} -> {after_ninth:?}");
    stopwatch.reset();
    check!(t, matches!(laps(), Ok((0, _))), else "RESET left laps: {:?}", laps());
}
// tutorial:lap-selftest end
