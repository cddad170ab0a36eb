// SPDX-License-Identifier: GPL-2.0-or-later
//! The device counts QEMU's virtual clock, which stops while the VM is
//! stopped. Checked on a real (TCG) machine, with no guest code: a system
//! reset makes the device (started at boot) publish the virtual time of
//! the reset in its time page, which the monitor reads from guest RAM.

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use stopwatch_abi::{shared, time_page};
use stopwatch_qtest::{qemu_binary, scratch_dir, Layout, Qmp};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a u64 of guest-physical memory through the human monitor.
fn read_u64(qmp: &mut Qmp, address: u64) -> Result<u64> {
    let answer = qmp.execute(
        "human-monitor-command",
        json!({ "command-line": format!("xp /1gx {address:#x}") }),
    )?;
    let text = answer.as_str().unwrap_or_default();
    let value = text
        .split_whitespace()
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    value.ok_or_else(|| anyhow!("unexpected xp answer {text:?}"))
}

/// Resets the machine and returns the virtual time at which the device
/// restarted, once its time page shows the new run.
fn reset_and_read_start(qmp: &mut Qmp, page: u64) -> Result<u64> {
    let before = read_u64(qmp, page + time_page::SEQUENCE)? & 0xffff_ffff;
    qmp.execute("system_reset", json!({}))?;
    let started = Instant::now();
    while read_u64(qmp, page + time_page::SEQUENCE)? & 0xffff_ffff == before {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the device did not republish its time page after a reset");
        }
        thread::sleep(Duration::from_millis(5));
    }
    read_u64(qmp, page + time_page::RUN_START_NS)
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn virtual_clock_stops_while_the_vm_is_stopped() -> Result<()> {
    let qemu = qemu_binary()?;
    let scratch = scratch_dir("virtual-clock")?;
    let device = ["-device".to_owned(), "stopwatch".to_owned()];
    let layout = Layout::dump(&qemu, &scratch, "virt", &device)?;
    let page = layout.devices[0].shared_memory.0 + shared::TIME_PAGE;
    let socket = scratch.join("qmp.sock");
    let _qemu = KillOnDrop(
        Command::new(&qemu)
            .args([
                "-M",
                "virt",
                "-accel",
                "tcg",
                "-display",
                "none",
                "-nodefaults",
            ])
            .args(&device)
            .args(["-qmp", &Qmp::qemu_argument(&socket)])
            .stdin(Stdio::null())
            .spawn()?,
    );
    let mut qmp = Qmp::connect(&socket)?;

    let first = reset_and_read_start(&mut qmp, page)?;
    let host_start = Instant::now();
    thread::sleep(Duration::from_millis(300));
    qmp.execute("stop", json!({}))?;
    let stopped_at = Instant::now();
    thread::sleep(Duration::from_millis(1_000));
    qmp.execute("cont", json!({}))?;
    let stopped_for = stopped_at.elapsed();
    thread::sleep(Duration::from_millis(300));
    let second = reset_and_read_start(&mut qmp, page)?;
    let host_elapsed = host_start.elapsed();

    let virtual_elapsed = Duration::from_nanos(second - first);
    let running = host_elapsed - stopped_for;
    // Under TCG the virtual clock follows the host's while the VM runs.
    let error = virtual_elapsed.abs_diff(running);
    assert!(
        error < Duration::from_millis(150),
        "virtual {virtual_elapsed:?} vs running host time {running:?} \
         (host {host_elapsed:?}, stopped {stopped_for:?})"
    );
    Ok(())
}
