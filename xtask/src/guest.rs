//! Runs the guest non-interactively through its serial console: the
//! in-guest test suite (`-append test`) and the scripted stopwatch demo.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::repo::Repo;
use crate::run::{Kernel, VmConfig};
use stopwatch_shell::protocol::{exit_status, TestSummary, TimePageReading};

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
    fn command_or_exit(&mut self, command: &str, timeout: Duration) -> Option<String> {
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

/// Boots the guest with `-append test`, which must exit with status 0 and
/// report `N passed, 0 failed` with N > 0. `Ok` holds a one-line result,
/// `Err` why it failed.
pub fn run_guest_tests(repo: &Repo, config: &VmConfig, timeout: Duration) -> Result<String> {
    eprintln!("    {}", config.command_line());
    let mut console = SerialConsole::spawn(repo, config, Some(format!("    [{config}] ")))?
        .named(&format!("guest tests {config}"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung(
            "no semihosting exit (the guest tests must end with one)",
            timeout,
        ));
    };
    let transcript = console.transcript();
    let Some(TestSummary { passed, failed, .. }) = TestSummary::find_last(&transcript) else {
        bail!("{config}: QEMU exited ({status}) without an `N passed, M failed` line");
    };
    let entered = format!("entered at EL{}", config.expected_entry_el());
    if !transcript.contains(&entered) {
        bail!("{config}: the banner does not say {entered:?}");
    }
    let exit_ok = status.code() == Some(exit_status::TESTS_PASSED);
    let summary = format!("{passed} passed, {failed} failed, {status}");
    if exit_ok && failed == 0 && passed > 0 {
        Ok(summary)
    } else {
        bail!("{config}: {summary}")
    }
}

/// Boots `-append fault`, in which the kernel loads from an unmapped
/// address on purpose: it must report the exception with its syndrome,
/// fault address and return address, and end the run with its status
/// (never hang).
pub fn run_fault_report(repo: &Repo, timeout: Duration) -> Result<String> {
    run_fatal_mode(
        repo,
        "fault",
        &[
            "data abort",
            "ESR_EL1=0x",
            "FAR_EL1=0x0000007fdead0000",
            "ELR_EL1=0x",
        ],
        timeout,
    )?;
    Ok(format!(
        "ESR/FAR/ELR reported, exit status {}",
        exit_status::FATAL
    ))
}

/// Boots `-append overflow`, in which the kernel recurses without end: the
/// stack must run into its unmapped guard page, and the fault be reported
/// as a stack overflow with its status (never silent corruption, never a
/// hang).
pub fn run_stack_overflow(repo: &Repo, timeout: Duration) -> Result<String> {
    run_fatal_mode(
        repo,
        "overflow",
        &[
            "data abort",
            "FAR_EL1=0x",
            "stack overflow: the kernel stack ran into its guard page",
        ],
        timeout,
    )?;
    Ok(format!(
        "reported as a stack overflow in the guard page, exit status {}",
        exit_status::FATAL
    ))
}

/// Boots the test kernel with `-append MODE`, which must end the run with
/// [`exit_status::FATAL`] after printing every one of `needles`.
fn run_fatal_mode(repo: &Repo, mode: &str, needles: &[&str], timeout: Duration) -> Result<()> {
    let config = VmConfig {
        append: Some(mode.to_string()),
        tests: true,
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line());
    let mut console = SerialConsole::spawn(repo, &config, Some(format!("    [{mode}] ")))?
        .named(&format!("guest report of `-append {mode}`"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung(&format!("no exit in `-append {mode}`"), timeout));
    };
    let transcript = console.transcript();
    for needle in needles {
        if !transcript.contains(needle) {
            bail!("the report of `-append {mode}` lacks {needle:?}:\n{transcript}");
        }
    }
    if status.code() != Some(exit_status::FATAL) {
        bail!(
            "`-append {mode}` ended with {status}, not exit status {}",
            exit_status::FATAL
        );
    }
    Ok(())
}

/// The shipped kernel (no in-guest tests), as ELF and as Image: each boots
/// to the shell's prompt; asked for `-append test`, it says which kernel
/// has them and exits with its status.
pub fn run_shipped_kernel_checks(repo: &Repo, timeout: Duration) -> Result<String> {
    for kernel in [Kernel::Elf, Kernel::Image] {
        let config = VmConfig {
            kernel: kernel.clone(),
            ..VmConfig::default()
        };
        eprintln!("    {}", config.command_line());
        let mut console = SerialConsole::spawn(repo, &config, None)?
            .named(&format!("shipped kernel ({kernel:?})"));
        console
            .expect(PROMPT, timeout)
            .with_context(|| format!("{kernel:?}: no shell prompt"))?;
    }
    let config = VmConfig {
        append: Some("test".to_string()),
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line());
    let mut console =
        SerialConsole::spawn(repo, &config, None)?.named("shipped kernel, `-append test`");
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung("no exit", timeout));
    };
    ensure!(
        status.code() == Some(exit_status::NO_TESTS),
        "the shipped kernel ended `-append test` with {status}, not {}",
        exit_status::NO_TESTS
    );
    ensure!(
        console
            .transcript()
            .contains("boot target/vm/guest-kernel-test"),
        "the shipped kernel did not say which kernel has the tests"
    );
    Ok(format!(
        "ELF and Image reach the prompt; `test` refused with status {}",
        exit_status::NO_TESTS
    ))
}

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

