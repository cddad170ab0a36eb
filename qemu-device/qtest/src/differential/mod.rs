// SPDX-License-Identifier: GPL-2.0-or-later
//! Differential fuzzing: the real device inside QEMU against its model.
//!
//! A seeded stream of [`Op`]s (guest accesses anywhere in and just beyond
//! both regions, at every size and alignment, valid and invalid commands,
//! `data_len` garbage, clock steps from 1 ns to 11 s and onto deadlines,
//! system resets and migrations into a new QEMU) goes to the real device
//! over qtest and to [`stopwatch_model::Stopwatch`] in a
//! [`Simulation`](stopwatch_model::Simulation) that mirrors the machine's
//! address space. After every operation STATUS, `data_len`, the
//! `data` text, the time page and the interrupt line must agree; the guest
//! error log must hold one line per mistake the model reported; QEMU must
//! never exit.
//!
//! Speed comes from pipelining: the model runs ahead and records what each
//! answer must be, the commands of a whole batch go to QEMU in one write,
//! and the answers are checked in order afterwards (qtest answers strictly
//! in order, and reports an interrupt change before the answer of the
//! command that caused it, so every check still belongs to one operation).
//! The state is compared with one `read` of the block that holds
//! `data_len`, `data` and the time page.
//!
//! A failure names its operation; [`shrink`] then finds a short operation
//! list that still fails, printed by [`script`] in a form [`parse_script`]
//! reads back.
//!
//! The parts, by role: `ops` (the operations, their script form and
//! the seeded generator), `runner` (the pipeline: both machines side by
//! side, the queued checks, reset and migration), `simulated` (the model
//! side: a guest access split over RAM, registers and unassigned space as
//! QEMU's memory core splits it), `qemu` (the QEMU side: its command line,
//! qtest command names and answers decoded), and `shrink` (a failure cut
//! down to a short script, and the report).

mod ops;
mod qemu;
mod runner;
mod shrink;
mod simulated;

pub use ops::{generate, parse_script, script, Op, Rates, Region};
pub use shrink::{report_failure, shrink, SHRINK_BUDGET};

use std::{
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use stopwatch_abi::shared;

use runner::Runner;

/// The pass-through block compared after every operation: `data_len`,
/// `data`, the time page, the laps and the period (and the reserved bytes
/// between them): everything the device writes.
const CHECKED_BLOCK: usize = shared::GUEST_FREE as usize;

/// Operations per pipelined batch.
const BATCH_OPS: usize = 256;

/// How far beyond a region's end accesses go.
const BEYOND_END: u64 = 16;

/// The device's QOM id in every machine.
const DEVICE_ID: &str = "sw0";

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Operations run.
    pub ops: usize,
    /// Timeouts that fired.
    pub timeouts_fired: u64,
    /// Guest mistakes the model reported (each also logged by QEMU).
    pub guest_errors: u64,
    pub resets: u64,
    pub migrations: u64,
    pub elapsed: Duration,
}

impl Stats {
    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops in {:.1} s, {:.0} ops/s ({} timeouts fired, {} guest mistakes, \
             {} system resets, {} migrations)",
            thousands(self.ops as u64),
            self.elapsed.as_secs_f64(),
            self.ops_per_second(),
            thousands(self.timeouts_fired),
            thousands(self.guest_errors),
            self.resets,
            self.migrations
        )
    }
}

/// 100000 as "100,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Why a run failed.
#[derive(Debug)]
pub struct Failure {
    /// The operation after which the disagreement showed (an index into
    /// the operations), if known.
    pub step: Option<usize>,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "after operation {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Runs `ops` against a fresh QEMU (`qemu`, scratch files in `scratch`)
/// and the model.
pub fn run(qemu: &Path, scratch: &Path, ops: &[Op]) -> Result<Stats, Failure> {
    run_with_progress(qemu, scratch, ops, &mut |_| {})
}

/// [`run`], calling `progress` with the figures so far about every
/// 100,000 operations.
pub fn run_with_progress(
    qemu: &Path,
    scratch: &Path,
    ops: &[Op],
    progress: &mut dyn FnMut(&Stats),
) -> Result<Stats, Failure> {
    const PROGRESS_EVERY: usize = 100_000;
    let started = Instant::now();
    let setup = |error: anyhow::Error| Failure {
        step: None,
        message: format!("{error:#}"),
    };
    let mut runner = Runner::start(qemu, scratch).map_err(setup)?;
    let mut batch_start = 0;
    let mut next_progress = PROGRESS_EVERY;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::SystemReset | Op::Migrate => {
                runner.flush(batch_start)?;
                batch_start = step;
                // What the operations so far stored anywhere.
                runner.full_check(step.saturating_sub(1))?;
                if *op == Op::SystemReset {
                    runner.system_reset(step)?;
                } else {
                    runner.migrate(step)?;
                }
                runner.queue_checks(step);
            }
            _ => runner.queue(step, op),
        }
        if runner.queued_ops >= BATCH_OPS {
            runner.flush(batch_start)?;
            batch_start = step + 1;
            if batch_start >= next_progress {
                next_progress += PROGRESS_EVERY;
                runner.stats.ops = batch_start;
                runner.stats.elapsed = started.elapsed();
                progress(&runner.stats);
            }
        }
    }
    runner.flush(batch_start)?;
    runner.full_check(ops.len().saturating_sub(1))?;
    runner.stats.ops = ops.len();
    runner.stats.elapsed = started.elapsed();
    Ok(runner.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
