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
mod error;
mod simulation;
mod text;

use stopwatch_abi::{
    shared, time_page, Command, Status, TimeSnapshot, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS,
    MIN_PERIOD_NS, NANOS_PER_SEC,
};

pub use access::{decode, Access, Half, Register};
pub use error::GuestError;
pub use simulation::Simulation;
pub use text::{format_elapsed, ElapsedText};

/// The pass-through memory (region 0), as the device sees it.
///
/// The guest may touch the same memory at any time from another thread, so
/// the QEMU implementation uses atomic accesses; offsets are byte offsets
/// into the region and always naturally aligned.
pub trait SharedMemory {
    /// Reads a little-endian `u64`.
    fn read_u64(&self, offset: u64) -> u64;
    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, offset: u64, value: u64);
    /// Writes a little-endian `u32`.
    fn write_u32(&mut self, offset: u64, value: u32);
    /// Writes bytes.
    fn write_bytes(&mut self, offset: u64, bytes: &[u8]);
    /// Orders all writes before it before all writes after it, as seen by
    /// the guest (a release fence).
    fn write_barrier(&mut self);
}

/// The memory orderings of a [`SharedMemory`] that other threads read while
/// the device writes it: QEMU's, whose region the guest's vCPUs read with
/// no exit. One definition, used by the device (`qemu-device/src`) and by
/// the model checker that explores the time page's protocol with them
/// (`qemu-device/protocol-check`, with loom).
pub mod ordering {
    use core::sync::atomic::Ordering;

    /// Each store: single-copy atomic, ordered only by the barriers.
    pub const STORE: Ordering = Ordering::Relaxed;
    /// [`SharedMemory::write_barrier`](super::SharedMemory::write_barrier):
    /// a fence of this ordering.
    pub const WRITE_BARRIER: Ordering = Ordering::Release;
}

/// Plain memory, for tests and reference runs of the model: a copy of the
/// region with no other writer, so barriers have nothing to order.
pub type PlainMemory = [u8; shared::SIZE as usize];

impl SharedMemory for PlainMemory {
    fn read_u64(&self, offset: u64) -> u64 {
        let at = offset as usize;
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self[at..at + 8]);
        u64::from_le_bytes(bytes)
    }
    fn write_u64(&mut self, offset: u64, value: u64) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn write_u32(&mut self, offset: u64, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        let at = offset as usize;
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn write_barrier(&mut self) {}
}

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

/// Where the timeout is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// No timeout; the interrupt line is low.
    Idle,
    /// Armed, firing at `deadline_ns`; the line is still low.
    Armed {
        /// Device-clock time of expiry.
        deadline_ns: u64,
    },
    /// Expired; the line is high until `TIMEOUT_ACK` or RESET.
    Fired,
    // tutorial:periodic-model-timeout begin
    /// PERIODIC: fires at `next_deadline_ns`, then every `period_ns` after
    /// it; the timer is armed for as long as it runs.
    Periodic {
        /// The period, [`MIN_PERIOD_NS`] to [`MAX_TIMEOUT_NS`].
        period_ns: u64,
        /// The next expiry: the command's time plus a whole number of
        /// periods, so a late acknowledgement never makes it drift.
        next_deadline_ns: u64,
        /// A period expired and its `TIMEOUT_ACK` has not come: the line
        /// is high. Periods that expire meanwhile keep it high (a level
        /// interrupt: they coalesce).
        raised: bool,
    },
    // tutorial:periodic-model-timeout end
}

impl Timeout {
    /// The interrupt line's level in this state.
    pub const fn irq_level(self) -> bool {
        matches!(
            self,
            Timeout::Fired | Timeout::Periodic { raised: true, .. }
        )
    }

