// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask test [STAGE] [FILTER]`: the project's tests, grouped in
//! stages, with a summary table at the end. A failed test does not stop
//! the ones that do not depend on it.
//!
//! Every test is one entry of [`tests`]: its stage, its name, what it needs
//! built, and its body. A new test or a new stage is one entry there (and,
//! for a stage, one line of [`STAGES`]).

use anyhow::{bail, Result};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::debug_tests;
use crate::demo::Demo;
use crate::guest;
use crate::pipeline::Session;
use crate::prereqs::cargo;
use crate::run::{Gic, Kernel, VmConfig};
use crate::util::{self, format_duration};
use crate::{line_editing_test, paste_test, serial_fuzz, shell_test, snapshot_test};

/// The device's qtest crate and the variable that tells it which QEMU to run.
const QTEST_PACKAGE: &str = "stopwatch-qtest";
const QTEST_QEMU_ENV: &str = "STOPWATCH_QEMU";

/// The stages, in the order a full run takes them.
pub const STAGES: &[(&str, &str)] = &[
    (
        "host",
        "cargo test of the host crates (FILTER: cargo's test-name filter)",
    ),
    (
        "qtest",
        "the device inside QEMU over qtest (FILTER: cargo's test-name filter)",
    ),
    (
        "lint",
        "cargo fmt --check and clippy: host crates, kernel, device",
    ),
    (
        "guest",
        "the kernel's in-guest tests on each machine, the fault report",
    ),
    (
        "serial",
        "the shell over the real serial line: pastes, hostile bytes, several \
         stopwatches, a running guest's snapshot",
    ),
    (
        "kvm",
        "every guest MMIO access KVM-emulable, under the TCG plugin",
    ),
    (
        "debug",
        "cargo xtask dtb, gdb, --kernel, the kernel's line tables",
    ),
    ("demo", "the original demo typed into the guest shell"),
];

/// How a test ended.
pub enum Verdict {
    Pass(String),
    Fail(String),
}

struct Outcome {
    name: String,
    verdict: Verdict,
    duration: Duration,
}

/// What a test needs built before it runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    Nothing,
    Qemu,
    QemuAndKernel,
}

/// What a test body gets.
pub struct Context<'a> {
    pub session: &'a Session,
    pub guest_timeout: Duration,
    /// FILTER, for the tests that pass it on (cargo test's name filter).
    pub filter: Option<&'a str>,
}

/// What a test does; `Err` says why it failed.
pub type TestBody = dyn Fn(&Context) -> Result<Verdict>;

/// One test of the suite.
pub struct Test {
    pub stage: &'static str,
    pub name: String,
    pub needs: Needs,
    /// FILTER goes to the test itself (it runs many) instead of choosing
    /// it by name.
    pub takes_filter: bool,
    pub body: Box<TestBody>,
}

impl Test {
    pub fn new(
        stage: &'static str,
        name: impl Into<String>,
        needs: Needs,
        body: impl Fn(&Context) -> Result<Verdict> + 'static,
    ) -> Test {
        Test {
            stage,
            name: name.into(),
            needs,
            takes_filter: false,
            body: Box::new(body),
        }
    }

    fn taking_filter(self) -> Test {
        Test {
            takes_filter: true,
            ..self
        }
    }

    fn full_name(&self) -> String {
        format!("{}: {}", self.stage, self.name)
    }
}

/// The machines the guest test suite runs on; every one must pass.
fn guest_test_configs() -> Vec<VmConfig> {
    let with = |cpu: &str, gic, el2, devices| VmConfig {
        cpu: cpu.to_string(),
        gic: Some(gic),
        el2,
        devices,
        append: Some("test".to_string()),
        tests: true,
        ..VmConfig::default()
    };
    vec![
        with("cortex-a53", Gic::V2, false, 1),
        with("max", Gic::V3, false, 1),
        with("cortex-a53", Gic::V2, true, 1),
        VmConfig {
            extra: vec!["-smp".to_string(), "2".to_string()],
            ..with("max", Gic::V3, true, 1)
        },
        // Without the device the guest runs what does not need it (the
        // shell must answer "no stopwatch device") and skips the rest.
        with("cortex-a53", Gic::V2, false, 0),
        // secure=on: the ELF starts at Secure EL3 and drops to Non-secure
        // EL1 (no EL2), or to EL2 with virtualization=on.
        VmConfig {
            secure: true,
            ..with("cortex-a53", Gic::V2, false, 1)
        },
        VmConfig {
            secure: true,
            ..with("max", Gic::V3, true, 1)
        },
        // The flat Image, booted as Linux: the device tree comes in x0.
        VmConfig {
            kernel: Kernel::Image,
            ..with("cortex-a53", Gic::V2, false, 1)
        },
    ]
}

