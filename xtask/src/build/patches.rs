// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask update-patches`: turns the commits made in this checkout's
//! cached QEMU source tree (after the base tag) back into `patches/*.patch`.

use anyhow::{bail, Context, Result};
use std::fs;
use std::process::Command;

use crate::build::cache::{CheckoutDirs, Stage};
use crate::build::pins;
use crate::build::qemu_source;
use crate::repo::Repo;
use crate::util::{self, stdout_of};

/// Regenerates `patches/*.patch` from the commits in this checkout's
/// QEMU tree, `dirs.src`.
pub fn update(repo: &Repo, dirs: &CheckoutDirs) -> Result<()> {
    let src = &dirs.src;
    if !dirs.is_done(Stage::SourceCloned) {
        bail!(
            "this checkout has no QEMU tree for the current patches at {}: run \
             `cargo xtask build`, then edit and `git commit` there before updating the patches",
            dirs.src.display()
        );
    }
    let git = |args: &[&str]| -> Result<String> {
        stdout_of(Command::new("git").current_dir(src).args(args))
    };
    let uncommitted = git(&["status", "--porcelain", "--untracked-files=no"])?;
    if !uncommitted.trim().is_empty() {
        bail!(
            "{} has uncommitted changes, which would not reach the patches:\n{uncommitted}\
             commit them first (cd {} && git commit -a)",
            src.display(),
            src.display()
        );
    }
    let range = format!("{}..HEAD", pins::BASE_TAG);
    let touched = git(&[
        "diff",
        "--name-only",
        &range,
        "--",
        "subprojects/packagefiles",
    ])?;
    if !touched.trim().is_empty() {
        eprintln!(
            "warning: the commits change subprojects/packagefiles/ ({}); those files come from \
             patches/packagefiles/, edit them there instead",
            touched.split_whitespace().collect::<Vec<_>>().join(", ")
        );
    }

    let staging = dirs.root.join("format-patch");
    util::remove_dir_all_if_exists(&staging)?;
    // Fixed "From" hashes and no git-version signature: an unchanged
    // commit gives a byte-identical patch, so `git diff patches/` shows
    // only real changes.
    stdout_of(
        Command::new("git")
            .current_dir(src)
            .args([
                "format-patch",
                "--quiet",
                "--zero-commit",
                "--no-signature",
                "-o",
            ])
            .arg(&staging)
            .arg(&range),
    )
    .context("git format-patch failed")?;

    let patches_dir = repo.root.join("patches");
    let old = qemu_source::patch_files(&repo.root)?;
    let new = qemu_source::patch_files_in(&staging)?;
    let mut changed = 0;
    for patch in &new {
        let name = patch.file_name().context("patch without a name")?;
        let contents = fs::read(patch)?;
        if util::write_if_changed(&patches_dir.join(name), &contents)? {
            eprintln!("  wrote   patches/{}", name.to_string_lossy());
            changed += 1;
        }
    }
    let new_names: Vec<_> = new.iter().filter_map(|p| p.file_name()).collect();
    for patch in &old {
        if !new_names.contains(&patch.file_name().unwrap_or_default()) {
            fs::remove_file(patch)
                .with_context(|| format!("could not delete {}", patch.display()))?;
            eprintln!("  removed {}", repo.relative(patch).display());
            changed += 1;
        }
    }
    util::remove_dir_all_if_exists(&staging)?;
    if changed == 0 {
        eprintln!("patches/ is up to date ({} patches)", new.len());
    } else {
        eprintln!(
            "patches/ updated ({} patches). The cache key changed with them: the next \
             `cargo xtask build` prepares and builds a fresh QEMU tree (a full build); the \
             tree in {} stays until `cargo xtask clean --old`.",
            new.len(),
            dirs.root.display()
        );
    }
    Ok(())
}
