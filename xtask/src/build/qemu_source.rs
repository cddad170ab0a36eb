// SPDX-License-Identifier: GPL-2.0-or-later
//! Gets QEMU's source into a keyed cache directory, the generic steps:
//! choose the tarball (an upstream one, or Debian's, fetched by
//! [`debian::source`]), extract it, have [`debian::repack`] restore what
//! Debian's `+ds` repack strips, commit it as a git base, apply
//! `patches/*.patch`; clones that prepared tree for each checkout, and
//! syncs the checkout's `qemu-device/` into its clone.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::{Cache, QemuDirs};
use crate::build::debian;
use crate::build::pins;
use crate::util::{self, run_captured, sha256_file, MirrorReport};

/// Environment variable naming an upstream release tarball to build from.
pub const TARBALL_ENV: &str = "STOPWATCH_QEMU_TARBALL";

/// Where the device sources go inside QEMU's tree; the patches hook this
/// directory into QEMU's build.
pub const DEVICE_DIR_IN_QEMU: &str = "rust/hw/misc/stopwatch";

/// The tarball QEMU is built from.
#[derive(Debug, Clone)]
pub enum QemuTarball {
    /// Debian's pinned `+ds` orig tarball, downloaded when needed.
    Debian,
    /// An upstream `qemu-10.2.2.tar.xz` the user supplied.
    Upstream { path: PathBuf, sha256: String },
}

impl QemuTarball {
    /// `--qemu-tarball`, else `$STOPWATCH_QEMU_TARBALL`, else Debian's.
    pub fn choose(cli_path: Option<PathBuf>) -> Result<QemuTarball> {
        let path = cli_path.or_else(|| std::env::var_os(TARBALL_ENV).map(PathBuf::from));
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(QemuTarball::Debian);
        };
        let path = fs::canonicalize(&path)
            .with_context(|| format!("QEMU tarball {} not found", path.display()))?;
        let sha256 = sha256_file(&path)?;
        Ok(QemuTarball::Upstream { path, sha256 })
    }

    /// The tarball's SHA-256, known without downloading it.
    pub fn sha256(&self) -> &str {
        match self {
            QemuTarball::Debian => pins::DEBIAN_ORIG_TARBALL.sha256,
            QemuTarball::Upstream { sha256, .. } => sha256,
        }
    }
}

/// Downloads (if needed) and verifies the tarball; returns its path.
pub fn fetch_tarball(cache: &Cache, tarball: &QemuTarball) -> Result<PathBuf> {
    match tarball {
        QemuTarball::Upstream { path, .. } => Ok(path.clone()),
        QemuTarball::Debian => debian::source::fetch_orig_tarball(
            cache,
            &format!(
                "download the upstream release tarball {} (QEMU's download page) and pass it \
                 with --qemu-tarball PATH or {TARBALL_ENV}=PATH",
                pins::UPSTREAM_TARBALL_NAME
            ),
        ),
    }
}

/// Builds a patched source tree in `dirs.src` from `tarball_path`.
pub fn prepare(repo: &Path, cache: &Cache, tarball_path: &Path, dirs: &QemuDirs) -> Result<()> {
    let src = &dirs.src;
    fs::create_dir_all(src).with_context(|| format!("could not create {}", src.display()))?;
    eprintln!("Extracting {}...", tarball_path.display());
    // --no-same-owner: files owned by the archive's uid make git refuse the
    // tree ("dubious ownership") when we run as root.
    run_captured(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball_path)
            .arg("-C")
            .arg(src)
            .args(["--strip-components=1", "--no-same-owner"]),
    )?;
    let version = fs::read_to_string(src.join("VERSION")).unwrap_or_default();
    if version.trim() != pins::QEMU_VERSION {
        bail!(
            "{} holds QEMU {:?}, but the patches are for {}: use a qemu-{}.tar.xz",
            tarball_path.display(),
            version.trim(),
            pins::QEMU_VERSION,
            pins::QEMU_VERSION
        );
    }
    debian::repack::restore_stripped(repo, cache, src)?;
    commit_base(src)?;
    let debian_source =
        tarball_path.file_name() == Some(std::ffi::OsStr::new(pins::DEBIAN_ORIG_TARBALL.name));
    apply_patches(repo, src, debian_source)
}

fn git(src: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(src).args([
        "-c",
        "user.name=Stopwatch xtask",
        "-c",
        "user.email=xtask@stopwatch.invalid",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "core.autocrlf=false",
    ]);
    cmd
}

