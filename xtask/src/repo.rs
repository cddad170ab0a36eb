// SPDX-License-Identifier: GPL-2.0-or-later
//! Paths inside this repository.

use crate::kernel::Flavor;
use std::path::{Path, PathBuf};

/// The repository checkout `cargo xtask` runs in.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    /// The checkout this xtask was built from, wherever it is run from.
    pub fn locate() -> Repo {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        Repo { root }
    }

    /// `target/vm/`: the two artifacts that `cargo xtask qemu` runs.
    pub fn vm_dir(&self) -> PathBuf {
        self.root.join("target/vm")
    }

    pub fn qemu_binary(&self) -> PathBuf {
        self.vm_dir().join("qemu-system-aarch64")
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
        self.vm_dir().join(crate::kernel::BOOT_FLOOR_PACKAGE)
    }

    /// A kernel flavor's ELF.
    pub fn kernel_elf(&self, flavor: Flavor) -> PathBuf {
        self.vm_dir().join(flavor.file_name())
    }

    /// A kernel flavor's flat arm64 Image.
    pub fn kernel_image_of(&self, flavor: Flavor) -> PathBuf {
        self.vm_dir().join(format!("{}.bin", flavor.file_name()))
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
}
