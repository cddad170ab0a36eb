// SPDX-License-Identifier: GPL-2.0-or-later
//! The real stopwatch inside the patched QEMU, driven over qtest with
//! deterministic virtual time. Run by `cargo xtask test`, which sets
//! `STOPWATCH_QEMU`; a plain `cargo test` skips them (ignored).

use anyhow::{ensure, Context, Result};
use serde_json::json;
use stopwatch_abi::{regs, shared, Command, Status, NANOS_PER_SEC};
use stopwatch_model::format_elapsed;
use stopwatch_qtest::{qemu_binary, scratch_dir, IrqEvent, Layout, Machine, Qtest, Stopwatch};

const SECOND: u64 = NANOS_PER_SEC;

/// Steps the clock to one nanosecond before `ns` from now (no interrupt
/// yet), then onto it (the interrupt rises): a deadline kept exactly.
fn expect_raise_after(q: &mut Qtest, ns: u64) -> Result<()> {
    q.clock_step(ns - 1)?;
    ensure!(
        q.take_irq_events().is_empty(),
        "interrupt before its deadline"
    );
    q.clock_step(1)?;
    let events = q.take_irq_events();
    ensure!(
        events == [IrqEvent::Raise(0)],
        "at the deadline: {events:?}"
    );
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn device_tree_node_describes_regions_and_interrupt() -> Result<()> {
    let qemu = qemu_binary()?;
    let scratch = scratch_dir("device-tree")?;
    let none = Layout::dump(&qemu, &scratch, "virt", &[])?;
    assert!(none.devices.is_empty(), "no -device, no node");

    let args = ["-device", "stopwatch", "-device", "stopwatch,id=sw1"].map(String::from);
    let layout = Layout::dump(&qemu, &scratch, "virt", &args)?;
    assert_eq!(layout.devices.len(), 2);
    for device in &layout.devices {
        assert_eq!(
            device.shared_memory.1,
            shared::SIZE,
            "reg 0 is the shared memory"
        );
        assert_eq!(device.registers.1, regs::SIZE, "reg 1 is the registers");
        // GIC SPI, level-high; the platform bus's SPIs start at 112.
        assert_eq!(device.interrupt.0, 0);
        assert_eq!(device.interrupt.2, 4);
        assert!(device.interrupt.1 >= 112);
        assert!(device.name.starts_with("stopwatch@"));
    }
    let [first, second] = &layout.devices[..] else {
        unreachable!()
    };
    assert_ne!(first.interrupt.1, second.interrupt.1);
    let regions = [
        first.shared_memory,
        first.registers,
        second.shared_memory,
        second.registers,
    ];
    for (index, a) in regions.iter().enumerate() {
        for b in &regions[index + 1..] {
            assert!(
                a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                "{a:x?} overlaps {b:x?}"
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn start_at_boot_property() -> Result<()> {
    let mut machine = Machine::start(
        "start-at-boot",
        &["stopwatch", "stopwatch,start_at_boot=false"],
    )?;
    let (on, off) = (machine.device(0), machine.device(1));
    assert_eq!(on.status(&mut machine.qtest)?, Status::Running);
    assert_eq!(off.status(&mut machine.qtest)?, Status::Reset);
    machine.qtest.clock_step(2 * SECOND)?;
    assert_eq!(on.update_text(&mut machine.qtest)?, "2.00 seconds");
    assert_eq!(off.update_text(&mut machine.qtest)?, "0.00 seconds");
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn every_command_and_status_transition() -> Result<()> {
    let mut machine = Machine::start("transitions", &["stopwatch,start_at_boot=false"])?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    assert_eq!(sw.status(q)?, Status::Reset);
    sw.command(q, Command::Start)?;
    assert_eq!(sw.status(q)?, Status::Running);
    q.clock_step(SECOND)?;
    sw.command(q, Command::Pause)?;
    assert_eq!(sw.status(q)?, Status::Paused);
    q.clock_step(5 * SECOND)?;
    assert_eq!(
        sw.update_text(q)?,
        "1.00 seconds",
        "paused time does not count"
    );
    sw.command(q, Command::Pause)?;
    assert_eq!(
        sw.status(q)?,
        Status::Paused,
        "PAUSE while PAUSED does nothing"
    );
    sw.command(q, Command::Start)?;
    assert_eq!(sw.status(q)?, Status::Running);
    q.clock_step(250_000_000)?;
    assert_eq!(sw.update_text(q)?, "1.25 seconds");
    sw.command(q, Command::Reset)?;
    assert_eq!(sw.status(q)?, Status::Reset);
    assert_eq!(sw.update_text(q)?, "0.00 seconds");
    sw.command(q, Command::Start)?;
    sw.command(q, Command::Reset)?;
    assert_eq!(sw.status(q)?, Status::Reset, "RESET from RUNNING");
    assert!(
        machine.guest_error_log().is_empty(),
        "{}",
        machine.guest_error_log()
    );
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn update_after_exactly_one_and_a_half_seconds() -> Result<()> {
    let mut machine = Machine::start("one-and-a-half", &["stopwatch,start_at_boot=false"])?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    sw.command(q, Command::Start)?;
    q.clock_step(1_500_000_000)?;
    assert_eq!(sw.update_text(q)?, "1.50 seconds");
    assert_eq!(
        q.readq(sw.shared(shared::DATA_LEN))?,
        13,
        "length with the NUL"
    );
    // Nanosecond resolution: one step short of 1.51 s rounds down.
    q.clock_step(4_999_999)?;
    assert_eq!(sw.update_text(q)?, "1.50 seconds");
    q.clock_step(1_000_001)?;
    assert_eq!(sw.update_text(q)?, "1.51 seconds");
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn timeout_interrupt_rises_exactly_at_its_deadline() -> Result<()> {
    let mut machine = Machine::start_watching("timeout", "")?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    sw.timeout(q, 1)?;
    expect_raise_after(q, SECOND)?;
    q.clock_step(3 * SECOND)?;
    assert_eq!(q.take_irq_events(), [], "level: stays high, no second edge");
    sw.command(q, Command::TimeoutAck)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);

    // The sub-second addition.
    sw.set_data_len(q, 123_456)?;
    sw.command(q, Command::TimeoutNs)?;
    expect_raise_after(q, 123_456)?;
    sw.command(q, Command::TimeoutAck)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn reset_cancels_a_pending_timeout_and_lowers_the_interrupt() -> Result<()> {
    let mut machine = Machine::start_watching("reset-timeout", "")?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    sw.timeout(q, 2)?;
    q.clock_step(SECOND)?;
    sw.command(q, Command::Reset)?;
    q.clock_step(5 * SECOND)?;
    assert_eq!(q.take_irq_events(), [], "the armed timeout was cancelled");

    sw.timeout(q, 1)?;
    q.clock_step(SECOND)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)]);
    sw.command(q, Command::Reset)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    // Nothing pending any more: a new timeout is accepted.
    sw.timeout(q, 1)?;
    q.clock_step(SECOND)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)]);
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn thirty_two_bit_accesses() -> Result<()> {
    let mut machine = Machine::start("access-32", &["stopwatch,start_at_boot=false"])?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    // The original driver: writel/readl on the low halves.
    q.writel(sw.register(regs::COMMAND), Command::Start.code() as u32)?;
    assert_eq!(
        q.readl(sw.register(regs::STATUS))?,
        Status::Running.code() as u32
    );
    assert_eq!(q.readl(sw.register(regs::STATUS + 4))?, 0, "upper half");
    q.clock_step(SECOND)?;
    q.writel(sw.register(regs::COMMAND), Command::Pause.code() as u32)?;
    assert_eq!(
        q.readl(sw.register(regs::STATUS))?,
        Status::Paused.code() as u32
    );
    q.writel(sw.register(regs::COMMAND), Command::Update.code() as u32)?;
    assert_eq!(sw.data_text(q)?, "1.00 seconds");
    assert!(
        machine.guest_error_log().is_empty(),
        "{}",
        machine.guest_error_log()
    );
    Ok(())
}

/// Each guest mistake: what the guest does, and the log line it must get.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn guest_mistakes_are_logged_and_change_nothing() -> Result<()> {
    type Action = fn(&Stopwatch, &mut Qtest) -> Result<()>;
    let mistakes: [(&str, Action, &str); 14] = [
        (
            "unknown offset",
            |sw, q| q.writeq(sw.register(0x10), 1),
            "access to unknown register offset 0x10",
        ),
        (
            "read of command",
            |sw, q| q.readq(sw.register(regs::COMMAND)).map(drop),
            "read of the write-only COMMAND register",
        ),
        (
            "write of status",
            |sw, q| q.writeq(sw.register(regs::STATUS), 2),
            "write of 0x2 to the read-only STATUS register",
        ),
        (
            "bad access size",
            |sw, q| q.writew(sw.register(regs::COMMAND), 1),
            "2-byte access at offset 0x0: registers take 4- or 8-byte accesses",
        ),
        (
            "byte read",
            |sw, q| q.readb(sw.register(regs::STATUS)).map(drop),
            "1-byte access at offset 0x8: registers take 4- or 8-byte accesses",
        ),
        (
            "unaligned access",
            |sw, q| q.writel(sw.register(2), 1),
            "unaligned 4-byte access at offset 0x2",
        ),
        (
            "upper half of command",
            |sw, q| q.writel(sw.register(regs::COMMAND + 4), 1),
            "write of 0x1 to the upper half of COMMAND; write commands to its lower half",
        ),
        (
            "unknown command",
            |sw, q| q.writeq(sw.register(regs::COMMAND), 9),
            "unknown command code 9",
        ),
        (
            "PERIODIC under the minimum period",
            |sw, q| {
                sw.set_data_len(q, 99_999)?;
                sw.command(q, Command::Periodic)
            },
            "PERIODIC of 99999 ns (data_len) is outside 100000..=10000000000 ns: ignored",
        ),
        (
            "START while RUNNING",
            |sw, q| sw.command(q, Command::Start),
            "START while RUNNING: ignored",
        ),
        (
            "TIMEOUT of 0",
            |sw, q| sw.timeout(q, 0),
            "TIMEOUT of 0 s (data_len) is outside 1..=10 s: ignored",
        ),
        (
            "TIMEOUT over the maximum",
            |sw, q| sw.timeout(q, 11),
            "TIMEOUT of 11 s (data_len) is outside 1..=10 s: ignored",
        ),
        (
            "TIMEOUT_NS of 0",
            |sw, q| {
                sw.set_data_len(q, 0)?;
                sw.command(q, Command::TimeoutNs)
            },
            "TIMEOUT_NS of 0 ns (data_len) is outside 1..=10000000000 ns: ignored",
        ),
        (
            "TIMEOUT_ACK with nothing pending",
            |sw, q| sw.command(q, Command::TimeoutAck),
            "TIMEOUT_ACK with no timeout pending: ignored",
        ),
    ];
    let mut machine = Machine::start_watching("mistakes", "")?;
    let sw = machine.device(0);
    machine.qtest.clock_step(SECOND)?;
    for (name, mistake, message) in mistakes {
        let q = &mut machine.qtest;
        let before = (sw.status(q)?, sw.time_page(q)?);
        mistake(&sw, q).with_context(|| format!("{name}: QEMU must keep running"))?;
        assert!(q.is_running(), "{name}: QEMU died");
        let after = (sw.status(q)?, sw.time_page(q)?);
        assert_eq!(before, after, "{name}: the state changed");
        let log = machine.guest_error_log();
        let expected = format!("stopwatch sw0: {message}\n");
        assert!(
            log.contains(&expected),
            "{name}: log lacks {expected:?}:\n{log}"
        );
    }
    // The mistakes that need another state: a second TIMEOUT while one is
    // pending (it keeps the first deadline), PAUSE of a reset stopwatch.
    let q = &mut machine.qtest;
    sw.timeout(q, 3)?;
    let armed = sw.time_page(q)?;
    sw.timeout(q, 5)?;
    assert_eq!(sw.time_page(q)?, armed);
    sw.command(q, Command::Reset)?;
    sw.command(q, Command::Pause)?;
    assert_eq!(sw.status(q)?, Status::Reset);
    let log = machine.guest_error_log();
    assert!(
        log.contains(
            "stopwatch sw0: TIMEOUT while a timeout is pending (acknowledge it first): ignored\n"
        ),
        "{log}"
    );
    assert!(
        log.contains("stopwatch sw0: PAUSE while RESET: ignored"),
        "{log}"
    );

    // RESET cancelled the first timeout, and nothing raised the line.
    let q = &mut machine.qtest;
    q.clock_step(10 * SECOND)?;
    assert_eq!(q.take_irq_events(), []);
    assert!(q.is_running());
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn time_page_matches_update_everywhere() -> Result<()> {
    let mut machine = Machine::start("time-page", &["stopwatch,start_at_boot=false"])?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    let steps: [(u64, Option<Command>); 9] = [
        (0, None),
        (1, Some(Command::Start)),
        (333_333_333, None),
        (SECOND, Some(Command::Pause)),
        (7 * SECOND, None),
        (1, Some(Command::Start)),
        (2_004_999_999, None),
        (5, Some(Command::Reset)),
        (SECOND, None),
    ];
    for (step, command) in steps {
        q.clock_step(step)?;
        if let Some(command) = command {
            sw.command(q, command)?;
        }
        let now = q.last_clock();
        let page = sw.time_page(q)?;
        let zero_exit_ns = page.elapsed_ns_at_counter(now);
        let text = sw.update_text(q)?;
        let expected = format_elapsed(zero_exit_ns);
        let expected = expected.as_str();
        assert_eq!(text, expected, "at {now} ns, page {page:?}");
    }
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn system_reset_returns_to_power_on_state() -> Result<()> {
    let mut machine = Machine::start_watching("system-reset", ",start_at_boot=false")?;
    let sw = machine.device(0);
    let mut qmp = machine.qmp()?;
    let q = &mut machine.qtest;
    sw.command(q, Command::Start)?;
    sw.timeout(q, 1)?;
    q.clock_step(2 * SECOND)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)]);
    qmp.execute("system_reset", json!({}))?;
    // The reset runs in QEMU's main loop: wait for it, boundedly.
    let mut status = sw.status(q)?;
    for _ in 0..500 {
        if status == Status::Reset {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        status = sw.status(q)?;
    }
    assert_eq!(status, Status::Reset);
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    assert_eq!(sw.update_text(q)?, "0.00 seconds");
    // No timeout survived the reset.
    sw.timeout(q, 1)?;
    q.clock_step(SECOND)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)]);
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn two_instances_are_independent() -> Result<()> {
    let mut machine = Machine::start(
        "two-instances",
        &[
            "stopwatch,id=a,start_at_boot=false",
            "stopwatch,id=b,start_at_boot=false",
        ],
    )?;
    let (a, b) = (machine.device(0), machine.device(1));
    let q = &mut machine.qtest;
    q.intercept_irqs("/machine/peripheral/b")?;
    a.command(q, Command::Start)?;
    b.timeout(q, 1)?;
    q.clock_step(SECOND)?;
    assert_eq!(a.status(q)?, Status::Running);
    assert_eq!(b.status(q)?, Status::Reset);
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)], "b's own line");
    assert_eq!(a.update_text(q)?, "1.00 seconds");
    assert_eq!(b.update_text(q)?, "0.00 seconds");
    Ok(())
}

