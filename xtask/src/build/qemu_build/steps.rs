// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU build's own steps: QEMU's configure with the C compiler
//! through ccache, ninja with a progress bar, and the checks of the binary
//! it made.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{CONFIGURE_ARGS, NINJA_TARGET};
use crate::build::cache::{Cache, CheckoutDirs};
use crate::build::pins;
use crate::build::prereqs::HostTools;
use crate::util::{self, format_duration, stdout_of};

/// Runs QEMU's configure in the checkout's (empty) build directory, with
/// the C compiler through ccache.
pub(super) fn configure(dirs: &CheckoutDirs, tools: &HostTools, cache: &Cache) -> Result<()> {
    let log_path = dirs.log_file("configure.log")?;
    let log = fs::File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let compiler = ccache_compiler(cache)?;
    let mut cmd = Command::new("../src/configure");
    cmd.args(CONFIGURE_ARGS)
        .env("CC", &compiler)
        .current_dir(&dirs.build)
        .env("PATH", tools.path_env()?)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!(
        "    CC={} {}",
        util::shell_quote(compiler.as_os_str()),
        util::command_line(&cmd)
    );
    eprintln!("    (output in {})", log_path.display());
    let spinner = ProgressBar::new_spinner().with_message("configure");
    spinner.enable_steady_tick(Duration::from_millis(200));
    let status = cmd.status().context("could not run QEMU's configure")?;
    spinner.finish_and_clear();
    if !status.success() {
        print_tail(&log_path, 40);
        bail!(
            "QEMU's configure failed ({status}); the end of its output is above, all of it in {}",
            log_path.display()
        );
    }
    Ok(())
}

