// SPDX-License-Identifier: GPL-2.0-or-later
//! The lints (`cargo xtask test lint`): formatting, clippy and rustdoc,
//! with warnings as errors, for every crate of the project: the host
//! crates, the guest kernel (for its target) and the device's crates
//! (inside QEMU's Rust workspace, under QEMU's own, stricter, lint set);
//! QEMU's checkpatch.pl on the patch series; and the project's own
//! checks, one module each.

pub mod checkpatch;
pub mod doc_excerpts;
pub mod links;
pub mod mmio;
#[cfg(test)]
pub mod spdx;

use anyhow::{bail, Context, Result};
use std::process::Command;

use crate::build::kernel::{PACKAGE, TARGET};
use crate::build::pipeline::Session;
use crate::build::prereqs::cargo;
use crate::util::run;

/// The system tests' crate (not a default member).
const SYSTEM_TESTS: &str = "system-tests";

/// The device's crates as members of QEMU's Rust workspace (patch 0003
/// lists the glue; the others join as its path dependencies).
const DEVICE_PACKAGES: [&str; 4] = [
    "stopwatch",
    "stopwatch-abi",
    "stopwatch-model",
    "stopwatch-test-rng",
];

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

    // Not default members: the plugin's API symbols exist only inside
    // QEMU; the system tests' trials need QEMU.
    eprintln!("    cargo clippy -p mmio-audit-plugin -p system-tests --all-targets -- -D warnings");
    run(Command::new(cargo())
        .args(["clippy", "-p", "mmio-audit-plugin", "-p", SYSTEM_TESTS])
        .args(["--all-targets", "--", "-D", "warnings"])
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

    let floor = crate::build::kernel::BOOT_FLOOR_PACKAGE;
    eprintln!("    cargo clippy -p {floor} --target {TARGET} -- -D warnings");
    run(Command::new(cargo())
        .args(["clippy", "-p", floor, "--target", TARGET])
        .args(["--", "-D", "warnings"])
        .current_dir(root))?;

    // Every intra-doc link resolves, in the host crates and both kernel
    // flavors: a renamed item must not leave its documentation behind.
    eprintln!("    cargo doc --no-deps (host crates, and the kernel for its target)   RUSTDOCFLAGS=-D warnings");
    run(Command::new(cargo())
        .args(["doc", "--no-deps", "--workspace", "--exclude", PACKAGE])
        .args(["--exclude", crate::build::kernel::BOOT_FLOOR_PACKAGE])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(root))?;
    for (features, target_dir) in [
        (&[][..], None),
        // Its own target directory: the two flavors' documentation lands
        // in the same place, so each would make cargo redo the other's.
        (&["--features", "selftest"][..], Some("doc-selftest")),
    ] {
        let mut command = Command::new(cargo());
        command
            .args(["doc", "--no-deps", "-p", PACKAGE, "--target", TARGET])
            .args(features)
            .env("RUSTDOCFLAGS", "-D warnings")
            .current_dir(root);
        if let Some(dir) = target_dir {
            command
                .arg("--target-dir")
                .arg(session.repo.cargo_target_dir().join(dir));
        }
        run(&mut command)?;
    }

    eprintln!("    MMIO accesses of the guest kernel only through arch::mmio");
    crate::lint::mmio::check(root)?;

    eprintln!("    the documentation's code excerpts against their sources");
    crate::lint::doc_excerpts::check(root)?;

    eprintln!("    the documentation's relative links and #anchors");
    crate::lint::links::check(root)?;

    eprintln!("    QEMU's scripts/checkpatch.pl on patches/*.patch (all but the sign-off)");
    let patches = crate::build::qemu_source::patch_files(root)?;
    crate::lint::checkpatch::check(&session.current_qemu_dirs()?.src, &patches)?;

    device_clippy(session)
}

/// The device's generated trace functions, a ninja target of QEMU's build.
const DEVICE_TRACE_FILE: &str = "trace/trace-rust_hw_misc_stopwatch.rs";

