// SPDX-License-Identifier: GPL-2.0-or-later
//! Where downloads and QEMU builds are cached, how a build directory is
//! keyed (by the build inputs, then by checkout), and the stamps that say
//! which stages of it have finished.
//!
//! Layout under the cache root:
//!
//! ```text
//! downloads/qemu/        the Debian source package files, or QEMU's
//!                        release tarball
//! downloads/wheels/      meson and pycotap wheels
//! downloads/crates-manifest/  throwaway Cargo project to fetch crates
//! apt/                   private apt state (sources.list, lists, cache)
//! tools/                 bindgen (if installed by us), a Python venv,
//!                        ccache-cc (QEMU's C compiler through ccache)
//! ccache/                ccache's cache of QEMU's C compilations
//! qemu/<version>-<key>/  one per cache key:
//!   src/ stamps/ logs/     the prepared (patched) source, shared
//!   checkouts/<id>/        one per checkout: src/ (its clone of the
//!                          prepared source, its qemu-device/ synced in)
//!                          build/ stamps/ logs/, and `checkout` (its path)
//!   checkouts/<id>.lock    held while that checkout builds
//! qemu/<version>-<key>.lock  held while the shared source is prepared
//! ```

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::sha256_hex;

/// Environment variable that moves the cache.
pub const CACHE_DIR_ENV: &str = "STOPWATCH_CACHE_DIR";

/// The cache root and the fixed places in it.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    /// The cache of this user, from the environment.
    pub fn locate() -> Result<Cache> {
        let root = cache_root(|name| std::env::var_os(name))?;
        if root.to_string_lossy().contains('+') {
            // bindgen is handed paths under QEMU's source directory, and
            // QEMU's build breaks on a `+` in them.
            bail!(
                "the cache directory {} contains a '+', which breaks QEMU's build (bindgen); \
                 set {CACHE_DIR_ENV} to a path without '+'",
                root.display()
            );
        }
        Ok(Cache { root })
    }

    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    pub fn apt(&self) -> PathBuf {
        self.root.join("apt")
    }

    pub fn tools(&self) -> PathBuf {
        self.root.join("tools")
    }

    /// ccache's cache of QEMU's C compilations, shared by all checkouts.
    pub fn ccache(&self) -> PathBuf {
        self.root.join("ccache")
    }

    /// The parent of all keyed QEMU directories.
    pub fn qemu_builds(&self) -> PathBuf {
        self.root.join("qemu")
    }
}

/// `$STOPWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/stopwatch`, else
/// `~/.cache/stopwatch`. Relative variables are ignored, as the XDG spec says.
pub fn cache_root(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let absolute = |name: &str| {
        env(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(dir) = absolute(CACHE_DIR_ENV) {
        return Ok(dir);
    }
    if let Some(dir) = absolute("XDG_CACHE_HOME") {
        return Ok(dir.join("stopwatch"));
    }
    match absolute("HOME") {
        Some(home) => Ok(home.join(".cache").join("stopwatch")),
        None => bail!("neither {CACHE_DIR_ENV}, XDG_CACHE_HOME nor HOME is set: set {CACHE_DIR_ENV} to a directory for downloads and QEMU builds"),
    }
}

/// Accumulates everything a QEMU build depends on into one short key.
/// Each input is labelled and length-prefixed, so that moving bytes from
/// one input to the next changes the key.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    material: Vec<u8>,
}

impl KeyBuilder {
    pub fn add(&mut self, label: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        for part in [label.as_bytes(), value] {
            self.material
                .extend_from_slice(&(part.len() as u64).to_le_bytes());
            self.material.extend_from_slice(part);
        }
        self
    }

    /// 16 hex digits: short enough for paths, long enough never to collide.
    pub fn finish(&self) -> String {
        sha256_hex(&self.material)[..16].to_string()
    }
}

/// A stage of the QEMU pipeline that leaves a stamp when it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Shared by every checkout: source extracted, restored, committed and
    /// patched.
    SourcePrepared,
    /// A checkout's own clone of the prepared source.
    SourceCloned,
    /// `configure` succeeded in the checkout's build directory.
    Configured,
    /// `ninja` built a QEMU that reports the right version.
    Built,
}

