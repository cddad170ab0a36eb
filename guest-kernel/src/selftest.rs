// SPDX-License-Identifier: GPL-2.0-or-later
//! In-guest tests, chosen by the boot arguments: `test` runs them all,
//! `test=NAME` those whose name contains NAME. Most need the stopwatch;
//! on a machine without one they are skipped and the others still run.
//! The run ends with `N passed, M failed`, followed on a machine without
//! the device by ` (K skipped: no stopwatch device)`, and QEMU exits with
//! 0 (all that ran passed) or 1 (a failure, or no test ran), through
//! semihosting.
//!
//! The boot argument `fault` runs [`provoke_data_abort`] instead, to test
//! the fatal exception report.
//!
//! Timing checks bracket each device command between two counter reads,
//! so they hold however slowly QEMU runs (the guest counter and the device
//! both count QEMU's virtual clock).

use core::arch::asm;
use core::cell::Cell;
use core::fmt;
use core::sync::atomic::Ordering;

use stopwatch_abi::{Command, Status, TimeSnapshot, NANOS_PER_SEC};

use crate::arch::{exceptions, timer};
use crate::drivers::stopwatch::{device_time_ns, Stopwatch, TimePageError, ZeroExitReading};
use crate::interrupts::{self, Source};
use crate::power::exit_status;
use crate::sync::IrqsMasked;
use crate::{power, println};
use stopwatch_shell::protocol::TestSummary;

/// Tolerance between the time page and UPDATE's `%.2f` text: the text's
/// 0.01 s resolution (its rounding) plus one counter tick, added at use.
const TEXT_RESOLUTION_NS: u64 = NANOS_PER_SEC / 100;

/// Why the device tests are skipped, as the summary line says it.
const SKIP_REASON: &str = "no stopwatch device";

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
    ("stopwatch_discovery", Test::Any(stopwatch_discovery)),
    ("shell_answers", Test::Any(shell_answers)),
    (
        "fp_simd_registers_survive_interrupts",
        Test::Any(fp_simd_survive_interrupts),
    ),
    (
        "virtual_timer_interrupt_entry_is_stamped",
        Test::Any(virtual_timer_entry_stamped),
    ),
    ("time_page_present", Test::Device(time_page_present)),
    ("status_transitions", Test::Device(status_transitions)),
    (
        "guest_mistakes_leave_state_unchanged",
        Test::Device(guest_mistakes),
    ),
    ("bad_timeouts_are_refused", Test::Device(bad_timeouts)),
    (
        "second_timeout_while_pending_is_ignored",
        Test::Device(second_timeout),
    ),
    ("reset_cancels_timeout", Test::Device(reset_cancels_timeout)),
    ("timeout_ns_interrupt", Test::Device(timeout_ns_interrupt)),
    (
        "zero_exit_read_matches_update_text",
        Test::Device(zero_exit_matches_text),
    ),
    (
        "zero_exit_read_is_monotonic",
        Test::Device(zero_exit_monotonic),
    ),
    (
        "zero_exit_read_uses_the_counter_only_while_running",
        Test::Device(zero_exit_counter_only_while_running),
    ),
    ("original_demo", Test::Device(original_demo)),
    (
        "laps_recorded_and_cleared",
        Test::Device(laps_recorded_and_cleared),
    ),
];

