// SPDX-License-Identifier: GPL-2.0-or-later
//! The text protocol between the guest and the host's tools: every line
//! the kernel prints that `cargo xtask` reads, and every exit status it
//! ends a run with. Each line is a type whose `Display` the kernel prints
//! and whose `parse` xtask uses, so the two cannot drift apart (the tests
//! below round-trip each one).

use core::fmt;
use stopwatch_abi::NANOS_PER_SEC;

/// The exit statuses of a run (semihosting `SYS_EXIT_EXTENDED`).
pub mod exit_status {
    /// `-append test`: every test passed.
    pub const TESTS_PASSED: i32 = 0;
    /// `-append test`: some test failed (or none ran).
    pub const TESTS_FAILED: i32 = 1;
    /// An unexpected exception or another fatal error (reported first).
    pub const FATAL: i32 = 3;
    /// Start-up: entered at an exception level the kernel cannot start
    /// from (EL0).
    pub const UNSUPPORTED_ENTRY: i32 = 10;
    /// Start-up: the image is not where it is linked to run.
    pub const WRONG_ADDRESS: i32 = 11;
    /// Start-up: no device tree, neither at x0 nor at the start of RAM.
    pub const NO_DEVICE_TREE: i32 = 12;
    /// Start-up: the device tree is not a valid flattened device tree.
    pub const BAD_DEVICE_TREE: i32 = 13;
    /// Start-up: the device tree has no (enabled) memory node.
    pub const NO_MEMORY: i32 = 14;
    /// Start-up: no usable console UART.
    pub const NO_CONSOLE: i32 = 15;
    /// Start-up: no GICv2 or GICv3 in the device tree.
    pub const NO_GIC: i32 = 16;
    /// `test`, `fault` and the other test modes on the shipped kernel,
    /// which was built without them.
    pub const NO_TESTS: i32 = 17;
    /// A kernel panic.
    pub const PANIC: i32 = 101;
}

/// Nanoseconds shown as seconds: the whole seconds, a point and
/// `decimals` digits (rounded down).
#[derive(Clone, Copy, Debug)]
pub struct Seconds {
    ns: u64,
    decimals: u32,
}

impl Seconds {
    /// To the nanosecond: `1.234567890`.
    pub const fn nanos(ns: u64) -> Self {
        Seconds { ns, decimals: 9 }
    }

    /// To the millisecond: `1.234`.
    pub const fn millis(ns: u64) -> Self {
        Seconds { ns, decimals: 3 }
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(9 - self.decimals);
        let fraction = self.ns % NANOS_PER_SEC / scale;
        let width = self.decimals as usize;
        write!(f, "{}.{fraction:0width$}", self.ns / NANOS_PER_SEC)
    }
}

/// A decimal number of seconds (`12.345`) in nanoseconds, exactly.
fn parse_seconds(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let fraction = match fraction {
        Some(fraction) if digits(fraction) && fraction.len() <= 9 => fraction,
        Some(_) => return None,
        None => "",
    };
    if !digits(whole) {
        return None;
    }
    let mut ns = whole.parse::<u64>().ok()?.checked_mul(NANOS_PER_SEC)?;
    let mut scale = NANOS_PER_SEC;
    for digit in fraction.bytes() {
        scale /= 10;
        ns += u64::from(digit - b'0') * scale;
    }
    Some(ns)
}

/// The words of `line` after `prefix`, if it starts so.
fn after<'a>(line: &'a str, prefix: &str) -> Option<core::str::SplitAsciiWhitespace<'a>> {
    Some(line.trim().strip_prefix(prefix)?.split_ascii_whitespace())
}

/// The last line of the in-guest tests:
/// `12 passed, 0 failed` or `3 passed, 0 failed (10 skipped: REASON)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestSummary<'a> {
    pub passed: u32,
    pub failed: u32,
    /// Tests skipped, and why.
    pub skipped: Option<(u32, &'a str)>,
}

impl fmt::Display for TestSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if let Some((count, reason)) = self.skipped {
            write!(f, " ({count} skipped: {reason})")?;
        }
        Ok(())
    }
}

impl<'a> TestSummary<'a> {
    /// The summary on `line`, if it is one.
    pub fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        let (counts, skipped) = match line.split_once(" (") {
            Some((counts, rest)) => (counts, Some(rest.strip_suffix(')')?)),
            None => (line, None),
        };
        let (passed, failed) = counts.split_once(" passed, ")?;
        let failed = failed.strip_suffix(" failed")?;
        let skipped = match skipped {
            Some(text) => {
                let (count, reason) = text.split_once(" skipped: ")?;
                Some((count.parse().ok()?, reason))
            }
            None => None,
        };
        Some(TestSummary {
            passed: passed.parse().ok()?,
            failed: failed.parse().ok()?,
            skipped,
        })
    }

    /// The last summary line in a transcript.
    pub fn find_last(transcript: &'a str) -> Option<Self> {
        transcript.lines().rev().find_map(TestSummary::parse)
    }
}

