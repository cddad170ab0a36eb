// SPDX-License-Identifier: GPL-2.0-or-later
//! In-guest tests, chosen by the boot arguments: `test` runs them all,
//! `test=NAME` those whose name contains NAME. Most need the stopwatch;
//! on a machine without one they are skipped and the others still run.
//! The run ends with `N passed, M failed`, followed on a machine without
//! the device by ` (K skipped: no stopwatch device)`, and QEMU exits with
//! 0 (all that ran passed) or 1 (a failure, or no test ran), through
//! semihosting.
//!
//! This file is the runner: the [`TESTS`] table, [`run`], the `check!`
//! and `fail!` macros every test states its expectations with, and the
//! readings of the device the tests share. The tests live in a module per
//! topic; [`boot_modes`] holds the other boot modes of the test kernel
//! (`fault`, `overflow`, `hold-timeout`).
//!
//! Timing checks bracket each device command between two counter reads,
//! so they hold however slowly QEMU runs (the guest counter and the device
//! both count QEMU's virtual clock).

use core::cell::Cell;
use core::fmt;

use stopwatch_abi::{Status, TimeSnapshot};

use crate::devices::Machine;
use crate::drivers::stopwatch::zero_exit::ZeroExitReading;
use crate::drivers::stopwatch::{Stopwatch, TimePageError};
use crate::power::exit_status;
use crate::println;
use stopwatch_shell::protocol::TestSummary;

/// Fails the test unless `condition` holds; the failure names the check
/// (file, line and condition) and says what was found:
/// `check!(t, count == 2, else "{count} interrupts, expected 2")`. The
/// message is formatted only on failure.
///
/// (`else` before the message keeps rustfmt from spreading a check over
/// five lines: it leaves alone what it cannot parse as a function call.)
macro_rules! check {
    ($checker:expr, $condition:expr, else $($message:tt)+) => {
        if !$condition {
            $checker.fail(
                file!(),
                line!(),
                Some(stringify!($condition)),
                format_args!($($message)+),
            );
        }
    };
}

/// Fails the test, saying where and why: for a failure found otherwise
/// than by a condition (an error returned, a value that cannot be read).
macro_rules! fail {
    ($checker:expr, $($message:tt)+) => {
        $checker.fail(file!(), line!(), None, format_args!($($message)+))
    };
}

mod boot_modes;
mod commands;
pub mod concurrency;
pub mod concurrent_drivers;
mod cpus;
mod discovery;
mod fp_simd;
mod laps;
mod original_demo;
mod periodic;
pub mod scaling;
mod shell_answers;
mod time_page;
mod timeouts;
mod virtual_timer;

pub use boot_modes::{hold_timeout, overflow_the_stack, provoke_data_abort};

/// Why the device tests are skipped, as the summary line says it.
const SKIP_REASON: &str = "no stopwatch device";

/// A test, by what it needs.
#[derive(Clone, Copy)]
enum Test {
    /// Runs on every machine, with the stopwatch if there is one.
    Any(fn(&Checker, Option<&Stopwatch>)),
    /// Needs the stopwatch: skipped on a machine without one.
    Device(fn(&Checker, &Stopwatch)),
}

/// Every test, in running order.
const TESTS: &[(&str, Test)] = &[
    (
        "stopwatch_discovery",
        Test::Any(discovery::stopwatch_discovery),
    ),
    ("shell_answers", Test::Any(shell_answers::shell_answers)),
    (
        "fp_simd_registers_survive_interrupts",
        Test::Any(fp_simd::fp_simd_survive_interrupts),
    ),
    (
        "virtual_timer_interrupt_entry_is_stamped",
        Test::Any(virtual_timer::entry_stamped),
    ),
    (
        "every_cpu_online_and_working",
        Test::Any(cpus::every_cpu_online),
    ),
    (
        "stopwatch_interrupt_on_every_cpu",
        Test::Device(cpus::stopwatch_interrupt_on_every_cpu),
    ),
    (
        "time_page_patience_outlasts_a_descheduled_reader",
        Test::Any(time_page::patience_outlasts_a_descheduled_reader),
    ),
    (
        "time_page_present",
        Test::Device(time_page::time_page_present),
    ),
    (
        "status_transitions",
        Test::Device(commands::status_transitions),
    ),
    (
        "guest_mistakes_leave_state_unchanged",
        Test::Device(commands::guest_mistakes),
    ),
    (
        "bad_timeouts_are_refused",
        Test::Device(timeouts::bad_timeouts),
    ),
    (
        "second_timeout_while_pending_is_ignored",
        Test::Device(timeouts::second_timeout),
    ),
    (
        "reset_cancels_timeout",
        Test::Device(timeouts::reset_cancels_timeout),
    ),
    (
        "timeout_ns_interrupt",
        Test::Device(timeouts::timeout_ns_interrupt),
    ),
    (
        "zero_exit_read_matches_update_text",
        Test::Device(time_page::zero_exit_matches_text),
    ),
    (
        "zero_exit_read_is_monotonic",
        Test::Device(time_page::zero_exit_monotonic),
    ),
    (
        "zero_exit_read_uses_the_counter_only_while_running",
        Test::Device(time_page::counter_only_while_running),
    ),
    ("original_demo", Test::Device(original_demo::original_demo)),
    (
        "laps_recorded_and_cleared",
        Test::Device(laps::laps_recorded_and_cleared),
    ),
    (
        "periodic_interrupts_every_period",
        Test::Device(periodic::periodic_interrupts),
    ),
];

