// SPDX-License-Identifier: GPL-2.0-or-later
//! What each command written to COMMAND does to the state machine.

use stopwatch_abi::{
    shared, Command, Status, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, MIN_PERIOD_NS, NANOS_PER_SEC,
};

use crate::{format_elapsed, Environment, GuestError, Stopwatch, Timeout};

impl Stopwatch {
    pub(crate) fn execute(
        &mut self,
        env: &mut dyn Environment,
        code: u64,
        command: Option<Command>,
    ) {
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
}
