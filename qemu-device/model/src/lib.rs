// SPDX-License-Identifier: GPL-2.0-or-later
//! The stopwatch's behaviour as a plain state machine.
//!
//! Nothing here knows about QEMU. The device's environment (its clock, its
//! interrupt line, its timer, its pass-through memory and the guest-error
//! log) is injected through [`Environment`], as rust-vmm's `vm-superio`
//! does, so every rule of the device is unit-tested on the host and the QEMU
//! glue (`qemu-device/src/device.rs`) only forwards callbacks. The same type
//! is the reference model for differential testing of the real device.
//!
//! The interface itself (offsets, codes, limits) comes from
//! [`stopwatch_abi`]; `docs/interface.md` describes the behaviour in prose.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod access;
mod commands;
mod environment;
mod error;
mod memory;
mod migration;
mod simulation;
mod text;
mod timeout;

use stopwatch_abi::{shared, time_page, Command, Status, TimeSnapshot};

pub use access::{decode, Access, Half, Register};
pub use environment::Environment;
pub use error::GuestError;
pub use memory::{ordering, PlainMemory, SharedMemory};
pub use migration::{RestoreError, SavedState};
pub use simulation::Simulation;
pub use text::{format_elapsed, ElapsedText};
pub use timeout::Timeout;

/// The stopwatch device's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopwatch {
    status: Status,
    /// Nanoseconds of all completed runs.
    accumulated_ns: u64,
    /// Device-clock start of the current run; meaningful while running.
    run_start_ns: u64,
    timeout: Timeout,
    /// The time page's sequence counter, even between writes.
    sequence: u32,
    // tutorial:lap-model-state begin
    /// Laps recorded so far, at most [`shared::LAP_SLOTS`].
    lap_count: usize,
    /// Elapsed nanoseconds at each LAP; slots from `lap_count` on are 0.
    laps: [u64; shared::LAP_SLOTS],
    // tutorial:lap-model-state end
}

impl Default for Stopwatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Stopwatch {
    /// A stopwatch at zero, stopped, with no timeout.
    pub const fn new() -> Self {
        Stopwatch {
            status: Status::Reset,
            accumulated_ns: 0,
            run_start_ns: 0,
            timeout: Timeout::Idle,
            sequence: 0,
            lap_count: 0,
            laps: [0; shared::LAP_SLOTS],
        }
    }

    /// The status, as the STATUS register reads it.
    pub const fn status(&self) -> Status {
        self.status
    }

    /// The timeout's state.
    pub const fn timeout(&self) -> Timeout {
        self.timeout
    }

    /// The interrupt line's level.
    pub const fn irq_level(&self) -> bool {
        self.timeout.irq_level()
    }

    /// The laps recorded since the last RESET, oldest first.
    pub fn laps(&self) -> &[u64] {
        &self.laps[..self.lap_count]
    }

    /// What the time page publishes.
    pub const fn snapshot(&self, clock_offset_ns: i64) -> TimeSnapshot {
        TimeSnapshot {
            status: self.status,
            accumulated_ns: self.accumulated_ns,
            run_start_ns: self.run_start_ns,
            clock_offset_ns,
            timeout_deadline_ns: match self.timeout.deadline_ns() {
                Some(deadline_ns) => deadline_ns,
                None => 0,
            },
        }
    }

    /// Elapsed nanoseconds at device-clock time `now_ns`.
    pub const fn elapsed_ns(&self, now_ns: u64) -> u64 {
        self.snapshot(0).elapsed_ns(now_ns)
    }

    /// Power-on and system reset: the state at creation. Like the
    /// original, `start_at_boot` means RESET then START.
    pub fn power_on_reset(&mut self, env: &mut dyn Environment, start_at_boot: bool) {
        // Keep the sequence counter: a guest reading the page across a
        // reset must see it change.
        let sequence = self.sequence;
        *self = Stopwatch {
            sequence,
            ..Stopwatch::new()
        };
        env.cancel_timer();
        env.set_irq(false);
        if start_at_boot {
            self.status = Status::Running;
            self.run_start_ns = env.now_ns();
        }
        self.publish(env);
    }

    /// A guest write to the register region.
    pub fn write(&mut self, env: &mut dyn Environment, offset: u64, value: u64, size: u32) {
        let access = match decode(offset, size) {
            Ok(access) => access,
            Err(error) => return env.guest_error(error),
        };
        match (access.register, access.half) {
            (Register::Status, _) => env.guest_error(GuestError::WriteToStatus { value }),
            (Register::Command, Half::Upper) => {
                env.guest_error(GuestError::WriteToCommandUpperHalf { value })
            }
            (Register::Command, Half::Whole | Half::Lower) => self.command(env, value),
        }
    }

