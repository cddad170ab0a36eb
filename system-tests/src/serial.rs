// SPDX-License-Identifier: GPL-2.0-or-later
//! The guest's serial console as the tests drive it: a QEMU whose stdin
//! and stdout are the guest's PL011, with waiting for text, pastes, and a
//! hang report that names the test and the last console lines.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::repo::Repo;
use crate::vm::VmConfig;

use stopwatch_shell::protocol::TimeoutNotice;
/// What the guest shell prints when it waits for a command.
pub use stopwatch_shell::PROMPT;

/// A running QEMU whose serial console (its stdin/stdout) we drive.
pub struct SerialConsole {
    child: Child,
    stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    /// Everything QEMU printed so far (stdout and stderr, where
    /// semihosting writes).
    output: Vec<u8>,
    /// How much of `output` has been handed out already.
    consumed: usize,
    /// Whether QEMU closed its output (it is exiting).
    closed: bool,
    /// When set, output is echoed to our stderr as lines with this prefix.
    live_prefix: Option<String>,
    live_pending: Vec<u8>,
    /// The test or run this QEMU serves, for messages.
    name: String,
}

/// How many console lines a hang report shows.
const HANG_REPORT_LINES: usize = 12;

/// How waiting for output ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Matched,
    Closed,
    TimedOut,
}

impl SerialConsole {
    /// Starts QEMU for `config` with piped stdio.
    /// Its messages name it after `config` until [`SerialConsole::named`].
    pub fn spawn(repo: &Repo, config: &VmConfig, live_prefix: Option<String>) -> Result<Self> {
        Self::spawn_command(config.command(repo), &format!("QEMU {config}"), live_prefix)
    }

