// SPDX-License-Identifier: GPL-2.0-or-later
//! The device's state as migration carries it: saved as plain integers,
//! validated on the way back in.

use stopwatch_abi::{shared, Status, MAX_TIMEOUT_NS, MIN_PERIOD_NS};

use crate::{Environment, Stopwatch, Timeout};

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

impl Stopwatch {
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
}