    /// The period of a periodic timeout, 0 for a one-shot or none: what
    /// the shared page publishes at [`shared::TIMEOUT_PERIOD_NS`].
    pub const fn period_ns(self) -> u64 {
        match self {
            Timeout::Periodic { period_ns, .. } => period_ns,
            Timeout::Idle | Timeout::Armed { .. } | Timeout::Fired => 0,
        }
    }

    /// The deadline the timer is armed for, if any.
    pub const fn deadline_ns(self) -> Option<u64> {
        match self {
            Timeout::Armed { deadline_ns } => Some(deadline_ns),
            Timeout::Periodic {
                next_deadline_ns, ..
            } => Some(next_deadline_ns),
            Timeout::Idle | Timeout::Fired => None,
        }
    }
}

/// The device's whole state, as migration carries it.
///
/// Plain integers, so that the QEMU glue can describe it to the migration
/// stream; [`Stopwatch::restore`] validates it on the way back in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    /// [`Status`] code.
    pub status: u64,
    /// Nanoseconds of completed runs.
    pub accumulated_ns: u64,
    /// Start of the current run (device clock), if running.
    pub run_start_ns: u64,
    /// 0: idle, 1: armed, 2: fired (the interrupt line is high).
    pub timeout_state: u8,
    /// Deadline of an armed timeout.
    pub timeout_deadline_ns: u64,
    /// Time page sequence counter (always even between writes).
    pub sequence: u32,
    // tutorial:lap-saved-state begin
    /// Laps recorded, 0 to [`shared::LAP_SLOTS`]. A stream from a device
    /// without laps has none: the glue leaves these at 0.
    pub lap_count: u64,
    /// The laps, in nanoseconds; slots from `lap_count` on are 0.
    pub laps: [u64; shared::LAP_SLOTS],
    // tutorial:lap-saved-state end
    // tutorial:periodic-saved-state begin
    /// The period of a periodic timeout, 0 for a one-shot or none. With a
    /// period, `timeout_state` 1 means between periods (line low), 2 a
    /// period fired and not acknowledged (line high), and
    /// `timeout_deadline_ns` is the next period's deadline in both. A
    /// stream from a device without PERIODIC has none: the glue leaves 0.
    pub timeout_period_ns: u64,
    // tutorial:periodic-saved-state end
}

