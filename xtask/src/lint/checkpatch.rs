// SPDX-License-Identifier: GPL-2.0-or-later
//! QEMU's `scripts/checkpatch.pl` on `patches/*.patch`, as a maintainer
//! would run it on the series. Every finding fails, except the missing
//! `Signed-off-by:`, which only the person who submits a patch can add
//! (Developer's Certificate of Origin).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one finding allowed: a sign-off is the submitter's to give.
const ALLOWED: &str = "ERROR: Missing Signed-off-by: line(s)";

/// Runs the prepared tree's checkpatch.pl on `patches`; returns how many
/// patches it checked.
pub fn check(src: &Path, patches: &[PathBuf]) -> Result<usize> {
    let script = src.join("scripts/checkpatch.pl");
    if !script.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build` first",
            script.display()
        );
    }
    let output = Command::new("perl")
        .arg(&script)
        .args(["--no-color"])
        .args(patches)
        .current_dir(src)
        .output()
        .context("could not run perl (QEMU's checkpatch.pl)")?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let findings = findings(&report);
    if !findings.is_empty() {
        bail!(
            "checkpatch.pl finds more than the missing sign-off:\n{}\n\nits whole report:\n{report}",
            findings.join("\n")
        );
    }
    // checkpatch says "Checking FILE..." for each patch it read.
    let checked = report.matches("Checking ").count();
    if checked != patches.len() {
        bail!(
            "checkpatch.pl checked {checked} of {} patches:\n{report}",
            patches.len()
        );
    }
    Ok(checked)
}

/// The ERROR and WARNING lines of a checkpatch report (with the line that
/// says which patch, for the reader), less the allowed one.
fn findings(report: &str) -> Vec<String> {
    let mut patch = "";
    let mut found = Vec::new();
    for line in report.lines() {
        if let Some(name) = line.strip_prefix("Checking ") {
            patch = name.trim_end_matches("...");
        } else if (line.starts_with("ERROR:") || line.starts_with("WARNING:"))
            && line.trim_end() != ALLOWED
        {
            let file = Path::new(patch).file_name().unwrap_or_default();
            found.push(format!("{}: {line}", file.to_string_lossy()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_missing_sign_off_is_allowed() {
        // A report as checkpatch.pl wrote it for the series before the
        // SPDX lines and the MAINTAINERS entry.
        let report = "Checking /p/0001-hw-cxl.patch...\n\
            ERROR: Missing Signed-off-by: line(s)\n\n\
            total: 1 errors, 0 warnings, 8 lines checked\n\
            Checking /p/0005-rust-hw-misc.patch...\n\
            WARNING: added, moved or deleted file(s):\n\n  rust/hw/misc/Kconfig\n\n\
            Does MAINTAINERS need updating?\n\n\
            WARNING: Does new file 'rust/hw/misc/Kconfig' need 'SPDX-License-Identifier'?\n\
            ERROR: Missing Signed-off-by: line(s)\n";
        assert_eq!(
            findings(report),
            [
                "0005-rust-hw-misc.patch: WARNING: added, moved or deleted file(s):",
                "0005-rust-hw-misc.patch: WARNING: Does new file 'rust/hw/misc/Kconfig' need \
                 'SPDX-License-Identifier'?",
            ]
        );
        let clean = "Checking /p/0001-a.patch...\nERROR: Missing Signed-off-by: line(s)\n";
        assert!(findings(clean).is_empty());
    }
}
