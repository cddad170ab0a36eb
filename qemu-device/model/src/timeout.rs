// SPDX-License-Identifier: GPL-2.0-or-later
//! The timeout's life: idle, armed, fired or periodic.

// Named by the documentation only.
#[cfg(doc)]
use stopwatch_abi::{shared, MAX_TIMEOUT_NS, MIN_PERIOD_NS};

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
