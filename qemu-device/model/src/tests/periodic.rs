// SPDX-License-Identifier: GPL-2.0-or-later

//! PERIODIC: a timeout every period, on the grid of the command's time;
//! acknowledged period by period; ended by RESET, PAUSE and ACK between
//! periods; replaced by a new timeout between periods; published after the
//! laps; carried by migration; and the simulated clock that fires every
//! period of one long step, as QEMU's `clock_step` does.

use stopwatch_abi::{shared, time_page, Command, Status, MIN_PERIOD_NS};

use super::{fake_env, powered_on, run, FakeEnv, Inspect, SECOND};
use crate::{GuestError, RestoreError, SavedState, SharedMemory, Stopwatch, Timeout};

/// 250 ms, the period of most tests here.
const PERIOD: u64 = 250_000_000;

/// Arms a periodic timeout of `period_ns`; returns the command's time.
fn periodic(sw: &mut Stopwatch, env: &mut FakeEnv, period_ns: u64) -> u64 {
    env.set_data_len(period_ns);
    run(sw, env, Command::Periodic);
    env.now_ns
}

/// The period and the next deadline, as the guest reads them.
fn published(env: &FakeEnv) -> (u64, u64) {
    (
        env.memory.read_u64(shared::TIMEOUT_PERIOD_NS),
        env.page_u64(time_page::TIMEOUT_DEADLINE_NS),
    )
}

// tutorial:periodic-model-test begin
#[test]
fn fires_at_every_period_never_before() {
    let (mut sw, mut env) = powered_on(true);
    let armed_at = periodic(&mut sw, &mut env, PERIOD);
    assert_eq!(published(&env), (PERIOD, armed_at + PERIOD));
    for period in 1..=3 {
        let deadline = armed_at + period * PERIOD;
        env.advance(&mut sw, deadline - 1 - env.now_ns);
        assert!(!env.irq, "period {period}: the line rose 1 ns early");
        env.advance(&mut sw, 1);
        assert!(env.irq, "period {period}: no interrupt at {deadline}");
        // The next period is armed at once, on the command's grid.
        assert_eq!(env.timer, Some(deadline + PERIOD));
        assert_eq!(published(&env), (PERIOD, deadline + PERIOD));
        run(&mut sw, &mut env, Command::TimeoutAck);
        assert!(!env.irq, "period {period}: ACK left the line high");
    }
    assert!(env.no_errors(), "{:?}", env.last_error);
}
// tutorial:periodic-model-test end

// tutorial:periodic-simulation-test begin
/// One step over ten periods fires ten times, each with the clock at its
/// deadline, as QEMU's `clock_step` stops at each deadline on the way. A
/// simulated clock that ran one timer per step would publish once.
#[test]
fn one_long_step_fires_every_period_on_the_way() {
    let (mut sw, mut env) = powered_on(true);
    let armed_at = periodic(&mut sw, &mut env, PERIOD);
    let writes_before = env.memory.sequence_writes.len();
    env.advance(&mut sw, 10 * PERIOD + PERIOD / 2);
    // Each expiry rewrites the page: two sequence writes each.
    let expiries = (env.memory.sequence_writes.len() - writes_before) / 2;
    assert_eq!(expiries, 10, "expiries within one step");
    assert_eq!(published(&env), (PERIOD, armed_at + 11 * PERIOD));
    assert!(env.irq, "ten periods unacknowledged: the line stays high");
}
// tutorial:periodic-simulation-test end

#[test]
fn unacknowledged_periods_coalesce_and_the_next_rises_again() {
    let (mut sw, mut env) = powered_on(true);
    let armed_at = periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, 3 * PERIOD);
    assert!(env.irq);
    run(&mut sw, &mut env, Command::TimeoutAck);
    assert!(!env.irq);
    env.advance(&mut sw, PERIOD - 1);
    assert!(!env.irq);
    env.advance(&mut sw, 1);
    assert!(env.irq, "the fourth period after an ACK");
    assert_eq!(env.timer, Some(armed_at + 5 * PERIOD));
}

