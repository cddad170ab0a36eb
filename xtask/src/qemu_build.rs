//! Builds `qemu-system-aarch64` with the stopwatch device: computes the
//! cache key, then runs each stage (prepare source, sync device, configure,
//! ninja) unless its stamp says it is done, and installs the binary into
//! `target/vm/`.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cache::{self, Cache, KeyBuilder, QemuDirs, Stage};
use crate::pins;
use crate::prereqs::HostTools;
use crate::qemu_source::{self, QemuTarball};
use crate::repo::Repo;
use crate::util::{self, format_duration, stdout_of, Step, SummaryRow};

/// QEMU's configure options: only aarch64, only the devices of the `virt`
/// board, Rust on, nothing downloaded at build time; TCG plugins on, for
/// the MMIO audit of `cargo xtask kvm-check`.
pub const CONFIGURE_ARGS: &[&str] = &[
    "--target-list=aarch64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--with-devices-aarch64=minimal",
    "--enable-rust",
    "--enable-fdt=system",
    "--enable-tcg",
    "--enable-plugins",
    "--disable-docs",
    "--disable-install-blobs",
    "--disable-download",
    "--enable-werror",
    "--disable-tools",
];

const NINJA_TARGET: &str = "qemu-system-aarch64";

/// Everything except `qemu-device/` (synced incrementally) that goes into
/// a QEMU build, hashed: a change here means a fresh cache directory.
pub fn cache_key(repo: &Repo, tarball: &QemuTarball, tools: &HostTools) -> Result<String> {
    let mut key = KeyBuilder::default();
    key.add("pipeline", pins::PIPELINE_VERSION.to_string())
        .add("qemu-version", pins::QEMU_VERSION)
        .add("tarball-sha256", tarball.sha256())
        .add("configure", CONFIGURE_ARGS.join(" "))
        .add("bindgen", &tools.bindgen_version);
    // The rustc that meson will find (RUSTUP_TOOLCHAIN is inherited).
    let rustc = stdout_of(Command::new("rustc").arg("-vV"))
        .context("rustc not found: install the Rust toolchain (rustup)")?;
    key.add("rustc", rustc);
    for patch in qemu_source::patch_files(&repo.root)? {
        let name = patch.file_name().unwrap_or_default().to_string_lossy();
        let contents =
            fs::read(&patch).with_context(|| format!("could not read {}", patch.display()))?;
        key.add(&format!("patch {name}"), contents);
    }
    let packagefiles = repo.root.join("patches/packagefiles");
    if packagefiles.is_dir() {
        for relative in util::list_files(&packagefiles, &|_| false)? {
            let contents = fs::read(packagefiles.join(&relative))?;
            key.add(&format!("packagefile {}", relative.display()), contents);
        }
    }
    Ok(key.finish())
}

