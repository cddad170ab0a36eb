// SPDX-License-Identifier: GPL-2.0-or-later

//! The device's trace events (`qemu-device/trace-events`), as
//! `-trace 'stopwatch_*'` prints them with the build's `log` backend: one
//! line per command written, and the lines of a timeout from arming to
//! acknowledgement. Run by `cargo xtask test`, which sets `STOPWATCH_QEMU`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use stopwatch_abi::{regs, Command, NANOS_PER_SEC};
use stopwatch_qtest::{qemu_binary, scratch_dir, Layout, Qtest, Stopwatch};

/// The `stopwatch_*` lines of the trace log, once `last` has arrived (the
/// log is line-buffered, but QEMU writes it from its own thread).
fn trace_lines(log: &std::path::Path, last: &str) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(last) || Instant::now() > deadline {
            return Ok(text
                .lines()
                .filter_map(|line| line.find("stopwatch_").map(|at| line[at..].to_string()))
                .collect());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn commands_and_a_timeout_are_traced() -> Result<()> {
    let qemu = qemu_binary()?;
    let scratch = scratch_dir("trace")?;
    let log = scratch.join("trace.log");
    let devices = [
        "-device".to_string(),
        "stopwatch,id=sw0,start_at_boot=false".to_string(),
    ];
    let layout = Layout::dump(&qemu, &scratch, "virt", &devices)?;
    let mut args = vec!["-M".to_string(), "virt".to_string()];
    args.extend(devices);
    args.extend(["-trace", "stopwatch_*", "-D"].map(String::from));
    args.push(log.display().to_string());
    let mut q = Qtest::start(&qemu, &args)?;
    let sw = Stopwatch::at(&layout.devices[0]);

    // Every command, one refused (START while running) and a bad code.
    let script = [
        Command::Start.code(),
        Command::Start.code(),
        Command::Pause.code(),
        Command::Update.code(),
        Command::Lap.code(),
        99,
    ];
    for code in script {
        q.writeq(sw.register(regs::COMMAND), code)?;
    }
    let status = q.readq(sw.register(regs::STATUS))?;
    // A timeout of one second, fired and acknowledged.
    let armed_at = q.clock_step(1_000)?;
    sw.timeout(&mut q, 1)?;
    q.clock_step(NANOS_PER_SEC)?;
    sw.command(&mut q, Command::TimeoutAck)?;
    sw.command(&mut q, Command::Reset)?;
    // A periodic timeout of 1 ms over two periods, ended by RESET.
    let periodic_at = q.last_clock();
    sw.set_data_len(&mut q, 1_000_000)?;
    sw.command(&mut q, Command::Periodic)?;
    q.clock_step(2_000_000)?;
    sw.command(&mut q, Command::Reset)?;

    let last = "stopwatch_command sw0: RESET status RESET -> RESET";
    let lines = trace_lines(&log, last)?;
    let commands: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("stopwatch_command "))
        .map(String::as_str)
        .collect();
    ensure!(
        commands
            == [
                "stopwatch_command sw0: START status RESET -> RUNNING",
                "stopwatch_command sw0: START status RUNNING -> RUNNING",
                "stopwatch_command sw0: PAUSE status RUNNING -> PAUSED",
                "stopwatch_command sw0: UPDATE status PAUSED -> PAUSED",
                "stopwatch_command sw0: LAP status PAUSED -> PAUSED",
                "stopwatch_command sw0: unknown status PAUSED -> PAUSED",
                "stopwatch_command sw0: TIMEOUT status PAUSED -> PAUSED",
                "stopwatch_command sw0: TIMEOUT_ACK status PAUSED -> PAUSED",
                "stopwatch_command sw0: RESET status PAUSED -> RESET",
                "stopwatch_command sw0: PERIODIC status RESET -> RESET",
                last,
            ],
        "one trace line per command written, in order; got:\n{}",
        lines.join("\n")
    );

    let deadline_ns = armed_at + NANOS_PER_SEC;
    // The timeout's lines, in this order, from the TIMEOUT write to the ACK.
    // A command's interrupt and timer changes are applied once the device
    // state is released (as PL011 does), so they follow its command line.
    let timeout_lines = [
        "stopwatch_write sw0: write offset 0x00 size 8 value 0x4".to_string(),
        "stopwatch_command sw0: TIMEOUT status PAUSED -> PAUSED".to_string(),
        format!("stopwatch_timeout_armed sw0: timeout armed deadline_ns {deadline_ns}"),
        format!("stopwatch_timeout_fired sw0: timeout fired deadline_ns {deadline_ns}"),
        "stopwatch_irq sw0: irq level 1".to_string(),
        "stopwatch_write sw0: write offset 0x00 size 8 value 0x5".to_string(),
        "stopwatch_command sw0: TIMEOUT_ACK status PAUSED -> PAUSED".to_string(),
        "stopwatch_irq sw0: irq level 0".to_string(),
    ];
    // The periodic timeout's: armed (its event during the command, the
    // timer after it), then each period fires and re-arms the timer for
    // the next; the line rises once (not acknowledged).
    let first_ns = periodic_at + 1_000_000;
    let (second_ns, third_ns) = (first_ns + 1_000_000, first_ns + 2_000_000);
    let periodic_lines = [
        format!("stopwatch_periodic sw0: periodic timeout armed period_ns 1000000 first_deadline_ns {first_ns}"),
        "stopwatch_command sw0: PERIODIC status RESET -> RESET".to_string(),
        format!("stopwatch_timeout_armed sw0: timeout armed deadline_ns {first_ns}"),
        format!("stopwatch_timeout_fired sw0: timeout fired deadline_ns {first_ns}"),
        format!("stopwatch_timeout_armed sw0: timeout armed deadline_ns {second_ns}"),
        "stopwatch_irq sw0: irq level 1".to_string(),
        format!("stopwatch_timeout_fired sw0: timeout fired deadline_ns {second_ns}"),
        format!("stopwatch_timeout_armed sw0: timeout armed deadline_ns {third_ns}"),
        last.to_string(),
        "stopwatch_timeout_cancelled sw0: timeout cancelled".to_string(),
        "stopwatch_irq sw0: irq level 0".to_string(),
    ];
    let mut from = 0;
    for expected in timeout_lines.iter().chain(&periodic_lines) {
        let at = lines[from..]
            .iter()
            .position(|l| l.starts_with(expected.as_str()))
            .map(|i| from + i);
        ensure!(
            at.is_some(),
            "no `{expected}` after line {from}; the trace:\n{}",
            lines.join("\n")
        );
        from = at.unwrap_or(from) + 1;
    }

    // Register reads, the lap, guest errors and time page writes.
    let expected_read = format!("stopwatch_read sw0: read offset 0x08 size 8 value 0x{status:x}");
    for expected in [
        expected_read.as_str(),
        "stopwatch_lap sw0: lap slot 0 elapsed_ns 0",
        "stopwatch_guest_error sw0: guest error: ",
        "stopwatch_time_page sw0: time page sequence ",
    ] {
        ensure!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no `{expected}` line; the trace:\n{}",
            lines.join("\n")
        );
    }
    let page = lines
        .iter()
        .rfind(|l| l.starts_with("stopwatch_time_page "))
        .expect("checked above");
    ensure!(
        page.contains(" status RESET accumulated_ns 0 run_start_ns 0 deadline_ns 0"),
        "the last page write is not the RESET: {page}"
    );
    Ok(())
}
