// SPDX-License-Identifier: GPL-2.0-or-later
//! A machine for the model to run in without QEMU: a clock that only moves
//! when told, a recorded interrupt line and timer, and plain memory. Host
//! tests, the differential test against the real device and fuzzers drive
//! the model through it.

use crate::{Environment, GuestError, PlainMemory, SharedMemory, Stopwatch};
use stopwatch_abi::shared;

/// The simulated machine. `M` is the pass-through memory; tests may wrap
/// [`PlainMemory`] to record how it is written.
pub struct Simulation<M: SharedMemory = PlainMemory> {
    /// The virtual clock, in nanoseconds.
    pub now_ns: u64,
    /// The interrupt line's level.
    pub irq: bool,
    /// The armed timer's deadline.
    pub timer: Option<u64>,
    /// How many guest errors the device reported.
    pub error_count: usize,
    /// The last guest error reported.
    pub last_error: Option<GuestError>,
    /// The pass-through memory.
    pub memory: M,
}

impl Simulation<PlainMemory> {
    /// A machine at time 0 with zeroed memory.
    pub const fn new() -> Self {
        Simulation::with_memory([0; shared::SIZE as usize])
    }
}

impl Default for Simulation<PlainMemory> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: SharedMemory> Simulation<M> {
    /// A machine at time 0 with this memory.
    pub const fn with_memory(memory: M) -> Self {
        Simulation {
            now_ns: 0,
            irq: false,
            timer: None,
            error_count: 0,
            last_error: None,
            memory,
        }
    }

    // tutorial:periodic-simulation-advance begin
    /// Moves the clock forward by `ns`, running the timer at every
    /// deadline due on the way, in order, with the clock at that deadline:
    /// as QEMU's qtest `clock_step` does, which stops at each timer's
    /// deadline. A timer its own callback re-arms (a periodic timeout)
    /// fires again within the same step when its next deadline is due too.
    /// The timer is disarmed before it runs, as in QEMU.
    pub fn advance(&mut self, stopwatch: &mut Stopwatch, ns: u64) {
        let target_ns = self.now_ns + ns;
        while let Some(deadline_ns) = self.timer.filter(|&deadline| deadline <= target_ns) {
            // A deadline already past (a restored one) runs now.
            self.now_ns = self.now_ns.max(deadline_ns);
            self.timer = None;
            stopwatch.timer_expired(self);
        }
        self.now_ns = target_ns;
    }
    // tutorial:periodic-simulation-advance end
}

impl<M: SharedMemory> Environment for Simulation<M> {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }
    fn set_irq(&mut self, level: bool) {
        self.irq = level;
    }
    fn arm_timer(&mut self, deadline_ns: u64) {
        self.timer = Some(deadline_ns);
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
    }
    fn guest_error(&mut self, error: GuestError) {
        self.error_count += 1;
        self.last_error = Some(error);
    }
    fn shared_memory(&mut self) -> &mut dyn SharedMemory {
        &mut self.memory
    }
}
