//! In-guest tests against the real device, chosen by the boot arguments:
//! `test` runs them all, `test=NAME` those whose name contains NAME. The
//! run ends with `N passed, M failed` and QEMU exits with 0 (all passed)
//! or 1 (through semihosting).
//!
//! Timing checks bracket each device command between two counter reads,
//! so they hold however slowly QEMU runs (the guest counter and the device
//! both count QEMU's virtual clock).

use core::cell::Cell;
use core::fmt;

use stopwatch_abi::{Command, Status, TimeSnapshot, NANOS_PER_SEC};

use crate::arch::timer;
use crate::drivers::stopwatch::{Stopwatch, ZeroExitReading};
use crate::println;

/// Tolerance between the time page and UPDATE's `%.2f` text: the text's
/// 0.01 s resolution (its rounding) plus one counter tick, added at use.
const TEXT_RESOLUTION_NS: u64 = NANOS_PER_SEC / 100;

/// Records the failed checks of one test.
struct Checker {
    failures: Cell<u32>,
}

impl Checker {
    /// Fails the test, saying why, unless `ok`.
    fn check(&self, ok: bool, what: fmt::Arguments<'_>) {
        if !ok {
            self.failures.set(self.failures.get() + 1);
            println!("    FAIL: {what}");
        }
    }
}

type Test = fn(&Checker, &Stopwatch);

/// Every test, in running order.
const TESTS: &[(&str, Test)] = &[
    ("time_page_present", time_page_present),
    ("status_transitions", status_transitions),
    ("guest_mistakes_leave_state_unchanged", guest_mistakes),
    ("bad_timeouts_are_refused", bad_timeouts),
    ("second_timeout_while_pending_is_ignored", second_timeout),
    ("reset_cancels_timeout", reset_cancels_timeout),
    ("timeout_ns_interrupt", timeout_ns_interrupt),
    ("zero_exit_read_matches_update_text", zero_exit_matches_text),
    ("zero_exit_read_is_monotonic", zero_exit_monotonic),
    ("original_demo", original_demo),
];

/// Runs the selected tests; returns the exit status (0: all passed).
pub fn run(filter: Option<&str>) -> i32 {
    let selected = || {
        TESTS
            .iter()
            .filter(move |(name, _)| filter.is_none_or(|f| contains(name, f)))
    };
    let total = selected().count() as u32;
    println!("running {total} in-guest tests");
    if total == 0 {
        println!("no test name contains '{}'", filter.unwrap_or(""));
        println!("0 passed, 0 failed");
        return 1;
    }
    let Some(stopwatch) = crate::stopwatch() else {
        println!("no stopwatch device: every test fails (start QEMU with -device stopwatch)");
        println!("0 passed, {total} failed");
        return 1;
    };
    let mut passed = 0;
    for (name, test) in selected() {
        // Every test starts from a stopped, cleared stopwatch.
        stopwatch.reset();
        let checker = Checker {
            failures: Cell::new(0),
        };
        test(&checker, stopwatch);
        let verdict = if checker.failures.get() == 0 {
            passed += 1;
            "ok"
        } else {
            "FAILED"
        };
        println!("test {name} ... {verdict}");
    }
    stopwatch.reset();
    let failed = total - passed;
    println!("{passed} passed, {failed} failed");
    i32::from(failed != 0)
}

/// Whether `name` contains `part`. (`str::contains` would bring in the
/// two-way string search, kilobytes of code for these few short names.)
fn contains(name: &str, part: &str) -> bool {
    part.is_empty()
        || name
            .as_bytes()
            .windows(part.len())
            .any(|window| window == part.as_bytes())
}

/// The stopwatch's state seen both ways: STATUS register and time page.
fn expect_status(t: &Checker, stopwatch: &Stopwatch, expected: Status, step: &str) {
    let register = stopwatch.status();
    t.check(
        register == Ok(expected),
        format_args!(
            "{step}: STATUS is {}, expected {}",
            register.map_or("invalid", Status::name),
            expected.name()
        ),
    );
    if let Some(reading) = stopwatch.read_zero_exit() {
        let page = reading.snapshot.status;
        t.check(
            page == expected,
            format_args!(
                "{step}: time page status {}, expected {}",
                page.name(),
                expected.name()
            ),
        );
    }
}