/// Every start-up failure of [`startup_failures`]: each must end with its
/// status; `Ok` holds a one-line result.
pub fn run_startup_failures(repo: &Repo, timeout: Duration) -> Result<String> {
    let failures = startup_failures(repo)?;
    let mut failed = Vec::new();
    for failure in &failures {
        match run_startup_failure(repo, failure, timeout) {
            Ok(line) => eprintln!("    ok: {line}"),
            Err(error) => {
                eprintln!("    FAILED: {error:#}");
                failed.push(failure.name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} failed: {}",
            failed.len(),
            failures.len(),
            failed.join("; ")
        );
    }
    let statuses: Vec<String> = failures.iter().map(|f| f.status.to_string()).collect();
    Ok(format!(
        "{} cases, statuses {}",
        failures.len(),
        statuses.join(", ")
    ))
}

/// A way the kernel cannot start, produced for real, and how the run must
/// end: with the kernel's exit status for it (`power.rs`), never a hang.
pub struct StartupFailure {
    pub name: &'static str,
    pub config: VmConfig,
    /// The exit status; 0 where semihosting is off and PSCI powers off.
    pub status: i32,
    /// What the kernel must print first (through semihosting: there is no
    /// console yet), if it can print at all.
    pub message: Option<&'static str>,
}

/// Builds the start-up failure cases QEMU can produce: device trees given
/// with `-dtb`, made from the one QEMU generates (`dumpdtb`) with a string
/// spoiled in place, and an Image whose header sends it 2 MiB above where
/// it is linked.
///
/// No device tree at all (12) comes from QEMU itself: it doubles a `-dtb`
/// file's size for its edits, and a tree that then does not fit below the
/// ELF (QEMU's own 1 MiB dump) is silently not loaded.
///
/// Not producible with this QEMU build (it has no generic `loader` device
/// to overwrite the tree in guest RAM, and it always writes a valid tree
/// and its own memory node): an invalid tree (13), one without memory
/// (14); nor entry at EL0 (10).
pub fn startup_failures(repo: &Repo) -> Result<Vec<StartupFailure>> {
    let base = VmConfig {
        devices: 0,
        ..VmConfig::default()
    };
    let padded_dtb = dump_dtb(repo, &base)?;
    let dtb = compact_dtb(&padded_dtb)?;
    // `-dtb` with every copy of `text` in QEMU's tree made to start with
    // 'x' (same length: the tree stays well-formed).
    let spoiled = |text: &str, file: &str| -> Result<VmConfig> {
        let needle = format!("{text}\0");
        let mut spoiled = dtb.clone();
        let offsets: Vec<usize> = dtb
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle.as_bytes())
            .map(|(offset, _)| offset)
            .collect();
        if offsets.is_empty() {
            bail!("QEMU's device tree has no {text:?}");
        }
        for offset in offsets {
            spoiled[offset] = b'x';
        }
        let path = repo.vm_dir().join(file);
        std::fs::write(&path, spoiled).with_context(|| format!("writing {}", path.display()))?;
        Ok(VmConfig {
            extra: vec![
                "-dtb".to_string(),
                repo.relative(&path).display().to_string(),
            ],
            ..base.clone()
        })
    };

    let image = std::fs::read(repo.kernel_image())
        .with_context(|| format!("reading {}", repo.kernel_image().display()))?;
    let mut misplaced = image.clone();
    // text_offset (header bytes 8..16): 4 MiB instead of 2.
    misplaced[8..16].copy_from_slice(&0x40_0000u64.to_le_bytes());
    let misplaced_path = repo.vm_dir().join("test-misplaced.bin");
    std::fs::write(&misplaced_path, misplaced)
        .with_context(|| format!("writing {}", misplaced_path.display()))?;

    // The console's path, in /chosen/stdout-path and /aliases.
    let no_uart = spoiled("/pl011@9000000", "test-no-uart.dtb")?;
    let oversized = repo.vm_dir().join("test-virt.dtb");
    Ok(vec![
        StartupFailure {
            name: "no device tree (QEMU's 1 MiB dump does not fit below the kernel)",
            config: VmConfig {
                extra: vec![
                    "-dtb".to_string(),
                    repo.relative(&oversized).display().to_string(),
                ],
                ..base.clone()
            },
            status: exit_status::NO_DEVICE_TREE,
            message: Some("no device tree at x0"),
        },
        StartupFailure {
            name: "Image loaded 2 MiB above its link address",
            config: VmConfig {
                kernel: Kernel::Other(repo.relative(&misplaced_path).display().to_string()),
                ..base.clone()
            },
            status: exit_status::WRONG_ADDRESS,
            message: None,
        },
        StartupFailure {
            name: "device tree without the console UART",
            config: no_uart.clone(),
            status: exit_status::NO_CONSOLE,
            message: Some("no console UART"),
        },
        StartupFailure {
            name: "device tree without a GIC",
            config: spoiled("arm,cortex-a15-gic", "test-no-gic.dtb")?,
            status: exit_status::NO_GIC,
            message: Some("no GICv2 or GICv3"),
        },
        StartupFailure {
            name: "no console UART and no semihosting: PSCI SYSTEM_OFF",
            config: VmConfig {
                semihosting: false,
                ..no_uart
            },
            status: 0,
            message: None,
        },
    ])
}