impl Stage {
    /// The stages of the shared directory, in pipeline order.
    pub const SHARED: [Stage; 1] = [Stage::SourcePrepared];
    /// The stages of a checkout's directory, in pipeline order: each
    /// builds on the ones before it.
    pub const CHECKOUT: [Stage; 3] = [Stage::SourceCloned, Stage::Configured, Stage::Built];

    fn file_name(self) -> &'static str {
        match self {
            Stage::SourcePrepared => "source-prepared",
            Stage::SourceCloned => "source-cloned",
            Stage::Configured => "configured",
            Stage::Built => "built",
        }
    }
}

/// A directory of stamps, one file per finished stage, each holding the
/// cache key (and, for a checkout, which preparation of the shared source
/// it was cloned from): a stamp with any other content, such as one
/// copied from another key, is no stamp.
#[derive(Debug, Clone)]
struct Stamps {
    dir: PathBuf,
    key: String,
    /// The stamp of the shared stage these stages build on: when it is
    /// written again (the shared source prepared anew), these stamps no
    /// longer count.
    builds_on: Option<PathBuf>,
    order: &'static [Stage],
}

impl Stamps {
    /// What a valid stamp holds.
    fn value(&self) -> String {
        let Some(base) = &self.builds_on else {
            return self.key.clone();
        };
        let prepared = fs::metadata(base)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or("never".to_string(), |since| since.as_nanos().to_string());
        format!("{} prepared-at {prepared}", self.key)
    }

    fn path(&self, stage: Stage) -> PathBuf {
        debug_assert!(self.order.contains(&stage), "{stage:?} is not stamped here");
        self.dir.join(stage.file_name())
    }

    fn is_done(&self, stage: Stage) -> bool {
        fs::read_to_string(self.path(stage)).is_ok_and(|text| text.trim() == self.value())
    }

