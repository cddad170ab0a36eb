// SPDX-License-Identifier: GPL-2.0-or-later
//! The shell end to end over the real serial line, with several
//! stopwatches: `use` and `list`, timeout notices over a half-typed line,
//! sub-second timeouts, `watch`, `lap` and `laps`; and no command may make
//! the device log a guest error.

use anyhow::{ensure, Context, Result};
use std::thread;
use std::time::Duration;

use crate::repo::Repo;
use crate::serial::{clean_response, expect_notice_time, GuestErrorLog, SerialConsole};
use crate::vm::VmConfig;
use stopwatch_shell::protocol::{LapLine, WatchSummary};
use stopwatch_shell::Prompt;

/// Stopwatches in the session.
const STOPWATCHES: usize = 3;
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The prompt with stopwatch `index` selected among the session's
/// stopwatches, as the shell's protocol defines it.
fn prompt(index: usize) -> String {
    Prompt {
        selected: index,
        count: STOPWATCHES,
    }
    .to_string()
}

/// A shell session with the selected stopwatch tracked, so each answer is
/// read up to the right prompt.
struct Session {
    console: SerialConsole,
    selected: usize,
}

impl Session {
    /// Types `command` and returns its answer (without the echo).
    fn ask(&mut self, command: &str) -> Result<String> {
        if let Some(index) = command.strip_prefix("use ").and_then(|n| n.parse().ok()) {
            if index < STOPWATCHES {
                self.selected = index;
            }
        }
        self.console.send_line(command)?;
        let prompt = prompt(self.selected);
        let raw = self
            .console
            .expect(&prompt, ANSWER_TIMEOUT)
            .with_context(|| format!("no answer to `{command}`"))?;
        let raw = raw.strip_suffix(&prompt).unwrap_or(&raw);
        Ok(clean_response(raw, command))
    }

    /// `ask`, and the answer must contain `needle`.
    fn ask_expecting(&mut self, command: &str, needle: &str) -> Result<String> {
        let answer = self.ask(command)?;
        ensure!(
            answer.contains(needle),
            "`{command}` answered {answer:?}, expected {needle:?}"
        );
        Ok(answer)
    }
}

/// Runs the whole session; `Ok` holds a one-line result.
pub fn run(repo: &Repo, boot_timeout: Duration) -> Result<String> {
    let guest_errors = GuestErrorLog::new(repo, "shell-test")?;
    let mut extra = Vec::new();
    for _ in 0..STOPWATCHES {
        // Not started at power-on (the original's default), so each
        // starts only when the test says so.
        extra.extend([
            "-device".to_string(),
            "stopwatch,start_at_boot=false".to_string(),
        ]);
    }
    extra.extend(guest_errors.qemu_args());
    let config = VmConfig {
        devices: 0,
        extra,
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line(repo));
    let mut console = SerialConsole::spawn(repo, &config, None)?.named("shell test");
    console
        .expect(&prompt(0), boot_timeout)
        .context("the shell never showed the prompt `stopwatch[0]> ` of several stopwatches")?;
    let mut session = Session {
        console,
        selected: 0,
    };

    independent_stopwatches(&mut session)?;
    let laps = laps(&mut session)?;
    let fired_at = notice_over_a_partial_line(&mut session)?;
    let refreshes = watch(&mut session)?;

    drop(session);
    guest_errors.ensure_none("the shell")?;
    Ok(format!(
        "{STOPWATCHES} stopwatches independent; {laps} laps, the ninth not sent; 250ms timeout \
         fired at {fired_at:.3} s; watch: {refreshes:.1} refreshes/s; no guest error"
    ))
}

