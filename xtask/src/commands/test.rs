// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask test [STAGE] [FILTER]`: the project's tests, grouped in
//! stages, with a summary table at the end. A failed test does not stop
//! the others.
//!
//! The host tests, the qtests and the lints are run here, one entry of
//! [`tests`] each; the system tests are the trials of the `system-tests`
//! crate (`system_tests::catalogue`), run with `cargo test -p
//! system-tests`, whose report file gives their rows of the table.

use anyhow::{bail, Result};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::build::pipeline::Session;
use crate::build::prereqs::cargo;
use crate::util::{self, format_duration};
use system_tests::catalogue::{self, GUEST_TIMEOUT_ENV};
use system_tests::report::{self, REPORT_ENV};

/// The device's qtest crate and the variable that tells it which QEMU to run.
const QTEST_PACKAGE: &str = "stopwatch-qtest";
const QTEST_QEMU_ENV: &str = system_tests::repo::QEMU_ENV;
/// The system tests' crate and its trials' test binary.
const SYSTEM_TESTS_PACKAGE: &str = "system-tests";
const SYSTEM_TESTS_BINARY: &str = "system";

/// The stages run here, before the system tests' (in
/// `system_tests::catalogue::STAGES`).
const OWN_STAGES: &[(&str, &str)] = &[
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
];

/// The stages, in the order a full run takes them.
pub fn stages() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    OWN_STAGES.iter().chain(catalogue::STAGES)
}

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
    /// FILTER, for the tests that pass it on (cargo test's name filter).
    pub filter: Option<&'a str>,
}

/// What a test run here does; `Err` says why it failed.
pub type TestBody = dyn Fn(&Context) -> Result<Verdict>;

/// One test of the suite.
pub struct Test {
    pub stage: &'static str,
    pub name: String,
    pub needs: Needs,
    /// FILTER goes to the test itself (it runs many) instead of choosing
    /// it by name.
    pub takes_filter: bool,
    /// What runs it here; `None` for a system test (a trial of
    /// `system-tests`).
    pub body: Option<Box<TestBody>>,
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
            body: Some(Box::new(body)),
        }
    }

    fn taking_filter(self) -> Test {
        Test {
            takes_filter: true,
            ..self
        }
    }

    /// The name in the table; for a system test, its trial's name.
    fn full_name(&self) -> String {
        match self.body {
            Some(_) => format!("{}: {}", self.stage, self.name),
            None => format!("{}::{}", self.stage, self.name),
        }
    }
}

