// SPDX-License-Identifier: GPL-2.0-or-later
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

use crate::build::cache::{self, Cache, KeyBuilder, QemuDirs, Stage};
use crate::build::pins;
use crate::build::prereqs::HostTools;
use crate::build::qemu_source::{self, QemuTarball};
use crate::repo::Repo;
use crate::util::{self, format_duration, stdout_of, MirrorReport, Step, SummaryRow};

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
    let _lock = util::lock_file(&dirs.lock_path(), "building QEMU", |message| {
        eprintln!("{message}")
    })?;
    let mut stages = RealStages {
        repo,
        cache,
        tarball,
        tools,
    };
    run_stages(&dirs, &mut stages, &repo.qemu_binary(), summary)?;
    note_old_builds(cache, &dirs);
    Ok(repo.qemu_binary())
}

/// The work of each stage of a QEMU build. [`RealStages`] does it; the
/// tests fake it to interrupt the pipeline anywhere.
trait Stages {
    /// The tarball, downloaded if needed and verified.
    fn fetch(&mut self) -> Result<PathBuf>;
    /// A patched source tree in `dirs.src` (which is empty).
    fn prepare(&mut self, tarball: &Path, dirs: &QemuDirs) -> Result<()>;
    /// `qemu-device/` into the source tree, changed files only.
    fn sync_device(&mut self, dirs: &QemuDirs) -> Result<MirrorReport>;
    /// configure into `dirs.build` (which is empty).
    fn configure(&mut self, dirs: &QemuDirs) -> Result<()>;
    /// ninja, incremental; returns what it did.
    fn ninja(&mut self, dirs: &QemuDirs) -> Result<String>;
    /// The built binary runs and is the right one.
    fn check(&mut self, dirs: &QemuDirs, binary: &Path) -> Result<()>;
}

/// The pipeline: each stamped stage runs only if its stamp is missing, and
/// stamps only once it succeeded ([`QemuDirs::run_stage`]), so a run
/// interrupted anywhere is picked up where it stopped; ninja always runs
/// (it is incremental and recovers from interruption itself); a built
/// binary that fails its check gets one rebuild from scratch; the result
/// is installed at `install_to` unless an untouched copy is there.
fn run_stages(
    dirs: &QemuDirs,
    stages: &mut dyn Stages,
    install_to: &Path,
    summary: &mut Vec<SummaryRow>,
) -> Result<()> {
    if dirs.is_done(Stage::SourcePrepared) {
        summary.push(up_to_date("QEMU source"));
    } else {
        let step = Step::start("QEMU source");
        eprintln!("    preparing {}", dirs.src.display());
        // No stamp: a new key, or an interrupted run left a partial tree.
        dirs.run_stage(Stage::SourcePrepared, &[&dirs.root], || {
            let tarball = stages.fetch()?;
            stages.prepare(&tarball, dirs)
        })?;
        summary.push(step.finish("prepared"));
    }

    let step = Step::start("Device sync (qemu-device/ into the QEMU tree)");
    let synced = stages.sync_device(dirs)?;
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
        if dirs.is_done(Stage::Configured) {
            summary.push(up_to_date("QEMU configure"));
        } else {
            let step = Step::start("QEMU: configure");
            dirs.run_stage(Stage::Configured, &[&dirs.build], || {
                fs::create_dir_all(&dirs.build)
                    .with_context(|| format!("could not create {}", dirs.build.display()))?;
                stages.configure(dirs)
            })?;
            summary.push(step.finish("configured"));
        }
        let step = Step::start("QEMU: ninja");
        let outcome = stages.ninja(dirs)?;
        match stages.check(dirs, &binary) {
            Ok(()) => {
                // This stamp only records that the directory produced a
                // working QEMU (ninja runs every time).
                dirs.mark_done(Stage::Built)?;
                summary.push(step.finish(&outcome));
                break;
            }
            Err(error) if attempt == 1 => {
                eprintln!(
                    "The QEMU build in {} looks corrupt ({error:#}): rebuilding it from scratch.",
                    dirs.build.display()
                );
                dirs.mark_undone(Stage::Configured)?;
            }
            Err(error) => return Err(error.context("QEMU built, but the binary is unusable")),
        }
    }
    util::install_copy(&binary, install_to)?;
    Ok(())
}

/// The real work of each stage.
struct RealStages<'a> {
    repo: &'a Repo,
    cache: &'a Cache,
    tarball: &'a QemuTarball,
    tools: &'a HostTools,
}

