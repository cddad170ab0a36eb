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

/// Panic messages carry source paths: shorten them to what a reader needs
/// (the image must stay under 64 KiB, and absolute paths say nothing).
fn remap_path_flags(repo: &Repo) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec![format!("--remap-path-prefix={}/=", repo.root.display())];
    if let Some(cargo_home) = cargo_home {
        // Crates' sources live in <CARGO_HOME>/registry/src/<index>/.
        if let Ok(indexes) = std::fs::read_dir(cargo_home.join("registry").join("src")) {
            for index in indexes.flatten() {
                flags.push(format!("--remap-path-prefix={}/=", index.path().display()));
            }
        }
    }
    flags.join("\x1f")
}

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
    cmd.args(args)
        .current_dir(&repo.root)
        .env("CARGO_ENCODED_RUSTFLAGS", remap_path_flags(repo));
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
    util::install_copy(&elf, &repo.kernel_binary())
        .with_context(|| format!("cargo built, but {} is missing", elf.display()))?;
    Ok(repo.kernel_binary())
}