/// Runs the selected tests; returns the exit status (0: all that ran
/// passed, and at least one ran).
pub fn run(filter: Option<&str>) -> i32 {
    let stopwatch = crate::stopwatch();
    let selected = || {
        TESTS
            .iter()
            .filter(move |(name, _)| filter.is_none_or(|f| contains(name, f)))
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

/// Whether `text` contains `part`. (`str::contains` would bring in the
/// two-way string search, kilobytes of code for these short texts.)
fn contains(text: &str, part: &str) -> bool {
    part.is_empty()
        || text
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
    if let Some(reading) = page_reading(t, stopwatch) {
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

/// A zero-exit reading if the device has a time page; a page that cannot
/// be read fails the test.
fn page_reading(t: &Checker, stopwatch: &Stopwatch) -> Option<ZeroExitReading> {
    match stopwatch.read_zero_exit() {
        Ok(reading) => Some(reading),
        Err(TimePageError::Absent) => None,
        Err(error) => {
            t.check(false, format_args!("{error}"));
            None
        }
    }
}

/// A zero-exit reading (all zero, and a failure, without a time page or
/// if it cannot be read).
fn reading(t: &Checker, stopwatch: &Stopwatch) -> ZeroExitReading {
    let reading = stopwatch.read_zero_exit();
    if let Err(error) = reading {
        t.check(false, format_args!("{error}"));
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

/// The stopwatch found in the device tree, its driver and its interrupt
/// route agree; without a device, none of them exists.
fn stopwatch_discovery(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let board = crate::board();
    let route = interrupts::route_of(Source::Stopwatch(0)).map(|route| route.intid);
    match stopwatch {
        Some(stopwatch) => {
            let intid = stopwatch.interrupt().intid;
            t.check(
                board
                    .first_stopwatch()
                    .map(|node| node.timeout_interrupt.intid)
                    == Some(intid),
                format_args!("the driver's INTID {intid} is not the first node's"),
            );
            t.check(
                route == Some(intid),
                format_args!("timeout interrupt INTID {intid} not routed"),
            );
        }
        None => {
            t.check(
                board.stopwatches.is_empty(),
                format_args!("a usable stopwatch node, but no driver"),
            );
            t.check(
                route.is_none(),
                format_args!("a stopwatch interrupt is routed without a device"),
            );
            t.check(
                interrupts::count(Source::Stopwatch(0)) == 0,
                format_args!("stopwatch interrupts counted without a device"),
            );
        }
    }
}

/// A shell command's answer, kept for checking (cut off if longer).
struct Answer {
    bytes: [u8; 1024],
    len: usize,
}

impl fmt::Write for Answer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let count = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + count].copy_from_slice(&text.as_bytes()[..count]);
        self.len += count;
        Ok(())
    }
}

/// Commands whose answer must contain a text, on any machine.
const SHELL_ANSWERS_ALWAYS: &[(&str, &str)] = &[
    ("help", "commands:"),
    ("frobnicate", "error: unknown command 'frobnicate'"),
    ("timeout 11", "error: timeout: 11 is out of range"),
];

/// ... without a stopwatch: every stopwatch command says so.
const SHELL_ANSWERS_WITHOUT_DEVICE: &[(&str, &str)] = &[
    ("start", "error: no stopwatch device"),
    ("pause", "error: no stopwatch device"),
    ("reset", "error: no stopwatch device"),
    ("status", "error: no stopwatch device"),
    ("read", "error: no stopwatch device"),
    ("read trap", "error: no stopwatch device"),
    ("timeout 1", "error: no stopwatch device"),
    ("timeout", "error: no stopwatch device"),
    ("lap", "error: no stopwatch device"),
    ("laps", "error: no stopwatch device"),
    ("bench", "error: no stopwatch device"),
    ("list", "error: no stopwatch device"),
    ("use 0", "error: no stopwatch device"),
    ("watch", "error: no stopwatch device"),
    ("info", "stopwatch:     none in the device tree"),
    ("irqs", "uart input: 0 receive errors"),
];

/// ... with a (reset) stopwatch, in this order.
const SHELL_ANSWERS_WITH_DEVICE: &[(&str, &str)] = &[
    ("status", "status: RESET"),
    ("read", "0.000000000 seconds (RESET, time page)"),
    ("read trap", "0.00 seconds"),
    ("start", "status: RUNNING"),
    ("start", "already running (START not sent)"),
    ("pause", "status: PAUSED"),
    ("reset", "status: RESET"),
    ("pause", "not running (PAUSE not sent)"),
    ("timeout 1", "timeout armed"),
    ("timeout 1", "already pending (TIMEOUT not sent)"),
    ("reset", "status: RESET"),
    (
        "timeout 0.5",
        "timeout armed: interrupt in 0.500000000 s (TIMEOUT_NS)",
    ),
    ("timeout 250ms", "already pending (TIMEOUT not sent)"),
    ("reset", "status: RESET"),
    ("laps", "no laps ('lap' records one)"),
    ("lap", "lap 1: 0.000000000 s"),
    ("lap", "lap 2: 0.000000000 s"),
    ("laps", "lap 1: 0.000000000 s\nlap 2: 0.000000000 s"),
    ("reset", "status: RESET"),
    ("laps", "no laps"),
    ("list", "* stopwatch[0]  RESET    0.000000000 s"),
    // Past the 64 a machine can hold, whatever the number of devices.
    ("use 64", "error: use: there is no stopwatch[64]: give 0.."),
    ("use 0", "using stopwatch[0]"),
    ("irqs", "stopwatch[0]"),
    ("info", "time page:     present"),
];

/// The shell's answers (through the same `execute` the console uses), on
/// a machine with or without the stopwatch.
fn shell_answers(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let device_answers = if stopwatch.is_some() {
        SHELL_ANSWERS_WITH_DEVICE
    } else {
        SHELL_ANSWERS_WITHOUT_DEVICE
    };
    for &(line, expected) in SHELL_ANSWERS_ALWAYS.iter().chain(device_answers) {
        let mut answer = Answer {
            bytes: [0; 1024],
            len: 0,
        };
        crate::shell::execute(line, &mut answer);
        let text = core::str::from_utf8(&answer.bytes[..answer.len]).unwrap_or("");
        t.check(
            contains(text, expected),
            format_args!("'{line}' answered '{text}', which lacks '{expected}'"),
        );
    }
}

/// The vector registers [`fp_simd_survive_interrupts`] fills: some of each
/// AAPCS64 group, the caller-saved v0-v7 and v16-v31 and the callee-saved
/// (low half only) v8-v15.
const FP_SIMD_TESTED: [u8; 8] = [0, 1, 7, 8, 15, 16, 24, 31];
/// The values the test puts in those registers: the bytes within each
/// differ, and each byte differs from the same byte of every other, so a
/// value restored from the wrong slot, or with its halves swapped, shows.
const FP_SIMD_PATTERN: [u128; 8] = {
    let mut pattern = [0; 8];
    let mut index = 0;
    while index < pattern.len() {
        pattern[index] = u128::from_le_bytes(*b"0123456789abcdef")
            ^ (u128::from_le_bytes([0x10; 16]) * index as u128);
        index += 1;
    }
    pattern
};
/// FPCR for the test: AHP, DN and FZ, none of which integer code notices.
const FPCR_PATTERN: u64 = 0x0700_0000;
/// FPSR for the test: the QC, IXC and IOC flags.
const FPSR_PATTERN: u64 = 0x0800_0011;
/// How long the test waits for its interrupts at most.
const FP_SIMD_WAIT_NS: u64 = NANOS_PER_SEC;

/// FP/SIMD registers, FPCR and FPSR keep their values across interrupts
/// whose handling overwrites them all (see
/// [`exceptions::set_clobber_fp_simd_after_irq`]): a virtual timer
/// interrupt and, if there is a stopwatch, a TIMEOUT_NS interrupt, taken
/// while an assembly loop keeps the values in the registers.
fn fp_simd_survive_interrupts(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let mut kept = [0u128; 8];
    let mut kept_fpcr_fpsr = [0u64; 2];

    let timer_route =
        interrupts::route_of(Source::VirtualTimer).filter(|_| timer::interrupt_routed());
    let Some(timer_route) = timer_route else {
        t.check(
            false,
            format_args!("the virtual timer interrupt is not routed"),
        );
        return;
    };
    let stopwatch_route = interrupts::route_of(Source::Stopwatch(crate::selected_stopwatch()));
    // The interrupts are set up with IRQs masked, so they are taken only
    // inside the loop, with the registers filled. The first source is the
    // stopwatch if there is one; without it, both are the timer.
    let masked = IrqsMasked::new();
    let (second, second_before) = (
        &timer_route.count,
        timer_route.count.load(Ordering::Relaxed),
    );
    timer::arm_interrupt(timer::counter() + timer::clock().ns_to_ticks(1_000_000));
    let (first, first_before) = match (stopwatch, stopwatch_route) {
        (Some(stopwatch), Some(route)) => {
            let before = route.count.load(Ordering::Relaxed);
            stopwatch.timeout_ns(2_000_000);
            (&route.count, before)
        }
        _ => (second, second_before),
    };
    let deadline = timer::counter() + timer::clock().ns_to_ticks(FP_SIMD_WAIT_NS);
    exceptions::set_clobber_fp_simd_after_irq(true);
    // SAFETY: The loop only reads the two counters (atomics, read with
    // plain loads) and the counter register; it writes only `kept` and
    // `kept_fpcr_fpsr`, and the registers it declares. FPCR and FPSR are
    // restored before the end; PSTATE.I is masked again, as it was.
    unsafe {
        asm!(
            "ldp q0, q1, [{pattern}]",
            "ldp q7, q8, [{pattern}, #32]",
            "ldp q15, q16, [{pattern}, #64]",
            "ldp q24, q31, [{pattern}, #96]",
            "mrs {saved_fpcr}, fpcr",
            "mrs {saved_fpsr}, fpsr",
            "msr fpcr, {fpcr}",
            "msr fpsr, {fpsr}",
            // Let the interrupts in and spin until both counts have moved
            // or the deadline has passed.
            "msr daifclr, #2",
            "1:",
            "ldr {a}, [{first}]",
            "ldr {b}, [{second}]",
            "cmp {a}, {first_before}",
            "ccmp {b}, {second_before}, #4, ne",
            "b.ne 2f",
            "isb",
            "mrs {a}, cntvct_el0",
            "cmp {a}, {deadline}",
            "b.lo 1b",
            "2:",
            "msr daifset, #2",
            "stp q0, q1, [{kept}]",
            "stp q7, q8, [{kept}, #32]",
            "stp q15, q16, [{kept}, #64]",
            "stp q24, q31, [{kept}, #96]",
            "mrs {a}, fpcr",
            "mrs {b}, fpsr",
            "stp {a}, {b}, [{kept_fpcr_fpsr}]",
            "msr fpcr, {saved_fpcr}",
            "msr fpsr, {saved_fpsr}",
            pattern = in(reg) FP_SIMD_PATTERN.as_ptr(),
            kept = in(reg) kept.as_mut_ptr(),
            kept_fpcr_fpsr = in(reg) kept_fpcr_fpsr.as_mut_ptr(),
            first = in(reg) first.as_ptr(),
            first_before = in(reg) first_before,
            second = in(reg) second.as_ptr(),
            second_before = in(reg) second_before,
            deadline = in(reg) deadline,
            fpcr = in(reg) FPCR_PATTERN,
            fpsr = in(reg) FPSR_PATTERN,
            saved_fpcr = out(reg) _,
            saved_fpsr = out(reg) _,
            a = out(reg) _,
            b = out(reg) _,
            out("v0") _, out("v1") _, out("v7") _, out("v8") _,
            out("v15") _, out("v16") _, out("v24") _, out("v31") _,
            options(nostack),
        );
    }
    exceptions::set_clobber_fp_simd_after_irq(false);
    drop(masked);

    for (count, before) in [(first, first_before), (second, second_before)] {
        t.check(
            count.load(Ordering::Relaxed) != before,
            format_args!("an interrupt did not arrive within 1 s"),
        );
    }
    for ((register, expected), found) in FP_SIMD_TESTED.iter().zip(FP_SIMD_PATTERN).zip(kept) {
        t.check(
            found == expected,
            format_args!("q{register} is {found:#034x}, was {expected:#034x}"),
        );
    }
    let [fpcr, fpsr] = kept_fpcr_fpsr;
    t.check(
        fpcr & FPCR_PATTERN == FPCR_PATTERN && fpsr & FPSR_PATTERN == FPSR_PATTERN,
        format_args!(
            "FPCR {fpcr:#x} and FPSR {fpsr:#x}, were {FPCR_PATTERN:#x} and {FPSR_PATTERN:#x}"
        ),
    );
}

/// An address no page table maps: inside the 39-bit address space, above
/// the most RAM `virt` places below its high MMIO (256 GiB).
const UNMAPPED_ADDRESS: u64 = 0x7f_dead_0000;

/// Boot mode `fault`: a load from an unmapped address, to test the fatal
/// exception report (ESR, FAR, ELR), which ends the run with
/// [`power::exit_status::FATAL`]. Exits with 1 if the load does not fault.
pub fn provoke_data_abort() -> ! {
    println!("fault: loading from unmapped address {UNMAPPED_ADDRESS:#x}");
    // SAFETY: A load from an address that no page table entry maps: it can
    // only fault, and the exception ends the run. Should the address be
    // mapped after all, it is RAM or a device that reads without effect,
    // and the value is dropped.
    unsafe {
        asm!(
            "ldr {value}, [{address}]",
            address = in(reg) UNMAPPED_ADDRESS,
            value = out(reg) _,
            options(nostack, readonly, preserves_flags),
        );
    }
    println!("fault: no exception: {UNMAPPED_ADDRESS:#x} is mapped");
    power::exit(1)
}

/// How long boot mode `hold-timeout` keeps IRQs masked.
const HOLD_NS: u64 = 3 * NANOS_PER_SEC;

/// Boot mode `hold-timeout`, for the snapshot of a machine whose device
/// interrupt is raised and not yet acknowledged: arms a 100 ms timeout on
/// the stopwatch, then keeps IRQs masked for 3 s of guest time (the line
/// stays high, pending at the GIC) while the host takes its snapshot; then
/// lets the interrupt in. Exits with 0 if exactly one timeout interrupt
/// arrived, else 1.
pub fn hold_timeout() -> ! {
    let Some(stopwatch) = crate::stopwatch() else {
        println!("hold-timeout: no stopwatch device");
        power::exit(1)
    };
    stopwatch.reset();
    let before = stopwatch.timeouts();
    {
        let _masked = IrqsMasked::new();
        stopwatch.timeout_ns(100_000_000);
        println!("hold-timeout: timeout armed, IRQs masked for 3 s");
        let deadline = timer::counter() + timer::clock().ns_to_ticks(HOLD_NS);
        while timer::counter() < deadline {
            core::hint::spin_loop();
        }
    }
    // Unmasked: the pending interrupt is taken at once; give it time.
    timer::wait_ns(100_000_000);
    let arrived = stopwatch.timeouts() - before;
    println!("hold-timeout: {arrived} timeout interrupt(s) after unmasking");
    power::exit(if arrived == 1 { 0 } else { 1 })
}

/// Boot mode `overflow`: recursion without end, to test that a kernel stack
/// overflow faults in the guard page below the stack and is reported as
/// such (with [`power::exit_status::FATAL`]) instead of silently overwriting what
/// lies below. Exits with 1 if it ever returns.
pub fn overflow_the_stack() -> ! {
    println!("overflow: recursing until the stack runs out");
    let depth = recurse(0);
    println!("overflow: no fault after {depth} frames");
    power::exit(1)
}

/// One 512-byte frame more per call; `black_box` keeps the frame and the
/// addition after the call keeps it from being a tail call.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

fn time_page_present(t: &Checker, stopwatch: &Stopwatch) {
    t.check(
        stopwatch.has_time_page(),
        format_args!("time page magic/version missing"),
    );
    let Some(reading) = page_reading(t, stopwatch) else {
        return;
    };
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
    for code in [Command::TimeoutAck.code(), 8, 0x100, u64::MAX] {
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
    // The shell's parser refuses these (see `shell_answers`); sent to the
    // device anyway, it must refuse them too.
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
    stopwatch.timeout_secs(1);
    let first = snapshot(t, stopwatch).timeout_deadline_ns;
    timer::wait_ns(200_000_000);
    stopwatch.timeout_secs(1);
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
    stopwatch.timeout_secs(1);
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
    stopwatch.timeout_ns(TIMEOUT_NS);
    let page = snapshot(t, stopwatch);
    let deadline_ns = page.timeout_deadline_ns;
    let armed_ns = device_time_ns(&page, armed_at);
    t.check(
        deadline_ns >= armed_ns + TIMEOUT_NS && deadline_ns < armed_ns + 2 * TIMEOUT_NS,
        format_args!("deadline {deadline_ns} ns for a timeout armed at {armed_ns} ns"),
    );
    let limit = timer::counter() + timer::clock().ns_to_ticks(NANOS_PER_SEC);
    let arrived = timer::wait_until_or(limit, || stopwatch.timeouts() > before);
    t.check(arrived, format_args!("no interrupt within 1 s"));
    let entry_ns = device_time_ns(&page, stopwatch.last_interrupt_counter());
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

/// A stopwatch that is not running has its exact time on the page: the
/// zero-exit read must not read the counter then (a PAUSED read costs the
/// page alone), and must read it, inside the call, while running.
fn zero_exit_counter_only_while_running(t: &Checker, stopwatch: &Stopwatch) {
    stopwatch.reset();
    let reset = reading(t, stopwatch);
    t.check(
        reset.counter.is_none() && reset.elapsed_ns == 0,
        format_args!("RESET: {reset:?}"),
    );
    stopwatch.start();
    timer::wait_ns(5_000_000);
    let before = timer::counter();
    let running = reading(t, stopwatch);
    let after = timer::counter();
    t.check(
        running
            .counter
            .is_some_and(|counter| (before..=after).contains(&counter)),
        format_args!(
            "RUNNING: counter {:?}, expected {before}..={after}",
            running.counter
        ),
    );
    stopwatch.pause();
    let paused = reading(t, stopwatch);
    timer::wait_ns(2_000_000);
    let later = reading(t, stopwatch);
    t.check(
        paused.counter.is_none()
            && paused.elapsed_ns == paused.snapshot.accumulated_ns
            && later.elapsed_ns == paused.elapsed_ns
            && paused.elapsed_ns >= 5_000_000,
        format_args!("PAUSED: {paused:?}, then {later:?}"),
    );
    stopwatch.reset();
}

/// The bench's interrupt latency floor: a virtual timer interrupt is
/// counted once and its IRQ entry stamped at or after its deadline, within
/// a bound (the floor must measure the interrupt, not something else).
fn virtual_timer_entry_stamped(t: &Checker, _: Option<&Stopwatch>) {
    if !timer::interrupt_routed() {
        t.check(
            false,
            format_args!("the virtual timer interrupt is not routed"),
        );
        return;
    }
    let before = timer::interrupts();
    let deadline = timer::counter() + timer::clock().ns_to_ticks(500_000);
    timer::arm_interrupt(deadline);
    let limit = deadline + timer::clock().ns_to_ticks(NANOS_PER_SEC);
    while timer::interrupts() == before && timer::counter() < limit {
        core::hint::spin_loop();
    }
    let taken = timer::interrupts() - before;
    let entry = timer::last_interrupt_counter();
    t.check(
        taken == 1 && entry >= deadline && entry < limit,
        format_args!("{taken} interrupts, entry at {entry}, deadline {deadline} (ticks)"),
    );
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
    stopwatch.timeout_secs(1);
    timer::wait_ns(2 * NANOS_PER_SEC);
    t.check(
        stopwatch.timeouts() == interrupts_before + 1,
        format_args!(
            "first timeout: {} interrupts",
            stopwatch.timeouts() - interrupts_before
        ),
    );
    stopwatch.timeout_secs(1);
    timer::wait_ns(2 * NANOS_PER_SEC);
    if let Some(reading) = page_reading(t, stopwatch) {
        // Running: the reading used the counter.
        let counter = reading.counter.unwrap_or(0);
        t.check(
            reading.counter.is_some(),
            format_args!("a running stopwatch read without the counter"),
        );
        let shortest = first_run + ticks_to_ns(counter.saturating_sub(start_after));
        let longest = first_run + ticks_to_ns(counter.saturating_sub(start_before));
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

// tutorial:lap-selftest begin
/// LAP in the guest: each lap lies between the elapsed times read just
/// before and after it (from the time page); the ninth is refused; RESET clears them all.
fn laps_recorded_and_cleared(t: &Checker, stopwatch: &Stopwatch) {
    let laps = || stopwatch.laps().map(|laps| (laps.as_slice().len(), laps));
    t.check(
        matches!(laps(), Ok((0, _))),
        format_args!("laps after RESET"),
    );
    stopwatch.start();
    for slot in 0..stopwatch_abi::shared::LAP_SLOTS {
        timer::wait_ns(1_000_000);
        let before = elapsed(t, stopwatch);
        stopwatch.lap();
        // Plus a counter tick: the guest's reading rounds down to one.
        let after = elapsed(t, stopwatch) + timer::clock().tick_ns();
        let lap = laps()
            .ok()
            .and_then(|(_, laps)| laps.as_slice().get(slot).copied());
        t.check(
            lap.is_some_and(|lap| (before..=after).contains(&lap)),
            format_args!("lap {slot}: {lap:?} ns, not within {before}..={after} ns"),
        );
    }
    let full = laps();
    t.check(
        full.is_ok_and(|(count, laps)| count == 8 && laps.is_full()),
        format_args!("eight laps do not fill the slots"),
    );
    // The ninth: refused by the device (it logs a guest error).
    stopwatch.lap();
    let after_ninth = laps();
    t.check(
        after_ninth.ok().map(|(_, l)| l.as_slice()[7]) == full.ok().map(|(_, l)| l.as_slice()[7])
            && after_ninth.is_ok_and(|(count, _)| count == 8),
        format_args!("the ninth LAP changed the laps"),
    );
    stopwatch.reset();
    t.check(
        matches!(laps(), Ok((0, _))),
        format_args!("RESET left laps"),
    );
}
// tutorial:lap-selftest end