/// Saves a machine with a running stopwatch, a pending timeout and data in
/// the pass-through memory into a file, loads it into a new QEMU and checks
/// that everything came back, and that the timeout fires on time.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn migration_round_trip_keeps_the_whole_state() -> Result<()> {
    const MARKER: u64 = 0x5354_4f50_5741_5443;
    let mut source = Machine::start("migration", &["stopwatch,id=sw0,start_at_boot=false"])?;
    let sw = source.device(0);
    let mut qmp = source.qmp()?;
    let q = &mut source.qtest;
    sw.command(q, Command::Start)?;
    q.clock_step(2 * SECOND)?;
    sw.command(q, Command::Pause)?;
    q.clock_step(SECOND)?;
    sw.command(q, Command::Start)?;
    q.clock_step(500_000_000)?;
    sw.timeout(q, 3)?;
    q.clock_step(SECOND)?;
    let marker_at = sw.shared(0x800);
    q.writeq(marker_at, MARKER)?;
    let saved_at = q.last_clock();
    let page_before = sw.time_page(q)?;
    let snapshot = source.scratch.join("stopwatch.mig");
    qmp.migrate_to_file(&snapshot)?;
    drop(source);

    let incoming = [
        "-incoming".to_owned(),
        format!("file:{}", snapshot.display()),
    ];
    let mut target = Machine::start_with(
        "migration-target",
        &["stopwatch,id=sw0,start_at_boot=false"],
        &incoming,
    )?;
    target.qmp()?.wait_for_incoming()?;
    let sw = target.device(0);
    let q = &mut target.qtest;
    q.intercept_irqs("/machine/peripheral/sw0")?;
    // qtest's clock starts at 0 in every process; put the new one where
    // the old one stopped, as a real migration carries the virtual clock.
    q.clock_set(saved_at)?;
    assert_eq!(q.readq(marker_at)?, MARKER, "pass-through memory travelled");
    assert_eq!(sw.status(q)?, Status::Running);
    let page_after = sw.time_page(q)?;
    assert_eq!(page_after, page_before, "the time page was rewritten alike");
    assert_eq!(sw.update_text(q)?, "3.50 seconds");
    let zero_exit_ns = page_after.elapsed_ns_at_counter(saved_at);
    assert_eq!(
        zero_exit_ns, 3_500_000_000,
        "zero-exit read agrees after restore"
    );
    // Armed at 3.5 s of clock for 3 s: fires at 6.5 s, 2 s after saving.
    expect_raise_after(q, 2 * SECOND)?;
    sw.command(q, Command::Pause)?;
    assert_eq!(sw.update_text(q)?, "5.50 seconds");
    Ok(())
}