/// Runs `cargo clippy` on the device's crates inside QEMU's Rust workspace,
/// as a QEMU developer would (and as rust-analyzer sees them): against
/// QEMU's crates, with QEMU's workspace lints and its minimum Rust version.
/// Fails on any finding in the device's crates; QEMU's own crates are not
/// ours to fix, so their findings are only counted.
fn device_clippy(session: &Session) -> Result<()> {
    let dirs = session.current_checkout_dirs()?;
    if !dirs.build.join("build.ninja").is_file() {
        bail!("QEMU is not configured yet: run `cargo xtask build` first");
    }
    // Hold this checkout's build lock, or a build running in it could
    // compile half of this sync.
    let _lock = crate::util::lock_file(&dirs.lock_path(), "linting the device", |message| {
        eprintln!("{message}")
    })?;
    // Lint the device as it is now, not as the last build copied it.
    crate::build::qemu_source::sync_device(&session.repo.root, &dirs.src)?;
    // And with its trace functions generated from its own trace-events,
    // which may have changed since the last build.
    crate::util::run(
        Command::new("ninja")
            .arg("-C")
            .arg(&dirs.build)
            .arg(DEVICE_TRACE_FILE),
    )
    .context("could not regenerate the device's trace functions")?;
    eprintln!(
        "    cargo clippy -p stopwatch ... --all-targets   (in QEMU's workspace, QEMU's lints)"
    );
    let mut command = Command::new(cargo());
    command
        .args(["clippy", "--all-targets", "--message-format", "json"])
        .arg("--manifest-path")
        .arg(dirs.src.join("rust/Cargo.toml"))
        // QEMU's crates find their generated bindings through this, as
        // under `meson devenv`.
        .env("MESON_BUILD_ROOT", &dirs.build)
        .env("CARGO_TARGET_DIR", dirs.build.join("cargo-target"));
    for package in DEVICE_PACKAGES {
        command.args(["-p", package]);
    }
    let output = command
        .output()
        .context("could not run cargo clippy in QEMU's tree")?;
    let device_dir = dirs.src.join(crate::build::qemu_source::DEVICE_DIR_IN_QEMU);
    let (ours, others) = findings(&String::from_utf8_lossy(&output.stdout), &device_dir);
    if others > 0 {
        eprintln!("    ({others} findings in QEMU's own crates, not checked here)");
    }
    if !ours.is_empty() {
        bail!("clippy findings in the device crates:\n{}", ours.join("\n"));
    }
    if !output.status.success() {
        // Failed without a finding of ours: cargo itself (a manifest, the
        // registry) or QEMU's crates did not build.
        bail!(
            "`cargo clippy` in QEMU's workspace failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Clippy's and rustc's messages from cargo's JSON output: those about the
/// device's crates, whose manifests lie in `device_dir` (rendered as the
/// compiler shows them), and the number of the others.
fn findings(json_lines: &str, device_dir: &std::path::Path) -> (Vec<String>, usize) {
    let mut ours = Vec::new();
    let mut others = 0;
    for line in json_lines.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-message" {
            continue;
        }
        let rendered = message["message"]["rendered"].as_str().unwrap_or_default();
        // The summary lines ("N warnings emitted") carry no location.
        if message["message"]["spans"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            continue;
        }
        let manifest = message["manifest_path"].as_str().unwrap_or_default();
        if std::path::Path::new(manifest).starts_with(device_dir) {
            ours.push(rendered.to_owned());
        } else {
            others += 1;
        }
    }
    (ours, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_the_device_findings() {
        let ours = r#"{"reason":"compiler-message","manifest_path":"/c/src/rust/hw/misc/stopwatch/model/Cargo.toml","message":{"rendered":"warning: x\n --> hw/misc/stopwatch/model/src/lib.rs:3:1\n","spans":[{"file_name":"hw/misc/stopwatch/model/src/lib.rs"}]}}"#;
        let theirs = r#"{"reason":"compiler-message","manifest_path":"/c/src/rust/hw/core/Cargo.toml","message":{"rendered":"warning: y","spans":[{"file_name":"hw/core/src/qdev.rs"}]}}"#;
        // A sibling whose name only starts like ours is not ours.
        let sibling = r#"{"reason":"compiler-message","manifest_path":"/c/src/rust/hw/misc/stopwatch2/Cargo.toml","message":{"rendered":"warning: z","spans":[{"file_name":"hw/misc/stopwatch2/src/lib.rs"}]}}"#;
        let summary = r#"{"reason":"compiler-message","manifest_path":"/c/src/rust/hw/misc/stopwatch/Cargo.toml","message":{"rendered":"warning: 1 warning emitted","spans":[]}}"#;
        let artifact = r#"{"reason":"compiler-artifact","manifest_path":"/c/src/rust/hw/misc/stopwatch/Cargo.toml"}"#;
        let output = [ours, theirs, sibling, summary, artifact, "not json"].join("\n");
        let (found, others) = findings(
            &output,
            std::path::Path::new("/c/src/rust/hw/misc/stopwatch"),
        );
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("model/src/lib.rs:3:1"), "{found:?}");
        assert_eq!(others, 2);
    }
}
