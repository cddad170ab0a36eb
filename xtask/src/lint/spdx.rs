// SPDX-License-Identifier: GPL-2.0-or-later
//! Every source file of the repository names its license in its first
//! lines (`SPDX-License-Identifier`), as QEMU's files do: checked over the
//! files git tracks.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// The header every source file carries.
pub const SPDX: &str = "SPDX-License-Identifier: GPL-2.0-or-later";

/// Whether `path` is a source file that must carry [`SPDX`]: code, build
/// scripts, linker script, manifests, device configuration, trace events.
fn is_source(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path.ends_with(".rs")
        || path.ends_with(".ld")
        || path.ends_with(".toml")
        || path.ends_with(".gdb")
        || path.ends_with(".py")
        || matches!(name, "meson.build" | "Kconfig" | "trace-events" | "run")
}

/// The tracked source files of `root` without the header in their first
/// three lines.
pub fn missing(root: &Path) -> Result<Vec<String>> {
    let listing = Command::new("git")
        .arg("ls-files")
        .current_dir(root)
        .output()
        .context("could not run `git ls-files`")?;
    let mut missing = Vec::new();
    for path in String::from_utf8_lossy(&listing.stdout).lines() {
        if !is_source(path) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(path)) else {
            continue; // deleted in the work tree, or not text
        };
        if !text.lines().take(3).any(|line| line.contains(SPDX)) {
            missing.push(path.to_string());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_file_names_its_license() {
        let root = crate::repo::Repo::locate().root;
        let missing = missing(&root).unwrap();
        assert!(
            missing.is_empty(),
            "no `{SPDX}` in the first lines of:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn sources_are_recognised() {
        for path in [
            "a/b.rs",
            "linker/x.ld",
            "qemu-device/meson.build",
            "qemu-device/Kconfig",
            ".ci/run",
            "Cargo.toml",
        ] {
            assert!(is_source(path), "{path}");
        }
        for path in [
            "README.md",
            "patches/0001-x.patch",
            "tests/fixtures/virt.dtb",
        ] {
            assert!(!is_source(path), "{path}");
        }
    }
}
