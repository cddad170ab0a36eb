// SPDX-License-Identifier: GPL-2.0-or-later
//! The state machine's environment in QEMU: the virtual clock, the
//! interrupt line and timer (their changes applied once the state is
//! released), the pass-through RAM, trace events and the guest-error log.

use std::{
    ffi::{CStr, CString},
    ops::Deref,
};

use stopwatch_abi::{Command, Status, TimeSnapshot};
use stopwatch_model::{Environment, GuestError, SharedMemory};
use util::{log::Log, log_mask_ln, timer::CLOCK_VIRTUAL};

use crate::{device::StopwatchState, shared_memory::SharedRam, trace};

/// The state machine's view of QEMU.
pub struct QemuEnvironment<'a> {
    device: &'a StopwatchState,
    memory: SharedRam,
    /// Interrupt and timer changes, applied once the state is released.
    pub effects: Effects,
}

impl<'a> QemuEnvironment<'a> {
    pub fn new(device: &'a StopwatchState) -> Self {
        QemuEnvironment {
            device,
            memory: device.shared_ram(),
            effects: Effects::default(),
        }
    }

    /// The device's instance name. Opaque, as when it was a borrow guard,
    /// so that its callers' `&self.id()`, which the tutorial chapters
    /// quote, stays what it was.
    fn id(&self) -> impl Deref<Target = CStr> + '_ {
        self.device.id()
    }
}

/// A change the state machine asks of the machine around it.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Irq(bool),
    ArmTimer(u64),
    CancelTimer,
}

/// The changes of one call into the state machine, in order. One call
/// makes at most three (RESET: cancel the timer, lower the line; restore:
/// the line and the timer), so a small array does without allocating.
#[derive(Default)]
pub struct Effects {
    list: [Option<Effect>; 8],
    len: usize,
}

impl Effects {
    fn push(&mut self, effect: Effect) {
        let slot = self
            .list
            .get_mut(self.len)
            .expect("the state machine made more than 8 changes in one call");
        *slot = Some(effect);
        self.len += 1;
    }

    /// Applies the changes in order, with no borrow of the state held.
    /// Inline, and by reference: most accesses (every register read)
    /// change nothing, and then cost one compare, no call and no copy of
    /// the 8 slots (taken by value, they were copied on every read).
    #[inline]
    pub fn apply(&self, device: &StopwatchState) {
        if self.len != 0 {
            self.apply_each(device);
        }
    }

    fn apply_each(&self, device: &StopwatchState) {
        let id = device.id();
        for effect in self.list[..self.len].iter().flatten().copied() {
            match effect {
                Effect::Irq(level) => {
                    trace::trace_stopwatch_irq(id, level);
                    device.timeout_irq.set(level);
                }
                Effect::ArmTimer(deadline_ns) => {
                    trace::trace_stopwatch_timeout_armed(id, deadline_ns);
                    device.timer.borrow().modify(deadline_ns);
                }
                Effect::CancelTimer => {
                    trace::trace_stopwatch_timeout_cancelled(id);
                    device.timer.borrow().delete();
                }
            }
        }
    }
}

impl Environment for QemuEnvironment<'_> {
    fn now_ns(&self) -> u64 {
        CLOCK_VIRTUAL.get_ns()
    }

    fn set_irq(&mut self, level: bool) {
        self.effects.push(Effect::Irq(level));
    }

    fn arm_timer(&mut self, deadline_ns: u64) {
        self.effects.push(Effect::ArmTimer(deadline_ns));
    }

    fn cancel_timer(&mut self) {
        self.effects.push(Effect::CancelTimer);
    }

    fn guest_error(&mut self, error: GuestError) {
        // Formatted (allocating) only on this slow path, for both outputs.
        let id = self.id();
        let message = CString::new(error.to_string()).unwrap_or_default();
        trace::trace_stopwatch_guest_error(&id, &message);
        log_mask_ln!(
            Log::GuestError,
            "stopwatch {}: {error}",
            id.to_string_lossy()
        );
    }

    fn command_executed(&mut self, command: Option<Command>, before: Status, after: Status) {
        let name = command.map_or(c"unknown", Command::c_name);
        trace::trace_stopwatch_command(&self.id(), name, before.c_name(), after.c_name());
    }

    fn timeout_fired(&mut self, deadline_ns: u64) {
        trace::trace_stopwatch_timeout_fired(&self.id(), deadline_ns);
    }

    // tutorial:periodic-trace-glue begin
    fn periodic_armed(&mut self, period_ns: u64, first_deadline_ns: u64) {
        trace::trace_stopwatch_periodic(&self.id(), period_ns, first_deadline_ns);
    }
    // tutorial:periodic-trace-glue end

    // tutorial:lap-trace-glue begin
    fn lap_recorded(&mut self, slot: usize, elapsed_ns: u64) {
        trace::trace_stopwatch_lap(&self.id(), slot as u32, elapsed_ns);
    }
    // tutorial:lap-trace-glue end

    fn time_page_published(&mut self, sequence: u32, snapshot: &TimeSnapshot) {
        trace::trace_stopwatch_time_page(
            &self.id(),
            sequence,
            snapshot.status.c_name(),
            snapshot.accumulated_ns,
            snapshot.run_start_ns,
            snapshot.timeout_deadline_ns,
        );
    }

    fn shared_memory(&mut self) -> &mut dyn SharedMemory {
        &mut self.memory
    }
}