    /// A guest read of the register region.
    pub fn read(&self, env: &mut dyn Environment, offset: u64, size: u32) -> u64 {
        let access = match decode(offset, size) {
            Ok(access) => access,
            Err(error) => {
                env.guest_error(error);
                return 0;
            }
        };
        match (access.register, access.half) {
            (Register::Command, _) => {
                env.guest_error(GuestError::ReadOfCommand);
                0
            }
            // The status code fits the lower half; the upper half reads 0.
            (Register::Status, Half::Whole | Half::Lower) => self.status.code(),
            (Register::Status, Half::Upper) => 0,
        }
    }

    /// Executes a command code written to COMMAND.
    pub fn command(&mut self, env: &mut dyn Environment, code: u64) {
        let before = self.status;
        let command = Command::from_code(code);
        self.execute(env, code, command);
        env.command_executed(command, before, self.status);
    }

    /// The timer reached its deadline.
    pub fn timer_expired(&mut self, env: &mut dyn Environment) {
        let Some(deadline_ns) = self.timeout.deadline_ns() else {
            // Disarmed while the callback was already queued: nothing to do.
            return;
        };
        if env.now_ns() < deadline_ns {
            // Never fire early, whatever the timer says.
            return env.arm_timer(deadline_ns);
        }
        let was_raised = self.irq_level();
        self.timeout = match self.timeout {
            Timeout::Periodic { period_ns, .. } => self.next_period(env, period_ns, deadline_ns),
            _ => Timeout::Fired,
        };
        env.timeout_fired(deadline_ns);
        if !was_raised {
            env.set_irq(true);
        }
        self.publish(env);
    }

    // tutorial:periodic-model-rearm begin
    /// A period expired at `deadline_ns`: re-arms the timer for the next
    /// one, on the grid of the command's time (deadline plus one period),
    /// and raises the line. A callback later than a whole period (a stopped
    /// VM) skips the periods already past: they coalesce into this rise.
    fn next_period(&self, env: &mut dyn Environment, period_ns: u64, deadline_ns: u64) -> Timeout {
        let missed = (env.now_ns() - deadline_ns) / period_ns;
        let next_deadline_ns =
            deadline_ns.saturating_add(period_ns.saturating_mul(missed.saturating_add(1)));
        env.arm_timer(next_deadline_ns);
        Timeout::Periodic {
            period_ns,
            next_deadline_ns,
            raised: true,
        }
    }
    // tutorial:periodic-model-rearm end

    /// Rewrites the time page under its sequence counter (see
    /// [`stopwatch_abi::time_page`]).
    fn publish(&mut self, env: &mut dyn Environment) {
        let snapshot = self.snapshot(env.guest_counter_offset_ns());
        let page = |offset| shared::TIME_PAGE + offset;
        let memory = env.shared_memory();

        self.sequence = self.sequence.wrapping_add(1);
        memory.write_u32(page(time_page::SEQUENCE), self.sequence);
        memory.write_barrier();
        memory.write_u32(page(time_page::MAGIC_OFFSET), time_page::MAGIC);
        memory.write_u32(page(time_page::VERSION_OFFSET), time_page::VERSION);
        memory.write_u32(page(time_page::STATUS), snapshot.status.code() as u32);
        memory.write_u64(page(time_page::ACCUMULATED_NS), snapshot.accumulated_ns);
        memory.write_u64(page(time_page::RUN_START_NS), snapshot.run_start_ns);
        memory.write_u64(
            page(time_page::CLOCK_OFFSET_NS),
            snapshot.clock_offset_ns as u64,
        );
        memory.write_u64(
            page(time_page::TIMEOUT_DEADLINE_NS),
            snapshot.timeout_deadline_ns,
        );
        // tutorial:lap-model-publish begin
        // The laps after the page, under the same sequence counter.
        memory.write_u64(shared::LAP_COUNT, self.lap_count as u64);
        for (slot, &lap_ns) in self.laps.iter().enumerate() {
            memory.write_u64(shared::LAPS + 8 * slot as u64, lap_ns);
        }
        // tutorial:lap-model-publish end
        // tutorial:periodic-model-publish begin
        // The period after the laps: 0 for a one-shot or no timeout.
        memory.write_u64(shared::TIMEOUT_PERIOD_NS, self.timeout.period_ns());
        // tutorial:periodic-model-publish end
        memory.write_barrier();
        self.sequence = self.sequence.wrapping_add(1);
        memory.write_u32(page(time_page::SEQUENCE), self.sequence);
        env.time_page_published(self.sequence, &snapshot);
    }
}

#[cfg(test)]
mod tests;
