// SPDX-License-Identifier: GPL-2.0-or-later
//! Corrupted device trees booted for real: the trees the patched QEMU
//! generates (the board crate's fixtures), corrupted by the mutation
//! tests' generator, each given to the shipped kernel with `-dtb` on the
//! QEMU whose devices they describe. Each run must end with a prompt or
//! with a start-up status for a device tree the kernel cannot use (13, or
//! the missing-piece statuses 14 to 16 when a corruption removed the
//! memory node, the console or the GIC): never a panic (101), another
//! fatal exception, or a hang.
//!
//! QEMU checks a `-dtb` itself (libfdt opens it and edits `/chosen`): a
//! tree it refuses ends QEMU with status 1 and its own message before the
//! guest runs. Those are counted apart and do not make up the dozen.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::Duration;

use board_discovery::mutations::Mutator;
use board_discovery::BoardInfo;
use stopwatch_shell::protocol::exit_status;
use stopwatch_test_rng::TestRng;

use crate::repo::Repo;
use crate::serial::SerialConsole;
use crate::vm::{Gic, VmConfig};

/// How every shell prompt ends.
const PROMPT_END: &str = "> ";

/// The fixtures (made by `cargo xtask dtb --devices N --gic V`), with the
/// stopwatch count and GIC they were made with.
const FIXTURES: [(&str, usize, Gic); 4] = [
    ("virt-gicv2-one-stopwatch", 1, Gic::V2),
    ("virt-gicv2-three-stopwatches", 3, Gic::V2),
    ("virt-gicv3-one-stopwatch", 1, Gic::V3),
    ("virt-gicv3-three-stopwatches", 3, Gic::V3),
];
/// Boots wanted: trees the board crate refuses on the host, and trees it
/// decodes to another board than the uncorrupted one.
const REFUSED_WANTED: usize = 8;
const CHANGED_WANTED: usize = 4;
/// Candidates tried at most (some QEMU refuses, most change nothing).
const MAX_CANDIDATES: usize = 5_000;
const SEED: u64 = 0xb007_0d7b;

/// How one boot ended.
enum Ending {
    Prompt,
    Status(i32),
    RefusedByQemu,
}

/// Boots a dozen corrupted trees; `Ok` sums up how each ended.
pub fn run(repo: &Repo, timeout: Duration) -> Result<String> {
    let fixtures_dir = repo.root.join("guest-kernel/board/tests/fixtures");
    let blobs = FIXTURES
        .iter()
        .map(|(name, ..)| {
            let path = fixtures_dir.join(format!("{name}.dtb"));
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let originals = blobs
        .iter()
        .zip(FIXTURES)
        .map(|(blob, (name, ..))| {
            BoardInfo::from_dtb(blob).map_err(|error| anyhow!("fixture {name}: {error}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // The control: each tree as generated boots to the prompt (else every
    // corrupted one ending with 13 would show nothing).
    for (name, devices, gic) in FIXTURES {
        let path = fixtures_dir.join(format!("{name}.dtb"));
        let config = dtb_config(repo, &path, devices, gic);
        match boot(repo, &config, name, timeout)? {
            Ending::Prompt => eprintln!("    ok: {name} as generated: prompt"),
            _ => bail!("{name}, not corrupted, did not boot to the prompt"),
        }
    }
    let mut rng = TestRng::new(SEED);
    let (mut refused, mut changed, mut by_qemu) = (0, 0, 0);
    let mut endings = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..MAX_CANDIDATES {
        if refused == REFUSED_WANTED && changed == CHANGED_WANTED {
            break;
        }
        let index = rng.below(FIXTURES.len() as u64) as usize;
        let (name, devices, gic) = FIXTURES[index];
        let blob = &blobs[index];
        let mutation = Mutator::new(blob).mutation(&mut rng);
        let mutated = mutation.apply(blob);
        let host_refuses = match BoardInfo::from_dtb(&mutated) {
            Err(_) => true,
            Ok(info) if info == originals[index] => continue,
            Ok(_) => false,
        };
        let wanted = if host_refuses {
            &mut refused
        } else {
            &mut changed
        };
        if *wanted
            == if host_refuses {
                REFUSED_WANTED
            } else {
                CHANGED_WANTED
            }
        {
            continue;
        }
        let path = repo
            .vm_dir()
            .join(format!("dtb-corrupt-{}.dtb", endings.len() + by_qemu));
        std::fs::write(&path, &mutated).with_context(|| format!("writing {}", path.display()))?;
        let config = dtb_config(repo, &path, devices, gic);
        let what = format!(
            "{name} with {mutation} ({})",
            repo.relative(&path).display()
        );
        match boot(repo, &config, &what, timeout) {
            Ok(Ending::RefusedByQemu) => {
                eprintln!("    refused by QEMU: {what}");
                by_qemu += 1;
            }
            Ok(ending) => {
                *wanted += 1;
                let line = match ending {
                    Ending::Prompt => "prompt".to_string(),
                    Ending::Status(status) => format!("status {status}"),
                    Ending::RefusedByQemu => unreachable!(),
                };
                eprintln!("    ok: {what}: {line}");
                endings.push(line);
            }
            Err(error) => {
                *wanted += 1;
                eprintln!("    FAILED: {what}: {error:#}");
                failures.push(format!("{what}: {error:#}"));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} corrupted trees: {}",
            failures.len(),
            failures.len() + endings.len(),
            failures.join("; ")
        );
    }
    if endings.len() < REFUSED_WANTED + CHANGED_WANTED {
        bail!(
            "only {} corrupted trees booted in {MAX_CANDIDATES} candidates",
            endings.len()
        );
    }
    let prompts = endings.iter().filter(|line| *line == "prompt").count();
    Ok(format!(
        "{} corrupted trees (seed {SEED:#x}): {prompts} prompts, statuses [{}]; {by_qemu} more \
         refused by QEMU itself",
        endings.len(),
        endings
            .iter()
            .filter(|line| *line != "prompt")
            .map(|line| line.trim_start_matches("status "))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The machine a fixture was made on, booted with `dtb` as its tree.
fn dtb_config(repo: &Repo, dtb: &Path, devices: usize, gic: Gic) -> VmConfig {
    VmConfig {
        devices,
        gic: Some(gic),
        extra: vec!["-dtb".to_string(), repo.relative(dtb).display().to_string()],
        ..VmConfig::default()
    }
}

/// Boots `config` until the prompt or the end of QEMU; an error for an
/// ending the kernel must never have.
fn boot(repo: &Repo, config: &VmConfig, what: &str, timeout: Duration) -> Result<Ending> {
    let mut console = SerialConsole::spawn(repo, config, None)?.named(what);
    // `stopwatch> `, or `stopwatch[0]> ` with several stopwatches (how
    // many a corrupted tree leaves usable varies).
    if console.expect(PROMPT_END, timeout).is_ok() {
        return Ok(Ending::Prompt);
    }
    let Some(status) = console.wait_exit(Duration::from_secs(5))? else {
        return Err(console.hung("no prompt and no exit", timeout));
    };
    let qemu_refused = console.transcript().contains("qemu-system-aarch64:");
    match status.code() {
        Some(1) if qemu_refused => Ok(Ending::RefusedByQemu),
        Some(
            status @ (exit_status::BAD_DEVICE_TREE
            | exit_status::NO_MEMORY
            | exit_status::NO_CONSOLE
            | exit_status::NO_GIC),
        ) => Ok(Ending::Status(status)),
        _ => bail!(
            "QEMU ended with {status}; last lines:\n{}",
            console.last_lines(8).join("\n")
        ),
    }
}
