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
                // [PATCH n/N] even for a series of one.
                "--numbered",
                "-o",
            ])
            .arg(&staging)
            .arg(&range),
    )
    .context("git format-patch failed")?;

    let patches_dir = repo.root.join("patches");
    let old = qemu_source::patch_files(&repo.root)?;
    let mut new = qemu_source::patch_files_in(&staging)?;
    // A tree prepared from an upstream tarball lacks the Debian-only
    // patches (not applied there): keep them, after the others.
    let subjects: Vec<String> = new
        .iter()
        .map(|patch| Ok(subject_of(&fs::read_to_string(patch)?)))
        .collect::<Result<_>>()?;
    for patch in &old {
        let text = fs::read_to_string(patch)?;
        if is_debian_only(&text) && !subjects.contains(&subject_of(&text)) {
            let name = patch.file_name().context("patch without a name")?;
            let kept = staging.join(name);
            fs::write(&kept, text)?;
            new.push(kept);
        }
    }
    let total = new.len();
    let mut changed = 0;
    for (index, patch) in new.iter().enumerate() {
        let name = patch.file_name().context("patch without a name")?;
        let contents = renumber(&fs::read_to_string(patch)?, index + 1, total);
        if util::write_if_changed(&patches_dir.join(name), contents.as_bytes())? {
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

/// The trailer that marks a patch needed only by Debian's repacked source:
/// it is applied last, and only to that source.
pub const DEBIAN_ONLY_TRAILER: &str = "Applies-to: Debian source only";

/// Whether the patch carries [`DEBIAN_ONLY_TRAILER`] in its message.
pub fn is_debian_only(patch: &str) -> bool {
    message_lines(patch).any(|line| line.trim_end() == DEBIAN_ONLY_TRAILER)
}

/// The lines of the commit message: the mail headers and body, up to the
/// `---` that starts the diffstat.
fn message_lines(patch: &str) -> impl Iterator<Item = &str> {
    patch.lines().take_while(|line| *line != "---")
}

/// The subject without its `[PATCH n/N]` tag, unfolded.
fn subject_of(patch: &str) -> String {
    let mut subject = String::new();
    let mut in_subject = false;
    for line in message_lines(patch) {
        if let Some(rest) = line.strip_prefix("Subject:") {
            subject.push_str(rest.trim());
            in_subject = true;
        } else if in_subject && line.starts_with([' ', '\t']) {
            subject.push(' ');
            subject.push_str(line.trim());
        } else {
            in_subject = false;
        }
    }
    match subject.strip_prefix("[PATCH") {
        Some(rest) => rest
            .split_once(']')
            .map_or(rest, |(_, s)| s)
            .trim()
            .to_string(),
        None => subject,
    }
}

/// The patch with its subject's tag set to `[PATCH index/total]`: the
/// numbering of the whole series, whatever each patch said before.
fn renumber(patch: &str, index: usize, total: usize) -> String {
    let tag = format!("[PATCH {index}/{total}]");
    let mut out = String::with_capacity(patch.len() + 8);
    let mut done = false;
    for line in patch.split_inclusive('\n') {
        match line.strip_prefix("Subject: ") {
            Some(rest) if !done => {
                done = true;
                let rest = match rest.strip_prefix("[PATCH") {
                    Some(tagged) => tagged.split_once(']').map_or(rest, |(_, s)| s.trim_start()),
                    None => rest,
                };
                out.push_str("Subject: ");
                out.push_str(&tag);
                out.push(' ');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
        From: A <a@b>\n\
        Subject: [PATCH 3/6] meson: skip unpacking edk2 firmware that the source tree\n \
        lacks\n\
        \n\
        Why.\n\
        \n\
        Applies-to: Debian source only\n\
        ---\n \
        meson.build | 5 ++++-\n\
        Subject: [PATCH 1/1] not a header\n";

    #[test]
    fn renumbers_the_subject_only() {
        let renumbered = renumber(PATCH, 9, 9);
        assert!(renumbered.contains("Subject: [PATCH 9/9] meson: skip unpacking edk2 firmware"));
        // The diff's own text is left alone, and nothing else changes.
        assert!(renumbered.contains("\nSubject: [PATCH 1/1] not a header\n"));
        assert_eq!(renumbered.len(), PATCH.len());
        let untagged = PATCH.replace("[PATCH 3/6] ", "");
        assert_eq!(renumber(&untagged, 9, 9), renumbered);
    }

    #[test]
    fn reads_the_subject_and_the_debian_marker() {
        assert_eq!(
            subject_of(PATCH),
            "meson: skip unpacking edk2 firmware that the source tree lacks"
        );
        assert!(is_debian_only(PATCH));
        // The marker counts only in the message, not in the diff.
        let in_diff = PATCH.replace(
            "Applies-to: Debian source only\n---\n",
            "---\n+Applies-to: Debian source only\n",
        );
        assert!(!is_debian_only(&in_diff));
    }

    #[test]
    fn the_series_is_numbered_and_only_its_last_patches_are_debian_only() {
        let patches = qemu_source::patch_files(&crate::repo::Repo::locate().root).unwrap();
        let total = patches.len();
        let mut seen_debian_only = false;
        for (index, patch) in patches.iter().enumerate() {
            let text = fs::read_to_string(patch).unwrap();
            let tag = format!("Subject: [PATCH {}/{total}] ", index + 1);
            assert!(text.contains(&tag), "{}: no `{tag}`", patch.display());
            let debian_only = is_debian_only(&text);
            assert!(
                debian_only || !seen_debian_only,
                "{}: a patch for every source after a Debian-only one",
                patch.display()
            );
            seen_debian_only |= debian_only;
        }
        assert!(
            seen_debian_only,
            "the edk2 workaround is marked Debian-only"
        );
    }
}