    fn mark_done(&self, stage: Stage) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("could not create {}", self.dir.display()))?;
        let path = self.path(stage);
        fs::write(&path, format!("{}\n", self.value()))
            .with_context(|| format!("could not write {}", path.display()))
    }

    fn mark_undone(&self, stage: Stage) -> Result<()> {
        let path = self.path(stage);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("could not delete {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// See [`QemuDirs::run_stage`].
    fn run_stage(
        &self,
        stage: Stage,
        half_done: &[&Path],
        body: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        if self.is_done(stage) {
            return Ok(false);
        }
        for later in self.order.iter().skip_while(|s| **s != stage) {
            self.mark_undone(*later)?;
        }
        for path in half_done {
            crate::util::remove_dir_all_if_exists(path)?;
        }
        body()?;
        self.mark_done(stage)?;
        Ok(true)
    }
}

/// One keyed QEMU directory: the prepared source every checkout clones
/// (`src/`, with `stamps/` and `logs/`), and `checkouts/`, one directory
/// per checkout ([`CheckoutDirs`]).
#[derive(Debug, Clone)]
pub struct QemuDirs {
    pub key: String,
    pub root: PathBuf,
    /// The prepared (patched) source, never built in.
    pub src: PathBuf,
    stamps: Stamps,
}

impl QemuDirs {
    pub fn new(cache: &Cache, version: &str, key: &str) -> QemuDirs {
        let root = cache.qemu_builds().join(format!("{version}-{key}"));
        QemuDirs {
            key: key.to_string(),
            src: root.join("src"),
            stamps: Stamps {
                dir: root.join("stamps"),
                key: key.to_string(),
                builds_on: None,
                order: &Stage::SHARED,
            },
            root,
        }
    }

    /// `<root>.lock`, beside the directory (which may get wiped): held
    /// while the shared source is prepared or cloned.
    pub fn lock_path(&self) -> PathBuf {
        lock_path_of(&self.root)
    }

    /// Whether `stage` finished for this very key.
    pub fn is_done(&self, stage: Stage) -> bool {
        self.stamps.is_done(stage)
    }

    /// Runs `stage` unless its stamp says it finished. Before `body`, the
    /// stamps of this and every later stage go (their work builds on this
    /// one) and so do the `half_done` paths an interrupted run may have
    /// left; the stamp is written only once `body` succeeded. So a stage
    /// interrupted anywhere (error, Ctrl-C, power cut) is redone from
    /// scratch by the next run. Returns whether it ran.
    pub fn run_stage(
        &self,
        stage: Stage,
        half_done: &[&Path],
        body: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        self.stamps.run_stage(stage, half_done, body)
    }

    /// The parent of the checkouts' directories.
    pub fn checkouts(&self) -> PathBuf {
        self.root.join("checkouts")
    }

    /// The directory of the checkout whose repository root is `repo_root`.
    pub fn checkout(&self, repo_root: &Path) -> CheckoutDirs {
        let root = self.checkouts().join(checkout_id(repo_root));
        CheckoutDirs {
            owner: root.join(OWNER_FILE),
            src: root.join("src"),
            build: root.join("build"),
            logs: root.join("logs"),
            stamps: Stamps {
                dir: root.join("stamps"),
                key: self.key.clone(),
                builds_on: Some(self.stamps.path(Stage::SourcePrepared)),
                order: &Stage::CHECKOUT,
            },
            root,
        }
    }

    /// The build directory of the layout before checkouts had their own
    /// (`<root>/build`, built from `src/` itself): unused, removed by
    /// `cargo xtask clean --old`.
    pub fn shared_build_of_old_layout(&self) -> PathBuf {
        self.root.join("build")
    }

    /// The checkouts' directories under this key whose checkout is gone
    /// (its recorded path no longer holds this project, or none is
    /// recorded): what `cargo xtask clean --old` removes.
    pub fn stale_checkouts(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.checkouts()) else {
            return Vec::new();
        };
        let mut stale: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|dir| dir.is_dir())
            .filter(|dir| {
                let id = dir.file_name().unwrap_or_default().to_string_lossy();
                match fs::read_to_string(dir.join(OWNER_FILE)) {
                    Ok(owner) => {
                        let owner = Path::new(owner.trim_end_matches('\n'));
                        !is_checkout(owner) || checkout_id(owner) != id
                    }
                    Err(_) => true,
                }
            })
            .collect();
        stale.sort();
        stale
    }
}

/// The file in a checkout's directory that names the checkout.
const OWNER_FILE: &str = "checkout";

/// Whether `dir` is (still) a checkout of this project.
fn is_checkout(dir: &Path) -> bool {
    dir.join("qemu-device").is_dir() && dir.join("xtask").is_dir()
}

