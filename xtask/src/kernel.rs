//! Builds the bare-metal guest kernel and installs its ELF into
//! `target/vm/guest-kernel`.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::prereqs::cargo;
use crate::repo::Repo;
use crate::util;

pub const PACKAGE: &str = "guest-kernel";
pub const TARGET: &str = "aarch64-unknown-none";

/// `cargo build --release -p guest-kernel --target aarch64-unknown-none`,
/// then a copy of the ELF into `target/vm/`.
pub fn build(repo: &Repo) -> Result<PathBuf> {
    if !repo.root.join(PACKAGE).join("Cargo.toml").is_file() {
        bail!(
            "the guest kernel is not there yet ({PACKAGE}/Cargo.toml is missing); \
             `cargo xtask build --no-kernel` builds QEMU alone"
        );
    }
    let args = ["build", "--release", "-p", PACKAGE, "--target", TARGET];
    eprintln!("    cargo {}", args.join(" "));
    let mut cmd = Command::new(cargo());
    cmd.args(args).current_dir(&repo.root);
    let status = cmd.status().context("could not run cargo")?;
    if !status.success() {
        bail!(
            "the guest kernel does not compile (cargo's errors are above); fix {PACKAGE}/, or \
             use `cargo xtask build --no-kernel` to build QEMU alone"
        );
    }
    let elf = repo
        .cargo_target_dir()
        .join(TARGET)
        .join("release")
        .join(PACKAGE);
    util::copy_if_newer(&elf, &repo.kernel_binary())
        .with_context(|| format!("cargo built, but {} is missing", elf.display()))?;
    Ok(repo.kernel_binary())
}