/// Every test, in the order of a full run.
pub fn tests() -> Vec<Test> {
    let mut tests = vec![
        Test::new("host", "cargo test", Needs::Nothing, |cx| {
            // The classifier's tests assemble their vectors with binutils.
            crate::prereqs::ensure_debian_packages()?;
            let mut cmd = Command::new(cargo());
            cmd.arg("test").current_dir(&cx.session.repo.root);
            if let Some(filter) = cx.filter {
                cmd.arg(filter);
            }
            util::run(&mut cmd)?;
            Ok(Verdict::Pass("ok".into()))
        })
        .taking_filter(),
        Test::new("qtest", "device qtests", Needs::Qemu, |cx| {
            let repo = &cx.session.repo;
            // The differential test writes its figures (operations, ops/s) here.
            let report = repo.cargo_target_dir().join("differential-report.txt");
            let _ = std::fs::remove_file(&report);
            let mut cmd = Command::new(cargo());
            cmd.args(["test", "-p", QTEST_PACKAGE, "--"])
                .args(cx.filter)
                .arg("--include-ignored")
                .env(QTEST_QEMU_ENV, repo.qemu_binary())
                .env("STOPWATCH_DIFF_REPORT", &report)
                .current_dir(&repo.root);
            util::run(&mut cmd)?;
            let figures = std::fs::read_to_string(&report).unwrap_or_default();
            Ok(Verdict::Pass(match figures.trim() {
                "" => "ok".into(),
                figures => format!("ok; differential: {figures}"),
            }))
        })
        .taking_filter(),
        Test::new(
            "lint",
            "fmt + clippy + rustdoc (host, kernel, device)",
            Needs::Qemu,
            |cx| {
                crate::lint::run_all(cx.session)?;
                Ok(Verdict::Pass("clean".into()))
            },
        ),
    ];
    for config in guest_test_configs() {
        tests.push(Test::new(
            "guest",
            config.to_string(),
            Needs::QemuAndKernel,
            move |cx| {
                let summary = guest::run_guest_tests(&cx.session.repo, &config, cx.guest_timeout)?;
                Ok(Verdict::Pass(summary))
            },
        ));
    }
    tests.push(Test::new(
        "guest",
        "shipped kernel: ELF and Image boot, carry no tests",
        Needs::QemuAndKernel,
        |cx| {
            guest::run_shipped_kernel_checks(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass)
        },
    ));
    tests.push(Test::new(
        "guest",
        "fatal exception report (-append fault)",
        Needs::QemuAndKernel,
        |cx| guest::run_fault_report(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass),
    ));
    tests.push(Test::new(
        "guest",
        "stack overflow caught by the guard page (-append overflow)",
        Needs::QemuAndKernel,
        |cx| guest::run_stack_overflow(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass),
    ));
    tests.push(Test::new(
        "guest",
        "start-up failures end with their status",
        Needs::QemuAndKernel,
        |cx| guest::run_startup_failures(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass),
    ));
    for gic in [Gic::V2, Gic::V3] {
        let config = VmConfig {
            gic: Some(gic),
            ..VmConfig::default()
        };
        let name = format!(
            "{} commands pasted in one write ({config})",
            paste_test::PASTED_COMMANDS
        );
        tests.push(Test::new("serial", name, Needs::QemuAndKernel, move |cx| {
            paste_test::run_paste(&cx.session.repo, &config, cx.guest_timeout).map(Verdict::Pass)
        }));
    }
    tests.push(Test::new(
        "serial",
        "the demo pasted = the demo typed",
        Needs::QemuAndKernel,
        |cx| {
            paste_test::run_demo_paste(&cx.session.repo, &VmConfig::default(), cx.guest_timeout)
                .map(Verdict::Pass)
        },
    ));
    tests.push(Test::new(
        "serial",
        format!("{} bursts of hostile bytes", serial_fuzz::TEST_BURSTS),
        Needs::QemuAndKernel,
        |cx| {
            serial_fuzz::run(
                &cx.session.repo,
                serial_fuzz::TEST_SEED,
                serial_fuzz::TEST_BURSTS,
                cx.guest_timeout,
            )
            .map(Verdict::Pass)
        },
    ));
    tests.push(Test::new(
        "serial",
        "3 stopwatches, notices, watch, laps",
        Needs::QemuAndKernel,
        |cx| shell_test::run(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass),
    ));
    tests.push(Test::new(
        "serial",
        "snapshot of a running guest (migrate, -incoming)",
        Needs::QemuAndKernel,
        |cx| snapshot_test::run(&cx.session.repo, cx.guest_timeout).map(Verdict::Pass),
    ));
    tests.push(Test::new(
        "serial",
        "snapshot with the device's interrupt raised, not acknowledged",
        Needs::QemuAndKernel,
        |cx| {
            snapshot_test::run_with_interrupt_pending(&cx.session.repo, cx.guest_timeout)
                .map(Verdict::Pass)
        },
    ));
    tests.push(Test::new(
        "kvm",
        "kvm-check: every MMIO access KVM-emulable (plugin)",
        Needs::QemuAndKernel,
        |cx| crate::kvm_check::run(&cx.session.repo, cx.guest_timeout * 2).map(Verdict::Pass),
    ));
    tests.extend(debug_tests::tests());
    tests.push(Test::new(
        "debug",
        "device-tree binding: dt-validate on the generated trees, planted bad nodes fail",
        Needs::QemuAndKernel,
        |cx| crate::dt_binding::run(&cx.session.repo, &cx.session.cache).map(Verdict::Pass),
    ));
    // The editing keys include Ctrl-A, which QEMU's multiplexed console
    // would take for itself.
    let editing = VmConfig {
        raw_serial: true,
        ..VmConfig::default()
    };
    let history_config = editing.clone();
    tests.push(Test::new(
        "serial",
        "line editing: history recalls and runs",
        Needs::QemuAndKernel,
        move |cx| {
            line_editing_test::run_history(&cx.session.repo, &history_config, cx.guest_timeout)
                .map(Verdict::Pass)
        },
    ));
    tests.push(Test::new(
        "serial",
        "line editing: an edited line runs as edited",
        Needs::QemuAndKernel,
        move |cx| {
            line_editing_test::run_editing(&cx.session.repo, &editing, cx.guest_timeout)
                .map(Verdict::Pass)
        },
    ));
    tests.push(Test::new("demo", "demo", Needs::QemuAndKernel, |cx| {
        Demo::run(&cx.session.repo, &VmConfig::default(), cx.guest_timeout)?;
        Ok(Verdict::Pass("all checks passed".into()))
    }));
    // A full run goes stage by stage, whatever order the entries above
    // were added in (the sort is stable within a stage).
    tests.sort_by_key(|test| {
        STAGES
            .iter()
            .position(|(stage, _)| *stage == test.stage)
            .unwrap_or(STAGES.len())
    });
    tests
}