#[test]
fn a_late_callback_keeps_the_grid() {
    let (mut sw, mut env) = powered_on(true);
    let armed_at = periodic(&mut sw, &mut env, PERIOD);
    // QEMU's timer ran 2.5 periods late (a stopped VM): one rise, and the
    // next deadline is the grid's next, not 'now plus a period'.
    env.now_ns = armed_at + PERIOD * 5 / 2;
    env.timer = None;
    sw.timer_expired(&mut env);
    assert!(env.irq);
    assert_eq!(env.timer, Some(armed_at + 3 * PERIOD));
}

#[test]
fn ack_between_periods_ends_it() {
    let (mut sw, mut env) = powered_on(true);
    periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, PERIOD / 2);
    run(&mut sw, &mut env, Command::TimeoutAck);
    assert_eq!((sw.timeout(), env.timer), (Timeout::Idle, None));
    assert_eq!(published(&env), (0, 0));
    env.advance(&mut sw, 3 * PERIOD);
    assert!(!env.irq);
    assert!(env.no_errors());
}

#[test]
fn reset_ends_it_and_lowers_the_line() {
    let (mut sw, mut env) = powered_on(true);
    periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, PERIOD);
    assert!(env.irq);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(
        (sw.timeout(), env.timer, env.irq),
        (Timeout::Idle, None, false)
    );
    assert_eq!(published(&env), (0, 0));
    env.advance(&mut sw, 3 * PERIOD);
    assert!(!env.irq);
}

// tutorial:periodic-model-pause-test begin
#[test]
fn pause_ends_it_and_a_raised_line_waits_for_its_ack() {
    // Between periods: nothing fires after the PAUSE.
    let (mut sw, mut env) = powered_on(true);
    periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, PERIOD / 2);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!((sw.timeout(), env.timer), (Timeout::Idle, None));
    env.advance(&mut sw, 3 * PERIOD);
    assert!(!env.irq);

    // With the line high: it stays high until its ACK, then nothing more.
    let (mut sw, mut env) = powered_on(true);
    periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, PERIOD);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(
        (sw.timeout(), env.timer, env.irq),
        (Timeout::Fired, None, true)
    );
    assert_eq!(published(&env), (0, 0));
    run(&mut sw, &mut env, Command::TimeoutAck);
    env.advance(&mut sw, 3 * PERIOD);
    assert!(!env.irq);
    assert!(env.no_errors(), "{:?}", env.last_error);
}
// tutorial:periodic-model-pause-test end

#[test]
fn pause_while_reset_is_refused_and_changes_nothing() {
    let (mut sw, mut env) = powered_on(false);
    periodic(&mut sw, &mut env, PERIOD);
    let before = sw.clone();
    run(&mut sw, &mut env, Command::Pause);
    assert!(env.errors_were(1, GuestError::PauseWhileReset));
    assert_eq!(sw, before);
    env.advance(&mut sw, PERIOD);
    assert!(env.irq, "the periodic timeout goes on");
}

#[test]
fn a_new_timeout_replaces_it_between_periods_not_while_raised() {
    for replacement in [Command::Timeout, Command::TimeoutNs, Command::Periodic] {
        let length = match replacement {
            Command::Timeout => 1,
            _ => SECOND,
        };
        let (mut sw, mut env) = powered_on(true);
        periodic(&mut sw, &mut env, PERIOD);
        // Raised: refused, as any new timeout before the ACK.
        env.advance(&mut sw, PERIOD);
        let raised = sw.clone();
        env.set_data_len(length);
        run(&mut sw, &mut env, replacement);
        let refused = GuestError::TimeoutAlreadyPending {
            command: replacement,
        };
        assert!(env.errors_were(1, refused), "{replacement:?}");
        assert_eq!(sw, raised, "{replacement:?}");
        // Acknowledged, between periods: replaced, counting from now.
        run(&mut sw, &mut env, Command::TimeoutAck);
        env.advance(&mut sw, PERIOD / 2);
        let replaced_at = env.now_ns;
        run(&mut sw, &mut env, replacement);
        assert_eq!(env.timer, Some(replaced_at + SECOND), "{replacement:?}");
        let period = if replacement == Command::Periodic {
            SECOND
        } else {
            0
        };
        assert_eq!(published(&env), (period, replaced_at + SECOND));
        env.advance(&mut sw, SECOND - 1);
        assert!(!env.irq, "{replacement:?}: the old period fired");
        env.advance(&mut sw, 1);
        assert!(env.irq, "{replacement:?}");
    }
}

