// SPDX-License-Identifier: GPL-2.0-or-later

//! A migration stream with a state the device cannot have is refused, and
//! QEMU says why through `error_report` (on stderr, beside its own "error
//! while loading state" line). Run by `cargo xtask test`, which sets
//! `STOPWATCH_QEMU`.

use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use stopwatch_qtest::{qemu_binary, Machine};

/// The device's section header in a stream: the name after its length
/// byte, then instance 0 and version 1 (QEMU's `save_section_header`);
/// the first field, the status, follows as a big-endian u64.
fn status_offset(stream: &[u8]) -> Option<usize> {
    let mut header = vec![9];
    header.extend_from_slice(b"stopwatch");
    header.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    stream
        .windows(header.len())
        .position(|window| window == header)
        .map(|start| start + header.len())
}

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn a_stream_with_an_impossible_status_is_refused_with_the_reason() -> Result<()> {
    let source = Machine::start("rejected-stream", &["stopwatch,id=sw0"])?;
    let stream = source.scratch.join("good.mig");
    source.qmp()?.migrate_to_file(&stream)?;
    let scratch = source.scratch.clone();
    drop(source);

    let mut bytes = std::fs::read(&stream)?;
    let at = status_offset(&bytes).context("no stopwatch section in the stream")?;
    ensure!(
        bytes[at..at + 8] == [0; 8],
        "the saved status is not RUNNING (0): {:?}",
        &bytes[at..at + 8]
    );
    bytes[at..at + 8].copy_from_slice(&9u64.to_be_bytes());
    let bad = scratch.join("bad.mig");
    std::fs::write(&bad, bytes)?;

    let output = Command::new(qemu_binary()?)
        // The source's machine: qtest's accelerator, no default devices.
        .args(["-accel", "qtest", "-M", "virt", "-display", "none"])
        .args(["-nodefaults", "-serial", "none", "-monitor", "none"])
        .args(["-device", "stopwatch,id=sw0", "-incoming"])
        .arg(format!("file:{}", bad.display()))
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "QEMU ran the bad stream: {stderr}"
    );
    ensure!(
        stderr.contains(": stopwatch sw0: migration stream rejected: invalid status code 9\n"),
        "no reason from the device on stderr:\n{stderr}"
    );
    ensure!(
        stderr.contains("error while loading state for instance 0x0 of device 'stopwatch'"),
        "QEMU did not refuse the load:\n{stderr}"
    );
    Ok(())
}