/// Builds QEMU (as far as needed) and copies it to `target/vm/`. Appends a
/// row per stage to `summary`.
pub fn build(
    repo: &Repo,
    cache: &Cache,
    tarball: &QemuTarball,
    tools: &HostTools,
    summary: &mut Vec<SummaryRow>,
) -> Result<PathBuf> {
    let key = cache_key(repo, tarball, tools)?;
    let dirs = QemuDirs::new(cache, pins::QEMU_VERSION, &key);
    let _lock = lock_build_dir(&dirs)?;

    if dirs.is_done(Stage::SourcePrepared) {
        summary.push(up_to_date("QEMU source"));
    } else {
        let step = Step::start("QEMU source");
        eprintln!("    preparing {}", dirs.src.display());
        // No stamp: new key, or an interrupted run left a partial tree.
        util::remove_dir_all_if_exists(&dirs.root)?;
        let tarball_path = qemu_source::fetch_tarball(cache, tarball)?;
        qemu_source::prepare(&repo.root, cache, &tarball_path, &dirs)?;
        dirs.mark_done(Stage::SourcePrepared)?;
        summary.push(step.finish("prepared"));
    }

    let step = Step::start("Device sync (qemu-device/ into the QEMU tree)");
    let synced = qemu_source::sync_device(&repo.root, &dirs.src)?;
    for path in &synced.written {
        eprintln!("    updated {}", path.display());
    }
    for path in &synced.removed {
        eprintln!("    removed {}", path.display());
    }
    let changes = synced.written.len() + synced.removed.len();
    summary.push(step.finish(&format!("{changes} file(s) changed")));

    let binary = dirs.build.join(NINJA_TARGET);
    for attempt in 1..=2 {
        configure(&dirs, tools, summary)?;
        let step = Step::start("QEMU: ninja");
        let outcome = run_ninja(&dirs, tools)?;
        match check_version(&binary) {
            Ok(()) => {
                // ninja runs every time (it is incremental and picks up
                // device changes); this stamp only records that the
                // directory produced a working QEMU.
                dirs.mark_done(Stage::Built)?;
                summary.push(step.finish(&outcome));
                break;
            }
            Err(error) if attempt == 1 => {
                eprintln!(
                    "The QEMU build in {} looks corrupt ({error:#}): rebuilding it from scratch.",
                    dirs.build.display()
                );
                dirs.mark_undone(Stage::Built)?;
                dirs.mark_undone(Stage::Configured)?;
            }
            Err(error) => return Err(error.context("QEMU built, but the binary is unusable")),
        }
    }

    check_rust_devices(&dirs.build)?;
    util::copy_if_newer(&binary, &repo.qemu_binary())?;
    note_old_builds(cache, &dirs);
    Ok(repo.qemu_binary())
}

/// Locks the keyed directory for as long as the returned file lives, so
/// that two `cargo xtask` runs never build into the same tree at once (the
/// second one waits).
fn lock_build_dir(dirs: &QemuDirs) -> Result<fs::File> {
    let path = dirs.lock_path();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let file =
        fs::File::create(&path).with_context(|| format!("could not create {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!(
            "Waiting for another `cargo xtask` that is building in {}...",
            dirs.root.display()
        );
        file.lock()
            .with_context(|| format!("could not lock {}", path.display()))?;
    }
    Ok(file)
}

fn up_to_date(name: &str) -> SummaryRow {
    eprintln!("==> {name}: up to date");
    SummaryRow {
        name: name.to_string(),
        outcome: "up to date".to_string(),
        duration: Duration::ZERO,
    }
}

/// Runs configure into a fresh build directory unless already done.
fn configure(dirs: &QemuDirs, tools: &HostTools, summary: &mut Vec<SummaryRow>) -> Result<()> {
    if dirs.is_done(Stage::Configured) {
        summary.push(up_to_date("QEMU configure"));
        return Ok(());
    }
    let step = Step::start("QEMU: configure");
    util::remove_dir_all_if_exists(&dirs.build)?;
    fs::create_dir_all(&dirs.build)
        .with_context(|| format!("could not create {}", dirs.build.display()))?;
    let log_path = dirs.log_file("configure.log")?;
    let log = fs::File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let mut cmd = Command::new("../src/configure");
    cmd.args(CONFIGURE_ARGS)
        .current_dir(&dirs.build)
        .env("PATH", tools.path_env()?)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("    {}", util::command_line(&cmd));
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
    dirs.mark_done(Stage::Configured)?;
    summary.push(step.finish("configured"));
    Ok(())
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
fn run_ninja(dirs: &QemuDirs, tools: &HostTools) -> Result<String> {
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
        .context("could not run ninja (Debian package ninja-build)")?;

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
fn check_version(binary: &Path) -> Result<()> {
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
fn check_rust_devices(build: &Path) -> Result<()> {
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

/// Mentions the disk that builds for other keys take (never deleted
/// silently: one may hold edits not yet turned into patches).
fn note_old_builds(cache: &Cache, current: &QemuDirs) {
    let old = cache::other_qemu_dirs(cache, &current.root);
    if !old.is_empty() {
        eprintln!(
            "note: {} older QEMU build dir(s) (about 1 GiB each) in {}; \
             `cargo xtask clean --old` removes them",
            old.len(),
            cache.qemu_builds().display(),
        );
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
