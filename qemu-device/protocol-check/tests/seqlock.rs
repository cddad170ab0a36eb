// SPDX-License-Identifier: GPL-2.0-or-later
//! The time page's seqlock under loom: the shipped writer and reader keep
//! the promise; each planted barrier bug breaks it, and loom finds it.

use stopwatch_abi::Command;
use stopwatch_protocol_check::{Reader, ReaderPlant, Scenario, Step, WriterPlant};

/// Before the threads: started at 100, a timeout armed at 150 (deadline
/// 1150), paused at 400 (300 ns accumulated); the page holds PAUSED.
fn paused_with_timeout() -> Vec<Step> {
    vec![
        Step::new(100, Command::Start),
        Step::timeout_ns(150, 1_000),
        Step::new(400, Command::Pause),
    ]
}

/// One publication: START at 1000, which changes the status and the run's
/// start (the counter check needs a RUNNING state the writer publishes).
fn start() -> Vec<Step> {
    vec![Step::new(1_000, Command::Start)]
}

/// Two publications: RESET at 1000 (every field changes: status, time,
/// run start, deadline), then START at 2000.
fn reset_then_start() -> Vec<Step> {
    vec![Step::new(1_000, Command::Reset), Step::new(2_000, Command::Start)]
}

const COUNTING: Reader = Reader {
    with_counter: true,
    attempts: 1,
};

fn scenario(writes: Vec<Step>, readers: Vec<Reader>, bound: Option<usize>) -> Scenario {
    Scenario {
        setup: paused_with_timeout(),
        writes,
        readers,
        writer_plant: WriterPlant::None,
        reader_plant: ReaderPlant::None,
        preemption_bound: bound,
    }
}

/// The shipped protocol, checked, and the exploration shown not to be
/// vacuous: readers both retried and accepted the old and the new state.
fn holds(scenario: Scenario, published: &[u32]) {
    let exploration = scenario.check();
    eprintln!("{exploration:?}");
    assert!(exploration.retries > 0, "no attempt ever retried: {exploration:?}");
    for &sequence in published {
        assert!(
            exploration.accepted_under(sequence) > 0,
            "no attempt accepted the state of sequence {sequence}: {exploration:?}"
        );
    }
}

// The page's sequence before the threads: 2 (power-on) + 2 per setup
// command = 8; each write adds 2.

#[test]
fn one_writer_one_reader_every_interleaving() {
    holds(scenario(start(), vec![COUNTING], None), &[8, 10]);
}

#[test]
fn one_writer_two_publications_one_reader() {
    let reader = Reader {
        with_counter: true,
        attempts: 2,
    };
    holds(scenario(reset_then_start(), vec![reader], Some(2)), &[8, 10, 12]);
}

#[test]
fn one_writer_two_readers() {
    let without_counter = Reader {
        with_counter: false,
        attempts: 1,
    };
    holds(
        scenario(start(), vec![COUNTING, without_counter], Some(2)),
        &[8, 10],
    );
}

/// A longer exploration: two publications, two readers of two attempts
/// each, a higher preemption bound (`cargo test -- --ignored`).
#[test]
#[ignore = "minutes: run with --ignored"]
fn two_publications_two_readers_deeper() {
    let reader = |with_counter| Reader {
        with_counter,
        attempts: 2,
    };
    holds(
        scenario(reset_then_start(), vec![reader(true), reader(false)], Some(3)),
        &[8, 10, 12],
    );
}

fn planted(writer_plant: WriterPlant, reader_plant: ReaderPlant) {
    Scenario {
        writer_plant,
        reader_plant,
        ..scenario(start(), vec![COUNTING], Some(2))
    }
    .check();
}

#[test]
#[should_panic(expected = "torn reading")]
fn writer_without_opening_fence_is_caught() {
    planted(WriterPlant::NoOpeningFence, ReaderPlant::None);
}

#[test]
#[should_panic(expected = "torn reading")]
fn writer_without_closing_fence_is_caught() {
    planted(WriterPlant::NoClosingFence, ReaderPlant::None);
}

#[test]
#[should_panic(expected = "torn reading")]
fn reader_without_opening_barrier_is_caught() {
    planted(WriterPlant::None, ReaderPlant::NoOpeningBarrier);
}

#[test]
#[should_panic(expected = "torn reading")]
fn reader_without_closing_barrier_is_caught() {
    planted(WriterPlant::None, ReaderPlant::NoClosingBarrier);
}

#[test]
#[should_panic(expected = "torn reading")]
fn reader_without_recheck_is_caught() {
    planted(WriterPlant::None, ReaderPlant::NoRecheck);
}

#[test]
#[should_panic(expected = "torn reading")]
fn reader_without_odd_check_is_caught() {
    planted(WriterPlant::None, ReaderPlant::NoOddCheck);
}

#[test]
#[should_panic(expected = "counter before the run")]
fn reader_with_counter_outside_the_section_is_caught() {
    planted(WriterPlant::None, ReaderPlant::CounterBeforeSection);
}
