// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask lint`: formatting and clippy, with warnings as errors, for
//! every crate of the project: the host crates, the guest kernel (for its
//! target) and the device glue (under QEMU's own, stricter, lint set).

use anyhow::{bail, Context, Result};
use std::process::Command;

use crate::kernel::{PACKAGE, TARGET};
use crate::pipeline::Session;
use crate::prereqs::cargo;
use crate::util::run;

/// Where the device's sources sit inside QEMU's tree.
const DEVICE_IN_QEMU: &str = "rust/hw/misc/stopwatch/";

pub fn run_all(session: &Session) -> Result<()> {
    let root = &session.repo.root;
    eprintln!("    cargo fmt --all -- --check");
    run(Command::new(cargo())
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root))
    .context("formatting differs: run `cargo fmt --all`")?;

    eprintln!("    cargo clippy --all-targets -- -D warnings   (host crates)");
    run(Command::new(cargo())
        .args(["clippy", "--all-targets", "--", "-D", "warnings"])
        .current_dir(root))?;

    // Not a default member (its API symbols exist only inside QEMU).
    eprintln!("    cargo clippy -p mmio-audit-plugin -- -D warnings   (QEMU plugin)");
    run(Command::new(cargo())
        .args(["clippy", "-p", "mmio-audit-plugin", "--", "-D", "warnings"])
        .current_dir(root))?;

    // Both flavors of the kernel: code only the tests use must not be
    // dead in the shipped one.
    for features in [&[][..], &["--features", "selftest"][..]] {
        eprintln!(
            "    cargo clippy -p {PACKAGE} --target {TARGET} {} -- -D warnings",
            features.join(" ")
        );
        run(Command::new(cargo())
            .args(["clippy", "-p", PACKAGE, "--target", TARGET])
            .args(features)
            .args(["--", "-D", "warnings"])
            .current_dir(root))?;
    }

    let floor = crate::kernel::BOOT_FLOOR_PACKAGE;
    eprintln!("    cargo clippy -p {floor} --target {TARGET} -- -D warnings");
    run(Command::new(cargo())
        .args(["clippy", "-p", floor, "--target", TARGET])
        .args(["--", "-D", "warnings"])
        .current_dir(root))?;

    eprintln!("    MMIO accesses of the guest kernel only through arch::mmio");
    crate::mmio_lint::check(root)?;

    eprintln!("    the documentation's code excerpts against their sources");
    crate::doc_excerpts::check(root)?;

    device_clippy(session)
}

/// Runs QEMU's `clippy` target, which checks every Rust crate of the build
/// with QEMU's lint set, and fails on findings in the stopwatch's crates.
/// QEMU's own crates are not ours to fix: their findings are only counted.
fn device_clippy(session: &Session) -> Result<()> {
    let dirs = session.current_qemu_dirs()?;
    if !dirs.build.join("build.ninja").is_file() {
        bail!("QEMU is not configured yet: run `cargo xtask build` first");
    }
    // The tree is shared by every checkout with the same build inputs:
    // hold the build lock, or another checkout's build could compile
    // half of this sync and half of its own.
    let _lock = crate::util::lock_file(&dirs.lock_path(), "linting the device", |message| {
        eprintln!("{message}")
    })?;
    // Lint the device as it is now, not as the last build copied it.
    crate::qemu_source::sync_device(&session.repo.root, &dirs.src)?;
    eprintln!("    ninja clippy   (device crates, QEMU's lint set)");
    // Not `run_captured`: findings in QEMU's own crates fail the target,
    // and only ours count.
    let output = Command::new("ninja")
        .arg("clippy")
        .current_dir(&dirs.build)
        .output()
        .context("could not run ninja (Debian package ninja-build)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let (ours, others) = findings(&text);
    if others > 0 {
        eprintln!("    ({others} findings in QEMU's own crates, not checked here)");
    }
    if !ours.is_empty() {
        bail!("clippy findings in the device crates:\n{}", ours.join("\n"));
    }
    if !output.status.success() && others == 0 {
        // Failed without a finding to show for it: not a clean result.
        bail!("`ninja clippy` failed ({}):\n{text}", output.status);
    }
    Ok(())
}

/// The `-->` locations of clippy's findings: those in the device's crates,
/// and the number of the others.
fn findings(output: &str) -> (Vec<String>, usize) {
    let locations = output
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--> "));
    let (ours, others): (Vec<&str>, Vec<&str>) =
        locations.partition(|location| location.contains(DEVICE_IN_QEMU));
    (ours.into_iter().map(str::to_owned).collect(), others.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_the_device_findings() {
        let output = "error: x\n   --> /c/src/rust/hw/misc/stopwatch/src/device.rs:3:1\n\
                      error: y\n  --> /c/build/rust/hw/core/qdev.rs:422:12\n";
        let (ours, others) = findings(output);
        assert_eq!(ours, ["/c/src/rust/hw/misc/stopwatch/src/device.rs:3:1"]);
        assert_eq!(others, 1);
    }
}
