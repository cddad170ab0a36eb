// SPDX-License-Identifier: GPL-2.0-or-later
//! A snapshot of a running guest: with the shell up, a stopwatch RUNNING
//! and a timeout armed, the whole machine migrates to a file (QMP
//! `migrate`) and a new QEMU continues from it (`-incoming`). The shell
//! must answer, the elapsed time continue (neither reset nor jumped), the
//! timeout fire exactly once at its deadline, and the zero-exit and UPDATE
//! readings agree.

use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::path::Path;
use std::thread;
use std::time::Duration;
use stopwatch_qtest::Qmp;

use crate::repo::Repo;
use crate::serial::{clean_response, expect_notice_time, GuestErrorLog, SerialConsole, PROMPT};
use crate::vm::VmConfig;
use stopwatch_shell::protocol::{parse_update_text, TimePageReading};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The timeout armed before the snapshot, in seconds.
const TIMEOUT_SECS: f64 = 2.0;
/// How late after its deadline the notice may say the timeout fired: the
/// interrupt's latency under TCG (the bench's p99 is well under this).
const LATENESS_SECS: f64 = 0.050;

/// An empty directory for one test's snapshot and sockets (each test its
/// own: they may run at once).
fn scratch_dir(repo: &Repo, test: &str) -> Result<std::path::PathBuf> {
    let dir = repo.vm_dir().join("snapshot-test").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A guest with a QMP socket, driven over its serial console.
struct Guest {
    console: SerialConsole,
    qmp: Qmp,
    guest_errors: GuestErrorLog,
}

impl Guest {
    fn start(repo: &Repo, dir: &Path, name: &str, incoming: Option<&Path>) -> Result<Guest> {
        Guest::start_with(repo, dir, name, incoming, VmConfig::default())
    }

    /// `base` with a QMP socket and, for the target, `-incoming`.
    fn start_with(
        repo: &Repo,
        dir: &Path,
        name: &str,
        incoming: Option<&Path>,
        base: VmConfig,
    ) -> Result<Guest> {
        let socket = dir.join(format!("{name}.qmp"));
        let mut extra = vec!["-qmp".to_string(), Qmp::qemu_argument(&socket)];
        if let Some(snapshot) = incoming {
            extra.extend([
                "-incoming".to_string(),
                format!("file:{}", snapshot.display()),
            ]);
        }
        let guest_errors = GuestErrorLog::new(repo, &format!("snapshot {name}"))?;
        extra.extend(guest_errors.qemu_args());
        let config = VmConfig { extra, ..base };
        eprintln!("    {}", config.command_line(repo));
        let console =
            SerialConsole::spawn(repo, &config, None)?.named(&format!("snapshot test ({name})"));
        let qmp = Qmp::connect(&socket)?;
        Ok(Guest {
            console,
            qmp,
            guest_errors,
        })
    }

    /// Stops this QEMU (its snapshot is written); its guest-error log
    /// stays to be checked.
    fn stop(self) -> GuestErrorLog {
        let Guest {
            console,
            qmp,
            guest_errors,
        } = self;
        drop((console, qmp));
        guest_errors
    }

    /// Types `command`; returns its answer.
    fn ask(&mut self, command: &str) -> Result<String> {
        self.console.send_line(command)?;
        let raw = self
            .console
            .expect(PROMPT, ANSWER_TIMEOUT)
            .with_context(|| format!("no answer to `{command}`"))?;
        Ok(clean_response(&raw, command))
    }

    /// `read` (time page): the elapsed seconds.
    fn read(&mut self) -> Result<f64> {
        let answer = self.ask("read")?;
        ensure!(answer.contains("time page"), "`read` answered {answer:?}");
        TimePageReading::parse(&answer)
            .map(|reading| reading.elapsed_ns as f64 / 1e9)
            .with_context(|| format!("`read` answered {answer:?}"))
    }
}

/// A snapshot while the device's interrupt is raised and not yet
/// acknowledged: the test kernel's `hold-timeout` mode arms a 100 ms
/// timeout and keeps IRQs masked for 3 s; the snapshot is taken inside
/// that window, and the new QEMU must deliver exactly that one interrupt
/// once the guest unmasks (the guest checks and exits 0).
pub fn run_with_interrupt_pending(repo: &Repo, boot_timeout: Duration) -> Result<String> {
    let dir = scratch_dir(repo, "pending-interrupt")?;
    let snapshot = dir.join("pending-interrupt.snapshot");
    let base = VmConfig {
        append: Some("hold-timeout".to_string()),
        tests: true,
        ..VmConfig::default()
    };
    let mut source = Guest::start_with(repo, &dir, "pending-source", None, base.clone())?;
    source
        .console
        .expect("IRQs masked for 3 s", boot_timeout)
        .context("the test kernel never armed its held timeout")?;
    // Past the 100 ms deadline: the line is high, pending at the GIC.
    thread::sleep(Duration::from_millis(500));
    source.qmp.migrate_to_file(&snapshot)?;
    let source_errors = source.stop();

    let mut target = Guest::start_with(repo, &dir, "pending-target", Some(&snapshot), base)?;
    target.qmp.wait_for_incoming()?;
    let status = target.qmp.execute("query-status", json!({}))?;
    if status.get("running") != Some(&json!(true)) {
        target.qmp.execute("cont", json!({}))?;
    }
    let timeout = Duration::from_secs(20);
    let Some(exit) = target.console.wait_exit(timeout)? else {
        return Err(target.console.hung(
            "the restored guest never finished its held timeout",
            timeout,
        ));
    };
    let transcript = target.console.transcript();
    ensure!(
        exit.success() && transcript.contains("1 timeout interrupt(s) after unmasking"),
        "the restored guest ended with {exit}:\n{transcript}"
    );
    source_errors.ensure_none("the guest before the snapshot")?;
    target.guest_errors.ensure_none("the restored guest")?;
    Ok("the raised, unacknowledged line survived: one interrupt after the restore".to_string())
}

/// Runs the test; `Ok` holds a one-line result.
pub fn run(repo: &Repo, boot_timeout: Duration) -> Result<String> {
    let dir = scratch_dir(repo, "running-guest")?;
    let snapshot = dir.join("running-guest.snapshot");

    let mut source = Guest::start(repo, &dir, "source", None)?;
    source
        .console
        .expect(PROMPT, boot_timeout)
        .context("the guest shell never showed its prompt")?;
    source.ask("reset")?;
    source.ask("start")?;
    thread::sleep(Duration::from_millis(300));
    let read_before_arming = source.read()?;
    let answer = source.ask("timeout 2")?;
    ensure!(
        answer.contains("timeout armed"),
        "`timeout 2` answered {answer:?}"
    );
    let read_after_arming = source.read()?;
    let before_snapshot = source.read()?;

    source.qmp.migrate_to_file(&snapshot)?;
    let source_errors = source.stop();

    let mut target = Guest::start(repo, &dir, "target", Some(&snapshot))?;
    target.qmp.wait_for_incoming()?;
    let status = target.qmp.execute("query-status", json!({}))?;
    if status.get("running") != Some(&json!(true)) {
        target.qmp.execute("cont", json!({}))?;
    }
    // The shell answers in the new QEMU, and its time went on from the
    // snapshot: not reset, not jumped by the seconds the copy took.
    let after_snapshot = target.read()?;
    ensure!(
        after_snapshot >= before_snapshot && after_snapshot - before_snapshot < 1.0,
        "elapsed time {before_snapshot:.3} s before the snapshot, {after_snapshot:.3} s after"
    );

    // The timeout armed before the snapshot fires once, at its deadline.
    let fired_at = expect_notice_time(&mut target.console, Duration::from_secs(10))
        .context("the timeout armed before the snapshot never fired")?;
    let earliest = read_before_arming + TIMEOUT_SECS;
    let latest = read_after_arming + TIMEOUT_SECS + LATENESS_SECS;
    ensure!(
        (earliest..=latest).contains(&fired_at),
        "the timeout fired at {fired_at:.3} s, not in {earliest:.3}..={latest:.3} s"
    );
    target.console.expect(PROMPT, ANSWER_TIMEOUT)?;
    thread::sleep(Duration::from_millis(500));
    let count = target.ask("timeout")?;
    ensure!(
        count == "1",
        "{count} timeout interrupts after the snapshot, not 1"
    );

    // Both ways of reading agree on the restored device.
    target.ask("pause")?;
    let zero_exit = target.read()?;
    let trap = target.ask("read trap")?;
    let trap = parse_update_text(&trap).with_context(|| format!("`read trap` answered {trap:?}"))?
        as f64
        / 1e9;
    ensure!(
        (zero_exit - trap).abs() < 0.01,
        "zero-exit read {zero_exit:.3} s, UPDATE {trap:.2} s"
    );
    source_errors.ensure_none("the guest before the snapshot")?;
    target.guest_errors.ensure_none("the restored guest")?;
    Ok(format!(
        "time went on ({before_snapshot:.3} -> {after_snapshot:.3} s), \
         timeout fired once at {fired_at:.3} s, time page = UPDATE"
    ))
}