/// Writes `tools/ccache-cc`, the C compiler QEMU is configured with: `cc`
/// through ccache, with ccache's settings in the script so that a `ninja`
/// run by hand in a build directory uses them too. Every checkout builds
/// the same QEMU sources in its own directory: `base_dir` makes the
/// absolute paths of their command lines relative, and `hash_dir` off
/// keeps the build directory out of the hash (so the debug info of a
/// cached object names the directory it was first compiled in), so a
/// second checkout's first build reuses the first one's C objects.
fn ccache_compiler(cache: &Cache) -> Result<PathBuf> {
    let quote = |path: PathBuf| util::shell_quote(path.as_os_str());
    let script = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask`: QEMU's C compiler, through ccache (see\n\
         # ccache_compiler in xtask/src/qemu_build.rs).\n\
         CCACHE_DIR={}\n\
         CCACHE_BASEDIR={}\n\
         CCACHE_NOHASHDIR=1\n\
         CCACHE_MAXSIZE=2G\n\
         export CCACHE_DIR CCACHE_BASEDIR CCACHE_NOHASHDIR CCACHE_MAXSIZE\n\
         exec ccache cc \"$@\"\n",
        quote(cache.ccache()),
        quote(cache.qemu_builds()),
    );
    let path = cache.tools().join("ccache-cc");
    util::write_if_changed(&path, script.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("could not make {} executable", path.display()))?;
    Ok(path)
}

/// One line of ninja's output.
enum NinjaLine {
    Status { done: u64, total: u64, what: String },
    Other(String),
}

/// Parses ninja's `[N/M] description` status lines (NINJA_STATUS is set to
/// exactly that format).
fn parse_ninja_line(line: &str) -> NinjaLine {
    let status = line.strip_prefix('[').and_then(|rest| {
        let (counts, what) = rest.split_once("] ")?;
        let (done, total) = counts.split_once('/')?;
        Some(NinjaLine::Status {
            done: done.trim().parse().ok()?,
            total: total.trim().parse().ok()?,
            what: what.to_string(),
        })
    });
    status.unwrap_or_else(|| NinjaLine::Other(line.to_string()))
}

/// Runs ninja with a progress bar (or, without a terminal, a line every
/// 10%), keeping the full output in `logs/ninja.log`. Returns how many
/// steps ran (QEMU always reruns a couple of cheap generators).
pub(super) fn run_ninja(dirs: &CheckoutDirs, tools: &HostTools) -> Result<String> {
    let log_path = dirs.log_file("ninja.log")?;
    let mut log = fs::File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let mut child = Command::new("ninja")
        .arg(NINJA_TARGET)
        .current_dir(&dirs.build)
        .env("PATH", tools.path_env()?)
        .env("NINJA_STATUS", "[%f/%t] ")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not run ninja: `cargo xtask prereqs` installs it (docs/hosts.md)")?;

    // Both streams into one channel, one line at a time.
    let (sender, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let readers = [
        forward_lines(BufReader::new(stdout), sender.clone()),
        forward_lines(BufReader::new(stderr), sender),
    ];

    let interactive = std::io::stderr().is_terminal();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("    [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}")
            .expect("valid template"),
    );
    let mut last_milestone = 0;
    let mut failing = false;
    let mut other_lines = Vec::new();
    let mut steps = 0;
    for line in lines {
        writeln!(log, "{line}").ok();
        match parse_ninja_line(&line) {
            NinjaLine::Status { done, total, what } => {
                steps = done;
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(what);
                let percent = done * 100 / total.max(1);
                if !interactive && percent >= last_milestone + 10 {
                    last_milestone = percent - percent % 10;
                    eprintln!(
                        "    ninja [{done}/{total}] {percent}% after {}",
                        format_duration(bar.elapsed())
                    );
                }
            }
            NinjaLine::Other(text) => {
                // Once something failed, everything after is the why.
                failing |= text.starts_with("FAILED:");
                if failing {
                    bar.suspend(|| eprintln!("{text}"));
                }
                other_lines.push(text);
            }
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    bar.finish_and_clear();
    let status = child.wait().context("ninja vanished")?;
    if !status.success() {
        if !failing {
            let start = other_lines.len().saturating_sub(40);
            for line in &other_lines[start..] {
                eprintln!("{line}");
            }
        }
        bail!(
            "building QEMU failed (ninja: {status}); the errors are above, the full output in {}\n\
             To iterate on it: cd {} && ninja {NINJA_TARGET}",
            log_path.display(),
            dirs.build.display()
        );
    }
    Ok(match steps {
        0 => "up to date".to_string(),
        1 => "1 step".to_string(),
        n => format!("{n} steps"),
    })
}

fn forward_lines(
    reader: impl BufRead + Send + 'static,
    sender: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    })
}

/// The binary must exist and say it is the pinned version.
pub(super) fn check_version(binary: &Path) -> Result<()> {
    let text = stdout_of(Command::new(binary).arg("--version"))
        .with_context(|| format!("{} does not run", binary.display()))?;
    let first_line = text.lines().next().unwrap_or("");
    if !first_line.contains(&format!("version {}", pins::QEMU_VERSION)) {
        bail!(
            "{} says {first_line:?}, expected version {}",
            binary.display(),
            pins::QEMU_VERSION
        );
    }
    Ok(())
}

/// The Rust devices that must be compiled in: QEMU's own Rust PL011 (the
/// board's console) and the stopwatch. A build that quietly fell back to
/// the C PL011, or left the device out, is not the one this project tests.
const RUST_DEVICES: [&str; 2] = ["CONFIG_X_PL011_RUST", "CONFIG_X_STOPWATCH_RUST"];

/// Checks the build's device configuration for [`RUST_DEVICES`].
pub(super) fn check_rust_devices(build: &Path) -> Result<()> {
    let config = build.join("aarch64-softmmu-config-devices.h");
    let text =
        fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
    for symbol in RUST_DEVICES {
        if !text
            .lines()
            .any(|line| line.trim() == format!("#define {symbol} 1"))
        {
            bail!(
                "{symbol} is not enabled in {}: the build lacks a Rust device \
                 (is Rust enabled, and does patch 0004 select the device?)",
                config.display()
            );
        }
    }
    Ok(())
}

fn print_tail(path: &Path, lines: usize) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn rust_devices_must_be_configured() {
        let dir = std::env::temp_dir().join(format!("xtask-devices-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("aarch64-softmmu-config-devices.h");
        fs::write(
            &config,
            "#define CONFIG_X_PL011_RUST 1\n#define CONFIG_PL011_C 0\n",
        )
        .unwrap();
        let error = check_rust_devices(&dir).unwrap_err().to_string();
        assert!(error.contains("CONFIG_X_STOPWATCH_RUST"), "{error}");
        fs::write(
            &config,
            "#define CONFIG_X_PL011_RUST 1\n#define CONFIG_X_STOPWATCH_RUST 1\n",
        )
        .unwrap();
        check_rust_devices(&dir).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
    use super::*;

    #[test]
    fn reads_ninja_status_lines() {
        match parse_ninja_line("[12/3085] Compiling C object libqemu.a.p/foo.c.o") {
            NinjaLine::Status { done, total, what } => {
                assert_eq!((done, total), (12, 3085));
                assert_eq!(what, "Compiling C object libqemu.a.p/foo.c.o");
            }
            NinjaLine::Other(_) => panic!("a status line"),
        }
        for other in [
            "FAILED: foo.o",
            "[warning] x",
            "ninja: no work to do.",
            "[a/b] c",
        ] {
            assert!(matches!(parse_ninja_line(other), NinjaLine::Other(_)));
        }
    }
}
