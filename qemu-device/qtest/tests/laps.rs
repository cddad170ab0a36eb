// SPDX-License-Identifier: GPL-2.0-or-later

//! LAP in the real device: laps recorded at exact virtual times, the ninth
//! refused and logged, cleared by RESET; carried by migration in the
//! `stopwatch/laps` subsection, and a stream without that subsection (what
//! a device without laps writes) still loads. Run by `cargo xtask test`,
//! which sets `STOPWATCH_QEMU`.

use std::path::Path;

use anyhow::{ensure, Result};
use stopwatch_abi::{shared, Command, Status, NANOS_PER_SEC};
use stopwatch_qtest::{Machine, Stopwatch};

const SECOND: u64 = NANOS_PER_SEC;
const DEVICE: &str = "stopwatch,id=sw0,start_at_boot=false";

/// The subsection's header in a migration stream: its name, after a
/// length byte (QEMU's `vmstate_subsection_save`).
fn has_laps_subsection(stream: &Path) -> Result<bool> {
    let name = b"stopwatch/laps";
    let mut header = vec![name.len() as u8];
    header.extend_from_slice(name);
    let bytes = std::fs::read(stream)?;
    Ok(bytes.windows(header.len()).any(|window| window == header))
}

/// Migrates `source` to a file and loads it into a new QEMU with the same
/// device, at the same virtual time.
fn migrate(source: Machine, test: &str) -> Result<(Machine, bool)> {
    let mut qmp = source.qmp()?;
    let saved_at = source.qtest.last_clock();
    let stream = source.scratch.join("laps.mig");
    qmp.migrate_to_file(&stream)?;
    drop(source);
    let has_subsection = has_laps_subsection(&stream)?;
    let incoming = ["-incoming".to_owned(), format!("file:{}", stream.display())];
    let mut target = Machine::start_with(test, &[DEVICE], &incoming)?;
    target.qmp()?.wait_for_incoming()?;
    target.qtest.clock_set(saved_at)?;
    Ok((target, has_subsection))
}

// tutorial:lap-qtest begin
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn laps_are_recorded_and_cleared_by_reset() -> Result<()> {
    let mut machine = Machine::start("laps", &[DEVICE])?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    sw.command(q, Command::Start)?;
    q.clock_step(SECOND)?;
    sw.command(q, Command::Lap)?;
    q.clock_step(500_000_000)?;
    sw.command(q, Command::Lap)?;
    assert_eq!(sw.laps(q)?, [SECOND, 1_500_000_000]);

    // Six more fill the slots; the ninth is refused and logged.
    for _ in 2..shared::LAP_SLOTS {
        sw.command(q, Command::Lap)?;
    }
    let full = sw.laps(q)?;
    assert_eq!(full.len(), shared::LAP_SLOTS);
    q.clock_step(SECOND)?;
    sw.command(q, Command::Lap)?;
    assert_eq!(sw.laps(q)?, full, "the ninth LAP changed the laps");
    let log = machine.guest_error_log();
    assert!(
        log.contains(
            "stopwatch sw0: LAP with all 8 lap slots taken (RESET clears them): ignored\n"
        ),
        "{log}"
    );

    let q = &mut machine.qtest;
    sw.command(q, Command::Reset)?;
    assert_eq!(sw.laps(q)?, [] as [u64; 0], "RESET cleared them");
    sw.command(q, Command::Lap)?;
    assert_eq!(sw.laps(q)?, [0], "a LAP after RESET takes slot 0");
    Ok(())
}
// tutorial:lap-qtest end

/// Laps recorded, then a migration: the stream has the subsection, and the
/// device comes back with its laps, in its state and not only in the
/// migrated RAM: the next LAP takes the next slot.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn laps_survive_migration() -> Result<()> {
    let mut source = Machine::start("laps-migration", &[DEVICE])?;
    let sw = source.device(0);
    let q = &mut source.qtest;
    sw.command(q, Command::Start)?;
    q.clock_step(SECOND)?;
    sw.command(q, Command::Lap)?;
    q.clock_step(SECOND)?;
    sw.command(q, Command::Lap)?;
    let (mut target, has_subsection) = migrate(source, "laps-migration-target")?;
    ensure!(
        has_subsection,
        "laps recorded, but no stopwatch/laps in the stream"
    );
    let q = &mut target.qtest;
    assert_eq!(sw.status(q)?, Status::Running);
    assert_eq!(sw.laps(q)?, [SECOND, 2 * SECOND]);
    q.clock_step(SECOND)?;
    sw.command(q, Command::Lap)?;
    assert_eq!(sw.laps(q)?, [SECOND, 2 * SECOND, 3 * SECOND]);
    sw.command(q, Command::Reset)?;
    assert_eq!(sw.laps(q)?, [] as [u64; 0]);
    Ok(())
}

/// No lap ever recorded: the stream has no `stopwatch/laps` subsection,
/// which makes it exactly what a device without laps writes (the same
/// section, version 1, same fields). It loads, with no laps, and LAP works
/// from slot 0. The lap slots in the migrated RAM are scribbled on first:
/// the loaded device's own (empty) laps are what it publishes.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn a_stream_without_laps_loads() -> Result<()> {
    let mut source = Machine::start("laps-old-stream", &[DEVICE])?;
    let sw: Stopwatch = source.device(0);
    let q = &mut source.qtest;
    sw.command(q, Command::Start)?;
    q.clock_step(2 * SECOND)?;
    sw.command(q, Command::Pause)?;
    q.writeq(sw.shared(shared::LAP_COUNT), 3)?;
    q.writeq(sw.shared(shared::LAPS), 12_345)?;
    let (mut target, has_subsection) = migrate(source, "laps-old-stream-target")?;
    ensure!(
        !has_subsection,
        "no lap recorded, yet the stream has stopwatch/laps: an older QEMU could not load it"
    );
    let q = &mut target.qtest;
    assert_eq!(sw.status(q)?, Status::Paused);
    assert_eq!(sw.update_text(q)?, "2.00 seconds");
    assert_eq!(
        sw.laps(q)?,
        [] as [u64; 0],
        "the restore republished no laps"
    );
    sw.command(q, Command::Lap)?;
    assert_eq!(sw.laps(q)?, [2 * SECOND]);
    Ok(())
}
