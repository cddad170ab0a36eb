// SPDX-License-Identifier: GPL-2.0-or-later

//! LAP: laps recorded in order and published after the time page, the
//! ninth refused, cleared by RESET and by a system reset, carried by
//! migration (and absent from an older device's stream).

use stopwatch_abi::{shared, time_page, Command, Status};

use super::{fake_env, powered_on, run, FakeEnv, Inspect, SECOND};
use crate::{GuestError, RestoreError, SavedState, SharedMemory, Stopwatch};

/// The laps as the guest reads them from the shared page.
fn published_laps(env: &FakeEnv) -> Vec<u64> {
    let count = env.memory.read_u64(shared::LAP_COUNT);
    assert!(count <= shared::LAP_SLOTS as u64, "lap count {count}");
    (0..shared::LAP_SLOTS as u64)
        .map(|slot| env.memory.read_u64(shared::LAPS + 8 * slot))
        .enumerate()
        .map(|(slot, lap)| {
            if slot as u64 >= count {
                assert_eq!(lap, 0, "slot {slot} after the count is not 0");
            }
            lap
        })
        .take(count as usize)
        .collect()
}

// tutorial:lap-model-test begin
#[test]
fn laps_are_recorded_in_order_and_published() {
    let (mut sw, mut env) = powered_on(false);
    run(&mut sw, &mut env, Command::Lap);
    run(&mut sw, &mut env, Command::Start);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    env.advance(&mut sw, 250_000_000);
    run(&mut sw, &mut env, Command::Lap);
    run(&mut sw, &mut env, Command::Pause);
    env.advance(&mut sw, SECOND);
    // Paused: the lap is the paused time.
    run(&mut sw, &mut env, Command::Lap);

    let expected = [0, SECOND, 1_250_000_000, 1_250_000_000];
    assert!(env.no_errors());
    assert_eq!(sw.laps(), expected);
    assert_eq!(published_laps(&env), expected);
    assert_eq!(sw.status(), Status::Paused, "LAP changes no status");
}
// tutorial:lap-model-test end

#[test]
fn lap_is_published_under_the_sequence_counter() {
    let (mut sw, mut env) = powered_on(true);
    let writes = env.memory.sequence_writes.len();
    let barriers = env.memory.barriers;
    env.advance(&mut sw, 7);
    run(&mut sw, &mut env, Command::Lap);
    // One rewrite of the page: odd, barrier, fields and laps, barrier, even.
    assert_eq!(env.memory.sequence_writes.len(), writes + 2);
    assert_eq!(env.memory.barriers, barriers + 2);
    assert_eq!(env.page_u32(time_page::SEQUENCE) % 2, 0);
    assert_eq!(published_laps(&env), [7]);
}

// tutorial:lap-model-full begin
#[test]
fn ninth_lap_is_refused_and_changes_nothing() {
    let (mut sw, mut env) = powered_on(true);
    for _ in 0..shared::LAP_SLOTS {
        env.advance(&mut sw, SECOND);
        run(&mut sw, &mut env, Command::Lap);
    }
    let before = sw.clone();
    let memory_before = env.memory.bytes.clone();
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    assert!(env.errors_were(1, GuestError::LapsFull { slots: 8 }));
    assert_eq!(sw, before, "the refused LAP changed the state");
    assert_eq!(env.memory.bytes, memory_before, "and the shared page");
    assert_eq!(sw.laps(), (1..=8).map(|n| n * SECOND).collect::<Vec<_>>());
}
// tutorial:lap-model-full end

// tutorial:lap-model-reset-test begin
#[test]
fn reset_clears_the_laps() {
    let (mut sw, mut env) = powered_on(true);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    run(&mut sw, &mut env, Command::Lap);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(sw.laps(), [] as [u64; 0]);
    assert_eq!(published_laps(&env), [] as [u64; 0]);
    // The slots are free again: eight more fit.
    for _ in 0..shared::LAP_SLOTS {
        run(&mut sw, &mut env, Command::Lap);
    }
    assert!(env.no_errors());
}
// tutorial:lap-model-reset-test end

#[test]
fn system_reset_clears_the_laps() {
    let (mut sw, mut env) = powered_on(true);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    sw.power_on_reset(&mut env, true);
    assert!(sw.laps().is_empty());
    assert!(published_laps(&env).is_empty());
}

#[test]
fn migration_carries_the_laps() {
    let (mut sw, mut env) = powered_on(true);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Lap);
    let saved = sw.save();
    assert_eq!(saved.lap_count, 2);

    let mut target = fake_env();
    target.now_ns = env.now_ns;
    let restored = Stopwatch::restore(&mut target, &saved).unwrap();
    assert_eq!(restored.laps(), [SECOND, 2 * SECOND]);
    // Restore rewrites the page, laps included, from the device's state.
    assert_eq!(published_laps(&target), [SECOND, 2 * SECOND]);
}

/// What a device without laps saved: the lap fields stay at their
/// default, and the restored stopwatch has no laps (whatever the shared
/// page held: the device's state wins).
#[test]
fn a_state_without_laps_restores_with_none() {
    let (mut sw, mut env) = powered_on(true);
    env.advance(&mut sw, SECOND);
    let old = SavedState {
        lap_count: 0,
        laps: [0; shared::LAP_SLOTS],
        ..sw.save()
    };
    let mut target = fake_env();
    target.memory.write_u64(shared::LAP_COUNT, 3);
    let restored = Stopwatch::restore(&mut target, &old).unwrap();
    assert!(restored.laps().is_empty());
    assert!(published_laps(&target).is_empty());
}

#[test]
fn restore_rejects_impossible_laps() {
    let good = Stopwatch::new().save();
    let mut env = fake_env();
    let too_many = SavedState {
        lap_count: 9,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &too_many),
        Err(RestoreError::TooManyLaps(9))
    );
    let mut laps = [0; shared::LAP_SLOTS];
    laps[2] = 5;
    let stray = SavedState {
        lap_count: 2,
        laps,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &stray),
        Err(RestoreError::LapAfterCount(2))
    );
}
