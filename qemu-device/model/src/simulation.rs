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

    /// Moves the clock forward by `ns` and runs the timer if it is due, as
    /// QEMU's main loop would (the timer is disarmed before it runs).
    pub fn advance(&mut self, stopwatch: &mut Stopwatch, ns: u64) {
        self.now_ns += ns;
        if self.timer.is_some_and(|deadline| deadline <= self.now_ns) {
            self.timer = None;
            stopwatch.timer_expired(self);
        }
    }
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
