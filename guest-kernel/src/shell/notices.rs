// SPDX-License-Identifier: GPL-2.0-or-later
//! Timeout notices: what the interrupt handlers counted since the shell
//! last looked, printed above the line being typed.

use core::fmt;

use board_discovery::MAX_STOPWATCHES;
use embedded_io::ReadReady;
use stopwatch_shell::protocol::TimeoutNotice;

use crate::arch::timer;
use crate::console::Console;
use crate::devices::Stopwatches;
use crate::drivers::stopwatch::Stopwatch;
pub(super) fn input_ready() -> bool {
    let Ok(ready) = Console.read_ready();
    ready
}

/// Timeout interrupts not announced yet. The interrupt handler only counts
/// (in the driver); the shell prints, outside interrupt context.
pub(super) struct Notices {
    stopwatches: &'static Stopwatches,
    /// Each stopwatch's timeout count when last announced.
    announced: [u64; MAX_STOPWATCHES],
}

impl Notices {
    pub(super) fn new(stopwatches: &'static Stopwatches) -> Self {
        let mut announced = [0; MAX_STOPWATCHES];
        for (slot, stopwatch) in announced.iter_mut().zip(stopwatches.iter()) {
            *slot = stopwatch.timeouts();
        }
        Notices {
            stopwatches,
            announced,
        }
    }

    pub(super) fn pending(&self) -> bool {
        self.stopwatches
            .iter()
            .zip(&self.announced)
            .any(|(stopwatch, &announced)| stopwatch.timeouts() != announced)
    }

    /// One line per stopwatch with new timeouts:
    /// `[timeout] stopwatch[0] fired at 12.000 s (3 so far)`.
    pub(super) fn print(&mut self, out: &mut dyn fmt::Write) {
        for (index, stopwatch) in self.stopwatches.iter().enumerate() {
            let count = stopwatch.timeouts();
            if count == self.announced[index] {
                continue;
            }
            self.announced[index] = count;
            let notice = TimeoutNotice {
                stopwatch: index,
                fired_at_ns: elapsed_at_last_timeout(stopwatch),
                count,
            };
            say!(out, "{notice}");
        }
    }
}

/// The stopwatch's elapsed time when its last timeout interrupt was taken,
/// from the time page (none on an original device).
fn elapsed_at_last_timeout(stopwatch: &Stopwatch) -> Option<u64> {
    let snapshot = stopwatch.read_time_page().ok()?;
    let counter_ns = timer::clock().ticks_to_ns(stopwatch.last_interrupt_counter());
    Some(snapshot.elapsed_ns_at_counter(counter_ns))
}