/// A zero-exit reading (all zero, and a failure, without a time page).
fn reading(t: &Checker, stopwatch: &Stopwatch) -> ZeroExitReading {
    let reading = stopwatch.read_zero_exit();
    t.check(reading.is_some(), format_args!("no time page"));
    reading.unwrap_or(ZeroExitReading {
        elapsed_ns: 0,
        snapshot: TimeSnapshot {
            status: Status::Reset,
            accumulated_ns: 0,
            run_start_ns: 0,
            clock_offset_ns: 0,
            timeout_deadline_ns: 0,
        },
        counter: 0,
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

fn ticks_to_ns(ticks: u64) -> u64 {
    timer::clock().ticks_to_ns(ticks)
}

/// Sends `command` between two counter reads: (before, after).
fn bracketed(stopwatch: &Stopwatch, command: Command) -> (u64, u64) {
    let before = timer::counter();
    stopwatch.command(command);
    (before, timer::counter())
}

fn time_page_present(t: &Checker, stopwatch: &Stopwatch) {
    let reading = stopwatch.read_zero_exit();
    t.check(
        reading.is_some(),
        format_args!("time page magic/version missing"),
    );
    let Some(reading) = reading else { return };
    let snapshot = reading.snapshot;
    t.check(
        snapshot.accumulated_ns == 0 && snapshot.timeout_deadline_ns == 0,
        format_args!(
            "after RESET: accumulated {} ns, deadline {} ns",
            snapshot.accumulated_ns, snapshot.timeout_deadline_ns
        ),
    );
    t.check(
        snapshot.clock_offset_ns == 0,
        format_args!(
            "clock offset {:#x} ns on virt (expected 0)",
            snapshot.clock_offset_ns as u64
        ),
    );
}

fn status_transitions(t: &Checker, stopwatch: &Stopwatch) {
    expect_status(t, stopwatch, Status::Reset, "after RESET");
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "RESET + START");
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Paused, "RUNNING + PAUSE");
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "PAUSED + START");
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "RUNNING + RESET");
    stopwatch.start();
    stopwatch.pause();
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "PAUSED + RESET");
    stopwatch.reset();
    expect_status(t, stopwatch, Status::Reset, "RESET + RESET");
    t.check(elapsed(t, stopwatch) == 0, format_args!("RESET left time"));
}

fn guest_mistakes(t: &Checker, stopwatch: &Stopwatch) {
    // PAUSE while RESET: still RESET at zero.
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Reset, "RESET + PAUSE");
    t.check(
        elapsed(t, stopwatch) == 0,
        format_args!("PAUSE while RESET counted time"),
    );

    // START while RUNNING: the run goes on from its original start.
    stopwatch.start();
    let first_start = snapshot(t, stopwatch).run_start_ns;
    timer::wait_ns(5_000_000);
    stopwatch.start();
    expect_status(t, stopwatch, Status::Running, "RUNNING + START");
    let second_start = snapshot(t, stopwatch).run_start_ns;
    t.check(
        first_start == second_start,
        format_args!("START while RUNNING restarted the run: {first_start} -> {second_start} ns"),
    );

    // PAUSE while PAUSED: the time stays.
    stopwatch.pause();
    let paused = elapsed(t, stopwatch);
    stopwatch.pause();
    expect_status(t, stopwatch, Status::Paused, "PAUSED + PAUSE");
    t.check(
        elapsed(t, stopwatch) == paused,
        format_args!("PAUSE while PAUSED changed the time"),
    );

    // TIMEOUT_ACK with nothing pending, and invalid codes: no change.
    let interrupts = stopwatch.timeouts();
    for code in [Command::TimeoutAck.code(), 7, 0x100, u64::MAX] {
        stopwatch.write_command_code(code);
        expect_status(t, stopwatch, Status::Paused, "stray command");
        t.check(
            elapsed(t, stopwatch) == paused,
            format_args!("command code {code:#x} changed the time"),
        );
    }
    timer::wait_ns(20_000_000);
    t.check(
        stopwatch.timeouts() == interrupts,
        format_args!("a stray command raised an interrupt"),
    );
}

