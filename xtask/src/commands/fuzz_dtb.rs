// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask fuzz dtb`: the board crate's device-tree mutation test
//! (`guest-kernel/board/tests/mutations.rs`) at length, with a seed of its
//! own.

use anyhow::{ensure, Context, Result};
use std::process::Command;

use crate::repo::{cargo, Repo};

/// Decodes `cases` corrupted trees from `seed`; none may panic.
pub fn run(repo: &Repo, seed: u64, cases: u64) -> Result<String> {
    eprintln!("    seed {seed:#x}, {cases} corrupted device trees");
    let status = Command::new(cargo())
        .args(["test", "-p", "board-discovery", "--test", "mutations"])
        .args(["--", "--nocapture"])
        .env("DTB_MUTATION_SEED", format!("{seed:#x}"))
        .env("DTB_MUTATION_CASES", cases.to_string())
        .current_dir(&repo.root)
        .status()
        .context("could not run cargo test")?;
    ensure!(
        status.success(),
        "a corrupted device tree broke discovery (above); replay: \
         cargo xtask fuzz dtb --seed {seed:#x} --ops {cases}"
    );
    Ok(format!(
        "{cases} corrupted device trees (seed {seed:#x}), no panic"
    ))
}
