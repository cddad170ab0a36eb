// SPDX-License-Identifier: GPL-2.0-or-later
//! Gets QEMU's source into a keyed cache directory, the generic steps:
//! choose the tarball (one given by the user; Debian's, fetched by
//! [`debian::source`] where a Debian archive is configured; else QEMU's
//! release, downloaded by [`upstream`]), extract it, have
//! [`debian::repack`] restore what Debian's `+ds` repack strips, commit it
//! as a git base, apply `patches/*.patch`; clones that prepared tree for each checkout, and
//! syncs the checkout's `qemu-device/` into its clone.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::{Cache, QemuDirs};
use crate::build::debian;
use crate::build::pins;
use crate::build::upstream;
use crate::util::{self, run_captured, sha256_file, MirrorReport};

/// Environment variable naming an upstream release tarball to build from.
pub const TARBALL_ENV: &str = "STOPWATCH_QEMU_TARBALL";

/// Where the device sources go inside QEMU's tree; the patches hook this
/// directory into QEMU's build.
pub const DEVICE_DIR_IN_QEMU: &str = "rust/hw/misc/stopwatch";

/// The tarball QEMU is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuTarball {
    /// Debian's pinned `+ds` orig tarball, fetched with apt when needed.
    Debian,
    /// QEMU's release tarball, downloaded when needed and checked.
    Release(upstream::Release),
    /// A tarball the user supplied (`--qemu-tarball`).
    Given { path: PathBuf, sha256: String },
}

impl QemuTarball {
    /// `--qemu-tarball`, else `$STOPWATCH_QEMU_TARBALL`; else QEMU's
    /// release if `$STOPWATCH_QEMU_URL` (or `_SHA256`) asks for it; else
    /// Debian's source package where a Debian archive is configured; else
    /// QEMU's release.
    pub fn choose(cli_path: Option<PathBuf>) -> Result<QemuTarball> {
        QemuTarball::choose_with(cli_path, &|name| std::env::var_os(name))
    }

    /// [`QemuTarball::choose`] in the environment `env`.
    pub fn choose_with(
        cli_path: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<QemuTarball> {
        let path = cli_path.or_else(|| env(TARBALL_ENV).map(PathBuf::from));
        if let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) {
            let path = fs::canonicalize(&path)
                .with_context(|| format!("QEMU tarball {} not found", path.display()))?;
            let sha256 = sha256_file(&path)?;
            return Ok(QemuTarball::Given { path, sha256 });
        }
        if upstream::Release::asked_for(env) || !debian::mirror::archive_configured(env) {
            return Ok(QemuTarball::Release(upstream::Release::from_env(env)?));
        }
        Ok(QemuTarball::Debian)
    }

    /// The tarball's SHA-256, known without downloading it.
    pub fn sha256(&self) -> &str {
        match self {
            QemuTarball::Debian => pins::DEBIAN_ORIG_TARBALL.sha256,
            QemuTarball::Release(release) => &release.sha256,
            QemuTarball::Given { sha256, .. } => sha256,
        }
    }

    /// Whether its tree is Debian's source, which gets the patches marked
    /// Debian-only too. Every tree gets what Debian's `+ds` repack strips
    /// put back where it is missing: Debian's lacks all of it, and QEMU's
    /// release lacks the crates its scripts/make-release does not name
    /// (glib-sys for 10.2.2, without which configure stops: "Automatic
    /// wrap-based subproject downloading is disabled").
    fn is_debian_source(&self) -> bool {
        match self {
            QemuTarball::Debian => true,
            QemuTarball::Release(_) => false,
            // Debian's orig tarball passed by hand, or an upstream one.
            QemuTarball::Given { path, .. } => {
                path.file_name() == Some(std::ffi::OsStr::new(pins::DEBIAN_ORIG_TARBALL.name))
            }
        }
    }