fn bad_timeouts(t: &Checker, stopwatch: &Stopwatch) {
    t.check(
        stopwatch.timeout_secs(0).is_err() && stopwatch.timeout_secs(11).is_err(),
        format_args!("the driver accepted 0 s or 11 s"),
    );
    // Past the driver's checks, straight to the device: it must refuse.
    let cases = [
        (Command::Timeout, 0),
        (Command::Timeout, stopwatch_abi::MAX_TIMEOUT_SECS + 1),
        (Command::TimeoutNs, 0),
        (Command::TimeoutNs, stopwatch_abi::MAX_TIMEOUT_NS + 1),
    ];
    for (command, argument) in cases {
        stopwatch.write_data_len(argument);
        stopwatch.command(command);
        let deadline = snapshot(t, stopwatch).timeout_deadline_ns;
        t.check(
            deadline == 0,
            format_args!("{} {argument} armed a timeout", command.name()),
        );
    }
    expect_status(t, stopwatch, Status::Reset, "after bad timeouts");
}

fn second_timeout(t: &Checker, stopwatch: &Stopwatch) {
    let before = stopwatch.timeouts();
    t.check(
        stopwatch.timeout_secs(1).is_ok(),
        format_args!("timeout 1 refused"),
    );
    let first = snapshot(t, stopwatch).timeout_deadline_ns;
    timer::wait_ns(200_000_000);
    t.check(
        stopwatch.timeout_secs(1).is_ok(),
        format_args!("timeout 1 refused"),
    );
    let second = snapshot(t, stopwatch).timeout_deadline_ns;
    t.check(
        first == second && first != 0,
        format_args!("second TIMEOUT moved the deadline: {first} -> {second} ns"),
    );
    timer::wait_ns(1_500_000_000);
    t.check(
        stopwatch.timeouts() == before + 1,
        format_args!("{} interrupts, expected 1", stopwatch.timeouts() - before),
    );
}

fn reset_cancels_timeout(t: &Checker, stopwatch: &Stopwatch) {
    let before = stopwatch.timeouts();
    t.check(
        stopwatch.timeout_secs(1).is_ok(),
        format_args!("timeout 1 refused"),
    );
    stopwatch.reset();
    let deadline = snapshot(t, stopwatch).timeout_deadline_ns;
    t.check(
        deadline == 0,
        format_args!("deadline {deadline} ns after RESET"),
    );
    timer::wait_ns(1_300_000_000);
    t.check(
        stopwatch.timeouts() == before,
        format_args!("the cancelled timeout fired"),
    );
}

fn timeout_ns_interrupt(t: &Checker, stopwatch: &Stopwatch) {
    const TIMEOUT_NS: u64 = 20_000_000;
    let before = stopwatch.timeouts();
    let armed_at = timer::counter();
    t.check(
        stopwatch.timeout_ns(TIMEOUT_NS).is_ok(),
        format_args!("TIMEOUT_NS refused"),
    );
    let deadline_ns = snapshot(t, stopwatch).timeout_deadline_ns;
    let armed_ns = ticks_to_ns(armed_at);
    t.check(
        deadline_ns >= armed_ns + TIMEOUT_NS && deadline_ns < armed_ns + 2 * TIMEOUT_NS,
        format_args!("deadline {deadline_ns} ns for a timeout armed at {armed_ns} ns"),
    );
    let limit = timer::counter() + timer::clock().ns_to_ticks(NANOS_PER_SEC);
    let arrived = timer::wait_until_or(limit, || stopwatch.timeouts() > before);
    t.check(arrived, format_args!("no interrupt within 1 s"));
    let entry_ns = ticks_to_ns(stopwatch.last_interrupt_counter());
    t.check(
        entry_ns >= deadline_ns,
        format_args!("handler entered at {entry_ns} ns, before the deadline {deadline_ns} ns"),
    );
}

/// Checks that UPDATE's text lies between two zero-exit reads taken just
/// before and just after it, within the text's resolution.
fn compare_text(t: &Checker, stopwatch: &Stopwatch, step: &str) {
    let tolerance = TEXT_RESOLUTION_NS + timer::clock().tick_ns();
    let before = elapsed(t, stopwatch);
    let text = stopwatch.update_text();
    let after = elapsed(t, stopwatch);
    match text.to_ns() {
        Some(text_ns) => t.check(
            text_ns + tolerance >= before && text_ns <= after + tolerance,
            format_args!(
                "{step}: text '{}' outside [{before}, {after}] ns +- {tolerance} ns",
                text.as_str()
            ),
        ),
        None => t.check(
            false,
            format_args!("{step}: text '{}' unreadable", text.as_str()),
        ),
    }
}

