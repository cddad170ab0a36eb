// SPDX-License-Identifier: GPL-2.0-or-later
//! Differential test: the real device inside QEMU against its pure model,
//! on 100,000 seeded random operations (see `stopwatch_qtest::differential`
//! for what they are and what is compared after each).
//!
//! Settings, from the environment:
//! - `STOPWATCH_DIFF_SEED`, `STOPWATCH_DIFF_OPS`: another stream, or a
//!   longer one (`cargo xtask fuzz device` runs longer ones);
//! - `STOPWATCH_DIFF_SCRIPT=FILE`: replay the operations in FILE, as a
//!   failure prints them;
//! - `STOPWATCH_DIFF_REPORT=FILE`: where to write the one-line result
//!   (`cargo xtask test` shows it in its summary).
//!
//! On failure the test prints the seed and the shortest failing operation
//! list it could find, and writes it to a file to replay.

use anyhow::{Context, Result};
use stopwatch_qtest::differential::{self, Rates};
use stopwatch_qtest::{qemu_binary, scratch_dir};

/// The stream `cargo xtask test` runs.
const SEED: u64 = 0x5eed_2026;
const OPS: u64 = 100_000;

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn differential_device_and_model_agree_on_random_traffic() -> Result<()> {
    let qemu = qemu_binary()?;
    let scratch = scratch_dir("differential")?;
    let (ops, origin) = match std::env::var_os("STOPWATCH_DIFF_SCRIPT") {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading STOPWATCH_DIFF_SCRIPT={path:?}"))?;
            let ops = differential::parse_script(&text)?;
            (ops, format!("script {}", path.to_string_lossy()))
        }
        None => {
            let seed = setting("STOPWATCH_DIFF_SEED", SEED)?;
            let count = usize::try_from(setting("STOPWATCH_DIFF_OPS", OPS)?)?;
            let ops = differential::generate(seed, count, Rates::default());
            (ops, format!("STOPWATCH_DIFF_SEED={seed:#x}"))
        }
    };
    match differential::run(&qemu, &scratch, &ops) {
        Ok(stats) => {
            eprintln!("differential: {stats}");
            if let Some(report) = std::env::var_os("STOPWATCH_DIFF_REPORT") {
                std::fs::write(report, format!("{stats}\n"))?;
            }
            Ok(())
        }
        Err(failure) => {
            let file = scratch.join("failing.ops");
            let replay = format!(
                "STOPWATCH_DIFF_SCRIPT={} cargo xtask test, or cargo xtask fuzz device --replay {}",
                file.display(),
                file.display()
            );
            Err(differential::report_failure(
                &qemu, &scratch, &ops, &failure, &origin, &file, &replay,
            ))
        }
    }
}

/// A number (decimal or 0x hex) from the environment, or `default`.
fn setting(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) => stopwatch_qtest::parse_number(&text.replace('_', ""))
            .with_context(|| format!("{name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}