    /// Starts `command` (a QEMU, or in tests a stand-in) with piped stdio;
    /// `name` says what it is for in messages.
    pub fn spawn_command(
        mut command: Command,
        name: &str,
        live_prefix: Option<String>,
    ) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", command.get_program().display()))?;
        let (sender, chunks) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for mut stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let sender = sender.clone();
            thread::spawn(move || {
                let mut buffer = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    if sender.send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(SerialConsole {
            stdin: child.stdin.take().expect("piped"),
            child,
            chunks,
            output: Vec::new(),
            consumed: 0,
            closed: false,
            live_prefix,
            live_pending: Vec::new(),
            name: name.to_string(),
        })
    }

    /// Names the test this QEMU runs, for the messages of its failures.
    pub fn named(mut self, test: &str) -> Self {
        self.name = test.to_string();
        self
    }

    /// The last `count` non-empty lines the console printed, cleaned of
    /// carriage returns and escape sequences' control bytes.
    pub fn last_lines(&self, count: usize) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.output);
        let lines: Vec<String> = text
            .split('\n')
            .map(|line| {
                line.chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .filter(|line| !line.is_empty())
            .collect();
        lines[lines.len().saturating_sub(count)..].to_vec()
    }

    /// Kills a QEMU that did not do `what` within `timeout`, and returns
    /// the error that says so: the test, the wait, the last console lines.
    pub fn hung(&mut self, what: &str, timeout: Duration) -> anyhow::Error {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
        // Whatever QEMU printed before it died.
        self.take_unread();
        let lines = self.last_lines(HANG_REPORT_LINES);
        let shown = if lines.is_empty() {
            "    (nothing)".to_string()
        } else {
            lines
                .iter()
                .map(|line| format!("    | {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        anyhow!(
            "{}: QEMU hung: {what} within {}s; killed it. Its last console lines:\n{shown}",
            self.name,
            timeout.as_secs_f64()
        )
    }

    /// Everything printed so far, as text.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Receives output until `done` says so about the unconsumed part, QEMU
    /// closes its output, or `timeout` passes.
    fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Waited {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.output[self.consumed..]) {
                return Waited::Matched;
            }
            if self.closed {
                return Waited::Closed;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Waited::TimedOut;
            };
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.take(&chunk),
                Err(RecvTimeoutError::Timeout) => return Waited::TimedOut,
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    self.flush_live();
                }
            }
        }
    }

    fn take(&mut self, chunk: &[u8]) {
        self.output.extend_from_slice(chunk);
        if self.live_prefix.is_some() {
            self.live_pending.extend_from_slice(chunk);
            while let Some(end) = self.live_pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.live_pending.drain(..=end).collect();
                self.print_live(&line);
            }
        }
    }

    fn flush_live(&mut self) {
        if !self.live_pending.is_empty() {
            let line = std::mem::take(&mut self.live_pending);
            self.print_live(&line);
        }
    }

    fn print_live(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']).replace('\r', "");
        eprintln!("{}{text}", self.live_prefix.as_deref().unwrap_or(""));
    }

    /// Waits for `needle` and returns what came before it (and it), or fails
    /// naming what happened instead.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let bytes = needle.as_bytes();
        let found = |text: &[u8]| find(text, bytes).is_some();
        match self.wait_for(timeout, found) {
            Waited::Matched => {
                let unread = &self.output[self.consumed..];
                let end = find(unread, bytes).expect("matched") + bytes.len();
                let text = String::from_utf8_lossy(&unread[..end]).into_owned();
                self.consumed += end;
                Ok(text)
            }
            Waited::Closed => bail!("{}: QEMU exited before printing {needle:?}", self.name),
            Waited::TimedOut => Err(self.hung(&format!("no {needle:?}"), timeout)),
        }
    }

    /// Waits for `count` occurrences of `needle` and returns everything up
    /// to the last of them, or fails saying how many came.
    pub fn expect_many(&mut self, needle: &str, count: usize, timeout: Duration) -> Result<String> {
        let bytes = needle.as_bytes();
        // Scanned incrementally: a paste's answers arrive in many small
        // chunks, and rescanning from the start each time is quadratic.
        let scanned = std::cell::Cell::new((0usize, 0usize)); // (offset, found)
        let progress = |text: &[u8]| {
            let (mut offset, mut found) = scanned.get();
            while found < count {
                match find(&text[offset..], bytes) {
                    Some(at) => {
                        offset += at + bytes.len();
                        found += 1;
                    }
                    None => break,
                }
            }
            scanned.set((offset, found));
            found == count
        };
        let waited = self.wait_for(timeout, progress);
        let (end, found) = scanned.get();
        match waited {
            Waited::Matched => {
                let unread = &self.output[self.consumed..];
                let text = String::from_utf8_lossy(&unread[..end]).into_owned();
                self.consumed += end;
                Ok(text)
            }
            Waited::Closed => bail!(
                "{}: QEMU exited after {found} of {count} {needle:?}",
                self.name
            ),
            Waited::TimedOut => {
                let what = format!("only {found} of {count} {needle:?}");
                Err(self.hung(&what, timeout))
            }
        }
    }

    /// Whatever arrived since the last read, without waiting for more.
    pub fn take_unread(&mut self) -> String {
        loop {
            match self.chunks.try_recv() {
                Ok(chunk) => self.take(&chunk),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.closed = true;
                    self.flush_live();
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&self.output[self.consumed..]).into_owned();
        self.consumed = self.output.len();
        text
    }

    /// Types a line as on a terminal (Enter sends `\r`).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        self.send_bytes(format!("{line}\r").as_bytes())
    }

    /// Writes `bytes` to the serial input in one go, as a paste does.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stdin
            .write_all(bytes)
            .and_then(|()| self.stdin.flush())
            .context("QEMU no longer reads its serial input")
    }

    /// Waits for QEMU to exit, killing it after `timeout`. `None`: it hung.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            // Keep reading so QEMU never blocks on a full pipe.
            self.wait_for(Duration::from_millis(100), |_| false);
            if let Some(status) = self.child.try_wait()? {
                self.wait_for(Duration::from_secs(1), |_| false); // the last output
                self.flush_live();
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                self.child.kill().ok();
                self.child.wait().ok();
                self.flush_live();
                return Ok(None);
            }
        }
    }

    /// Sends `command` and waits for the next prompt or for QEMU to exit
    /// (commands that power off). Returns the raw text in between, or
    /// `None` if QEMU no longer took input.
    pub fn command_or_exit(&mut self, command: &str, timeout: Duration) -> Option<String> {
        self.send_line(command).ok()?;
        let prompt = PROMPT.as_bytes();
        self.wait_for(timeout, |text| find(text, prompt).is_some());
        Some(self.take_unread())
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// QEMU's guest-error log of one run (`-d guest_errors -D FILE`), for the
/// tests that promise the guest never makes the device log a mistake.
pub struct GuestErrorLog {
    path: std::path::PathBuf,
}

impl GuestErrorLog {
    /// An empty log for the run `name`, in target/vm/guest-errors/.
    pub fn new(repo: &Repo, name: &str) -> Result<Self> {
        let dir = repo.vm_dir().join("guest-errors");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("{file}.log"));
        // A log left by an earlier run must not fail (or pass) this one.
        let _ = std::fs::remove_file(&path);
        Ok(GuestErrorLog { path })
    }

    /// The QEMU arguments that write this log.
    pub fn qemu_args(&self) -> [String; 4] {
        [
            "-d".to_string(),
            "guest_errors".to_string(),
            "-D".to_string(),
            self.path.display().to_string(),
        ]
    }

    /// `config` with these arguments added.
    pub fn added_to(&self, config: &VmConfig) -> VmConfig {
        let mut config = config.clone();
        config.extra.extend(self.qemu_args());
        config
    }

    /// Fails, quoting them, if the device logged guest errors (its lines
    /// start with `stopwatch`); `what` names what ran.
    pub fn ensure_none(&self, what: &str) -> Result<()> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("stopwatch"))
            .collect();
        if !lines.is_empty() {
            bail!(
                "{what} made the device log guest errors:\n{}",
                lines.join("\n")
            );
        }
        Ok(())
    }
}