impl Stages for RealStages<'_> {
    fn fetch(&mut self) -> Result<PathBuf> {
        qemu_source::fetch_tarball(self.cache, self.tarball)
    }

    fn prepare(&mut self, tarball: &Path, dirs: &QemuDirs) -> Result<()> {
        qemu_source::prepare(&self.repo.root, self.cache, tarball, dirs)
    }

    fn sync_device(&mut self, dirs: &QemuDirs) -> Result<MirrorReport> {
        qemu_source::sync_device(&self.repo.root, &dirs.src)
    }

    fn configure(&mut self, dirs: &QemuDirs) -> Result<()> {
        configure(dirs, self.tools)
    }

    fn ninja(&mut self, dirs: &QemuDirs) -> Result<String> {
        run_ninja(dirs, self.tools)
    }

    fn check(&mut self, dirs: &QemuDirs, binary: &Path) -> Result<()> {
        check_version(binary)?;
        check_rust_devices(&dirs.build)
    }
}

fn up_to_date(name: &str) -> SummaryRow {
    eprintln!("==> {name}: up to date");
    SummaryRow {
        name: name.to_string(),
        outcome: "up to date".to_string(),
        duration: Duration::ZERO,
    }
}

/// Runs QEMU's configure in the (empty) build directory.
fn configure(dirs: &QemuDirs, tools: &HostTools) -> Result<()> {
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

/// Faults of the pipeline, on fake stages in a temporary cache: every
/// stage interrupted half-way, damaged downloads and binaries. (The guest
/// kernel's stage is cargo, which records a build only once it finished,
/// then [`util::install_copy`], tested in `util`; the lock is tested there
/// too.)
#[cfg(test)]
mod fault_tests {
    use super::*;
    use crate::util::{fetch_verified, sha256_hex, Pinned};

    const TARBALL: &[u8] = b"qemu-10.2.2 source tarball";
    const BINARY: &[u8] = b"QEMU emulator version 10.2.2";

    /// Stages that write a few files each and can be interrupted in the
    /// middle of one: what they wrote so far stays, as after a Ctrl-C.
    struct FakeStages {
        downloads: PathBuf,
        interrupt: Option<&'static str>,
        /// The stages that ran, in order.
        ran: Vec<&'static str>,
        downloaded: usize,
    }

    impl FakeStages {
        fn new(scratch: &Path, interrupt: Option<&'static str>) -> FakeStages {
            FakeStages {
                downloads: scratch.join("downloads"),
                interrupt,
                ran: Vec::new(),
                downloaded: 0,
            }
        }

        fn enter(&mut self, stage: &'static str) {
            self.ran.push(stage);
        }

        fn maybe_interrupt(&self, stage: &str) -> Result<()> {
            if self.interrupt == Some(stage) {
                bail!("interrupted during {stage}");
            }
            Ok(())
        }
    }

    fn ensure_empty(dir: &Path) -> Result<()> {
        let leftovers = fs::read_dir(dir).map_or(0, |entries| entries.count());
        if leftovers > 0 {
            bail!(
                "{} holds {leftovers} entries of a half-done run",
                dir.display()
            );
        }
        Ok(())
    }

    impl Stages for FakeStages {
        fn fetch(&mut self) -> Result<PathBuf> {
            self.enter("download");
            fs::create_dir_all(&self.downloads)?;
            let path = self.downloads.join("qemu.tar.xz");
            let pinned = [Pinned {
                path: path.clone(),
                sha256: &sha256_hex(TARBALL),
            }];
            let interrupted = self.interrupt == Some("download");
            fetch_verified(&pinned, || {
                self.downloaded += 1;
                if interrupted {
                    // Half the file arrived.
                    fs::write(&path, &TARBALL[..TARBALL.len() / 2])?;
                    bail!("interrupted during download");
                }
                fs::write(&path, TARBALL)?;
                Ok(())
            })?;
            Ok(path)
        }

        fn prepare(&mut self, tarball: &Path, dirs: &QemuDirs) -> Result<()> {
            self.enter("prepare");
            ensure_empty(&dirs.src)?;
            fs::create_dir_all(&dirs.src)?;
            fs::write(dirs.src.join("extracted"), fs::read(tarball)?)?;
            self.maybe_interrupt("prepare")?;
            fs::write(dirs.src.join("patched"), "all patches applied")?;
            Ok(())
        }

        fn sync_device(&mut self, dirs: &QemuDirs) -> Result<MirrorReport> {
            if !dirs.src.join("patched").is_file() {
                bail!("syncing the device into an unpatched tree");
            }
            Ok(MirrorReport::default())
        }

        fn configure(&mut self, dirs: &QemuDirs) -> Result<()> {
            self.enter("configure");
            ensure_empty(&dirs.build)?;
            fs::write(dirs.build.join("meson-private"), "half")?;
            self.maybe_interrupt("configure")?;
            fs::write(dirs.build.join("build.ninja"), "configured")?;
            Ok(())
        }

        fn ninja(&mut self, dirs: &QemuDirs) -> Result<String> {
            self.enter("ninja");
            if !dirs.build.join("build.ninja").is_file() {
                bail!("ninja: build.ninja missing");
            }
            // Like ninja, trust an existing output (even a damaged one).
            let binary = dirs.build.join(NINJA_TARGET);
            if !binary.exists() {
                if self.interrupt == Some("ninja") {
                    fs::write(&binary, &BINARY[..4])?;
                    bail!("interrupted during ninja");
                }
                fs::write(&binary, BINARY)?;
            }
            Ok("ok".into())
        }

        fn check(&mut self, _dirs: &QemuDirs, binary: &Path) -> Result<()> {
            self.enter("check");
            if fs::read(binary)? != BINARY {
                bail!("{} does not run", binary.display());
            }
            Ok(())
        }
    }

    struct Scratch {
        root: PathBuf,
        dirs: QemuDirs,
        installed: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let root = std::env::temp_dir()
                .join(format!("xtask-faults-{}", std::process::id()))
                .join(name);
            let _ = fs::remove_dir_all(&root);
            let cache = Cache {
                root: root.join("cache"),
            };
            Scratch {
                dirs: QemuDirs::new(&cache, "10.2.2", "0123456789abcdef"),
                installed: root.join("vm/qemu-system-aarch64"),
                root,
            }
        }

        fn build(&self, stages: &mut FakeStages) -> Result<()> {
            run_stages(&self.dirs, stages, &self.installed, &mut Vec::new())
        }

        fn assert_complete(&self) {
            assert_eq!(fs::read(self.dirs.src.join("extracted")).unwrap(), TARBALL);
            assert!(self.dirs.src.join("patched").is_file());
            assert!(self.dirs.build.join("build.ninja").is_file());
            assert_eq!(fs::read(&self.installed).unwrap(), BINARY);
            assert!(Stage::ALL.iter().all(|stage| self.dirs.is_done(*stage)));
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn a_build_interrupted_at_any_stage_recovers_on_the_next_run() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "download",
                &["download", "prepare", "configure", "ninja", "check"],
            ),
            (
                "prepare",
                &["download", "prepare", "configure", "ninja", "check"],
            ),
            ("configure", &["configure", "ninja", "check"]),
            // ninja trusts the half-written binary; the check catches it
            // and the build directory is redone from configure on.
            ("ninja", &["ninja", "check", "configure", "ninja", "check"]),
        ];
        for (stage, redone) in cases {
            let scratch = Scratch::new(stage);
            let error = scratch
                .build(&mut FakeStages::new(&scratch.root, Some(stage)))
                .unwrap_err();
            assert!(format!("{error:#}").contains("interrupted"), "{error:#}");
            assert!(!scratch.installed.exists(), "{stage}: nothing installed");

            let mut second = FakeStages::new(&scratch.root, None);
            scratch
                .build(&mut second)
                .unwrap_or_else(|e| panic!("after an interrupted {stage}: {e:#}"));
            assert_eq!(second.ran, redone, "after an interrupted {stage}");
            scratch.assert_complete();

            let mut third = FakeStages::new(&scratch.root, None);
            scratch.build(&mut third).unwrap();
            assert_eq!(third.ran, ["ninja", "check"], "then all is done");
        }
    }

    #[test]
    fn a_damaged_download_is_fetched_again() {
        let scratch = Scratch::new("damaged-download");
        let mut stages = FakeStages::new(&scratch.root, None);
        fs::create_dir_all(&stages.downloads).unwrap();
        let tarball = stages.downloads.join("qemu.tar.xz");
        fs::write(&tarball, b"qemu-10.2.2 source tarbalX").unwrap();
        scratch.build(&mut stages).unwrap();
        assert_eq!(stages.downloaded, 1, "downloaded again");
        scratch.assert_complete();

        // A good download is not fetched again.
        let fresh = Scratch::new("good-download");
        let mut stages = FakeStages::new(&scratch.root, None);
        fresh.build(&mut stages).unwrap();
        assert_eq!(stages.downloaded, 0);
    }

    #[test]
    fn a_damaged_built_binary_is_rebuilt() {
        let scratch = Scratch::new("damaged-binary");
        scratch
            .build(&mut FakeStages::new(&scratch.root, None))
            .unwrap();
        let built = scratch.dirs.build.join(NINJA_TARGET);
        fs::write(&built, b"garbage of another length").unwrap();
        let mut stages = FakeStages::new(&scratch.root, None);
        scratch.build(&mut stages).unwrap();
        assert_eq!(
            stages.ran,
            ["ninja", "check", "configure", "ninja", "check"]
        );
        scratch.assert_complete();
    }

    #[test]
    fn a_damaged_installed_binary_is_installed_again() {
        let scratch = Scratch::new("damaged-install");
        scratch
            .build(&mut FakeStages::new(&scratch.root, None))
            .unwrap();
        // Same size, written in place (as a bad copy or a stray write),
        // later than the build (file times tick in milliseconds).
        std::thread::sleep(Duration::from_millis(20));
        let mut damaged = BINARY.to_vec();
        damaged[0] ^= 0xff;
        fs::write(&scratch.installed, &damaged).unwrap();
        scratch
            .build(&mut FakeStages::new(&scratch.root, None))
            .unwrap();
        scratch.assert_complete();
    }
}