/// `dtb` cut to its used size (QEMU's dump is padded to 1 MiB), its
/// `totalsize` header field set to match.
fn compact_dtb(dtb: &[u8]) -> Result<Vec<u8>> {
    let be32 = |at: usize| -> Result<usize> {
        let bytes = dtb
            .get(at..at + 4)
            .context("device tree header truncated")?;
        Ok(u32::from_be_bytes(bytes.try_into().unwrap()) as usize)
    };
    if be32(0)? != 0xd00d_feed {
        bail!("not a flattened device tree");
    }
    // off_dt_struct + size_dt_struct, off_dt_strings + size_dt_strings.
    let used = (be32(8)? + be32(36)?).max(be32(12)? + be32(32)?);
    if used > dtb.len() {
        bail!("device tree blocks past its end");
    }
    let mut compact = dtb[..used].to_vec();
    compact[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    Ok(compact)
}

/// The device tree QEMU makes for `config` (`-M ...,dumpdtb=FILE`).
fn dump_dtb(repo: &Repo, config: &VmConfig) -> Result<Vec<u8>> {
    let path = repo.vm_dir().join("test-virt.dtb");
    let mut dump = config.clone();
    dump.extra.extend([
        "-machine".to_string(),
        format!("dumpdtb={}", path.display()),
    ]);
    let output = dump
        .command(repo)
        .stdin(std::process::Stdio::null())
        .output()
        .context("could not start QEMU")?;
    if !output.status.success() {
        bail!(
            "QEMU could not dump its device tree: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Runs one start-up failure: QEMU must exit (not hang) with its status,
/// after the message.
pub fn run_startup_failure(
    repo: &Repo,
    failure: &StartupFailure,
    timeout: Duration,
) -> Result<String> {
    let config = &failure.config;
    eprintln!("    {}", config.command_line());
    let mut console = SerialConsole::spawn(repo, config, Some("    [start-up] ".to_string()))?
        .named(failure.name);
    let Some(status) = console.wait_exit(timeout)? else {
        let what = format!("no exit with status {}", failure.status);
        return Err(console.hung(&what, timeout));
    };
    if status.code() != Some(failure.status) {
        bail!(
            "{}: QEMU ended with {status}, not exit status {}",
            failure.name,
            failure.status
        );
    }
    if let Some(message) = failure.message {
        if !console.transcript().contains(message) {
            bail!("{}: the kernel did not print {message:?}", failure.name);
        }
    }
    Ok(format!("{}: status {}", failure.name, failure.status))
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
        eprintln!("    {}", config.command_line());
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

/// Line endings as `\n` (serial output may say `\r\n` or `\r\r\n`).
fn clean_text(raw: &str) -> String {
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
