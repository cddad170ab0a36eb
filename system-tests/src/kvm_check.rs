// SPDX-License-Identifier: GPL-2.0-or-later

//! `cargo xtask kvm-check`: would every MMIO access of the guest be
//! emulable under KVM? Runs the guest tests (GICv2 and GICv3), the demo
//! and the bench under QEMU with the `mmio-audit` plugin
//! (`kvm-check/plugin`), which classifies the instruction of every access
//! to an I/O region, and fails on any access KVM could not emulate
//! (naming its PC, symbol, instruction word and class), on too few I/O
//! accesses seen (a plugin that sees nothing proves nothing), and unless
//! the negative control (`-append kvm-negative-control`: one writeback load
//! of a PL011 register) is caught, exactly that one access.

use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::demo::Demo;
use crate::guest;
use crate::process::{self, format_duration};
use crate::repo::{cargo, Repo};
use crate::serial::SerialConsole;
use crate::vm::{Gic, VmConfig};

/// The plugin's package and the library cargo builds from it.
const PLUGIN_PACKAGE: &str = "mmio-audit-plugin";
const PLUGIN_LIBRARY: &str = "libmmio_audit.so";
/// The fewest I/O accesses a `-append test` run must show: it makes about
/// 1,800 (console, GIC, stopwatch), so fewer means the plugin is blind
/// (as it is without patches/0007: every access then looks like RAM).
pub const MIN_IO_ACCESSES_PER_TEST_RUN: u64 = 1_000;
/// The negative control's one bad access.
const NEGATIVE_CONTROL_SYMBOL: &str = "writeback_negative_control";
const NEGATIVE_CONTROL_CLASS: &str = "writeback/pre-index";

/// One non-emulable instruction in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pc: String,
    pub word: String,
    pub class: String,
    pub count: u64,
    pub device: String,
    pub symbol: String,
}

/// The plugin's report of one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub io_accesses: u64,
    pub by_region: Vec<(String, u64)>,
    pub violations: Vec<Violation>,
}