/// Start one, a timeout on another, the third untouched: each reads and
/// counts what was done to it alone.
fn independent_stopwatches(session: &mut Session) -> Result<()> {
    let list = session.ask("list")?;
    for index in 0..STOPWATCHES {
        ensure!(
            list.contains(&format!("stopwatch[{index}]  RESET")),
            "`list` does not show stopwatch[{index}] RESET:\n{list}"
        );
    }
    session.ask_expecting("use 0", "using stopwatch[0]")?;
    session.ask_expecting("start", "status: RUNNING")?;
    session.ask_expecting("use 1", "using stopwatch[1]")?;
    session.ask_expecting("timeout 300ms", "TIMEOUT_NS")?;
    session
        .console
        .expect("[timeout] stopwatch[1] fired", ANSWER_TIMEOUT)
        .context("no timeout notice for stopwatch[1]")?;
    // The notice redraws the prompt: consume it before the next command.
    session.console.expect(&prompt(1), ANSWER_TIMEOUT)?;

    session.ask_expecting("timeout", "1")?;
    session.ask_expecting("read", "(RESET, time page)")?;
    session.ask_expecting("use 2", "using stopwatch[2]")?;
    session.ask_expecting("read", "0.000000000 seconds (RESET, time page)")?;
    let count = session.ask("timeout")?;
    ensure!(count == "0", "stopwatch[2] counts {count} timeouts");
    session.ask_expecting("use 0", "using stopwatch[0]")?;
    session.ask_expecting("read", "(RUNNING, time page)")?;
    let count = session.ask("timeout")?;
    ensure!(count == "0", "stopwatch[0] counts {count} timeouts");

    let irqs = session.ask("irqs")?;
    for (index, expected) in [(0, 0), (1, 1), (2, 0)] {
        let line = irqs
            .lines()
            .find(|line| {
                line.trim_start()
                    .starts_with(&format!("stopwatch[{index}]"))
            })
            .with_context(|| format!("`irqs` has no line for stopwatch[{index}]:\n{irqs}"))?;
        let count = line.split_whitespace().last().unwrap_or("");
        ensure!(
            count == expected.to_string(),
            "`irqs` counts {count} for stopwatch[{index}], expected {expected}:\n{irqs}"
        );
    }
    let list = session.ask("list")?;
    for needle in [
        "* stopwatch[0]  RUNNING",
        "  stopwatch[1]  RESET    0.000000000 s  1 timeouts",
        "  stopwatch[2]  RESET    0.000000000 s  0 timeouts",
    ] {
        ensure!(list.contains(needle), "`list` lacks {needle:?}:\n{list}");
    }
    session.ask_expecting("use 3", "give 0..2")?;
    session.ask_expecting("use x", "not a stopwatch number")?;
    session.ask_expecting("timeout 11s", "250ms")?;
    Ok(())
}

// tutorial:lap-shell-test begin
/// `lap` and `laps` on `stopwatch[2]`: laps numbered from 1, increasing;
/// the ninth `lap` is not sent (the device would log a guest error);
/// `reset` clears them. Returns how many laps were recorded.
fn laps(session: &mut Session) -> Result<usize> {
    session.ask_expecting("use 2", "using stopwatch[2]")?;
    session.ask_expecting("laps", "no laps")?;
    session.ask_expecting("start", "status: RUNNING")?;
    for number in 1..=8 {
        session.ask_expecting("lap", &format!("lap {number}: "))?;
    }
    let laps = session.ask("laps")?;
    let lines: Vec<LapLine> = laps.lines().filter_map(LapLine::parse).collect();
    let numbered = lines
        .iter()
        .enumerate()
        .all(|(index, line)| line.number == index + 1);
    ensure!(
        lines.len() == 8 && numbered && lines.windows(2).all(|pair| pair[0].ns < pair[1].ns),
        "`laps` does not list 8 increasing laps:\n{laps}"
    );
    session.ask_expecting(
        "lap",
        "all 8 lap slots taken: 'reset' clears them (LAP not sent)",
    )?;
    session.ask_expecting("reset", "status: RESET")?;
    session.ask_expecting("laps", "no laps")?;
    Ok(lines.len())
}
// tutorial:lap-shell-test end