/// 12 hex digits of the canonical path of a checkout's root: its
/// directory's name under `checkouts/`.
pub fn checkout_id(repo_root: &Path) -> String {
    let canonical = fs::canonicalize(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
    sha256_hex(canonical.as_os_str().as_encoded_bytes())[..12].to_string()
}

/// One checkout's directory under a keyed QEMU directory: its own clone
/// of the prepared source with its `qemu-device/` synced in (`src/`), its
/// own meson build directory (`build/`), `stamps/`, `logs/`, and the file
/// `checkout` naming the checkout. Checkouts never write into each
/// other's directories, so building one does not undo another's build.
#[derive(Debug, Clone)]
pub struct CheckoutDirs {
    pub root: PathBuf,
    pub src: PathBuf,
    pub build: PathBuf,
    pub logs: PathBuf,
    owner: PathBuf,
    stamps: Stamps,
}

impl CheckoutDirs {
    /// `<root>.lock`: held while this checkout's QEMU is built (or its
    /// device linted), so two commands in one checkout take turns.
    pub fn lock_path(&self) -> PathBuf {
        lock_path_of(&self.root)
    }

    /// Whether `stage` finished for this key, on the current preparation
    /// of the shared source.
    pub fn is_done(&self, stage: Stage) -> bool {
        self.stamps.is_done(stage)
    }

    pub fn mark_done(&self, stage: Stage) -> Result<()> {
        self.stamps.mark_done(stage)
    }

    pub fn mark_undone(&self, stage: Stage) -> Result<()> {
        self.stamps.mark_undone(stage)
    }

    /// As [`QemuDirs::run_stage`], for the checkout's stages.
    pub fn run_stage(
        &self,
        stage: Stage,
        half_done: &[&Path],
        body: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        self.stamps.run_stage(stage, half_done, body)
    }

    pub fn log_file(&self, name: &str) -> Result<PathBuf> {
        fs::create_dir_all(&self.logs)
            .with_context(|| format!("could not create {}", self.logs.display()))?;
        Ok(self.logs.join(name))
    }

    /// Records which checkout this directory belongs to (for
    /// [`QemuDirs::stale_checkouts`]).
    pub fn record_owner(&self, repo_root: &Path) -> Result<()> {
        let canonical = fs::canonicalize(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
        let mut text = canonical.into_os_string().into_encoded_bytes();
        text.push(b'\n');
        crate::util::write_if_changed(&self.owner, &text).map(drop)
    }
}

/// The lock file that guards a keyed QEMU directory or a checkout's.
pub fn lock_path_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// The keyed QEMU directories other than `current`: what
/// `cargo xtask clean --old` removes.
pub fn other_qemu_dirs(cache: &Cache, current: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(cache.qemu_builds()) else {
        return Vec::new();
    };
    let mut dirs: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p != current)
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_root_precedence() -> Result<()> {
        let all = [
            ("STOPWATCH_CACHE_DIR", "/big/disk/sw"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/me"),
        ];
        assert_eq!(cache_root(env_of(&all))?, Path::new("/big/disk/sw"));
        assert_eq!(cache_root(env_of(&all[1..]))?, Path::new("/xdg/stopwatch"));
        assert_eq!(
            cache_root(env_of(&all[2..]))?,
            Path::new("/home/me/.cache/stopwatch")
        );
        // A relative XDG_CACHE_HOME is invalid and ignored.
        let relative = [("XDG_CACHE_HOME", "cache"), ("HOME", "/home/me")];
        assert_eq!(
            cache_root(env_of(&relative))?,
            Path::new("/home/me/.cache/stopwatch")
        );
        assert!(cache_root(env_of(&[])).is_err());
        Ok(())
    }

    #[test]
    fn key_depends_on_every_input_and_its_boundaries() {
        let key = |parts: &[(&str, &str)]| {
            let mut builder = KeyBuilder::default();
            for (label, value) in parts {
                builder.add(label, value);
            }
            builder.finish()
        };
        let base = key(&[("patch", "abc"), ("rustc", "1.95")]);
        assert_eq!(base.len(), 16);
        assert_eq!(base, key(&[("patch", "abc"), ("rustc", "1.95")]));
        assert_ne!(base, key(&[("patch", "abd"), ("rustc", "1.95")]));
        assert_ne!(base, key(&[("patch", "ab"), ("rustc", "c1.95")]));
        assert_ne!(base, key(&[("rustc", "1.95"), ("patch", "abc")]));
    }

    #[test]
    fn lock_sits_beside_the_versioned_directory() {
        let cache = Cache {
            root: PathBuf::from("/c"),
        };
        let dirs = QemuDirs::new(&cache, "10.2.2", "0123456789abcdef");
        assert_eq!(dirs.root, Path::new("/c/qemu/10.2.2-0123456789abcdef"));
        assert_eq!(
            dirs.lock_path(),
            Path::new("/c/qemu/10.2.2-0123456789abcdef.lock")
        );
    }

    #[test]
    fn stamps_belong_to_their_key() -> Result<()> {
        let root = std::env::temp_dir().join(format!("xtask-stamps-{}", std::process::id()));
        let cache = Cache { root: root.clone() };
        let dirs = QemuDirs::new(&cache, "10.2.2", "0123456789abcdef");
        assert!(!dirs.is_done(Stage::SourcePrepared));
        dirs.stamps.mark_done(Stage::SourcePrepared)?;
        assert!(dirs.is_done(Stage::SourcePrepared));
        // A stamp with another key's content (a copied directory) is no stamp.
        let other = QemuDirs::new(&cache, "10.2.2", "fedcba9876543210");
        fs::create_dir_all(&other.stamps.dir)?;
        fs::copy(
            dirs.stamps.path(Stage::SourcePrepared),
            other.stamps.path(Stage::SourcePrepared),
        )?;
        assert!(!other.is_done(Stage::SourcePrepared));
        dirs.stamps.mark_undone(Stage::SourcePrepared)?;
        assert!(!dirs.is_done(Stage::SourcePrepared));
        fs::remove_dir_all(root)?;
        Ok(())
    }

    #[test]
    fn a_checkouts_stamps_lapse_when_the_shared_source_is_prepared_again() -> Result<()> {
        let root = std::env::temp_dir().join(format!("xtask-gen-{}", std::process::id()));
        let cache = Cache { root: root.clone() };
        let dirs = QemuDirs::new(&cache, "10.2.2", "0123456789abcdef");
        let checkout = dirs.checkout(&root.join("repo"));
        dirs.stamps.mark_done(Stage::SourcePrepared)?;
        checkout.mark_done(Stage::SourceCloned)?;
        checkout.mark_done(Stage::Configured)?;
        assert!(checkout.is_done(Stage::SourceCloned) && checkout.is_done(Stage::Configured));
        assert!(!checkout.is_done(Stage::Built));
        // Prepared anew (file times tick in nanoseconds here; wait a bit
        // for coarser ones).
        std::thread::sleep(std::time::Duration::from_millis(20));
        dirs.stamps.mark_done(Stage::SourcePrepared)?;
        assert!(!checkout.is_done(Stage::SourceCloned));
        assert!(!checkout.is_done(Stage::Configured));
        fs::remove_dir_all(root)?;
        Ok(())
    }

    #[test]
    fn checkouts_have_their_own_directories_and_stale_ones_are_found() -> Result<()> {
        let root = std::env::temp_dir().join(format!("xtask-owners-{}", std::process::id()));
        let cache = Cache {
            root: root.join("cache"),
        };
        let dirs = QemuDirs::new(&cache, "10.2.2", "0123456789abcdef");
        let [a, b] = ["a", "b"].map(|name| {
            let repo = root.join(name);
            fs::create_dir_all(repo.join("qemu-device")).unwrap();
            fs::create_dir_all(repo.join("xtask")).unwrap();
            repo
        });
        let (checkout_a, checkout_b) = (dirs.checkout(&a), dirs.checkout(&b));
        assert_ne!(checkout_a.root, checkout_b.root);
        assert_eq!(checkout_a.root, dirs.checkout(&a.join("../a")).root);
        assert_eq!(checkout_a.root.parent(), Some(dirs.checkouts().as_path()));
        checkout_a.record_owner(&a)?;
        checkout_b.record_owner(&b)?;
        assert!(dirs.stale_checkouts().is_empty());
        fs::remove_dir_all(&b)?;
        // A directory without an owner is a leftover too.
        fs::create_dir_all(dirs.checkouts().join("0123456789ab"))?;
        let mut expected = vec![dirs.checkouts().join("0123456789ab"), checkout_b.root];
        expected.sort();
        assert_eq!(dirs.stale_checkouts(), expected);
        fs::remove_dir_all(root)?;
        Ok(())
    }
}
