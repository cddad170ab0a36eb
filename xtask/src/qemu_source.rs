// SPDX-License-Identifier: GPL-2.0-or-later
//! Gets QEMU's source into a keyed cache directory: download (Debian's
//! source package through a private apt configuration, or an upstream
//! tarball), extract, restore what Debian's `+ds` repack strips, commit it
//! as a git base, apply `patches/*.patch`; and syncs `qemu-device/` into it.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{Cache, QemuDirs};
use crate::debian_mirror;
use crate::meson_wrap::CrateWrap;
use crate::pins;
use crate::prereqs::cargo;
use crate::util::{
    self, fetch_verified, run_captured, sha256_file, verify_sha256, MirrorReport, Pinned,
};

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
        QemuTarball::Debian => {
            let dir = cache.downloads().join("qemu");
            let orig = dir.join(pins::DEBIAN_ORIG_TARBALL.name);
            // The build needs the orig tarball; the other files of the
            // source package are checked when they are there.
            let files: Vec<Pinned> = pins::DEBIAN_SOURCE_FILES
                .iter()
                .map(|file| Pinned {
                    path: dir.join(file.name),
                    sha256: file.sha256,
                })
                .filter(|file| file.path == orig || file.path.is_file())
                .collect();
            fetch_verified(&files, || download_debian_source(cache, &dir))?;
            Ok(orig)
        }
    }
}