impl Report {
    /// Parses what the plugin writes (see `kvm-check/plugin/src/lib.rs`).
    pub fn parse(text: &str) -> Result<Report> {
        let mut report = Report::default();
        let mut saw_total = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("io_accesses") => {
                    report.io_accesses = number(words.next(), line)?;
                    saw_total = true;
                }
                Some("io_region") => {
                    let name = words.next().context("io_region without a name")?;
                    report
                        .by_region
                        .push((name.to_string(), number(words.next(), line)?));
                }
                Some("violation") => {
                    let field = |key: &str| -> Result<String> {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                            .map(str::to_string)
                            .with_context(|| format!("no {key}= in {line:?}"))
                    };
                    report.violations.push(Violation {
                        pc: field("pc")?,
                        word: field("word")?,
                        class: field("class")?,
                        count: number(Some(&field("count")?), line)?,
                        device: field("device")?,
                        symbol: field("symbol")?,
                    });
                }
                _ => bail!("unexpected line in the plugin's report: {line:?}"),
            }
        }
        ensure!(saw_total, "the plugin's report has no io_accesses line");
        Ok(report)
    }

    /// One line per violation, for error messages.
    fn describe_violations(&self) -> String {
        self.violations
            .iter()
            .map(|v| {
                format!(
                    "  pc {} in {}: instruction {} ({}), {} access(es) to {}",
                    v.pc, v.symbol, v.word, v.class, v.count, v.device
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn regions(&self) -> String {
        self.by_region
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn number(word: Option<&str>, line: &str) -> Result<u64> {
    word.and_then(|w| w.parse().ok())
        .with_context(|| format!("bad number in {line:?}"))
}

/// What a clean run must show.
fn judge_clean(name: &str, report: &Report, min_io: u64) -> Result<()> {
    if !report.violations.is_empty() {
        bail!(
            "{name}: {} instruction(s) accessed MMIO in a form KVM cannot emulate \
             (ESR_EL2.ISV = 0); use the accessors of guest-kernel/src/arch/mmio.rs:\n{}",
            report.violations.len(),
            report.describe_violations()
        );
    }
    ensure!(
        report.io_accesses >= min_io,
        "{name}: the plugin saw only {} I/O accesses (at least {min_io} expected): it cannot \
         see I/O (is patches/0007, the tlb_plugin_lookup() fix, applied?)",
        report.io_accesses
    );
    Ok(())
}

/// What the negative control must show: exactly its one access.
fn judge_negative_control(report: &Report) -> Result<&Violation> {
    let [violation] = report.violations.as_slice() else {
        bail!(
            "negative control: expected exactly 1 non-emulable instruction, the plugin \
             reported {}:\n{}",
            report.violations.len(),
            report.describe_violations()
        );
    };
    ensure!(
        violation.class == NEGATIVE_CONTROL_CLASS
            && violation.count == 1
            && violation.symbol.contains(NEGATIVE_CONTROL_SYMBOL),
        "negative control: expected one {NEGATIVE_CONTROL_CLASS} access in \
         {NEGATIVE_CONTROL_SYMBOL}, got:\n{}",
        report.describe_violations()
    );
    Ok(violation)
}

/// Builds the plugin (a cdylib of the workspace) and returns its path.
fn build_plugin(repo: &Repo) -> Result<PathBuf> {
    eprintln!("    cargo build --release -p {PLUGIN_PACKAGE}");
    process::run(
        Command::new(cargo())
            .args(["build", "--release", "-p", PLUGIN_PACKAGE])
            .current_dir(&repo.root),
    )?;
    let library = repo.cargo_target_dir().join("release").join(PLUGIN_LIBRARY);
    ensure!(library.is_file(), "{} was not built", library.display());
    Ok(library)
}

/// `config` with the plugin loaded, reporting to `report`.
fn audited(config: VmConfig, plugin: &Path, report: &Path) -> VmConfig {
    let mut extra = vec![
        "-plugin".to_string(),
        format!("{},out={}", plugin.display(), report.display()),
    ];
    extra.extend(config.extra);
    VmConfig { extra, ..config }
}

/// Runs `body` (one guest run with `config`), then reads the report.
fn audit_run(
    name: &str,
    config: VmConfig,
    plugin: &Path,
    reports: &Path,
    body: impl FnOnce(&VmConfig) -> Result<()>,
) -> Result<(Report, Duration)> {
    let file = reports.join(format!("{}.txt", name.replace([' ', '/'], "-")));
    let _ = fs::remove_file(&file);
    let config = audited(config, plugin, &file);
    let started = Instant::now();
    body(&config).with_context(|| format!("{name} failed under the plugin"))?;
    let took = started.elapsed();
    let text = fs::read_to_string(&file)
        .with_context(|| format!("{name}: the plugin wrote no report {}", file.display()))?;
    let report = Report::parse(&text).with_context(|| format!("in {}", file.display()))?;
    eprintln!(
        "    {name}: {} I/O accesses ({}), {} non-emulable, {}",
        report.io_accesses,
        report.regions(),
        report.violations.len(),
        format_duration(took)
    );
    Ok((report, took))
}

/// A guest run that must exit with status 0 after printing `marker`.
fn run_to_exit(repo: &Repo, config: &VmConfig, marker: &str, timeout: Duration) -> Result<()> {
    eprintln!("    {}", config.command_line(repo));
    let mut console =
        SerialConsole::spawn(repo, config, None)?.named(&format!("kvm-check ({config})"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung(&format!("no exit after {marker:?}"), timeout));
    };
    let transcript = console.transcript();
    ensure!(
        status.success() && transcript.contains(marker),
        "exit {status}, expected 0 and {marker:?}:\n{transcript}"
    );
    Ok(())
}

/// The whole check; `Ok` holds a one-line summary.
pub fn run(repo: &Repo, timeout: Duration) -> Result<String> {
    let plugin = build_plugin(repo)?;
    let reports = repo.cargo_target_dir().join("kvm-check");
    fs::create_dir_all(&reports)?;
    let test_config = |cpu: &str, gic| VmConfig {
        cpu: cpu.to_string(),
        gic: Some(gic),
        append: Some("test".to_string()),
        tests: true,
        // The same accesses as in real time, without the waits.
        virtual_time: true,
        ..VmConfig::default()
    };

    let mut clean_runs = Vec::new();
    for (name, config) in [
        ("guest tests gicv2", test_config("cortex-a53", Gic::V2)),
        ("guest tests gicv3", test_config("max", Gic::V3)),
    ] {
        let (report, _) = audit_run(name, config, &plugin, &reports, |config| {
            guest::run_guest_tests(repo, config, timeout).map(drop)
        })?;
        judge_clean(name, &report, MIN_IO_ACCESSES_PER_TEST_RUN)?;
        clean_runs.push(report);
    }
    let (report, _) = audit_run("demo", VmConfig::default(), &plugin, &reports, |config| {
        Demo::run(repo, config, timeout)
    })?;
    judge_clean("demo", &report, 1)?;
    clean_runs.push(report);
    let bench = VmConfig {
        append: Some("bench".to_string()),
        ..VmConfig::default()
    };
    let (report, _) = audit_run("bench", bench, &plugin, &reports, |config| {
        run_to_exit(repo, config, "BENCH ", timeout)
    })?;
    judge_clean("bench", &report, 1)?;
    clean_runs.push(report);
    // The test kernel's scaling bench: two CPUs reading the stopwatch's
    // registers and the PL031 RTC's at once.
    let scaling = VmConfig {
        append: Some("bench-scaling".to_string()),
        tests: true,
        extra: vec!["-smp".to_string(), "2".to_string()],
        ..VmConfig::default()
    };
    let (report, _) = audit_run("bench-scaling", scaling, &plugin, &reports, |config| {
        run_to_exit(repo, config, "SCALING {\"cpus\"", timeout)
    })?;
    judge_clean("bench-scaling", &report, 1)?;
    clean_runs.push(report);
    // Two CPUs driving a stopwatch each at once: every command path of
    // the driver, from a CPU other than the boot CPU too.
    let drivers = VmConfig {
        devices: 2,
        extra: vec!["-smp".to_string(), "2".to_string()],
        ..VmConfig::default()
    };
    let (report, _) = audit_run("concurrent-drivers", drivers, &plugin, &reports, |config| {
        crate::concurrent_drivers_test::run(repo, config, timeout).map(drop)
    })?;
    judge_clean("concurrent-drivers", &report, MIN_IO_ACCESSES_PER_TEST_RUN)?;
    clean_runs.push(report);

    let negative = VmConfig {
        append: Some("kvm-negative-control".to_string()),
        tests: true,
        ..VmConfig::default()
    };
    let (report, _) = audit_run("negative control", negative, &plugin, &reports, |config| {
        run_to_exit(repo, config, "kvm-negative-control:", timeout)
    })?;
    let caught = judge_negative_control(&report)?;
    eprintln!(
        "    negative control caught: pc {} in {}: {} ({})",
        caught.pc, caught.symbol, caught.word, caught.class
    );

    let total: u64 = clean_runs.iter().map(|r| r.io_accesses).sum();
    Ok(format!(
        "{} runs, {total} I/O accesses, 0 not emulable; negative control caught ({} {})",
        clean_runs.len(),
        caught.word,
        caught.class
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "io_accesses 1793\nio_region pl011 1200\nio_region gic_dist 593\n";
    const NEGATIVE: &str = "io_accesses 700\nio_region pl011 700\nviolation pc=0x40201234 \
        word=0xb8400c20 class=writeback/pre-index count=1 device=pl011 \
        symbol=_ZN12guest_kernel4arch4mmio26writeback_negative_control17h0E\n";

    #[test]
    fn parses_reports() -> Result<()> {
        let report = Report::parse(CLEAN)?;
        assert_eq!(report.io_accesses, 1793);
        assert_eq!(report.by_region[1], ("gic_dist".to_string(), 593));
        assert!(report.violations.is_empty());
        let report = Report::parse(NEGATIVE)?;
        assert_eq!(report.violations[0].word, "0xb8400c20");
        assert_eq!(report.violations[0].count, 1);
        assert!(Report::parse("").is_err(), "a report without a total");
        assert!(Report::parse("io_accesses x\n").is_err());
        assert!(Report::parse("io_accesses 1\nsomething else\n").is_err());
        Ok(())
    }

    #[test]
    fn a_clean_run_needs_no_violation_and_enough_io() -> Result<()> {
        judge_clean("t", &Report::parse(CLEAN)?, MIN_IO_ACCESSES_PER_TEST_RUN)?;
        let error = judge_clean("t", &Report::parse(NEGATIVE)?, 1).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("pc 0x40201234"), "{message}");
        assert!(
            message.contains("0xb8400c20 (writeback/pre-index)"),
            "{message}"
        );
        assert!(message.contains("writeback_negative_control"), "{message}");
        // A blind plugin (no I/O seen) fails.
        let blind = Report::parse("io_accesses 0\n")?;
        assert!(judge_clean("t", &blind, MIN_IO_ACCESSES_PER_TEST_RUN).is_err());
        Ok(())
    }

    #[test]
    fn the_negative_control_must_be_exactly_its_one_access() -> Result<()> {
        judge_negative_control(&Report::parse(NEGATIVE)?)?;
        assert!(judge_negative_control(&Report::parse(CLEAN)?).is_err());
        let twice = NEGATIVE.replace("count=1", "count=2");
        assert!(judge_negative_control(&Report::parse(&twice)?).is_err());
        let another = format!(
            "{NEGATIVE}violation pc=0x40200000 word=0xa9400020 class=pair count=1 \
             device=pl011 symbol=kernel_main\n"
        );
        assert!(judge_negative_control(&Report::parse(&another)?).is_err());
        Ok(())
    }
}