/// The guest's device tree is built at machine creation: a stopwatch added
/// at run time could never be found, so QEMU refuses it, and keeps running.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn hotplug_is_refused_cleanly() -> Result<()> {
    let mut machine = Machine::start("hotplug", &["stopwatch,id=sw0"])?;
    let mut qmp = machine.qmp()?;
    let refused = qmp.execute("device_add", json!({ "driver": "stopwatch", "id": "late" }));
    let message = format!("{:#}", refused.expect_err("device_add must fail"));
    assert!(message.contains("hotplug"), "{message}");
    let sw = machine.device(0);
    assert_eq!(sw.status(&mut machine.qtest)?, Status::Running);
    Ok(())
}

/// Whether the GIC (v2, the virt default, distributor at 0x08000000) has
/// `spi` pending: for a level-sensitive line, whether the line is high.
fn gic_spi_pending(q: &mut Qtest, spi: u32) -> Result<bool> {
    const GICD_ISPENDR: u64 = 0x0800_0200;
    let intid = 32 + spi;
    let word = q.readl(GICD_ISPENDR + 4 * u64::from(intid / 32))?;
    Ok(word & (1 << (intid % 32)) != 0)
}

/// A timeout that fired before saving comes back fired: its line still
/// high at the GIC, and TIMEOUT_ACK (no mistake) lowers it.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn migration_keeps_a_fired_timeout_and_its_line() -> Result<()> {
    let mut source = Machine::start("migration-fired", &["stopwatch,id=sw0"])?;
    let sw = source.device(0);
    let spi = source.layout.devices[0].interrupt.1;
    let mut qmp = source.qmp()?;
    let q = &mut source.qtest;
    sw.timeout(q, 1)?;
    q.clock_step(SECOND)?;
    assert!(gic_spi_pending(q, spi)?, "fired before saving");
    let saved_at = q.last_clock();
    let snapshot = source.scratch.join("fired.mig");
    qmp.migrate_to_file(&snapshot)?;
    drop(source);

    let incoming = [
        "-incoming".to_owned(),
        format!("file:{}", snapshot.display()),
    ];
    let mut target =
        Machine::start_with("migration-fired-target", &["stopwatch,id=sw0"], &incoming)?;
    target.qmp()?.wait_for_incoming()?;
    let q = &mut target.qtest;
    q.clock_set(saved_at)?;
    assert!(gic_spi_pending(q, spi)?, "the line came back high");
    sw.command(q, Command::TimeoutAck)?;
    assert!(!gic_spi_pending(q, spi)?, "TIMEOUT_ACK lowered it");
    assert!(
        target.guest_error_log().is_empty(),
        "the ACK was no mistake: {}",
        target.guest_error_log()
    );
    Ok(())
}
