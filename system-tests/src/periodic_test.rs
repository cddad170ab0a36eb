// SPDX-License-Identifier: GPL-2.0-or-later
//! `every 250ms` over the real serial line: the shell prints timeout
//! notices whose stopwatch times are about 250 ms apart per interrupt,
//! `list`, `status` and `timeout` show the period, `pause` stops the
//! notices, and the device logs no guest error. Self-contained: one entry
//! of the test suite runs [`run`].

use anyhow::{ensure, Context, Result};
use std::thread;
use std::time::Duration;

use crate::repo::Repo;
use crate::serial::{boot_to_prompt, clean_response, clean_text, SerialConsole, PROMPT};
use crate::vm::VmConfig;
use stopwatch_shell::protocol::TimeoutNotice;

/// The test's name in the suite.
pub const NAME: &str = "periodic::every_250ms_notices_250_ms_apart_pause_stops_them";

/// The period typed, in seconds.
const PERIOD_S: f64 = 0.25;
/// How far one interrupt's gap may be from the period: the notice names
/// the time the handler was entered, late by the interrupt's latency.
const GAP_TOLERANCE_S: f64 = 0.1;
/// How far the mean gap may be: latencies do not add up over a run.
const MEAN_TOLERANCE_S: f64 = 0.02;
/// Notices to collect.
const NOTICES: usize = 5;
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Types `command`, waits for `needle` in its answer and then the prompt
/// (a notice may come first: it redraws the prompt too). Returns the text
/// up to `needle`.
fn ask(console: &mut SerialConsole, command: &str, needle: &str) -> Result<String> {
    console.send_line(command)?;
    let text = console
        .expect(needle, ANSWER_TIMEOUT)
        .with_context(|| format!("`{command}` did not answer {needle:?}"))?;
    console.expect(PROMPT, ANSWER_TIMEOUT)?;
    Ok(clean_text(&text))
}

/// `timeout` alone: the interrupt count (asked only while no notice can
/// come, so the answer is alone before the prompt).
fn interrupt_count(console: &mut SerialConsole) -> Result<u64> {
    console.send_line("timeout")?;
    let raw = console.expect(PROMPT, ANSWER_TIMEOUT)?;
    let answer = clean_response(&raw, "timeout");
    answer
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("`timeout` answered {answer:?}"))
}

/// The whole test; `Ok` holds a one-line result.
pub fn run(repo: &Repo, boot_timeout: Duration) -> Result<String> {
    let (mut console, guest_errors) =
        boot_to_prompt(repo, &VmConfig::default(), "periodic test", boot_timeout)?;
    ask(
        &mut console,
        "every 250ms",
        "interrupt every 0.250000000 s (PERIODIC)",
    )?;
    ask(&mut console, "list", "timeouts, every 0.250000000 s")?;
    ask(
        &mut console,
        "status",
        "periodic timeout: every 0.250000000 s",
    )?;

    let text = console
        .expect_many(TimeoutNotice::PREFIX, NOTICES + 1, ANSWER_TIMEOUT)
        .context("timeout notices of `every 250ms`")?;
    // The last prefix found may start a notice not yet complete.
    console.expect(" so far)", ANSWER_TIMEOUT)?;
    let text = clean_text(&text);
    let notices: Vec<(u64, f64)> = text
        .lines()
        .filter_map(TimeoutNotice::parse)
        .filter_map(|notice| Some((notice.count, notice.fired_at_ns? as f64 / 1e9)))
        .collect();
    ensure!(
        notices.len() >= NOTICES,
        "{} notices with a time, not {NOTICES}:\n{text}",
        notices.len()
    );
    // tutorial:periodic-serial-test begin
    // Between two notices, as many periods as interrupts counted.
    let mut gaps = Vec::new();
    for pair in notices.windows(2) {
        let ((count_a, at_a), (count_b, at_b)) = (pair[0], pair[1]);
        ensure!(count_b > count_a, "notice counts do not increase:\n{text}");
        let gap = (at_b - at_a) / (count_b - count_a) as f64;
        ensure!(
            (gap - PERIOD_S).abs() <= GAP_TOLERANCE_S,
            "notices {gap:.3} s apart per interrupt, not about {PERIOD_S} s:\n{text}"
        );
        gaps.push(gap);
    }
    let (first, last) = (notices[0], notices[notices.len() - 1]);
    let mean = (last.1 - first.1) / (last.0 - first.0) as f64;
    ensure!(
        (mean - PERIOD_S).abs() <= MEAN_TOLERANCE_S,
        "notices {mean:.3} s apart on average, not {PERIOD_S} s:\n{text}"
    );
    // tutorial:periodic-serial-test end

    // `pause` ends it; a period that expired just before it may still be
    // announced, then nothing more.
    ask(&mut console, "pause", "status: PAUSED")?;
    thread::sleep(Duration::from_millis(500));
    let _ = console.take_unread();
    let paused = interrupt_count(&mut console)?;
    thread::sleep(Duration::from_secs(1));
    let unread = clean_text(&console.take_unread());
    ensure!(
        !unread.contains(TimeoutNotice::PREFIX),
        "a notice after `pause`:\n{unread}"
    );
    let later = interrupt_count(&mut console)?;
    ensure!(
        later == paused,
        "{} interrupts in the second after `pause`",
        later - paused
    );
    let status = ask(&mut console, "status", "status: PAUSED")?;
    ensure!(
        !status.contains("periodic"),
        "`status` after `pause`: {status:?}"
    );
    drop(console);
    guest_errors.ensure_none("`every` and `pause`")?;
    let (min, max) = gaps.iter().fold((f64::MAX, 0.0f64), |(min, max), &gap| {
        (min.min(gap), max.max(gap))
    });
    Ok(format!(
        "{} notices, {mean:.3} s apart on average ({min:.3} to {max:.3} s); none in the second \
         after pause; no guest error",
        notices.len()
    ))
}