/// A [`SavedState`] that no device could have produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The status code is not a [`Status`].
    BadStatus(u64),
    /// The timeout state is not 0, 1 or 2.
    BadTimeoutState(u8),
    /// The sequence counter is odd (saved in the middle of a write).
    OddSequence(u32),
    /// RESET with time on the clock: RESET always clears it.
    TimeWhileReset,
    /// An armed timeout with deadline 0: every deadline is after a START
    /// of the clock.
    ArmedWithoutDeadline,
    /// More laps than there are slots.
    TooManyLaps(u64),
    /// A lap in a slot at or after the lap count.
    LapAfterCount(usize),
    /// A period outside [`MIN_PERIOD_NS`]..=[`MAX_TIMEOUT_NS`], or a
    /// period with no timeout pending.
    BadPeriod(u64),
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::BadStatus(code) => write!(f, "invalid status code {code}"),
            RestoreError::BadTimeoutState(state) => write!(f, "invalid timeout state {state}"),
            RestoreError::OddSequence(seq) => write!(f, "odd time page sequence {seq}"),
            RestoreError::TimeWhileReset => write!(f, "elapsed time while RESET"),
            RestoreError::ArmedWithoutDeadline => write!(f, "armed timeout without a deadline"),
            RestoreError::TooManyLaps(count) => {
                write!(f, "{count} laps (at most {})", shared::LAP_SLOTS)
            }
            RestoreError::LapAfterCount(slot) => {
                write!(f, "lap slot {slot} set after the lap count")
            }
            RestoreError::BadPeriod(period) => write!(
                f,
                "periodic timeout of {period} ns (outside {MIN_PERIOD_NS}..={MAX_TIMEOUT_NS} ns, \
                 or with no timeout pending)"
            ),
        }
    }
}

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

    fn execute(&mut self, env: &mut dyn Environment, code: u64, command: Option<Command>) {
        let Some(command) = command else {
            return env.guest_error(GuestError::UnknownCommand { code });
        };
        let result = match command {
            Command::Reset => {
                self.reset(env);
                Ok(())
            }
            Command::Start => self.start(env.now_ns()),
            Command::Pause => self.pause(env),
            Command::Update => {
                self.update(env);
                Ok(())
            }
            Command::Timeout => self.arm_timeout_secs(env),
            Command::TimeoutNs => self.arm_timeout_ns(env),
            Command::TimeoutAck => self.acknowledge_timeout(env),
            // tutorial:lap-model-execute begin
            Command::Lap => self.lap(env),
            // tutorial:lap-model-execute end
            Command::Periodic => self.arm_periodic(env),
        };
        match result {
            Ok(()) => self.publish(env),
            Err(error) => env.guest_error(error),
        }
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

    /// The state for migration.
    pub const fn save(&self) -> SavedState {
        let (timeout_state, timeout_deadline_ns) = match self.timeout {
            Timeout::Idle => (0, 0),
            Timeout::Armed { deadline_ns } => (1, deadline_ns),
            Timeout::Fired => (2, 0),
            Timeout::Periodic {
                next_deadline_ns,
                raised,
                ..
            } => (if raised { 2 } else { 1 }, next_deadline_ns),
        };
        SavedState {
            status: self.status.code(),
            accumulated_ns: self.accumulated_ns,
            run_start_ns: self.run_start_ns,
            timeout_state,
            timeout_deadline_ns,
            sequence: self.sequence,
            lap_count: self.lap_count as u64,
            laps: self.laps,
            timeout_period_ns: self.timeout.period_ns(),
        }
    }

    /// The state after migration: validates `saved`, then re-arms the
    /// timer, sets the interrupt line and rewrites the time page.
    pub fn restore(
        env: &mut dyn Environment,
        saved: &SavedState,
    ) -> Result<Stopwatch, RestoreError> {
        let status =
            Status::from_code(saved.status).ok_or(RestoreError::BadStatus(saved.status))?;
        let timeout = match (saved.timeout_state, saved.timeout_period_ns) {
            (0, 0) => Timeout::Idle,
            (1, 0) => Timeout::Armed {
                deadline_ns: saved.timeout_deadline_ns,
            },
            (2, 0) => Timeout::Fired,
            (state @ (1 | 2), period_ns)
                if (MIN_PERIOD_NS..=MAX_TIMEOUT_NS).contains(&period_ns) =>
            {
                if saved.timeout_deadline_ns == 0 {
                    return Err(RestoreError::ArmedWithoutDeadline);
                }
                Timeout::Periodic {
                    period_ns,
                    next_deadline_ns: saved.timeout_deadline_ns,
                    raised: state == 2,
                }
            }
            (0..=2, period_ns) => return Err(RestoreError::BadPeriod(period_ns)),
            (other, _) => return Err(RestoreError::BadTimeoutState(other)),
        };
        if saved.sequence % 2 != 0 {
            return Err(RestoreError::OddSequence(saved.sequence));
        }
        if status == Status::Reset && (saved.accumulated_ns != 0 || saved.run_start_ns != 0) {
            return Err(RestoreError::TimeWhileReset);
        }
        if timeout == (Timeout::Armed { deadline_ns: 0 }) {
            return Err(RestoreError::ArmedWithoutDeadline);
        }
        // tutorial:lap-model-restore begin
        let lap_count = match usize::try_from(saved.lap_count) {
            Ok(count) if count <= shared::LAP_SLOTS => count,
            _ => return Err(RestoreError::TooManyLaps(saved.lap_count)),
        };
        if let Some(slot) = (lap_count..shared::LAP_SLOTS).find(|&slot| saved.laps[slot] != 0) {
            return Err(RestoreError::LapAfterCount(slot));
        }
        // tutorial:lap-model-restore end
        let mut stopwatch = Stopwatch {
            status,
            accumulated_ns: saved.accumulated_ns,
            run_start_ns: saved.run_start_ns,
            timeout,
            sequence: saved.sequence,
            lap_count,
            laps: saved.laps,
        };
        match timeout.deadline_ns() {
            // A deadline already passed fires at once.
            Some(deadline_ns) => env.arm_timer(deadline_ns),
            None => env.cancel_timer(),
        }
        env.set_irq(timeout.irq_level());
        stopwatch.publish(env);
        Ok(stopwatch)
    }

    fn reset(&mut self, env: &mut dyn Environment) {
        self.status = Status::Reset;
        self.accumulated_ns = 0;
        self.run_start_ns = 0;
        // Unlike the original, RESET also ends any timeout.
        match self.timeout {
            Timeout::Idle => {}
            Timeout::Armed { .. } => env.cancel_timer(),
            Timeout::Fired => env.set_irq(false),
            Timeout::Periodic { raised, .. } => {
                env.cancel_timer();
                if raised {
                    env.set_irq(false);
                }
            }
        }
        self.timeout = Timeout::Idle;
        // tutorial:lap-model-reset begin
        self.lap_count = 0;
        self.laps = [0; shared::LAP_SLOTS];
        // tutorial:lap-model-reset end
    }

    fn start(&mut self, now_ns: u64) -> Result<(), GuestError> {
        if self.status == Status::Running {
            return Err(GuestError::StartWhileRunning);
        }
        self.status = Status::Running;
        self.run_start_ns = now_ns;
        Ok(())
    }

    fn pause(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        match self.status {
            Status::Running => {
                self.accumulated_ns = self.elapsed_ns(env.now_ns());
                self.status = Status::Paused;
            }
            // As in the original, pausing a paused stopwatch does nothing
            // (but end a periodic timeout, below).
            Status::Paused => {}
            Status::Reset => return Err(GuestError::PauseWhileReset),
        }
        self.end_periodic(env);
        Ok(())
    }

    // tutorial:periodic-model-pause begin
    /// PAUSE ends a periodic timeout: no period fires after it. A raised
    /// line stays high until its `TIMEOUT_ACK`, as a fired one-shot's.
    fn end_periodic(&mut self, env: &mut dyn Environment) {
        if let Timeout::Periodic { raised, .. } = self.timeout {
            env.cancel_timer();
            self.timeout = if raised {
                Timeout::Fired
            } else {
                Timeout::Idle
            };
        }
    }
    // tutorial:periodic-model-pause end

    fn update(&self, env: &mut dyn Environment) {
        let text = format_elapsed(self.elapsed_ns(env.now_ns()));
        let memory = env.shared_memory();
        memory.write_bytes(shared::DATA, text.as_bytes_with_nul());
        memory.write_u64(shared::DATA_LEN, text.len_with_nul() as u64);
    }

    fn arm_timeout_secs(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        let seconds = env.shared_memory().read_u64(shared::DATA_LEN);
        if !(1..=MAX_TIMEOUT_SECS).contains(&seconds) {
            return Err(GuestError::TimeoutOutOfRange {
                seconds,
                max: MAX_TIMEOUT_SECS,
            });
        }
        self.arm_timeout(env, Command::Timeout, seconds * NANOS_PER_SEC)
    }

    fn arm_timeout_ns(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        let nanoseconds = env.shared_memory().read_u64(shared::DATA_LEN);
        if !(1..=MAX_TIMEOUT_NS).contains(&nanoseconds) {
            return Err(GuestError::TimeoutNsOutOfRange {
                nanoseconds,
                max: MAX_TIMEOUT_NS,
            });
        }
        self.arm_timeout(env, Command::TimeoutNs, nanoseconds)
    }

    fn arm_timeout(
        &mut self,
        env: &mut dyn Environment,
        command: Command,
        duration_ns: u64,
    ) -> Result<(), GuestError> {
        if !self.may_arm() {
            return Err(GuestError::TimeoutAlreadyPending { command });
        }
        let deadline_ns = env.now_ns().saturating_add(duration_ns);
        self.timeout = Timeout::Armed { deadline_ns };
        env.arm_timer(deadline_ns);
        Ok(())
    }

    // tutorial:periodic-model-arm begin
    /// Whether TIMEOUT, `TIMEOUT_NS` or PERIODIC may arm a timeout now: with
    /// none pending, or replacing a periodic one between its periods. A
    /// raised line (one-shot or periodic) waits for its `TIMEOUT_ACK`
    /// first, so that no interrupt is lost unacknowledged.
    fn may_arm(&self) -> bool {
        matches!(
            self.timeout,
            Timeout::Idle | Timeout::Periodic { raised: false, .. }
        )
    }

    /// PERIODIC: a timeout every `DATA_LEN` nanoseconds, first one period
    /// from now. The timer stays armed, re-armed at each expiry.
    fn arm_periodic(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        let period_ns = env.shared_memory().read_u64(shared::DATA_LEN);
        if !(MIN_PERIOD_NS..=MAX_TIMEOUT_NS).contains(&period_ns) {
            return Err(GuestError::PeriodOutOfRange {
                nanoseconds: period_ns,
                min: MIN_PERIOD_NS,
                max: MAX_TIMEOUT_NS,
            });
        }
        if !self.may_arm() {
            return Err(GuestError::TimeoutAlreadyPending {
                command: Command::Periodic,
            });
        }
        let next_deadline_ns = env.now_ns().saturating_add(period_ns);
        self.timeout = Timeout::Periodic {
            period_ns,
            next_deadline_ns,
            raised: false,
        };
        env.arm_timer(next_deadline_ns);
        env.periodic_armed(period_ns, next_deadline_ns);
        Ok(())
    }
    // tutorial:periodic-model-arm end

    // tutorial:lap-model-lap begin
    /// LAP: the elapsed time into the next free slot. All taken: refused,
    /// so the first laps are kept and the guest is told (in the log).
    fn lap(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        let slot = self.lap_count;
        if slot == shared::LAP_SLOTS {
            return Err(GuestError::LapsFull {
                slots: shared::LAP_SLOTS,
            });
        }
        let elapsed_ns = self.elapsed_ns(env.now_ns());
        self.laps[slot] = elapsed_ns;
        self.lap_count += 1;
        env.lap_recorded(slot, elapsed_ns);
        Ok(())
    }
    // tutorial:lap-model-lap end

    // tutorial:periodic-model-ack begin
    /// TIMEOUT_ACK: lowers a raised line; ends a one-shot timeout, and a
    /// periodic one between its periods.
    fn acknowledge_timeout(&mut self, env: &mut dyn Environment) -> Result<(), GuestError> {
        self.timeout = match self.timeout {
            Timeout::Idle => return Err(GuestError::AckWithoutTimeout),
            // As in the original, acknowledging also ends an armed timeout
            // (a periodic one between periods too).
            Timeout::Armed { .. } | Timeout::Periodic { raised: false, .. } => {
                env.cancel_timer();
                Timeout::Idle
            }
            Timeout::Fired => {
                env.set_irq(false);
                Timeout::Idle
            }
            // A period's interrupt acknowledged: the line goes low and the
            // next period still comes.
            Timeout::Periodic {
                period_ns,
                next_deadline_ns,
                raised: true,
            } => {
                env.set_irq(false);
                Timeout::Periodic {
                    period_ns,
                    next_deadline_ns,
                    raised: false,
                }
            }
        };
        Ok(())
    }
    // tutorial:periodic-model-ack end

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
