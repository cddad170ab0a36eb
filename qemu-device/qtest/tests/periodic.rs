// SPDX-License-Identifier: GPL-2.0-or-later

//! PERIODIC in the real device: its interrupt exactly at P, 2P, 3P and
//! never a nanosecond before; acknowledged period by period; ended by
//! PAUSE and RESET, replaced by TIMEOUT; many periods in one `clock_step`;
//! carried by migration in the `stopwatch/periodic` subsection, between
//! periods and with the line high; and a stream without the subsection
//! (what a device without PERIODIC writes) loads. Run by
//! `cargo xtask test`, which sets `STOPWATCH_QEMU`.

use std::path::Path;

use anyhow::{ensure, Result};
use stopwatch_abi::{shared, time_page, Command, Status, NANOS_PER_SEC};
use stopwatch_qtest::{IrqEvent, Machine, Qtest, Stopwatch};

const SECOND: u64 = NANOS_PER_SEC;
/// The period of these tests: 250 ms.
const PERIOD: u64 = 250_000_000;
const DEVICE: &str = "stopwatch,id=sw0";
const QOM_PATH: &str = "/machine/peripheral/sw0";

/// PERIODIC of `period_ns`; returns the command's virtual time.
fn periodic(sw: &Stopwatch, q: &mut Qtest, period_ns: u64) -> Result<u64> {
    sw.set_data_len(q, period_ns)?;
    sw.command(q, Command::Periodic)?;
    Ok(q.last_clock())
}

/// The period and the next deadline, as the guest reads them.
fn published(sw: &Stopwatch, q: &mut Qtest) -> Result<(u64, u64)> {
    let period = q.readq(sw.shared(shared::TIMEOUT_PERIOD_NS))?;
    Ok((period, sw.time_page(q)?.timeout_deadline_ns))
}

/// Steps to 1 ns before `deadline` (no edge yet), then onto it: `expected`.
fn step_onto(q: &mut Qtest, deadline: u64, expected: &[IrqEvent]) -> Result<()> {
    q.clock_step(deadline - 1 - q.last_clock())?;
    let early = q.take_irq_events();
    ensure!(early.is_empty(), "1 ns before {deadline}: {early:?}");
    q.clock_step(1)?;
    let events = q.take_irq_events();
    ensure!(
        events == expected,
        "at {deadline}: {events:?}, not {expected:?}"
    );
    Ok(())
}

// tutorial:periodic-qtest begin
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn periodic_interrupts_at_every_period_exactly() -> Result<()> {
    let mut machine = Machine::start_watching("periodic", "")?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    let armed_at = periodic(&sw, q, PERIOD)?;
    assert_eq!(published(&sw, q)?, (PERIOD, armed_at + PERIOD));
    for period in 1..=3 {
        let deadline = armed_at + period * PERIOD;
        step_onto(q, deadline, &[IrqEvent::Raise(0)])?;
        assert_eq!(published(&sw, q)?, (PERIOD, deadline + PERIOD));
        // Acknowledged half-way to the next period: the next still comes.
        q.clock_step(PERIOD / 2)?;
        sw.command(q, Command::TimeoutAck)?;
        assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    }
    assert_eq!(machine.guest_error_log(), "");
    Ok(())
}
// tutorial:periodic-qtest end

/// One `clock_step` over ten periods: QEMU stops at each deadline, so the
/// device fires (and rewrites its page) ten times, the line rising once
/// (a level interrupt: unacknowledged periods coalesce). The model's
/// simulated clock must do the same, or the differential test fails.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn periodic_one_clock_step_fires_every_period_on_the_way() -> Result<()> {
    let mut machine = Machine::start_watching("periodic-long-step", "")?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;
    let armed_at = periodic(&sw, q, PERIOD)?;
    let sequence = |q: &mut Qtest| q.readl(sw.shared(shared::TIME_PAGE + time_page::SEQUENCE));
    let before = sequence(q)?;
    q.clock_step(10 * PERIOD + PERIOD / 2)?;
    assert_eq!(sequence(q)? - before, 2 * 10, "ten page rewrites");
    assert_eq!(q.take_irq_events(), [IrqEvent::Raise(0)]);
    assert_eq!(published(&sw, q)?, (PERIOD, armed_at + 11 * PERIOD));
    Ok(())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn periodic_ended_by_pause_and_reset_replaced_by_timeout() -> Result<()> {
    let mut machine = Machine::start_watching("periodic-end", "")?;
    let sw = machine.device(0);
    let q = &mut machine.qtest;

    // PAUSE between periods: nothing more.
    periodic(&sw, q, PERIOD)?;
    q.clock_step(PERIOD / 2)?;
    sw.command(q, Command::Pause)?;
    assert_eq!(published(&sw, q)?, (0, 0));
    q.clock_step(4 * PERIOD)?;
    assert_eq!(q.take_irq_events(), [], "a period after PAUSE");

    // PAUSE with the line high: it waits for its ACK, then nothing more.
    sw.command(q, Command::Start)?;
    let armed_at = periodic(&sw, q, PERIOD)?;
    step_onto(q, armed_at + PERIOD, &[IrqEvent::Raise(0)])?;
    sw.command(q, Command::Pause)?;
    assert_eq!(q.take_irq_events(), [], "PAUSE lowered the line");
    sw.command(q, Command::TimeoutAck)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    q.clock_step(4 * PERIOD)?;
    assert_eq!(q.take_irq_events(), [], "a period after PAUSE and ACK");

    // TIMEOUT between periods replaces it: one interrupt, at its deadline.
    sw.command(q, Command::Start)?;
    periodic(&sw, q, PERIOD)?;
    q.clock_step(PERIOD / 2)?;
    sw.timeout(q, 1)?;
    let replaced_at = q.last_clock();
    assert_eq!(published(&sw, q)?, (0, replaced_at + SECOND));
    step_onto(q, replaced_at + SECOND, &[IrqEvent::Raise(0)])?;
    sw.command(q, Command::TimeoutAck)?;
    q.clock_step(4 * PERIOD)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)], "only the ACK");

    // RESET with the line high: lowered, and nothing more.
    let armed_at = periodic(&sw, q, PERIOD)?;
    step_onto(q, armed_at + PERIOD, &[IrqEvent::Raise(0)])?;
    sw.command(q, Command::Reset)?;
    assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
    q.clock_step(4 * PERIOD)?;
    assert_eq!(q.take_irq_events(), []);
    assert_eq!(sw.status(q)?, Status::Reset);
    assert_eq!(machine.guest_error_log(), "");
    Ok(())
}

