// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask qemu-tests`: QEMU's own tests on the patched tree, which
//! the default test run leaves out (building their binaries takes
//! minutes): `meson test --suite qtest-aarch64` in the build directory,
//! then the reproducer of the plugin fix (patch "accel/tcg: find TLB_MMIO
//! in the slow flags"), with QEMU's own mem test plugin.

use anyhow::{bail, ensure, Context, Result};
use std::process::Command;
use std::time::Instant;

use crate::build::pipeline::Session;
use crate::util::{self, format_duration, run_captured};

/// Six instructions: store 'A' to the virt board's PL011 (one I/O
/// access), then PSCI SYSTEM_OFF through HVC, which ends QEMU. As in the
/// patch's message:
///
/// ```text
/// movz x1, #0x900, lsl #16; mov w2, #'A'; str w2, [x1];
/// mov w0, #0x84000008 (in two halves); hvc #0
/// ```
const UART_WRITE_AND_POWER_OFF: [u32; 6] = [
    0xd2a1_2001,
    0x5280_0822,
    0xb900_0022,
    0x5280_0100,
    0x72b0_8000,
    0xd400_0002,
];

pub fn run(session: &Session) -> Result<()> {
    session.build_all(false, &mut Vec::new())?;
    let dirs = session.current_checkout_dirs()?;
    // meson test builds the test binaries in the shared tree: hold the
    // build lock, as a build does.
    let _lock = util::lock_file(&dirs.lock_path(), "running QEMU's tests", |message| {
        eprintln!("{message}")
    })?;
    let meson = dirs.build.join("pyvenv/bin/meson");
    let started = Instant::now();
    eprintln!(
        "==> meson test --suite qtest-aarch64   (in {})",
        dirs.build.display()
    );
    let status = Command::new(&meson)
        .args(["test", "--suite", "qtest-aarch64", "--print-errorlogs"])
        .current_dir(&dirs.build)
        .status()
        .with_context(|| format!("could not run {}", meson.display()))?;
    eprintln!(
        "    ({} in all, building the test binaries included)",
        format_duration(started.elapsed())
    );
    if !status.success() {
        bail!(
            "QEMU's qtests failed ({status}): see {}",
            dirs.build.join("meson-logs/testlog.txt").display()
        );
    }

    eprintln!("==> the plugin fix's reproducer: tests/tcg/plugins/libmem.so counts I/O accesses");
    run_captured(
        Command::new("ninja")
            .arg("tests/tcg/plugins/libmem.so")
            .current_dir(&dirs.build),
    )?;
    let program = dirs.build.join("uart-write-and-power-off.bin");
    let bytes: Vec<u8> = UART_WRITE_AND_POWER_OFF
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .collect();
    std::fs::write(&program, bytes)?;
    let output = run_captured(
        Command::new(dirs.build.join("qemu-system-aarch64"))
            .args([
                "-M", "virt", "-cpu", "max", "-display", "none", "-serial", "stdio",
            ])
            // -kernel runs a raw image after QEMU's boot stub, which makes
            // no I/O access.
            .args(["-nic", "none", "-d", "plugin", "-kernel"])
            .arg(&program)
            .arg("-plugin")
            .arg(format!(
                "{},callback=on,haddr=on",
                dirs.build.join("tests/tcg/plugins/libmem.so").display()
            )),
    )?;
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    eprintln!("{}", said.trim());
    ensure!(
        said.starts_with('A'),
        "the program did not write to the PL011:\n{said}"
    );
    ensure!(
        said.contains("io accesses: 1\n"),
        "qemu_plugin_hwaddr_is_io() did not see the one PL011 access:\n{said}"
    );
    Ok(())
}
