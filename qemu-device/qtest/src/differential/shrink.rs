// SPDX-License-Identifier: GPL-2.0-or-later
//! A failed differential run cut down to a short operation list, and
//! the report that prints it with how to replay it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::anyhow;

use super::{run, script, Failure, Op};

/// How long [`shrink`] may try.
pub const SHRINK_BUDGET: Duration = Duration::from_secs(120);

/// A short operation list that still fails, from `ops` that failed with
/// `failure`: the failing prefix, cut down by binary search, then without
/// every chunk (halves, quarters, ... single operations) whose removal
/// keeps it failing, within [`SHRINK_BUDGET`]. `progress` hears each
/// improvement.
pub fn shrink(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    failure: &Failure,
    mut progress: impl FnMut(&str),
) -> Vec<Op> {
    let started = Instant::now();
    let fails = |candidate: &[Op]| run(qemu, scratch, candidate).err();
    let mut best: Vec<Op> = match failure.step {
        Some(step) => ops[..(step + 1).min(ops.len())].to_vec(),
        None => ops.to_vec(),
    };
    // The shortest failing prefix (failures show after their operation,
    // or at the end of the run for the guest-error log).
    let (mut passing, mut failing) = (0, best.len());
    while failing - passing > 1 && started.elapsed() < SHRINK_BUDGET {
        let middle = (passing + failing) / 2;
        if fails(&best[..middle]).is_some() {
            failing = middle;
        } else {
            passing = middle;
        }
    }
    best.truncate(failing);
    progress(&format!(
        "shortest failing prefix: {} operations",
        best.len()
    ));
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut at = best.len();
        while at > 0 && started.elapsed() < SHRINK_BUDGET {
            let start = at.saturating_sub(chunk);
            let candidate: Vec<Op> = best[..start].iter().chain(&best[at..]).copied().collect();
            if let Some(failure) = fails(&candidate) {
                let keep = failure
                    .step
                    .map_or(candidate.len(), |step| (step + 1).min(candidate.len()));
                best = candidate[..keep].to_vec();
                progress(&format!("down to {} operations", best.len()));
                at = start.min(best.len());
            } else {
                at = start;
            }
        }
        if chunk == 1 || started.elapsed() >= SHRINK_BUDGET {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// After a failed run: shrinks `ops`, writes the short script to
/// `script_file` and returns the whole story as an error: what failed
/// (`origin` says which stream), the script, and how to replay it
/// (`replay`, a command line that takes the script file).
pub fn report_failure(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    failure: &Failure,
    origin: &str,
    script_file: &Path,
    replay: &str,
) -> anyhow::Error {
    eprintln!("differential run failed ({origin}): {failure}");
    eprintln!("shrinking (replaying shorter operation lists)...");
    let short = shrink(qemu, &scratch.join("shrink"), ops, failure, |note| {
        eprintln!("  {note}")
    });
    let text = script(&short);
    if let Err(error) = std::fs::write(script_file, &text) {
        eprintln!("could not write {}: {error}", script_file.display());
    }
    let replayed = run(qemu, &scratch.join("replay"), &short)
        .err()
        .map_or("it passed when replayed: a flaky failure".to_owned(), |f| {
            format!("replayed, it fails {f}")
        });
    anyhow!(
        "the device and its model disagree ({origin}): {failure}\n\
         Shortest failing script ({} operations; {replayed}):\n{text}\
         Written to {}; replay it with: {replay}",
        short.len(),
        script_file.display(),
    )
}