/// Whether the stream has the subsection `name`: its name after a length
/// byte (QEMU's `vmstate_subsection_save`).
fn has_subsection(stream: &Path, name: &str) -> Result<bool> {
    let mut header = vec![name.len() as u8];
    header.extend_from_slice(name.as_bytes());
    let bytes = std::fs::read(stream)?;
    Ok(bytes.windows(header.len()).any(|window| window == header))
}

// tutorial:periodic-qtest-migrate begin
/// Saves `source` to a file and loads it into a new QEMU at the same
/// virtual time. The target starts with `-incoming defer` and watches its
/// line before the stream loads, so a line restored high shows as a
/// `Raise` (intercepting after the load would miss it).
fn migrate(source: Machine, test: &str) -> Result<(Machine, bool)> {
    let saved_at = source.qtest.last_clock();
    let stream = source.scratch.join("periodic.mig");
    source.qmp()?.migrate_to_file(&stream)?;
    drop(source);
    let has_period = has_subsection(&stream, "stopwatch/periodic")?;
    let defer = ["-incoming".to_owned(), "defer".to_owned()];
    let mut target = Machine::start_with(test, &[DEVICE], &defer)?;
    target.qtest.intercept_irqs(QOM_PATH)?;
    target.qmp()?.migrate_incoming_from_file(&stream)?;
    target.qtest.clock_set(saved_at)?;
    Ok((target, has_period))
}
// tutorial:periodic-qtest-migrate end

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn periodic_migration_between_periods_and_with_the_line_high() -> Result<()> {
    for raised in [false, true] {
        let name = if raised { "raised" } else { "between" };
        let mut source = Machine::start_watching(&format!("periodic-mig-{name}"), "")?;
        let sw = source.device(0);
        let q = &mut source.qtest;
        let armed_at = periodic(&sw, q, PERIOD)?;
        q.clock_step(if raised { PERIOD } else { PERIOD / 2 })?;
        let next = armed_at + if raised { 2 * PERIOD } else { PERIOD };
        let (mut target, has_period) = migrate(source, &format!("periodic-mig-{name}-target"))?;
        ensure!(has_period, "a periodic timeout, but no stopwatch/periodic");
        let q = &mut target.qtest;
        let restored = q.take_irq_events();
        let expected: &[IrqEvent] = if raised { &[IrqEvent::Raise(0)] } else { &[] };
        assert_eq!(restored, expected, "{name}: the line as restored");
        assert_eq!(published(&sw, q)?, (PERIOD, next), "{name}");
        if raised {
            sw.command(q, Command::TimeoutAck)?;
            assert_eq!(q.take_irq_events(), [IrqEvent::Lower(0)]);
        }
        step_onto(q, next, &[IrqEvent::Raise(0)])?;
        sw.command(q, Command::TimeoutAck)?;
        q.take_irq_events();
        step_onto(q, next + PERIOD, &[IrqEvent::Raise(0)])?;
        assert_eq!(target.guest_error_log(), "", "{name}");
    }
    Ok(())
}

/// A one-shot timeout: no `stopwatch/periodic` in the stream, which is then
/// what a device without PERIODIC writes; it loads as a one-shot (period
/// 0, fires once). The period in the migrated RAM is scribbled on first:
/// the loaded device publishes its own.
#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn periodic_a_stream_without_a_period_loads() -> Result<()> {
    let mut source = Machine::start_watching("periodic-old-stream", "")?;
    let sw = source.device(0);
    let q = &mut source.qtest;
    sw.timeout(q, 1)?;
    let armed_at = q.last_clock();
    q.writeq(sw.shared(shared::TIMEOUT_PERIOD_NS), 12_345)?;
    let (mut target, has_period) = migrate(source, "periodic-old-stream-target")?;
    ensure!(
        !has_period,
        "no periodic timeout, yet the stream has stopwatch/periodic: an older QEMU could not load it"
    );
    let q = &mut target.qtest;
    assert_eq!(published(&sw, q)?, (0, armed_at + SECOND));
    step_onto(q, armed_at + SECOND, &[IrqEvent::Raise(0)])?;
    q.clock_step(4 * SECOND)?;
    assert_eq!(q.take_irq_events(), [], "a one-shot fires once");
    Ok(())
}