/// Which tests to run: a stage (or all), and a filter within it.
pub struct Selection {
    stage: Option<String>,
    filter: Option<String>,
}

impl Selection {
    /// Checks the names against the suite.
    pub fn new(stage: Option<&str>, filter: Option<&str>) -> Result<Selection> {
        let selection = Selection {
            stage: stage.map(str::to_string),
            filter: filter.map(str::to_string),
        };
        if let Some(stage) = stage {
            if !STAGES.iter().any(|(name, _)| *name == stage) {
                bail!(
                    "no test stage `{stage}`: the stages are {} (`cargo xtask test --list` \
                     names their tests)",
                    STAGES.map_names().join(", ")
                );
            }
        }
        if selection.chosen(&tests()).is_empty() {
            bail!(
                "no test of stage `{}` has `{}` in its name (`cargo xtask test --list` \
                 names them)",
                stage.unwrap_or_default(),
                filter.unwrap_or_default()
            );
        }
        Ok(selection)
    }

    /// The selected tests, in suite order.
    fn chosen(&self, tests: &[Test]) -> Vec<usize> {
        (0..tests.len())
            .filter(|&index| {
                let test = &tests[index];
                self.stage
                    .as_deref()
                    .is_none_or(|stage| test.stage == stage)
                    && (test.takes_filter
                        || self
                            .filter
                            .as_deref()
                            .is_none_or(|filter| test.name.contains(filter)))
            })
            .collect()
    }
}

trait StageNames {
    fn map_names(&self) -> Vec<&'static str>;
}

impl StageNames for [(&'static str, &'static str)] {
    fn map_names(&self) -> Vec<&'static str> {
        self.iter().map(|(name, _)| *name).collect()
    }
}