#[test]
fn a_one_shot_pending_refuses_periodic() {
    let (mut sw, mut env) = powered_on(true);
    env.set_data_len(1);
    run(&mut sw, &mut env, Command::Timeout);
    let armed = sw.clone();
    periodic(&mut sw, &mut env, PERIOD);
    let refused = GuestError::TimeoutAlreadyPending {
        command: Command::Periodic,
    };
    assert!(env.errors_were(1, refused));
    assert_eq!(sw, armed);
}

#[test]
fn the_shortest_and_longest_periods() {
    for period in [MIN_PERIOD_NS, 10 * SECOND] {
        let (mut sw, mut env) = powered_on(true);
        let armed_at = periodic(&mut sw, &mut env, period);
        assert!(env.no_errors(), "{period}: {:?}", env.last_error);
        assert_eq!(env.timer, Some(armed_at + period));
    }
}

#[test]
fn migration_carries_it_between_periods_and_raised() {
    for raised in [false, true] {
        let (mut sw, mut env) = powered_on(true);
        let armed_at = periodic(&mut sw, &mut env, PERIOD);
        env.advance(&mut sw, if raised { PERIOD } else { PERIOD / 2 });
        let next = if raised {
            armed_at + 2 * PERIOD
        } else {
            armed_at + PERIOD
        };
        let saved = sw.save();
        assert_eq!(
            (
                saved.timeout_state,
                saved.timeout_deadline_ns,
                saved.timeout_period_ns
            ),
            (if raised { 2 } else { 1 }, next, PERIOD)
        );
        let mut target = fake_env();
        target.now_ns = env.now_ns;
        let mut restored = Stopwatch::restore(&mut target, &saved).unwrap();
        assert_eq!((target.irq, target.timer), (raised, Some(next)));
        assert_eq!(published(&target), (PERIOD, next));
        if raised {
            run(&mut restored, &mut target, Command::TimeoutAck);
        }
        target.advance(&mut restored, next - 1 - target.now_ns);
        assert!(!target.irq);
        target.advance(&mut restored, 1);
        assert!(target.irq, "the next period after restore");
        assert_eq!(target.timer, Some(next + PERIOD));
        assert!(target.no_errors());
    }
}

#[test]
fn a_stream_without_a_period_is_a_one_shot_and_bad_periods_are_refused() {
    let (mut sw, mut env) = powered_on(true);
    env.set_data_len(1);
    run(&mut sw, &mut env, Command::Timeout);
    let saved = sw.save();
    assert_eq!(saved.timeout_period_ns, 0);
    let restored = Stopwatch::restore(&mut fake_env(), &saved).unwrap();
    assert!(matches!(restored.timeout(), Timeout::Armed { .. }));

    let mut target = fake_env();
    for (timeout_state, period) in [(1, 1), (1, 10 * SECOND + 1), (0, PERIOD)] {
        let bad = SavedState {
            timeout_state,
            timeout_period_ns: period,
            ..saved
        };
        assert_eq!(
            Stopwatch::restore(&mut target, &bad),
            Err(RestoreError::BadPeriod(period))
        );
    }
    let without_deadline = SavedState {
        timeout_deadline_ns: 0,
        timeout_period_ns: PERIOD,
        ..saved
    };
    assert_eq!(
        Stopwatch::restore(&mut target, &without_deadline),
        Err(RestoreError::ArmedWithoutDeadline)
    );
    assert_eq!((target.irq, target.timer), (false, None));
}

#[test]
fn system_reset_ends_it() {
    let (mut sw, mut env) = powered_on(true);
    periodic(&mut sw, &mut env, PERIOD);
    env.advance(&mut sw, PERIOD);
    sw.power_on_reset(&mut env, true);
    assert_eq!(
        (sw.timeout(), env.timer, env.irq),
        (Timeout::Idle, None, false)
    );
    assert_eq!(published(&env), (0, 0));
    assert_eq!(sw.status(), Status::Running);
}
