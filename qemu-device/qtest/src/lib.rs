// SPDX-License-Identifier: GPL-2.0-or-later
//! Driving the real stopwatch device inside the patched QEMU from the host.
//!
//! [`Qtest`] speaks QEMU's qtest protocol (`-accel qtest -qtest stdio`):
//! the test reads and writes guest-physical memory, steps the virtual clock
//! by exact nanoseconds and watches interrupt lines, with no guest code at
//! all. [`Qmp`] adds the monitor, for migration and system reset. The
//! device's addresses come from the device tree QEMU generates, read by
//! [`Layout`], exactly as a guest finds them.
//!
//! The tests in `tests/` need the patched QEMU: `cargo xtask test` runs
//! them with `STOPWATCH_QEMU` set.

pub mod differential;
mod layout;
mod machine;
mod qmp;
mod qtest;
mod stopwatch;

pub use layout::{DeviceNode, Layout};
pub use machine::Machine;
pub use qmp::Qmp;
pub use qtest::{parse_number, IrqEvent, Qtest};
pub use stopwatch::Stopwatch;

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The QEMU binary under test, from `STOPWATCH_QEMU`.
pub fn qemu_binary() -> Result<PathBuf> {
    match std::env::var_os("STOPWATCH_QEMU") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => bail!(
            "STOPWATCH_QEMU is not set: these tests need the patched QEMU; \
             run them with `cargo xtask test`"
        ),
    }
}

/// A fresh scratch directory for one test's files (logs, DTBs, snapshots).
pub fn scratch_dir(test: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir()
        .join(format!("stopwatch-qtest-{}", std::process::id()))
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
