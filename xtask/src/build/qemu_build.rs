// SPDX-License-Identifier: GPL-2.0-or-later
//! Builds `qemu-system-aarch64` with the stopwatch device: computes the
//! cache key, then runs each stage unless its stamp says it is done
//! (prepare the shared source; then, in this checkout's own directory,
//! clone it, sync the device, configure, ninja), and installs the binary
//! into `target/vm/`.

mod steps;

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::build::cache::{self, Cache, CheckoutDirs, KeyBuilder, QemuDirs, Stage};
use crate::build::pins;
use crate::build::prereqs::HostTools;
use crate::build::qemu_source::{self, QemuTarball};
use crate::repo::Repo;
use crate::util::{self, stdout_of, MirrorReport, Step, SummaryRow};
use steps::{check_rust_devices, check_version, configure, run_ninja};

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
    let mut stages = RealStages {
        repo,
        cache,
        tarball,
        tools,
    };
    run_stages(&dirs, &repo.root, &mut stages, &repo.qemu_binary(), summary)?;
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
    /// The checkout's own copy of `dirs.src` in `checkout.src` (absent).
    fn clone_source(&mut self, dirs: &QemuDirs, checkout: &CheckoutDirs) -> Result<()>;
    /// The checkout's `qemu-device/` into its source tree, changed files
    /// only.
    fn sync_device(&mut self, checkout: &CheckoutDirs) -> Result<MirrorReport>;
    /// configure into `checkout.build` (which is empty).
    fn configure(&mut self, checkout: &CheckoutDirs) -> Result<()>;
    /// ninja, incremental; returns what it did.
    fn ninja(&mut self, checkout: &CheckoutDirs) -> Result<String>;
    /// The built binary runs and is the right one.
    fn check(&mut self, checkout: &CheckoutDirs, binary: &Path) -> Result<()>;
}

/// What a build of one checkout changed.
#[derive(Debug, PartialEq, Eq)]
struct BuildOutcome {
    /// Device files written into, or removed from, the checkout's tree.
    device_files_synced: usize,
    /// Whether the binary was copied to its installed place.
    installed: bool,
}

