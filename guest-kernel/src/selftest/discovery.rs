// SPDX-License-Identifier: GPL-2.0-or-later
//! Discovery: the stopwatch the device tree describes, the driver the
//! kernel made for it and the interrupt route it set up agree, and on a
//! machine without the device none of them exists.

use super::Checker;
use crate::drivers::stopwatch::Stopwatch;
use crate::interrupts::{self, Source};

/// The stopwatch found in the device tree, its driver and its interrupt
/// route agree; without a device, none of them exists.
pub(super) fn stopwatch_discovery(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let board = &t.machine.board;
    let route = interrupts::route_of(Source::Stopwatch(0)).map(|route| route.intid);
    match stopwatch {
        Some(stopwatch) => {
            let intid = stopwatch.interrupt().intid;
            let node_intid = board
                .first_stopwatch()
                .map(|node| node.timeout_interrupt.intid);
            check!(t, node_intid == Some(intid), else "INTID {intid}, first node's {node_intid:?}");
            check!(t, route == Some(intid), else "INTID {intid} not routed (route: {route:?})");
        }
        None => {
            check!(t, board.stopwatches.is_empty(), else "a usable stopwatch node, but no driver");
            check!(t, route.is_none(), else "a stopwatch interrupt is routed without a device");
            let counted = interrupts::count(Source::Stopwatch(0));
            check!(t, counted == 0, else "{counted} stopwatch interrupts counted without a device");
        }
    }
}