/// What the shell prints when a timeout interrupt was handled:
/// `[timeout] stopwatch[0] fired at 12.000 s (3 so far)`, or without the
/// time on a device without a time page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutNotice {
    pub stopwatch: usize,
    /// The stopwatch's elapsed time when the interrupt was taken, in
    /// nanoseconds (shown to the millisecond).
    pub fired_at_ns: Option<u64>,
    /// Timeout interrupts of this stopwatch so far.
    pub count: u64,
}

impl TimeoutNotice {
    /// How every notice starts.
    pub const PREFIX: &'static str = "[timeout] stopwatch[";

    /// The notice on `line`, if it is one (the time to the millisecond).
    /// The line may start with the terminal controls that cleared it.
    pub fn parse(line: &str) -> Option<Self> {
        let start = line.find(Self::PREFIX)?;
        let rest = line[start..].trim().strip_prefix(Self::PREFIX)?;
        let (index, rest) = rest.split_once("] fired")?;
        let (time, count) = rest.split_once(" (")?;
        let fired_at_ns = match time.strip_prefix(" at ") {
            Some(time) => Some(parse_seconds(time.strip_suffix(" s")?)?),
            None if time.is_empty() => None,
            None => return None,
        };
        Some(TimeoutNotice {
            stopwatch: index.parse().ok()?,
            fired_at_ns,
            count: count.strip_suffix(" so far)")?.parse().ok()?,
        })
    }
}

impl fmt::Display for TimeoutNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}] fired", Self::PREFIX, self.stopwatch)?;
        if let Some(ns) = self.fired_at_ns {
            write!(f, " at {} s", Seconds::millis(ns))?;
        }
        write!(f, " ({} so far)", self.count)
    }
}

/// How `watch` ends: `watch: 11 refreshes in 1.047000000 s, 0 exits to
/// QEMU (0 per refresh)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchSummary {
    pub refreshes: u64,
    pub elapsed_ns: u64,
    /// Exits to QEMU per refresh: 0 from the time page, 2 with UPDATE.
    pub exits_per_refresh: u64,
}

impl WatchSummary {
    /// Exits to QEMU in all.
    pub const fn exits(&self) -> u64 {
        self.refreshes * self.exits_per_refresh
    }

    /// The summary on `line`, if it is one.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = after(line, "watch:")?;
        let refreshes = words.next()?.parse().ok()?;
        let ("refreshes", "in") = (words.next()?, words.next()?) else {
            return None;
        };
        let elapsed_ns = parse_seconds(words.next()?)?;
        let ("s,", exits) = (words.next()?, words.next()?) else {
            return None;
        };
        let exits: u64 = exits.parse().ok()?;
        let ("exits", "to", "QEMU") = (words.next()?, words.next()?, words.next()?) else {
            return None;
        };
        let per_refresh: u64 = words.next()?.strip_prefix('(')?.parse().ok()?;
        let summary = WatchSummary {
            refreshes,
            elapsed_ns,
            exits_per_refresh: per_refresh,
        };
        (summary.exits() == exits).then_some(summary)
    }
}

impl fmt::Display for WatchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watch: {} refreshes in {} s, {} exits to QEMU ({} per refresh)",
            self.refreshes,
            Seconds::nanos(self.elapsed_ns),
            self.exits(),
            self.exits_per_refresh
        )
    }
}

/// The last line of `irqs`: `uart input: 0 receive errors (overrun,
/// framing, parity, break), held back in the UART 12 times`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartInput {
    /// Receive errors the UART reported: the only way input is lost.
    pub errors: u64,
    /// Times the receive ring filled up and held input back in the UART.
    pub hold_backs: u64,
}

impl UartInput {
    /// The line on `line`, if it is one.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("uart input: ")?;
        let (errors, rest) = rest.split_once(
            " receive errors (overrun, framing, parity, break), held back in the UART ",
        )?;
        Some(UartInput {
            errors: errors.parse().ok()?,
            hold_backs: rest.strip_suffix(" times")?.parse().ok()?,
        })
    }
}

impl fmt::Display for UartInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uart input: {} receive errors (overrun, framing, parity, break), \
             held back in the UART {} times",
            self.errors, self.hold_backs
        )
    }
}

/// The answer of `read` from the time page:
/// `1.234567890 seconds (RUNNING, time page)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePageReading<'a> {
    pub elapsed_ns: u64,
    /// The status's name, as the abi crate spells it.
    pub status: &'a str,
}

impl<'a> TimePageReading<'a> {
    /// The answer on `line`, if it is one.
    pub fn parse(line: &'a str) -> Option<Self> {
        let (seconds, rest) = line.trim().split_once(" seconds (")?;
        Some(TimePageReading {
            elapsed_ns: parse_seconds(seconds)?,
            status: rest.strip_suffix(", time page)")?,
        })
    }
}

impl fmt::Display for TimePageReading<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seconds ({}, time page)",
            Seconds::nanos(self.elapsed_ns),
            self.status
        )
    }
}