/// Arms `timeout 250ms` on a running stopwatch, types half a command, and
/// checks that the notice comes at 250..400 ms of stopwatch time, that the
/// half line is drawn again after it, and that it then runs whole.
/// Returns the stopwatch time of the notice, in seconds.
fn notice_over_a_partial_line(session: &mut Session) -> Result<f64> {
    session.ask_expecting("use 1", "using stopwatch[1]")?;
    session.ask_expecting("start", "status: RUNNING")?;
    session.ask_expecting("timeout 250ms", "TIMEOUT_NS")?;
    session.console.send_bytes(b"rea")?;
    let fired_at = expect_notice_time(&mut session.console, ANSWER_TIMEOUT)
        .context("no timeout notice while a line was half typed")?;
    ensure!(
        (0.250..=0.400).contains(&fired_at),
        "`timeout 250ms` fired at {fired_at} s of stopwatch time, not in 0.250..0.400"
    );
    session
        .console
        .expect(&format!("{}rea", prompt(1)), ANSWER_TIMEOUT)
        .context("the half-typed line was not drawn again after the notice")?;
    session.console.send_bytes(b"d\r")?;
    let answer = session.console.expect(&prompt(1), ANSWER_TIMEOUT)?;
    ensure!(
        answer.contains("seconds (RUNNING, time page)"),
        "the completed line did not run as `read`: {answer:?}"
    );
    Ok(fired_at)
}

/// `watch` for a second, then a key: at least 5 refreshes a second, no
/// exit per refresh, and the key stops it without being run. `watch trap`
/// makes its exits visible. Returns refreshes per second.
fn watch(session: &mut Session) -> Result<f64> {
    let (output, summary) = watch_for(session, "watch", Duration::from_secs(1), b"x")?;
    let (refreshes, seconds, exits) = (
        summary.refreshes,
        summary.elapsed_ns as f64 / 1e9,
        summary.exits(),
    );
    let redraws = output.matches("\r\x1b[Kstopwatch[1]  ").count() as u64;
    ensure!(
        redraws == refreshes,
        "{refreshes} refreshes counted but {redraws} redrawn"
    );
    let rate = refreshes as f64 / seconds;
    ensure!(
        refreshes >= 5 && rate >= 5.0,
        "`watch` redrew {refreshes} times in {seconds} s"
    );
    ensure!(exits == 0, "`watch` made {exits} exits to QEMU");
    ensure!(
        !output.contains("unknown command"),
        "the key that stopped `watch` ran as a command"
    );

    let (_, summary) = watch_for(session, "watch trap", Duration::from_millis(300), b" ")?;
    let (refreshes, exits) = (summary.refreshes, summary.exits());
    ensure!(
        refreshes > 0 && exits == 2 * refreshes,
        "`watch trap`: {exits} exits for {refreshes} refreshes (expected 2 each)"
    );
    Ok(rate)
}

/// Runs `command` (`watch` or `watch trap`) for `hold`, stops it with
/// `key`, and returns its output and summary line.
fn watch_for(
    session: &mut Session,
    command: &str,
    hold: Duration,
    key: &[u8],
) -> Result<(String, WatchSummary)> {
    session.console.send_line(command)?;
    session
        .console
        .expect("press any key to stop", ANSWER_TIMEOUT)?;
    thread::sleep(hold);
    session.console.send_bytes(key)?;
    let output = session
        .console
        .expect(&prompt(1), ANSWER_TIMEOUT)
        .with_context(|| format!("`{command}` did not stop on a key"))?;
    let summary = watch_summary(&output)?;
    Ok((output, summary))
}

/// The `watch:` summary line in `output`.
fn watch_summary(output: &str) -> Result<WatchSummary> {
    output
        .lines()
        .find_map(WatchSummary::parse)
        .with_context(|| format!("no `watch:` summary in {output:?}"))
}