/// The pipeline for the checkout at `repo_root`: each stamped stage runs
/// only if its stamp is missing, and stamps only once it succeeded
/// ([`QemuDirs::run_stage`]), so a run interrupted anywhere is picked up
/// where it stopped; ninja always runs (it is incremental and recovers
/// from interruption itself); a built binary that fails its check gets one
/// rebuild from scratch; the result is installed at `install_to` unless an
/// untouched copy is there. The shared source is only read once prepared:
/// everything a checkout's own sources change lives in its own directory.
fn run_stages(
    dirs: &QemuDirs,
    repo_root: &Path,
    stages: &mut dyn Stages,
    install_to: &Path,
    summary: &mut Vec<SummaryRow>,
) -> Result<BuildOutcome> {
    let checkout = dirs.checkout(repo_root);
    // Two commands in one checkout take turns; other checkouts build
    // side by side.
    let _checkout_lock = util::lock_file(&checkout.lock_path(), "building QEMU", |message| {
        eprintln!("{message}")
    })?;
    checkout.record_owner(repo_root)?;
    if dirs.is_done(Stage::SourcePrepared) && checkout.is_done(Stage::SourceCloned) {
        summary.push(up_to_date("QEMU source"));
    } else {
        // Checkouts prepare the shared source, and clone it, in turns.
        let _shared_lock = util::lock_file(&dirs.lock_path(), "building QEMU", |message| {
            eprintln!("{message}")
        })?;
        let step = Step::start("QEMU source");
        // No stamp: a new key, or an interrupted run left a partial tree.
        let prepared = dirs.run_stage(Stage::SourcePrepared, &[&dirs.src], || {
            eprintln!("    preparing {}", dirs.src.display());
            let tarball = stages.fetch()?;
            stages.prepare(&tarball, dirs)
        })?;
        // The checkout's own tree: a new checkout, a source prepared anew,
        // or an interrupted clone.
        checkout.run_stage(Stage::SourceCloned, &[&checkout.src], || {
            eprintln!("    this checkout's copy: {}", checkout.src.display());
            stages.clone_source(dirs, &checkout)
        })?;
        summary.push(step.finish(if prepared { "prepared" } else { "cloned" }));
    }

    let step = Step::start("Device sync (qemu-device/ into this checkout's QEMU tree)");
    let synced = stages.sync_device(&checkout)?;
    for path in &synced.written {
        eprintln!("    updated {}", path.display());
    }
    for path in &synced.removed {
        eprintln!("    removed {}", path.display());
    }
    let changes = synced.written.len() + synced.removed.len();
    summary.push(step.finish(&format!("{changes} file(s) changed")));

    let binary = checkout.build.join(NINJA_TARGET);
    for attempt in 1..=2 {
        if checkout.is_done(Stage::Configured) {
            summary.push(up_to_date("QEMU configure"));
        } else {
            let step = Step::start("QEMU: configure");
            checkout.run_stage(Stage::Configured, &[&checkout.build], || {
                fs::create_dir_all(&checkout.build)
                    .with_context(|| format!("could not create {}", checkout.build.display()))?;
                stages.configure(&checkout)
            })?;
            summary.push(step.finish("configured"));
        }
        let step = Step::start("QEMU: ninja");
        let outcome = stages.ninja(&checkout)?;
        match stages.check(&checkout, &binary) {
            Ok(()) => {
                // This stamp only records that the directory produced a
                // working QEMU (ninja runs every time).
                checkout.mark_done(Stage::Built)?;
                summary.push(step.finish(&outcome));
                break;
            }
            Err(error) if attempt == 1 => {
                eprintln!(
                    "The QEMU build in {} looks corrupt ({error:#}): rebuilding it from scratch.",
                    checkout.build.display()
                );
                checkout.mark_undone(Stage::Configured)?;
            }
            Err(error) => return Err(error.context("QEMU built, but the binary is unusable")),
        }
    }
    let installed = util::install_copy(&binary, install_to)?;
    Ok(BuildOutcome {
        device_files_synced: changes,
        installed,
    })
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
        qemu_source::prepare(&self.repo.root, self.cache, self.tarball, tarball, dirs)
    }

    fn clone_source(&mut self, dirs: &QemuDirs, checkout: &CheckoutDirs) -> Result<()> {
        qemu_source::clone_prepared(&dirs.src, &checkout.src)
    }

    fn sync_device(&mut self, checkout: &CheckoutDirs) -> Result<MirrorReport> {
        qemu_source::sync_device(&self.repo.root, &checkout.src)
    }

    fn configure(&mut self, checkout: &CheckoutDirs) -> Result<()> {
        configure(checkout, self.tools, self.cache)
    }

    fn ninja(&mut self, checkout: &CheckoutDirs) -> Result<String> {
        run_ninja(checkout, self.tools)
    }

    fn check(&mut self, checkout: &CheckoutDirs, binary: &Path) -> Result<()> {
        check_version(binary)?;
        check_rust_devices(&checkout.build)
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

/// Mentions the disk that builds for other keys, for checkouts that are
/// gone and of the layout before checkouts had their own take (never
/// deleted silently: one may hold edits not yet turned into patches).
fn note_old_builds(cache: &Cache, current: &QemuDirs) {
    let old = cache::other_qemu_dirs(cache, &current.root).len()
        + current.stale_checkouts().len()
        + usize::from(current.shared_build_of_old_layout().is_dir());
    if old > 0 {
        eprintln!(
            "note: {old} QEMU build dir(s) of older inputs or of checkouts that are gone \
             (about 1 GiB each) in {}; `cargo xtask clean --old` removes them",
            cache.qemu_builds().display(),
        );
    }
}

#[cfg(test)]
mod fault_tests;
