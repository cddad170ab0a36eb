//! `cargo xtask test`: every test of the project, in order, with a summary
//! table at the end. A failed step does not stop the ones that do not
//! depend on it.

use anyhow::{bail, Result};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::guest::{self, Demo};
use crate::pipeline::Session;
use crate::prereqs::cargo;
use crate::run::{Gic, VmConfig};
use crate::util::{format_duration, run};

/// The device's qtest crate and the variable that tells it which QEMU to run.
const QTEST_PACKAGE: &str = "stopwatch-qtest";
const QTEST_QEMU_ENV: &str = "STOPWATCH_QEMU";

/// How a step ended.
enum Verdict {
    Pass(String),
    Fail(String),
}

struct Outcome {
    name: String,
    verdict: Verdict,
    duration: Duration,
}

/// The machines the guest test suite runs on; every one must pass.
fn guest_test_configs() -> Vec<VmConfig> {
    let with = |cpu: &str, gic, el2, device| VmConfig {
        cpu: cpu.to_string(),
        gic: Some(gic),
        el2,
        device,
        append: Some("test".to_string()),
        extra: Vec::new(),
    };
    vec![
        with("cortex-a53", Gic::V2, false, true),
        with("max", Gic::V3, false, true),
        with("cortex-a53", Gic::V2, true, true),
        VmConfig {
            extra: vec!["-smp".to_string(), "2".to_string()],
            ..with("max", Gic::V3, true, true)
        },
        // Without the device the guest runs what does not need it (the
        // shell must answer "no stopwatch device") and skips the rest.
        with("cortex-a53", Gic::V2, false, false),
    ]
}

/// Runs everything; returns whether all steps passed (skips allowed).
pub fn run_all(session: &Session, guest_timeout: Duration) -> bool {
    let mut outcomes = Vec::new();
    let repo = &session.repo;

    outcomes.push(step("host crates: cargo test", || {
        run(Command::new(cargo()).arg("test").current_dir(&repo.root))?;
        Ok(Verdict::Pass("ok".into()))
    }));

    let mut qemu_ok = false;
    outcomes.push(step("build: prerequisites + QEMU", || {
        let mut rows = Vec::new();
        let tools = session.prerequisites(&mut rows)?;
        session.qemu(&tools, &mut rows)?;
        qemu_ok = true;
        Ok(Verdict::Pass("ok".into()))
    }));
    let mut kernel_ok = false;
    outcomes.push(step("build: guest kernel", || {
        session.kernel(&mut Vec::new())?;
        kernel_ok = true;
        Ok(Verdict::Pass("ok".into()))
    }));

    outcomes.push(step("device qtests", || {
        if !qemu_ok {
            bail!("not run: QEMU did not build");
        }
        // The differential test writes its figures (operations, ops/s) here.
        let report = repo.cargo_target_dir().join("differential-report.txt");
        let _ = std::fs::remove_file(&report);
        run(Command::new(cargo())
            .args(["test", "-p", QTEST_PACKAGE, "--", "--include-ignored"])
            .env(QTEST_QEMU_ENV, repo.qemu_binary())
            .env("STOPWATCH_DIFF_REPORT", &report)
            .current_dir(&repo.root))?;
        let figures = std::fs::read_to_string(&report).unwrap_or_default();
        Ok(Verdict::Pass(match figures.trim() {
            "" => "ok".into(),
            figures => format!("ok; differential: {figures}"),
        }))
    }));

    outcomes.push(step("lint: fmt + clippy (host, kernel, device)", || {
        if !qemu_ok {
            bail!("not run: QEMU did not build");
        }
        crate::lint::run_all(session)?;
        Ok(Verdict::Pass("clean".into()))
    }));

    let runnable = qemu_ok && kernel_ok;
    for config in guest_test_configs() {
        outcomes.push(step(&format!("guest tests: {config}"), || {
            if !runnable {
                bail!("not run: QEMU or the guest kernel did not build");
            }
            let summary = guest::run_guest_tests(repo, &config, guest_timeout)?;
            Ok(Verdict::Pass(summary))
        }));
    }

    outcomes.push(step("guest fatal exception report (-append fault)", || {
        if !runnable {
            bail!("not run: QEMU or the guest kernel did not build");
        }
        guest::run_fault_report(repo, guest_timeout).map(Verdict::Pass)
    }));

    for gic in [Gic::V2, Gic::V3] {
        let config = VmConfig {
            gic: Some(gic),
            ..VmConfig::default()
        };
        let name = format!(
            "serial paste: {} commands in one write ({config})",
            crate::paste_test::PASTED_COMMANDS
        );
        outcomes.push(step(&name, || {
            if !runnable {
                bail!("not run: QEMU or the guest kernel did not build");
            }
            crate::paste_test::run_paste(repo, &config, guest_timeout).map(Verdict::Pass)
        }));
    }

    let name = format!(
        "serial fuzz: {} bursts of hostile input",
        crate::serial_fuzz::TEST_BURSTS
    );
    outcomes.push(step(&name, || {
        if !runnable {
            bail!("not run: QEMU or the guest kernel did not build");
        }
        crate::serial_fuzz::run(
            repo,
            crate::serial_fuzz::TEST_SEED,
            crate::serial_fuzz::TEST_BURSTS,
            guest_timeout,
        )
        .map(Verdict::Pass)
    }));

    outcomes.push(step(
        "snapshot of a running guest (migrate, -incoming)",
        || {
            if !runnable {
                bail!("not run: QEMU or the guest kernel did not build");
            }
            crate::snapshot_test::run(repo, guest_timeout).map(Verdict::Pass)
        },
    ));

    outcomes.push(step("shell: 3 stopwatches, notices, watch", || {
        if !runnable {
            bail!("not run: QEMU or the guest kernel did not build");
        }
        crate::shell_test::run(repo, guest_timeout).map(Verdict::Pass)
    }));

    outcomes.push(step(
        "serial paste: the demo pasted = the demo typed",
        || {
            if !runnable {
                bail!("not run: QEMU or the guest kernel did not build");
            }
            crate::paste_test::run_demo_paste(repo, &VmConfig::default(), guest_timeout)
                .map(Verdict::Pass)
        },
    ));

    outcomes.push(step("demo", || {
        if !runnable {
            bail!("not run: QEMU or the guest kernel did not build");
        }
        Demo::run(repo, &VmConfig::default(), guest_timeout)?;
        Ok(Verdict::Pass("all checks passed".into()))
    }));

    print_table(&outcomes);
    !outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Fail(_)))
}

fn step(name: &str, body: impl FnOnce() -> Result<Verdict>) -> Outcome {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    let verdict = body().unwrap_or_else(|error| {
        let message = format!("{error:#}");
        eprintln!("    FAILED: {message}");
        Verdict::Fail(message)
    });
    Outcome {
        name: name.to_string(),
        verdict,
        duration: started.elapsed(),
    }
}

fn print_table(outcomes: &[Outcome]) {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    eprintln!("\nTest summary");
    let (mut passed, mut failed) = (0, 0);
    for outcome in outcomes {
        let (word, detail) = match &outcome.verdict {
            Verdict::Pass(d) => {
                passed += 1;
                ("pass", d)
            }
            Verdict::Fail(d) => {
                failed += 1;
                ("FAIL", d)
            }
        };
        let detail = detail.lines().next().unwrap_or("");
        eprintln!(
            "  {:<width$}  {word}  {:>7}  {detail}",
            outcome.name,
            format_duration(outcome.duration)
        );
    }
    // The plain closing line CI reads.
    println!("summary: {passed} passed, {failed} failed");
}