/// Every test, in the order of a full run: the host tests, qtests and
/// lints run here; each system test is a trial of the `system-tests`
/// crate, run by [`run_system_tests`].
pub fn tests() -> Vec<Test> {
    let mut tests = vec![
        Test::new("host", "cargo test", Needs::Nothing, |cx| {
            // The classifier's tests assemble their vectors with binutils.
            crate::build::prereqs::ensure_system_packages(cx.session.debian_source())?;
            // The default members, then the system tests' own unit tests
            // (their crate is not a default member: its trials need QEMU).
            for package in [None, Some(SYSTEM_TESTS_PACKAGE)] {
                let mut cmd = Command::new(cargo());
                cmd.args(["test", "--no-fail-fast"])
                    .current_dir(&cx.session.repo.root);
                if let Some(package) = package {
                    cmd.args(["-p", package, "--lib"]);
                }
                if let Some(filter) = cx.filter {
                    cmd.args(["--", filter]);
                }
                util::run(&mut cmd)?;
            }
            Ok(Verdict::Pass("ok".into()))
        })
        .taking_filter(),
        Test::new("qtest", "device qtests", Needs::Qemu, |cx| {
            let repo = &cx.session.repo;
            // The differential test writes its figures (operations, ops/s) here.
            let report = repo.cargo_target_dir().join("differential-report.txt");
            let _ = std::fs::remove_file(&report);
            let mut cmd = Command::new(cargo());
            cmd.args(["test", "--no-fail-fast", "-p", QTEST_PACKAGE, "--"])
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
        Test::new(
            "lint",
            "device-tree binding: dt-validate on the generated trees, planted bad nodes fail",
            // QEMU dumps the trees it would give the kernel it loads.
            Needs::QemuAndKernel,
            |cx| {
                crate::commands::dt_binding::run(&cx.session.repo, &cx.session.cache)
                    .map(Verdict::Pass)
            },
        ),
    ];
    for test in catalogue::all().into_iter().filter(|test| !test.ignored) {
        tests.push(Test {
            stage: test.stage,
            name: test.name,
            needs: Needs::QemuAndKernel,
            takes_filter: false,
            body: None,
        });
    }
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
            if !stages().any(|(name, _)| *name == stage) {
                let names: Vec<&str> = stages().map(|(name, _)| *name).collect();
                bail!(
                    "no test stage `{stage}`: the stages are {} (`cargo xtask test --list` \
                     names their tests)",
                    names.join(", ")
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

/// `cargo xtask test --list`.
pub fn print_list() {
    let tests = tests();
    for (stage, about) in stages() {
        println!("{stage}: {about}");
        for test in tests.iter().filter(|t| t.stage == *stage) {
            println!("    {}", test.full_name());
        }
    }
    println!(
        "\ncargo xtask test [STAGE [FILTER]]: FILTER picks the tests whose names contain it, \
         or goes to cargo test for host and qtest.\n\
         The system tests (guest to demo) are trials of `cargo test -p {SYSTEM_TESTS_PACKAGE}` \
         too: `-- --list`, `-- FILTER`, `-- --ignored` (the long ones, not run here)."
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
        filter: selection.filter.as_deref(),
    };
    let mut outcomes = Vec::new();
    let mut qemu_ok = false;
    let mut kernel_ok = false;
    let mut built = false;
    let mut system_tests = Vec::new();
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
        let Some(body) = &test.body else {
            system_tests.push(test);
            continue;
        };
        outcomes.push(step(&test.full_name(), || {
            match test.needs {
                Needs::Qemu if !qemu_ok => bail!("not run: QEMU did not build"),
                Needs::QemuAndKernel if !(qemu_ok && kernel_ok) => {
                    bail!("not run: QEMU or the guest kernel did not build")
                }
                _ => {}
            }
            body(&cx)
        }));
    }
    let mut wall_time = None;
    if !system_tests.is_empty() {
        if qemu_ok && kernel_ok {
            let started = Instant::now();
            outcomes.extend(run_system_tests(
                session,
                &system_tests,
                &tests,
                guest_timeout,
            ));
            wall_time = Some((system_tests.len(), started.elapsed()));
        } else {
            outcomes.extend(system_tests.iter().map(|test| Outcome {
                name: test.full_name(),
                verdict: Verdict::Fail("not run: QEMU or the guest kernel did not build".into()),
                duration: Duration::ZERO,
            }));
        }
    }

    print_table(&outcomes);
    if let Some((count, took)) = wall_time {
        eprintln!(
            "  ({count} system tests in {} of wall time, run side by side)",
            format_duration(took)
        );
    }
    let passed = !outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Fail(_)));
    // The plain closing line CI reads.
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Fail(_)))
        .count();
    println!(
        "summary: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    passed
}

/// Runs the `chosen` system tests as trials of `cargo test -p
/// system-tests` (the others of `all` skipped by their exact names), and
/// returns their rows from the trials' report file. A chosen trial that
/// wrote no row (its harness crashed, say) fails with cargo's error.
fn run_system_tests(
    session: &Session,
    chosen: &[&Test],
    all: &[Test],
    guest_timeout: Duration,
) -> Vec<Outcome> {
    let repo = &session.repo;
    let report_path = repo.cargo_target_dir().join("system-tests-report.jsonl");
    let _ = std::fs::remove_file(&report_path);
    let chosen_names: HashSet<String> = chosen.iter().map(|test| test.full_name()).collect();
    let skipped: Vec<String> = all
        .iter()
        .filter(|test| test.body.is_none() && !chosen_names.contains(&test.full_name()))
        .map(Test::full_name)
        .collect();
    let mut cmd = Command::new(cargo());
    cmd.args(["test", "--no-fail-fast", "-p", SYSTEM_TESTS_PACKAGE])
        .args(["--test", SYSTEM_TESTS_BINARY, "--"]);
    if !skipped.is_empty() {
        cmd.arg("--exact");
        for name in &skipped {
            cmd.args(["--skip", name]);
        }
    }
    cmd.env(REPORT_ENV, &report_path)
        .env(GUEST_TIMEOUT_ENV, guest_timeout.as_secs().to_string())
        .current_dir(&repo.root);
    eprintln!(
        "\n==> system tests: cargo test -p {SYSTEM_TESTS_PACKAGE} --test {SYSTEM_TESTS_BINARY} \
         ({} of {} trials)",
        chosen.len(),
        chosen.len() + skipped.len()
    );
    let finished = util::run(&mut cmd);
    if let Err(error) = &finished {
        eprintln!("    {error:#}");
    }
    let entries = report::read(&report_path).unwrap_or_else(|error| {
        eprintln!("    {error:#}");
        Vec::new()
    });
    chosen
        .iter()
        .map(|test| {
            let name = test.full_name();
            match entries.iter().find(|entry| entry.name == name) {
                Some(entry) => Outcome {
                    name,
                    verdict: if entry.passed {
                        Verdict::Pass(entry.detail.clone())
                    } else {
                        Verdict::Fail(entry.detail.clone())
                    },
                    duration: entry.duration,
                },
                None => Outcome {
                    name,
                    verdict: Verdict::Fail(match &finished {
                        Ok(()) => "did not run".to_string(),
                        // The command line, with its skip list, says little.
                        Err(_) => format!(
                            "did not run: `cargo test -p {SYSTEM_TESTS_PACKAGE}` failed \
                             (its output is above)"
                        ),
                    }),
                    duration: Duration::ZERO,
                },
            }
        })
        .collect()
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
    for outcome in outcomes {
        let (word, detail) = match &outcome.verdict {
            Verdict::Pass(d) => ("pass", d),
            Verdict::Fail(d) => ("FAIL", d),
        };
        let detail = detail.lines().next().unwrap_or("");
        eprintln!(
            "  {:<width$}  {word}  {:>7}  {detail}",
            outcome.name,
            format_duration(outcome.duration)
        );
    }
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
                stages().any(|(stage, _)| *stage == test.stage),
                "{}",
                test.full_name()
            );
            assert!(seen.insert(test.full_name()), "{}", test.full_name());
        }
        for (stage, _) in stages() {
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
            stages()
                .position(|(stage, _)| {
                    name.starts_with(&format!("{stage}: "))
                        || name.starts_with(&format!("{stage}::"))
                })
                .unwrap()
        };
        assert!(all.windows(2).all(|w| stage_of(&w[0]) <= stage_of(&w[1])));
    }

    #[test]
    fn a_stage_and_a_filter_narrow_the_run() {
        let guest = names(&Selection::new(Some("guest"), None).unwrap());
        assert!(guest.len() >= 6 && guest.iter().all(|n| n.starts_with("guest::")));
        let gicv3 = names(&Selection::new(Some("guest"), Some("gicv3")).unwrap());
        assert_eq!(
            gicv3,
            [
                "guest::in_guest_tests::max_gicv3_smp_4",
                "guest::in_guest_tests::max_gicv3_el2_smp_4",
                "guest::in_guest_tests::max_gicv3_secure_el2_smp_4",
                "guest::concurrency::time_page_readings_match_publications::max_gicv3_smp_2",
                "guest::concurrency::time_page_readings_match_publications::max_gicv3_smp_4",
                "guest::concurrency::each_device_follows_its_own_commands::max_gicv3_smp_2_2_devices",
                "guest::concurrency::each_device_follows_its_own_commands::max_gicv3_smp_4_4_devices",
                "guest::concurrency::planted_reader_without_recheck_is_caught::max_gicv3_smp_2",
            ]
        );
        // host and qtest pass FILTER on to cargo test instead.
        let host = names(&Selection::new(Some("host"), Some("parses")).unwrap());
        assert_eq!(host, ["host: cargo test"]);
        // The long trials are for `cargo test -p system-tests -- --ignored`.
        let fuzz = names(&Selection::new(Some("serial"), Some("fuzz")).unwrap());
        assert_eq!(
            fuzz,
            [
                "serial::fuzz::hostile_bytes::500_bursts_of_seed_0x5e41a1f0",
                "serial::fuzz::hostile_bytes::500_bursts_of_seed_0x5e41a1f1",
                "serial::fuzz::hostile_bytes::500_bursts_of_seed_0x5e41a1f2",
                "serial::fuzz::hostile_bytes::500_bursts_of_seed_0x5e41a1f3",
            ]
        );
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