/// Commits the restored tree and tags it, so that the patches can be
/// applied with `git am` and regenerated with `git format-patch`.
fn commit_base(src: &Path) -> Result<()> {
    eprintln!("Committing the restored source as {}...", pins::BASE_TAG);
    run_captured(git(src).args(["init", "--quiet"]))?;
    // The device is synced in after the patches; keep it out of commits.
    exclude_device_dir(src)?;
    // --force: QEMU's .gitignore matches real source files (the *-rs.wrap
    // files, bundled subprojects); the base must hold the whole tree so
    // that patches can change any file.
    run_captured(git(src).args(["add", "--all", "--force"]))?;
    run_captured(git(src).args([
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        &format!(
            "QEMU {} base\n\nThe release source with what Debian's repack strips \
             restored (wheels, crates, packagefiles).",
            pins::QEMU_VERSION
        ),
    ]))?;
    run_captured(git(src).args(["tag", pins::BASE_TAG]))?;
    Ok(())
}

/// Gives a checkout its own copy of the prepared tree `prepared` at `into`
/// (absent): a local git clone, whose objects are hard links (git never
/// writes them in place) and whose every other file is a copy, so that an
/// edit or a tool writing in place in one checkout's tree cannot reach the
/// shared tree or another checkout's. The clone keeps the base tag, so
/// commits made in it become patches (`cargo xtask update-patches`).
pub fn clone_prepared(prepared: &Path, into: &Path) -> Result<()> {
    let parent = into.parent().context("a checkout's tree has a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    run_captured(
        git(parent)
            .args(["clone", "--quiet", "--local"])
            .arg(prepared)
            .arg(into),
    )
    .with_context(|| format!("could not clone {}", prepared.display()))?;
    exclude_device_dir(into)
}

/// Keeps the synced device out of the tree's commits (and `git status`).
fn exclude_device_dir(src: &Path) -> Result<()> {
    let exclude = src.join(".git/info/exclude");
    let mut excluded = fs::read_to_string(&exclude).unwrap_or_default();
    let line = format!("/{DEVICE_DIR_IN_QEMU}/\n");
    if !excluded.contains(&line) {
        excluded.push_str(&line);
    }
    util::write_if_changed(&exclude, excluded.as_bytes()).map(drop)
}

/// `patches/*.patch`, in the order they apply.
pub fn patch_files(repo: &Path) -> Result<Vec<PathBuf>> {
    patch_files_in(&repo.join("patches"))
}

/// The `*.patch` files in `dir`, sorted by name.
pub fn patch_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut patches: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    Ok(patches)
}

/// Applies the series; the patches marked Debian-only (the last ones) only
/// to Debian's repacked source.
fn apply_patches(repo: &Path, src: &Path, debian_source: bool) -> Result<()> {
    for patch in patch_files(repo)? {
        let name = patch.file_name().unwrap_or_default().to_string_lossy();
        if !debian_source && crate::build::patches::is_debian_only(&fs::read_to_string(&patch)?) {
            eprintln!("Skipping {name} (only for Debian's source)");
            continue;
        }
        eprintln!("Applying {name}");
        // --committer-date-is-author-date: the same patches give the same
        // commits on every machine.
        let output = git(src)
            .args(["am", "--quiet", "--committer-date-is-author-date"])
            .arg(&patch)
            .output()
            .context("could not run git")?;
        if !output.status.success() {
            let _ = git(src).args(["am", "--abort"]).output();
            // git's "hint:" lines suggest `git am --continue`: we aborted.
            let why: Vec<String> = String::from_utf8_lossy(&output.stderr)
                .lines()
                .chain(String::from_utf8_lossy(&output.stdout).lines())
                .filter(|line| !line.starts_with("hint:"))
                .map(|line| format!("  {line}"))
                .collect();
            bail!(
                "patches/{name} does not apply to QEMU {}:\n{}\nFix the patch, or redo the \
                 change in a checkout's QEMU tree that has the patches \
                 (<cache>/qemu/*/checkouts/*/src, `git commit` there) and regenerate the \
                 patches with `cargo xtask update-patches`",
                pins::QEMU_VERSION,
                why.join("\n")
            );
        }
    }
    Ok(())
}

/// Copies `qemu-device/` (without `qtest/` and build outputs) into the QEMU
/// tree, touching only files whose content changed so that ninja rebuilds
/// just what is needed.
pub fn sync_device(repo: &Path, src: &Path) -> Result<MirrorReport> {
    let from = repo.join("qemu-device");
    if !from.is_dir() {
        bail!("{} is missing", from.display());
    }
    let skip = |relative: &Path| {
        relative == Path::new("qtest") || relative.file_name().is_some_and(|n| n == "target")
    };
    util::mirror_tree(&from, &src.join(DEVICE_DIR_IN_QEMU), &skip)
}