/// Runs the selected tests on `machine` (the device tests on its first
/// stopwatch); returns the exit status (0: all that ran passed, and at
/// least one ran).
pub fn run(filter: Option<&str>, machine: &'static Machine) -> i32 {
    let stopwatch = machine.stopwatches.first();
    let selected = || {
        TESTS
            .iter()
            .filter(move |(name, _)| filter.is_none_or(|f| name.contains(f)))
    };
    println!("running {} in-guest tests", selected().count());
    if stopwatch.is_none() {
        println!(
            "{SKIP_REASON} (start QEMU with -device stopwatch): the tests that need it are skipped"
        );
    }
    let (mut passed, mut failed, mut skipped) = (0u32, 0u32, 0u32);
    for &(name, test) in selected() {
        // Every test starts from a stopped, cleared stopwatch.
        if let Some(stopwatch) = stopwatch {
            stopwatch.reset();
        }
        let checker = Checker {
            failures: Cell::new(0),
            machine,
        };
        match (test, stopwatch) {
            (Test::Any(test), stopwatch) => test(&checker, stopwatch),
            (Test::Device(test), Some(stopwatch)) => test(&checker, stopwatch),
            (Test::Device(_), None) => {
                skipped += 1;
                println!("test {name} ... skipped ({SKIP_REASON})");
                continue;
            }
        }
        let verdict = if checker.failures.get() == 0 {
            passed += 1;
            "ok"
        } else {
            failed += 1;
            "FAILED"
        };
        println!("test {name} ... {verdict}");
    }
    if let Some(stopwatch) = stopwatch {
        stopwatch.reset();
    }
    if passed + failed == 0 {
        match filter {
            Some(filter) => println!("no test ran: none matches '{filter}' and can run here"),
            None => println!("no test ran"),
        }
    }
    let summary = TestSummary {
        passed,
        failed,
        skipped: (skipped > 0).then_some((skipped, SKIP_REASON)),
    };
    println!("{summary}");
    if failed == 0 && passed > 0 {
        exit_status::TESTS_PASSED
    } else {
        exit_status::TESTS_FAILED
    }
}

/// Records the failed checks of one test.
struct Checker {
    failures: Cell<u32>,
    /// The machine under test, for the tests that look at more than the
    /// stopwatch (the device tree, the shell).
    machine: &'static Machine,
}

impl Checker {
    /// Fails the test: prints where (`file:line`), what was found, and the
    /// condition that did not hold if there is one. Called by `check!`
    /// and `fail!`.
    fn fail(&self, file: &str, line: u32, condition: Option<&str>, message: fmt::Arguments<'_>) {
        self.failures.set(self.failures.get() + 1);
        println!("    FAIL: {file}:{line}: {message}");
        if let Some(condition) = condition {
            println!("          check: {condition}");
        }
    }
}

/// The stopwatch's state seen both ways: STATUS register and time page.
fn expect_status(t: &Checker, stopwatch: &Stopwatch, expected: Status, step: &str) {
    let register = stopwatch.status();
    let (found, expected_name) = (register.map_or("invalid", Status::name), expected.name());
    check!(t, register == Ok(expected), else "{step}: STATUS is {found}, expected {expected_name}");
    if let Some(reading) = page_reading(t, stopwatch) {
        let (page, found) = (reading.snapshot.status, reading.snapshot.status.name());
        check!(t, page == expected, else "{step}: time page {found}, expected {expected_name}");
    }
}

/// A zero-exit reading if the device has a time page; a page that cannot
/// be read fails the test.
fn page_reading(t: &Checker, stopwatch: &Stopwatch) -> Option<ZeroExitReading> {
    match stopwatch.read_zero_exit() {
        Ok(reading) => Some(reading),
        Err(TimePageError::Absent) => None,
        Err(error) => {
            fail!(t, "{error}");
            None
        }
    }
}

/// A zero-exit reading (all zero, and a failure, without a time page or
/// if it cannot be read).
fn reading(t: &Checker, stopwatch: &Stopwatch) -> ZeroExitReading {
    let reading = stopwatch.read_zero_exit();
    if let Err(error) = reading {
        fail!(t, "{error}");
    }
    reading.unwrap_or(ZeroExitReading {
        elapsed_ns: 0,
        snapshot: TimeSnapshot {
            status: Status::Reset,
            accumulated_ns: 0,
            run_start_ns: 0,
            clock_offset_ns: 0,
            timeout_deadline_ns: 0,
        },
        counter: None,
        sequence: 0,
    })
}

/// The zero-exit elapsed time.
fn elapsed(t: &Checker, stopwatch: &Stopwatch) -> u64 {
    reading(t, stopwatch).elapsed_ns
}

/// The time page's fields.
fn snapshot(t: &Checker, stopwatch: &Stopwatch) -> TimeSnapshot {
    reading(t, stopwatch).snapshot
}
