// SPDX-License-Identifier: GPL-2.0-or-later
//! Where downloads and QEMU builds are cached, how a build directory is
//! keyed, and the stamps that say which stages of it have finished.
//!
//! Layout under the cache root:
//!
//! ```text
//! downloads/qemu/        the Debian source package files
//! downloads/wheels/      meson and pycotap wheels
//! downloads/crates-manifest/  throwaway Cargo project to fetch crates
//! apt/                   private apt state (sources.list, lists, cache)
//! tools/                 bindgen (if installed by us), a Python venv
//! qemu/<version>-<key>/  src/ build/ stamps/ logs/: one per cache key
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
    /// Source extracted, restored, committed and patched.
    SourcePrepared,
    /// `configure` succeeded in the build directory.
    Configured,
    /// `ninja` built a QEMU that reports the right version.
    Built,
}

impl Stage {
    /// In pipeline order: each stage builds on the ones before it.
    pub const ALL: [Stage; 3] = [Stage::SourcePrepared, Stage::Configured, Stage::Built];

    fn file_name(self) -> &'static str {
        match self {
            Stage::SourcePrepared => "source-prepared",
            Stage::Configured => "configured",
            Stage::Built => "built",
        }
    }
}

/// One keyed QEMU directory: `src/`, `build/`, `stamps/`, `logs/`.
#[derive(Debug, Clone)]
pub struct QemuDirs {
    pub key: String,
    pub root: PathBuf,
    pub src: PathBuf,
    pub build: PathBuf,
    pub logs: PathBuf,
    stamps: PathBuf,
}

impl QemuDirs {
    pub fn new(cache: &Cache, version: &str, key: &str) -> QemuDirs {
        let root = cache.qemu_builds().join(format!("{version}-{key}"));
        QemuDirs {
            key: key.to_string(),
            src: root.join("src"),
            build: root.join("build"),
            logs: root.join("logs"),
            stamps: root.join("stamps"),
            root,
        }
    }

    /// `<root>.lock`, beside the directory (which may get wiped).
    pub fn lock_path(&self) -> PathBuf {
        lock_path_of(&self.root)
    }

    fn stamp_path(&self, stage: Stage) -> PathBuf {
        self.stamps.join(stage.file_name())
    }

    /// Whether `stage` finished for this very key.
    pub fn is_done(&self, stage: Stage) -> bool {
        fs::read_to_string(self.stamp_path(stage)).is_ok_and(|text| text.trim() == self.key)
    }

    pub fn mark_done(&self, stage: Stage) -> Result<()> {
        fs::create_dir_all(&self.stamps)
            .with_context(|| format!("could not create {}", self.stamps.display()))?;
        let path = self.stamp_path(stage);
        fs::write(&path, format!("{}\n", self.key))
            .with_context(|| format!("could not write {}", path.display()))
    }

    pub fn mark_undone(&self, stage: Stage) -> Result<()> {
        let path = self.stamp_path(stage);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("could not delete {}", path.display()))
            }
            _ => Ok(()),
        }
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
        if self.is_done(stage) {
            return Ok(false);
        }
        for later in Stage::ALL.iter().skip_while(|s| **s != stage) {
            self.mark_undone(*later)?;
        }
        for path in half_done {
            crate::util::remove_dir_all_if_exists(path)?;
        }
        body()?;
        self.mark_done(stage)?;
        Ok(true)
    }

    pub fn log_file(&self, name: &str) -> Result<PathBuf> {
        fs::create_dir_all(&self.logs)
            .with_context(|| format!("could not create {}", self.logs.display()))?;
        Ok(self.logs.join(name))
    }
}

/// The lock file that guards a keyed QEMU directory.
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
        assert!(!dirs.is_done(Stage::Configured));
        dirs.mark_done(Stage::Configured)?;
        assert!(dirs.is_done(Stage::Configured));
        assert!(!dirs.is_done(Stage::Built));
        // A stamp with another key's content (a copied directory) is no stamp.
        let other = QemuDirs {
            key: "fedcba9876543210".into(),
            ..dirs.clone()
        };
        assert!(!other.is_done(Stage::Configured));
        dirs.mark_undone(Stage::Configured)?;
        assert!(!dirs.is_done(Stage::Configured));
        fs::remove_dir_all(root)?;
        Ok(())
    }
}