/// `apt-get source --download-only` with a private apt configuration that
/// lists only the Debian source index; the system's apt setup is untouched.
fn download_debian_source(cache: &Cache, into: &Path) -> Result<()> {
    let keyring = Path::new(pins::DEBIAN_KEYRING);
    if !keyring.is_file() {
        bail!(
            "{} is missing: install Debian's debian-archive-keyring package",
            keyring.display()
        );
    }
    let mirror = debian_mirror::find()?;
    let apt = cache.apt();
    for dir in [
        apt.join("lists/partial"),
        apt.join("cache/archives/partial"),
        into.to_path_buf(),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    let sources_list = apt.join("sources.list");
    util::write_if_changed(
        &sources_list,
        format!(
            "deb-src [signed-by={}] {mirror} {} main\n",
            keyring.display(),
            pins::DEBIAN_SUITE
        )
        .as_bytes(),
    )?;
    let private_apt = || {
        let mut cmd = Command::new("apt-get");
        for option in [
            format!("Dir::Etc::SourceList={}", sources_list.display()),
            "Dir::Etc::SourceParts=/dev/null".to_string(),
            format!("Dir::State::Lists={}", apt.join("lists").display()),
            format!("Dir::Cache={}", apt.join("cache").display()),
            // Our own state directories: no need for the system's locks,
            // nor for apt's unprivileged download user (it cannot write here).
            "Debug::NoLocking=1".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd.arg("-q");
        cmd
    };
    eprintln!(
        "Downloading Debian's source package {}={} from {mirror} ({})...",
        pins::DEBIAN_SOURCE_PACKAGE,
        pins::DEBIAN_VERSION,
        pins::DEBIAN_SUITE
    );
    run_captured(private_apt().arg("update"))
        .with_context(|| format!("could not read the source index of {mirror}"))?;
    let wanted = format!("{}={}", pins::DEBIAN_SOURCE_PACKAGE, pins::DEBIAN_VERSION);
    run_captured(
        private_apt()
            .args(["--download-only", "source", &wanted])
            .current_dir(into),
    )
    .with_context(|| {
        format!(
            "could not download {wanted} from Debian {} (the version may have left the \
             archive).\nAlternative: download the upstream release tarball {} (QEMU's \
             download page) and pass it with --qemu-tarball PATH or {TARBALL_ENV}=PATH",
            pins::DEBIAN_SUITE,
            pins::UPSTREAM_TARBALL_NAME
        )
    })?;
    Ok(())
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
    restore_python_wheels(cache, src)?;
    restore_rust_crates(repo, cache, src)?;
    commit_base(src)?;
    let debian_source =
        tarball_path.file_name() == Some(std::ffi::OsStr::new(pins::DEBIAN_ORIG_TARBALL.name));
    apply_patches(repo, src, debian_source)
}

/// Puts the meson and pycotap wheels into `python/wheels/` (configure runs
/// with --disable-download and installs them from there).
fn restore_python_wheels(cache: &Cache, src: &Path) -> Result<()> {
    let in_tree = src.join("python/wheels");
    let downloads = cache.downloads().join("wheels");
    let missing: Vec<_> = pins::PYTHON_WHEELS
        .iter()
        .filter(|w| !in_tree.join(w.file.name).is_file()) // upstream ships them
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let files: Vec<Pinned> = missing
        .iter()
        .map(|w| Pinned {
            path: downloads.join(w.file.name),
            sha256: w.file.sha256,
        })
        .collect();
    fetch_verified(&files, || {
        eprintln!("Downloading Python wheels for QEMU's configure...");
        let python = python_venv(cache)?;
        run_captured(
            Command::new(python)
                .args(["-m", "pip", "download", "--quiet", "--no-deps"])
                .args(["--only-binary=:all:", "-d"])
                .arg(&downloads)
                .args(missing.iter().map(|w| w.requirement)),
        )
        .context("could not download the Python wheels QEMU's configure needs")
        .map(drop)
    })?;
    fs::create_dir_all(&in_tree)?;
    for wheel in missing {
        let downloaded = downloads.join(wheel.file.name);
        fs::copy(&downloaded, in_tree.join(wheel.file.name))
            .with_context(|| format!("could not copy {}", downloaded.display()))?;
    }
    Ok(())
}

/// A venv of our own for pip: Debian's python3 has no pip module, and
/// pip refuses to touch the system Python there anyway.
pub fn python_venv(cache: &Cache) -> Result<PathBuf> {
    let venv = cache.tools().join("python-venv");
    let python = venv.join("bin/python3");
    if !python.is_file() {
        run_captured(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("could not create a Python venv: install Debian's python3-venv")?;
    }
    Ok(python)
}

/// Fills `subprojects/packagecache/` with the crates of every `*-rs.wrap`
/// (fetched by cargo, checked against the wrap's hash) and
/// `subprojects/packagefiles/` with this repository's meson files for them.
fn restore_rust_crates(repo: &Path, cache: &Cache, src: &Path) -> Result<()> {
    let subprojects = src.join("subprojects");
    let mut wraps = Vec::new();
    for entry in fs::read_dir(&subprojects)
        .with_context(|| format!("could not list {}", subprojects.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("-rs.wrap") {
            let wrap = CrateWrap::read(&path)?;
            // Upstream release tarballs ship the crates already unpacked.
            if !subprojects.join(&wrap.directory).is_dir() {
                wraps.push(wrap);
            }
        }
    }
    wraps.sort_by(|a, b| a.wrap_name.cmp(&b.wrap_name));
    if wraps.is_empty() {
        return Ok(());
    }

    let packagefiles = repo.join("patches/packagefiles");
    for wrap in &wraps {
        let from = packagefiles.join(&wrap.patch_directory);
        if !from.join("meson.build").is_file() {
            bail!(
                "subprojects/{}.wrap needs a meson.build for crate {} {}, and {} has none: \
                 write one (see the other folders there) and run again",
                wrap.wrap_name,
                wrap.crate_name,
                wrap.crate_version,
                from.display()
            );
        }
        util::copy_tree(
            &from,
            &subprojects.join("packagefiles").join(&wrap.patch_directory),
        )?;
    }

    fetch_crates(cache, &wraps)?;
    let packagecache = subprojects.join("packagecache");
    fs::create_dir_all(&packagecache)?;
    for wrap in &wraps {
        let crate_file = find_crate_file(&wrap.crate_name, &wrap.crate_version)?;
        verify_sha256(&crate_file, &wrap.source_hash).with_context(|| {
            format!(
                "the crate does not match subprojects/{}.wrap's source_hash",
                wrap.wrap_name
            )
        })?;
        fs::copy(&crate_file, packagecache.join(&wrap.source_filename))
            .with_context(|| format!("could not copy {}", crate_file.display()))?;
    }
    Ok(())
}

/// Lets cargo download the exact crate versions into its own cache,
/// through a throwaway manifest that depends on all of them.
fn fetch_crates(cache: &Cache, wraps: &[CrateWrap]) -> Result<()> {
    let project = cache.downloads().join("crates-manifest");
    let mut manifest = String::from(
        "# Written by `cargo xtask`: lets cargo fetch the crates of QEMU's *-rs.wrap files.\n\
         [package]\nname = \"qemu-wrap-crates\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n[dependencies]\n",
    );
    for wrap in wraps {
        manifest.push_str(&format!(
            "{} = \"={}\"\n",
            wrap.crate_name, wrap.crate_version
        ));
    }
    util::write_if_changed(&project.join("Cargo.toml"), manifest.as_bytes())?;
    util::write_if_changed(&project.join("src/lib.rs"), b"")?;
    eprintln!("Fetching {} crates for QEMU's Rust code...", wraps.len());
    run_captured(
        Command::new(cargo())
            .args(["fetch", "--quiet", "--manifest-path"])
            .arg(project.join("Cargo.toml")),
    )
    .context("cargo could not fetch the crates of QEMU's subprojects/*-rs.wrap")?;
    Ok(())
}

/// The `.crate` file cargo keeps for `name`-`version`.
fn find_crate_file(name: &str, version: &str) -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registries = cargo_home.join("registry/cache");
    let file_name = format!("{name}-{version}.crate");
    fs::read_dir(&registries)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(&file_name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "cargo fetched, yet {file_name} is not under {}",
                registries.display()
            )
        })
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
    let exclude = src.join(".git/info/exclude");
    let mut excluded = fs::read_to_string(&exclude).unwrap_or_default();
    excluded.push_str(&format!("/{DEVICE_DIR_IN_QEMU}/\n"));
    util::write_if_changed(&exclude, excluded.as_bytes())?;
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
        if !debian_source && crate::patches::is_debian_only(&fs::read_to_string(&patch)?) {
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
                 change in a prepared tree (<cache>/qemu/*/src, `git commit` there) and \
                 regenerate the patches with `cargo xtask update-patches`",
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
