// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask fuzz device`: the differential fuzzer of
//! `stopwatch_qtest::differential` (the real device over qtest against its
//! model) at length, from a seed or replaying a script a failure printed.

use anyhow::{Context, Result};
use std::path::Path;
use stopwatch_qtest::differential::{self, Rates};

use crate::repo::Repo;
use crate::util::remove_dir_all_if_exists;

/// Runs `ops` operations of `seed`'s stream, or the script in `replay`;
/// returns the one-line figures, or fails with the shortest failing
/// script and how to replay it.
pub fn run(repo: &Repo, seed: u64, ops: u64, replay: Option<&Path>) -> Result<String> {
    let fuzz_dir = repo.cargo_target_dir().join("fuzz");
    let scratch = fuzz_dir.join("device");
    remove_dir_all_if_exists(&scratch)?;
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    let (operations, origin, script_file) = match replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read the script {}", path.display()))?;
            let operations = differential::parse_script(&text)
                .with_context(|| format!("in the script {}", path.display()))?;
            let origin = format!("script {}", path.display());
            (
                operations,
                origin,
                fuzz_dir.join("device-failing-replay.ops"),
            )
        }
        None => {
            let count = usize::try_from(ops).context("--ops is too large")?;
            eprintln!("    seed {seed:#x}, {ops} operations");
            let operations = differential::generate(seed, count, Rates::default());
            let origin = format!("--seed {seed:#x}");
            let file = fuzz_dir.join(format!("device-failing-{seed:#x}.ops"));
            (operations, origin, file)
        }
    };
    let qemu = repo.qemu_binary();
    let result = differential::run_with_progress(&qemu, &scratch, &operations, &mut |stats| {
        eprintln!("    {stats}")
    });
    match result {
        Ok(stats) => Ok(stats.to_string()),
        Err(failure) => {
            let replay = format!(
                "cargo xtask fuzz device --replay {}",
                repo.relative(&script_file).display()
            );
            Err(differential::report_failure(
                &qemu,
                &scratch,
                &operations,
                &failure,
                &origin,
                &script_file,
                &replay,
            ))
        }
    }
}