    /// Where the source comes from, for the build's output.
    pub fn describe(&self) -> String {
        match self {
            QemuTarball::Debian => format!(
                "Debian's source package {}={}",
                pins::DEBIAN_SOURCE_PACKAGE,
                pins::DEBIAN_VERSION
            ),
            QemuTarball::Release(release) => format!("QEMU's release tarball, {}", release.url),
            QemuTarball::Given { path, .. } => format!("the tarball {}", path.display()),
        }
    }
}

/// Downloads (if needed) and verifies the tarball; returns its path.
pub fn fetch_tarball(cache: &Cache, tarball: &QemuTarball) -> Result<PathBuf> {
    eprintln!("    source: {}", tarball.describe());
    match tarball {
        QemuTarball::Given { path, .. } => Ok(path.clone()),
        QemuTarball::Release(release) => upstream::fetch(cache, release),
        QemuTarball::Debian => debian::source::fetch_orig_tarball(
            cache,
            &format!(
                "have cargo xtask download QEMU's release tarball instead \
                 ({}={} cargo xtask ...), or download it yourself and pass it with \
                 --qemu-tarball PATH or {TARBALL_ENV}=PATH",
                upstream::URL_ENV,
                pins::UPSTREAM_TARBALL_URL
            ),
        ),
    }
}

/// Builds a patched source tree in `dirs.src` from `tarball_path`, the
/// fetched `tarball`.
pub fn prepare(
    repo: &Path,
    cache: &Cache,
    tarball: &QemuTarball,
    tarball_path: &Path,
    dirs: &QemuDirs,
) -> Result<()> {
    let src = &dirs.src;
    fs::create_dir_all(src).with_context(|| format!("could not create {}", src.display()))?;
    extract(tarball_path, src)?;
    debian::repack::restore_stripped(repo, cache, src)?;
    commit_base(src)?;
    apply_patches(repo, src, tarball.is_debian_source())
}