/// Boots `config` with its own guest-error log (named after `run` and the
/// machine) and waits for the shell's prompt.
pub fn boot_to_prompt(
    repo: &Repo,
    config: &VmConfig,
    run: &str,
    boot_timeout: Duration,
) -> Result<(SerialConsole, GuestErrorLog)> {
    let guest_errors = GuestErrorLog::new(repo, &format!("{run} {config}"))?;
    let config = guest_errors.added_to(config);
    eprintln!("    {}", config.command_line(repo));
    let mut console = SerialConsole::spawn(repo, &config, None)?.named(run);
    console
        .expect(PROMPT, boot_timeout)
        .context("the guest shell never showed its prompt")?;
    Ok((console, guest_errors))
}

/// Waits for a timeout notice (`[timeout] ... fired at S s (N so far)`)
/// and returns the stopwatch time it names, in seconds.
pub fn expect_notice_time(console: &mut SerialConsole, timeout: Duration) -> Result<f64> {
    let text = console
        .expect(" so far)", timeout)
        .context("no timeout notice")?;
    let ns = text
        .lines()
        .find_map(TimeoutNotice::parse)
        .and_then(|notice| notice.fired_at_ns)
        .with_context(|| format!("no timeout notice with a time in {text:?}"))?;
    Ok(ns as f64 / 1e9)
}

/// Line endings as `\n` (serial output may say `\r\n` or `\r\r\n`).
pub fn clean_text(raw: &str) -> String {
    raw.replace('\r', "")
}

/// The guest's answer to `command`: without the echoed command line and
/// the closing prompt.
pub fn clean_response(raw: &str, command: &str) -> String {
    let text = clean_text(raw);
    let text = text.strip_suffix(PROMPT).unwrap_or(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.first().is_some_and(|first| first.trim() == command) {
        lines.remove(0);
    }
    lines.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a QEMU that prints `script`'s output, then hangs.
    fn hanging(script: &str) -> SerialConsole {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("{script}; exec sleep 600")]);
        SerialConsole::spawn_command(command, "a stand-in QEMU", None).unwrap()
    }

    #[test]
    fn a_hung_qemu_is_killed_and_reported_with_its_test_and_last_lines() {
        let mut console = hanging(
            "printf 'booting\\r\\n'; for i in $(seq 1 14); do echo \"line $i\"; done; \
             printf 'stopwatch> '",
        )
        .named("guest tests cortex-a53+gicv2");
        let timeout = Duration::from_millis(500);
        assert!(console.wait_exit(timeout).unwrap().is_none(), "it hangs");
        let message = format!("{:#}", console.hung("no semihosting exit", timeout));
        assert!(
            message.starts_with(
                "guest tests cortex-a53+gicv2: QEMU hung: no semihosting exit within 0.5s; \
                 killed it. Its last console lines:\n"
            ),
            "{message}"
        );
        assert!(message.contains("    | line 4\n"), "{message}");
        assert!(
            message.ends_with("    | line 14\n    | stopwatch>"),
            "{message}"
        );
        assert!(
            !message.contains("| line 3\n"),
            "only the last lines: {message}"
        );
        assert!(console.child.try_wait().unwrap().is_some(), "killed");
    }

    #[test]
    fn output_that_never_comes_kills_qemu_and_says_what_was_awaited() {
        let mut console = hanging("echo 'stopwatch> start'").named("serial fuzz");
        let error = console
            .expect("1.00 seconds", Duration::from_millis(300))
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.starts_with("serial fuzz: QEMU hung: no \"1.00 seconds\" within 0.3s"),
            "{message}"
        );
        assert!(message.ends_with("    | stopwatch> start"), "{message}");
        assert!(console.child.try_wait().unwrap().is_some(), "killed");

        let mut console = hanging("echo 'stopwatch> '").named("serial paste");
        let message = format!(
            "{:#}",
            console
                .expect_many(PROMPT, 3, Duration::from_millis(300))
                .unwrap_err()
        );
        assert!(
            message.starts_with("serial paste: QEMU hung: only 1 of 3 \"stopwatch> \""),
            "{message}"
        );
        assert!(console.child.try_wait().unwrap().is_some(), "killed");
    }

    #[test]
    fn strips_echo_prompt_and_carriage_returns() {
        let raw = "read\r\r\n1.00 seconds\r\r\nstopwatch> ";
        assert_eq!(clean_response(raw, "read"), "1.00 seconds");
        // A shell that does not echo.
        assert_eq!(
            clean_response("0.00 seconds\r\nstopwatch> ", "read"),
            "0.00 seconds"
        );
        assert_eq!(clean_response("reset\r\nstopwatch> ", "reset"), "");
    }
}