/// `cargo xtask test --list`.
pub fn print_list() {
    let tests = tests();
    for (stage, about) in STAGES {
        println!("{stage}: {about}");
        for test in tests.iter().filter(|t| t.stage == *stage) {
            println!("    {}", test.name);
        }
    }
    println!(
        "\ncargo xtask test [STAGE [FILTER]]: FILTER picks the tests whose names contain it, \
         or goes to cargo test for host and qtest."
    );
}

/// Runs the selection, building first what it needs; returns whether all
/// steps passed.
pub fn run(session: &Session, selection: &Selection, guest_timeout: Duration) -> bool {
    let tests = tests();
    let chosen = selection.chosen(&tests);
    let needs = chosen
        .iter()
        .map(|&index| tests[index].needs)
        .max()
        .unwrap_or(Needs::Nothing);
    let cx = Context {
        session,
        guest_timeout,
        filter: selection.filter.as_deref(),
    };
    let mut outcomes = Vec::new();
    let mut qemu_ok = false;
    let mut kernel_ok = false;
    let mut built = false;
    for index in chosen {
        let test = &tests[index];
        // Built once, just before the first test that needs it, as a full
        // run always did (the host tests first).
        if !built && test.needs > Needs::Nothing {
            built = true;
            outcomes.push(step("build: prerequisites + QEMU", || {
                let mut rows = Vec::new();
                let tools = session.prerequisites(&mut rows)?;
                session.qemu(&tools, &mut rows)?;
                qemu_ok = true;
                Ok(Verdict::Pass("ok".into()))
            }));
            if needs == Needs::QemuAndKernel {
                outcomes.push(step("build: guest kernel", || {
                    session.kernel(&mut Vec::new())?;
                    kernel_ok = true;
                    Ok(Verdict::Pass("ok".into()))
                }));
            }
        }
        outcomes.push(step(&test.full_name(), || {
            match test.needs {
                Needs::Qemu if !qemu_ok => bail!("not run: QEMU did not build"),
                Needs::QemuAndKernel if !(qemu_ok && kernel_ok) => {
                    bail!("not run: QEMU or the guest kernel did not build")
                }
                _ => {}
            }
            (test.body)(&cx)
        }));
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(selection: &Selection) -> Vec<String> {
        let tests = tests();
        selection
            .chosen(&tests)
            .into_iter()
            .map(|index| tests[index].full_name())
            .collect()
    }

    #[test]
    fn every_test_belongs_to_a_listed_stage_and_has_a_unique_name() {
        let tests = tests();
        let mut seen = std::collections::HashSet::new();
        for test in &tests {
            assert!(
                STAGES.iter().any(|(stage, _)| *stage == test.stage),
                "{}",
                test.full_name()
            );
            assert!(seen.insert(test.full_name()), "{}", test.full_name());
        }
        for (stage, _) in STAGES {
            assert!(
                tests.iter().any(|t| t.stage == *stage),
                "empty stage {stage}"
            );
        }
    }

    #[test]
    fn the_default_runs_everything_in_stage_order() {
        let all = names(&Selection::new(None, None).unwrap());
        assert_eq!(all.len(), tests().len());
        let stage_of = |name: &String| {
            STAGES
                .iter()
                .position(|(stage, _)| name.starts_with(&format!("{stage}: ")))
                .unwrap()
        };
        assert!(all.windows(2).all(|w| stage_of(&w[0]) <= stage_of(&w[1])));
    }

    #[test]
    fn a_stage_and_a_filter_narrow_the_run() {
        let guest = names(&Selection::new(Some("guest"), None).unwrap());
        assert!(guest.len() >= 6 && guest.iter().all(|n| n.starts_with("guest: ")));
        let gicv3 = names(&Selection::new(Some("guest"), Some("gicv3")).unwrap());
        assert_eq!(
            gicv3,
            [
                "guest: max+gicv3",
                "guest: max+gicv3+el2 -smp 2",
                "guest: max+gicv3+secure+el2"
            ]
        );
        // host and qtest pass FILTER on to cargo test instead.
        let host = names(&Selection::new(Some("host"), Some("parses")).unwrap());
        assert_eq!(host, ["host: cargo test"]);
    }

    #[test]
    fn unknown_stages_and_filters_say_how_to_list() {
        let stage = Selection::new(Some("gest"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            stage.contains("no test stage `gest`") && stage.contains("--list"),
            "{stage}"
        );
        let filter = Selection::new(Some("guest"), Some("riscv"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            filter.contains("`riscv`") && filter.contains("--list"),
            "{filter}"
        );
    }
}
