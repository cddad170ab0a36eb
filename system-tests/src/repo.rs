// SPDX-License-Identifier: GPL-2.0-or-later
//! Paths inside this repository: where `cargo xtask build` leaves QEMU and
//! the kernels (`target/vm/`), and where the tests find them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable that names another QEMU binary for the tests (the qtests
/// read the same one).
pub const QEMU_ENV: &str = "STOPWATCH_QEMU";
/// The variable that names another directory of kernels for the tests.
pub const VM_DIR_ENV: &str = "STOPWATCH_VM_DIR";

/// The repository checkout, and where its QEMU and kernels are.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    /// `target/vm/`: QEMU and the kernels, as `cargo xtask build` installs
    /// them.
    vm_dir: PathBuf,
    /// The QEMU binary the guests run on.
    qemu: PathBuf,
}

impl Repo {
    /// The checkout this crate was built from, wherever it is run from.
    pub fn locate() -> Repo {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        let vm_dir = root.join("target/vm");
        Repo {
            qemu: vm_dir.join("qemu-system-aarch64"),
            vm_dir,
            root,
        }
    }

    /// [`Repo::locate`], with QEMU from `$STOPWATCH_QEMU` and the kernels
    /// from `$STOPWATCH_VM_DIR` where they are set: what the tests boot.
    pub fn for_tests() -> Repo {
        let mut repo = Repo::locate();
        let set = |name| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(dir) = set(VM_DIR_ENV) {
            repo.vm_dir = repo.root.join(dir);
            repo.qemu = repo.vm_dir.join("qemu-system-aarch64");
        }
        if let Some(qemu) = set(QEMU_ENV) {
            repo.qemu = repo.root.join(qemu);
        }
        repo
    }

    /// `target/vm/`: what `cargo xtask qemu` runs, and the tests' scratch
    /// files.
    pub fn vm_dir(&self) -> PathBuf {
        self.vm_dir.clone()
    }

    pub fn qemu_binary(&self) -> PathBuf {
        self.qemu.clone()
    }

    /// The shipped kernel's ELF.
    pub fn kernel_binary(&self) -> PathBuf {
        self.kernel_elf(Flavor::Shipped)
    }

    /// The shipped kernel's flat arm64 Image.
    pub fn kernel_image(&self) -> PathBuf {
        self.kernel_image_of(Flavor::Shipped)
    }

    /// The boot-floor kernel (`guest-kernel/boot-floor`), an ELF.
    pub fn boot_floor_kernel(&self) -> PathBuf {
        self.vm_dir.join(BOOT_FLOOR_PACKAGE)
    }

    /// A kernel flavor's ELF.
    pub fn kernel_elf(&self, flavor: Flavor) -> PathBuf {
        self.vm_dir.join(flavor.file_name())
    }

    /// A kernel flavor's flat arm64 Image.
    pub fn kernel_image_of(&self, flavor: Flavor) -> PathBuf {
        self.vm_dir.join(format!("{}.bin", flavor.file_name()))
    }

    /// Cargo's target directory (honouring `CARGO_TARGET_DIR`).
    pub fn cargo_target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// `path` relative to the repository root when it is inside it, for
    /// shorter, copy-pasteable command lines.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// Fails, saying how to build them, unless QEMU and every kernel the
    /// tests boot are there.
    pub fn ensure_built(&self) -> anyhow::Result<()> {
        let needed = [
            self.qemu_binary(),
            self.kernel_elf(Flavor::Shipped),
            self.kernel_image_of(Flavor::Shipped),
            self.kernel_elf(Flavor::WithTests),
            self.kernel_image_of(Flavor::WithTests),
            self.boot_floor_kernel(),
        ];
        let missing: Vec<String> = needed
            .iter()
            .filter(|path| !path.is_file())
            .map(|path| self.relative(path).display().to_string())
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "missing {}: run `cargo xtask build` first (or set {QEMU_ENV} and {VM_DIR_ENV})",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// Which kernel: the one people boot, or the same with the in-guest tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `guest-kernel`: shell and bench; within the size budget.
    Shipped,
    /// `guest-kernel-test`: the same plus the in-guest test suite (the
    /// `selftest` feature: boot arguments `test`, `test=NAME`, `fault`).
    WithTests,
}

impl Flavor {
    /// The file name in `target/vm/` (the Image adds `.bin`).
    pub const fn file_name(self) -> &'static str {
        match self {
            Flavor::Shipped => "guest-kernel",
            Flavor::WithTests => "guest-kernel-test",
        }
    }

    /// Its cargo features.
    pub fn cargo_features(self) -> &'static [&'static str] {
        match self {
            Flavor::Shipped => &[],
            Flavor::WithTests => &["--features", "selftest"],
        }
    }
}

/// The boot-floor kernel's package (`guest-kernel/boot-floor`), also its
/// file name in `target/vm/`: prints the shell's prompt and waits;
/// `cargo xtask bench` times its boot as the floor of the real kernel's.
pub const BOOT_FLOOR_PACKAGE: &str = "boot-floor-kernel";

/// The cargo that runs us, so nested calls use the pinned toolchain.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