// tutorial:lap-protocol begin
/// One lap in the answer of `lap` and `laps`: `lap 3: 1.250000000 s`
/// (numbered from 1, the time to the nanosecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapLine {
    pub number: usize,
    pub ns: u64,
}

impl LapLine {
    /// The lap on `line`, if it is one.
    pub fn parse(line: &str) -> Option<Self> {
        let (number, seconds) = line.trim().strip_prefix("lap ")?.split_once(": ")?;
        Some(LapLine {
            number: number.parse().ok()?,
            ns: parse_seconds(seconds.strip_suffix(" s")?)?,
        })
    }
}

impl fmt::Display for LapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lap {}: {} s", self.number, Seconds::nanos(self.ns))
    }
}
// tutorial:lap-protocol end

/// The device's own text after UPDATE (what `read trap` prints), as the
/// original device writes it: `%.2f seconds`; in nanoseconds.
pub fn parse_update_text(line: &str) -> Option<u64> {
    parse_seconds(line.trim().strip_suffix(" seconds")?)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn test_summaries_round_trip() {
        for summary in [
            TestSummary {
                passed: 13,
                failed: 0,
                skipped: None,
            },
            TestSummary {
                passed: 3,
                failed: 1,
                skipped: Some((10, "no stopwatch device")),
            },
        ] {
            let line = summary.to_string();
            assert_eq!(TestSummary::parse(&line), Some(summary), "{line}");
        }
        let transcript = "x\r\n1 passed, 1 failed\r\nmore\r\n13 passed, 0 failed\r\n";
        assert_eq!(
            TestSummary::find_last(transcript).map(|s| s.passed),
            Some(13)
        );
        for bad in [
            "passed, failed",
            "1 passed",
            "a passed, 0 failed",
            "1 passed, 0 failed (x)",
        ] {
            assert_eq!(TestSummary::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn notices_round_trip() {
        for notice in [
            TimeoutNotice {
                stopwatch: 2,
                fired_at_ns: Some(12_345_000_000),
                count: 3,
            },
            TimeoutNotice {
                stopwatch: 0,
                fired_at_ns: None,
                count: 1,
            },
        ] {
            let line = notice.to_string();
            assert_eq!(TimeoutNotice::parse(&line), Some(notice), "{line}");
        }
        let notice = TimeoutNotice {
            stopwatch: 0,
            fired_at_ns: Some(250_999_999),
            count: 1,
        };
        assert_eq!(
            notice.to_string(),
            "[timeout] stopwatch[0] fired at 0.250 s (1 so far)"
        );
        // As the shell prints it: over a cleared line.
        let shown =
            TimeoutNotice::parse("\r\x1b[K[timeout] stopwatch[0] fired at 0.250 s (1 so far)");
        assert_eq!(shown.map(|n| n.fired_at_ns), Some(Some(250_000_000)));
    }

    #[test]
    fn watch_summaries_round_trip() {
        let summary = WatchSummary {
            refreshes: 11,
            elapsed_ns: 1_047_000_000,
            exits_per_refresh: 2,
        };
        let line = summary.to_string();
        assert_eq!(
            line,
            "watch: 11 refreshes in 1.047000000 s, 22 exits to QEMU (2 per refresh)"
        );
        assert_eq!(WatchSummary::parse(&line), Some(summary));
        // Exits that do not add up are not a summary.
        assert_eq!(
            WatchSummary::parse("watch: 11 refreshes in 1.0 s, 3 exits to QEMU (2 per refresh)"),
            None
        );
    }

    #[test]
    fn uart_input_and_readings_round_trip() {
        let input = UartInput {
            errors: 0,
            hold_backs: 49,
        };
        assert_eq!(UartInput::parse(&input.to_string()), Some(input));
        let reading = TimePageReading {
            elapsed_ns: 1_234_567_890,
            status: "RUNNING",
        };
        let line = reading.to_string();
        assert_eq!(line, "1.234567890 seconds (RUNNING, time page)");
        assert_eq!(TimePageReading::parse(&line), Some(reading));
        assert_eq!(parse_update_text("5.02 seconds"), Some(5_020_000_000));
        assert_eq!(parse_update_text("stopped"), None);
    }

    #[test]
    fn lap_lines_round_trip() {
        let lap = LapLine {
            number: 3,
            ns: 1_250_000_000,
        };
        let line = lap.to_string();
        assert_eq!(line, "lap 3: 1.250000000 s");
        assert_eq!(LapLine::parse(&line), Some(lap));
        for bad in ["no laps ('lap' records one)", "lap x: 1.0 s", "lap 1: 1.0"] {
            assert_eq!(LapLine::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn seconds_parse_exactly() {
        assert_eq!(parse_seconds("0.000000001"), Some(1));
        assert_eq!(parse_seconds("12"), Some(12 * NANOS_PER_SEC));
        for bad in ["", ".5", "1.", "1.0000000001", "-1", "1e3"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
        assert_eq!(
            format!(
                "{}",
                Seconds {
                    ns: 1_500_000_000,
                    decimals: 3
                }
            ),
            "1.500"
        );
    }
}
