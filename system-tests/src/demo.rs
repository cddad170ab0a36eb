// SPDX-License-Identifier: GPL-2.0-or-later
//! The original stopwatch demo, typed into the guest shell and checked.

use anyhow::{bail, Context, Result};
use std::thread;
use std::time::Duration;

use crate::repo::Repo;
use crate::serial::{clean_response, clean_text, SerialConsole, PROMPT};
use crate::vm::VmConfig;
use stopwatch_shell::protocol::TimePageReading;

/// One step of the original demo.
pub enum DemoStep {
    /// Type a command and wait for its answer.
    Type(&'static str),
    /// Let the guest run this many seconds of host time.
    HostSleep(u64),
    /// The last answer holds a number of seconds in this range.
    ExpectSeconds(std::ops::RangeInclusive<f64>, &'static str),
    /// The last answer (of `timeout`) counts this many interrupts.
    ExpectTimeouts(u64),
}

/// The original demo: what it types, when it waits, what it checks.
pub const DEMO_SCRIPT: &[DemoStep] = &[
    DemoStep::Type("reset"),
    DemoStep::Type("start"),
    DemoStep::HostSleep(1),
    DemoStep::Type("pause"),
    DemoStep::Type("read"),
    DemoStep::ExpectSeconds(0.9..=1.3, "read after 1 s running, then paused"),
    DemoStep::Type("start"),
    DemoStep::Type("timeout 1"),
    DemoStep::HostSleep(2),
    DemoStep::Type("timeout 1"),
    DemoStep::HostSleep(2),
    DemoStep::Type("read"),
    DemoStep::ExpectSeconds(4.8..=5.6, "read after 1 s + 4 s running"),
    DemoStep::Type("timeout"),
    DemoStep::ExpectTimeouts(2),
    DemoStep::Type("reset"),
    DemoStep::Type("read"),
    DemoStep::ExpectSeconds(0.0..=0.005, "read after reset"),
];

/// The commands of [`DEMO_SCRIPT`], in order.
pub fn demo_commands() -> impl Iterator<Item = &'static str> {
    DEMO_SCRIPT.iter().filter_map(|step| match step {
        DemoStep::Type(command) => Some(*command),
        _ => None,
    })
}

/// One command of the demo and the guest's answer.
#[derive(Debug)]
struct Exchange {
    command: String,
    response: String,
}

/// Drives the shell like the original demo and checks the answers.
pub struct Demo {
    console: SerialConsole,
    /// The dialogue so far, as printed at the end.
    transcript: Vec<String>,
    checks: Vec<(String, bool)>,
}

/// How long the shell may take to answer one command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl Demo {
    /// Runs the whole demo; `Ok` if every check passed. Prints the
    /// transcript and the checks either way.
    pub fn run(repo: &Repo, config: &VmConfig, boot_timeout: Duration) -> Result<()> {
        eprintln!("    {}", config.command_line(repo));
        let mut demo = Demo {
            console: SerialConsole::spawn(repo, config, None)?.named("demo"),
            transcript: Vec::new(),
            checks: Vec::new(),
        };
        let result = demo.script(boot_timeout);
        demo.print();
        result?;
        let failed = demo.checks.iter().filter(|(_, ok)| !ok).count();
        if failed > 0 {
            bail!("demo: {failed} of {} checks failed", demo.checks.len());
        }
        Ok(())
    }

    fn script(&mut self, boot_timeout: Duration) -> Result<()> {
        let boot = self
            .console
            .expect(PROMPT, boot_timeout)
            .context("the guest shell never showed its prompt")?;
        let boot = clean_text(&boot);
        self.transcript.push(
            boot.strip_suffix(PROMPT)
                .unwrap_or(&boot)
                .trim_end()
                .to_string(),
        );
        let mut last: Option<Exchange> = None;
        for step in DEMO_SCRIPT {
            match step {
                DemoStep::Type(command) => last = Some(self.command(command)?),
                DemoStep::HostSleep(seconds) => self.host_sleep(*seconds),
                DemoStep::ExpectSeconds(range, what) => {
                    let read = last.as_ref().expect("a check follows a command");
                    self.check_seconds(read, range.clone(), what);
                }
                DemoStep::ExpectTimeouts(expected) => {
                    let answer = last.as_ref().expect("a check follows a command");
                    let count = answer.response.trim().parse::<u64>().ok();
                    self.check(
                        format!("`timeout` counts {expected} interrupts (got {count:?})"),
                        count == Some(*expected),
                    );
                }
            }
        }
        self.power_off()
    }

    /// Sends a command, records the answer.
    fn command(&mut self, command: &str) -> Result<Exchange> {
        self.record_unsolicited();
        self.console.send_line(command)?;
        let raw = self
            .console
            .expect(PROMPT, ANSWER_TIMEOUT)
            .with_context(|| format!("no answer to `{command}`"))?;
        let response = clean_response(&raw, command);
        self.transcript.push(format!("{PROMPT}{command}"));
        if !response.is_empty() {
            self.transcript.push(response.clone());
        }
        Ok(Exchange {
            command: command.to_string(),
            response,
        })
    }

    /// Records what the guest printed on its own while idle (a timeout
    /// firing, say), so it is not taken for the next command's answer.
    fn record_unsolicited(&mut self) {
        let unsolicited = clean_text(&self.console.take_unread());
        if !unsolicited.trim().is_empty() {
            self.transcript
                .push(format!("(while idle) {}", unsolicited.trim()));
        }
    }

    fn host_sleep(&mut self, seconds: u64) {
        self.transcript.push(format!("(host waits {seconds} s)"));
        thread::sleep(Duration::from_secs(seconds));
    }

    fn check(&mut self, what: String, ok: bool) {
        self.checks.push((what, ok));
    }

    fn check_seconds(&mut self, read: &Exchange, range: std::ops::RangeInclusive<f64>, what: &str) {
        let value =
            TimePageReading::parse(&read.response).map(|reading| reading.elapsed_ns as f64 / 1e9);
        let shown = value.map_or("no number".to_string(), |v| format!("{v:.2}"));
        self.check(
            format!(
                "`{}` {what}: {shown} in {:.2}..={:.2}",
                read.command,
                range.start(),
                range.end()
            ),
            value.is_some_and(|v| range.contains(&v)),
        );
    }

    /// `poweroff`: QEMU must then exit with status 0.
    fn power_off(&mut self) -> Result<()> {
        self.record_unsolicited();
        let command = "poweroff";
        self.transcript.push(format!("{PROMPT}{command}"));
        if let Some(answer) = self.console.command_or_exit(command, ANSWER_TIMEOUT) {
            let answer = clean_response(&answer, command);
            if !answer.is_empty() {
                self.transcript.push(answer);
            }
        }
        let status = self.console.wait_exit(ANSWER_TIMEOUT)?;
        let ok = status.is_some_and(|s| s.success());
        let shown = status.map_or("still running, killed".to_string(), |s| s.to_string());
        self.check(format!("QEMU exits with status 0 ({shown})"), ok);
        Ok(())
    }

    fn print(&self) {
        eprintln!("    --- demo transcript ---");
        for entry in &self.transcript {
            for line in entry.lines() {
                eprintln!("    | {line}");
            }
        }
        eprintln!("    --- checks ---");
        for (what, ok) in &self.checks {
            eprintln!("    {} {what}", if *ok { "ok  " } else { "FAIL" });
        }
    }
}