/// Extracts QEMU's source tarball into `into` (its top directory
/// stripped), and checks it is the QEMU the patches are for.
pub fn extract(tarball: &Path, into: &Path) -> Result<()> {
    eprintln!("Extracting {}...", tarball.display());
    // --no-same-owner: files owned by the archive's uid make git refuse the
    // tree ("dubious ownership") when we run as root.
    run_captured(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(into)
            .args(["--strip-components=1", "--no-same-owner"]),
    )?;
    let version = fs::read_to_string(into.join("VERSION")).unwrap_or_default();
    if version.trim() != pins::QEMU_VERSION {
        bail!(
            "{} holds QEMU {:?}, but the patches are for {}: use a qemu-{}.tar.xz",
            tarball.display(),
            version.trim(),
            pins::QEMU_VERSION,
            pins::QEMU_VERSION
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::debian::mirror::MIRROR_ENV;

    /// A scratch directory with an apt configuration whose sources are
    /// `sources` (a `sources.list`), or hidden as on a host without a
    /// Debian archive; returns the `APT_CONFIG` file.
    fn apt_config(test: &str, sources: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-choose-{test}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("apt.conf");
        let text = match sources {
            Some(list) => {
                fs::write(dir.join("sources.list"), list).unwrap();
                format!(
                    "Dir::Etc::sourcelist \"{}\";\nDir::Etc::sourceparts \"{}\";\n",
                    dir.join("sources.list").display(),
                    dir.join("none.d").display()
                )
            }
            None => {
                "Dir::Etc::sourcelist \"/dev/null\";\nDir::Etc::sourceparts \"/nonexistent\";\n"
                    .to_string()
            }
        };
        fs::write(&config, text).unwrap();
        config
    }

    fn env_of(vars: Vec<(&'static str, OsString)>) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn has_apt_config() -> bool {
        let found = Command::new("apt-config").arg("dump").output().is_ok();
        if !found {
            eprintln!("no apt-config on this host: the choice's apt cases are not run");
        }
        found
    }

    /// A made-up Debian archive (the repository names no real host).
    const DEBIAN_SOURCES: &str = "deb http://archive.example/debian bookworm main\n";

    #[test]
    fn without_a_debian_archive_the_release_is_downloaded() {
        let hidden = apt_config("hidden", None);
        let env = env_of(vec![("APT_CONFIG", hidden.into())]);
        let chosen = QemuTarball::choose_with(None, &env).unwrap();
        assert_eq!(
            chosen,
            QemuTarball::Release(upstream::Release {
                url: pins::UPSTREAM_TARBALL_URL.into(),
                sha256: pins::UPSTREAM_TARBALL.sha256.into(),
            })
        );
        // Its hash keys the build, known before any download.
        assert_eq!(chosen.sha256(), pins::UPSTREAM_TARBALL.sha256);
    }

    #[test]
    fn with_a_debian_archive_debians_source_package() {
        if !has_apt_config() {
            return;
        }
        let debian = apt_config("debian", Some(DEBIAN_SOURCES));
        let env = env_of(vec![("APT_CONFIG", debian.into())]);
        assert_eq!(
            QemuTarball::choose_with(None, &env).unwrap(),
            QemuTarball::Debian
        );
        // And a mirror named in the environment counts as one.
        let hidden = apt_config("hidden-mirror", None);
        let env = env_of(vec![
            ("APT_CONFIG", hidden.into()),
            (MIRROR_ENV, "http://archive.example/debian".into()),
        ]);
        assert_eq!(
            QemuTarball::choose_with(None, &env).unwrap(),
            QemuTarball::Debian
        );
    }

    #[test]
    fn a_url_in_the_environment_downloads_even_beside_a_debian_archive() {
        let debian = apt_config("url", Some(DEBIAN_SOURCES));
        let sha = "0123456789abcdef".repeat(4);
        let env = env_of(vec![
            ("APT_CONFIG", debian.into()),
            (upstream::URL_ENV, "http://127.0.0.1:1/qemu.tar.xz".into()),
            (upstream::SHA256_ENV, sha.clone().into()),
        ]);
        assert_eq!(
            QemuTarball::choose_with(None, &env).unwrap(),
            QemuTarball::Release(upstream::Release {
                url: "http://127.0.0.1:1/qemu.tar.xz".into(),
                sha256: sha,
            })
        );
    }

    #[test]
    fn only_debians_source_gets_the_debian_only_patches() {
        let release = QemuTarball::Release(upstream::Release::from_env(&|_| None).unwrap());
        let given = |name: &str| QemuTarball::Given {
            path: PathBuf::from("/somewhere").join(name),
            sha256: String::new(),
        };
        assert!(!release.is_debian_source());
        assert!(QemuTarball::Debian.is_debian_source());
        assert!(!given(pins::UPSTREAM_TARBALL.name).is_debian_source());
        assert!(given(pins::DEBIAN_ORIG_TARBALL.name).is_debian_source());
    }

    #[test]
    fn a_given_tarball_comes_first() {
        let dir = std::env::temp_dir().join(format!("xtask-choose-given-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let tarball = dir.join("qemu-10.2.2.tar.xz");
        fs::write(&tarball, b"a tarball").unwrap();
        let env = env_of(vec![
            (upstream::URL_ENV, "http://127.0.0.1:1/qemu.tar.xz".into()),
            (TARBALL_ENV, "/nonexistent/by-env.tar.xz".into()),
        ]);
        let expected = QemuTarball::Given {
            path: fs::canonicalize(&tarball).unwrap(),
            sha256: crate::util::sha256_hex(b"a tarball"),
        };
        // The option, before the variable and the URL.
        assert_eq!(
            QemuTarball::choose_with(Some(tarball.clone()), &env).unwrap(),
            expected
        );
        let env = env_of(vec![
            (upstream::URL_ENV, "http://127.0.0.1:1/qemu.tar.xz".into()),
            (TARBALL_ENV, tarball.clone().into()),
        ]);
        assert_eq!(QemuTarball::choose_with(None, &env).unwrap(), expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