fn zero_exit_matches_text(t: &Checker, stopwatch: &Stopwatch) {
    compare_text(t, stopwatch, "reset");
    stopwatch.start();
    for _ in 0..20 {
        timer::wait_ns(23_000_000);
        compare_text(t, stopwatch, "running");
    }
    stopwatch.pause();
    for _ in 0..3 {
        compare_text(t, stopwatch, "paused");
        timer::wait_ns(10_000_000);
    }
    stopwatch.start();
    timer::wait_ns(50_000_000);
    compare_text(t, stopwatch, "running again");
    stopwatch.reset();
    compare_text(t, stopwatch, "reset again");
    let text = stopwatch.update_text();
    t.check(
        text.as_str() == "0.00 seconds",
        format_args!("after RESET the text is '{}'", text.as_str()),
    );
}

fn zero_exit_monotonic(t: &Checker, stopwatch: &Stopwatch) {
    stopwatch.start();
    let mut previous = 0;
    for _ in 0..10_000 {
        let now = elapsed(t, stopwatch);
        if now < previous {
            t.check(
                false,
                format_args!("time went back: {previous} -> {now} ns"),
            );
            break;
        }
        previous = now;
    }
    t.check(previous > 0, format_args!("no time passed while running"));
}

/// The original project's demo, now with assertions.
fn original_demo(t: &Checker, stopwatch: &Stopwatch) {
    let tick = timer::clock().tick_ns();
    let interrupts_before = stopwatch.timeouts();

    // reset, start, sleep 1, pause, show: about 1 s.
    stopwatch.reset();
    let (start_before, start_after) = bracketed(stopwatch, Command::Start);
    timer::wait_ns(NANOS_PER_SEC);
    let (pause_before, pause_after) = bracketed(stopwatch, Command::Pause);
    let first_run = elapsed(t, stopwatch);
    let shortest = ticks_to_ns(pause_before - start_after);
    let longest = ticks_to_ns(pause_after - start_before);
    t.check(
        first_run + tick >= shortest && first_run <= longest + tick && first_run >= NANOS_PER_SEC,
        format_args!("first run {first_run} ns, expected {shortest}..{longest} ns"),
    );
    compare_text(t, stopwatch, "after 1 s");

    // start, timeout 1, sleep 2, timeout 1, sleep 2, show: about 5 s.
    let (start_before, start_after) = bracketed(stopwatch, Command::Start);
    t.check(
        stopwatch.timeout_secs(1).is_ok(),
        format_args!("timeout 1 refused"),
    );
    timer::wait_ns(2 * NANOS_PER_SEC);
    t.check(
        stopwatch.timeouts() == interrupts_before + 1,
        format_args!(
            "first timeout: {} interrupts",
            stopwatch.timeouts() - interrupts_before
        ),
    );
    t.check(
        stopwatch.timeout_secs(1).is_ok(),
        format_args!("timeout 1 refused"),
    );
    timer::wait_ns(2 * NANOS_PER_SEC);
    if let Some(reading) = stopwatch.read_zero_exit() {
        let shortest = first_run + ticks_to_ns(reading.counter - start_after);
        let longest = first_run + ticks_to_ns(reading.counter - start_before);
        let total = reading.elapsed_ns;
        t.check(
            total + tick >= shortest && total <= longest + tick && total >= 5 * NANOS_PER_SEC,
            format_args!("after 5 s: {total} ns, expected {shortest}..{longest} ns"),
        );
    }
    compare_text(t, stopwatch, "after 5 s");

    // timeout: exactly 2 interrupts.
    let interrupts = stopwatch.timeouts() - interrupts_before;
    t.check(
        interrupts == 2,
        format_args!("{interrupts} timeout interrupts, expected 2"),
    );

    // reset, show: 0 s.
    stopwatch.reset();
    t.check(
        elapsed(t, stopwatch) == 0,
        format_args!("time left after RESET"),
    );
    let text = stopwatch.update_text();
    t.check(
        text.as_str() == "0.00 seconds",
        format_args!("after RESET the text is '{}'", text.as_str()),
    );
}
