// SPDX-License-Identifier: GPL-2.0-or-later

//! One machine under test: the patched QEMU under qtest, with a QMP socket
//! and a guest-error log, and the device tree it generated.

use std::path::PathBuf;

use anyhow::Result;

use crate::{qemu_binary, scratch_dir, Layout, Qmp, Qtest, Stopwatch};

/// `-M virt` with stopwatches, driven over qtest.
pub struct Machine {
    /// The qtest connection.
    pub qtest: Qtest,
    /// Where the device tree put the stopwatches.
    pub layout: Layout,
    /// The test's scratch directory (QMP socket, logs, snapshots).
    pub scratch: PathBuf,
}

impl Machine {
    /// `-M virt` with these `-device` arguments (e.g. `stopwatch,id=sw0`).
    pub fn start(test: &str, devices: &[&str]) -> Result<Machine> {
        Self::start_with(test, devices, &[])
    }

    /// [`Machine::start`] with more QEMU arguments (e.g. `-incoming`).
    pub fn start_with(test: &str, devices: &[&str], extra: &[String]) -> Result<Machine> {
        let qemu = qemu_binary()?;
        let scratch = scratch_dir(test)?;
        let device_args: Vec<String> = devices
            .iter()
            .flat_map(|device| ["-device".to_owned(), (*device).to_owned()])
            .collect();
        let layout = Layout::dump(&qemu, &scratch, "virt", &device_args)?;
        let mut args = vec!["-M".to_owned(), "virt".to_owned()];
        args.extend(device_args);
        args.extend([
            "-d".to_owned(),
            "guest_errors".to_owned(),
            "-D".to_owned(),
            scratch.join("guest-errors.log").display().to_string(),
            "-qmp".to_owned(),
            Qmp::qemu_argument(&scratch.join("qmp.sock")),
        ]);
        args.extend(extra.iter().cloned());
        let qtest = Qtest::start(&qemu, &args)?;
        Ok(Machine {
            qtest,
            layout,
            scratch,
        })
    }

    /// One stopwatch `sw0` with `options` (e.g. `,start_at_boot=false`),
    /// its interrupt line reported by qtest.
    pub fn start_watching(test: &str, options: &str) -> Result<Machine> {
        let mut machine = Self::start(test, &[&format!("stopwatch,id=sw0{options}")])?;
        machine.qtest.intercept_irqs("/machine/peripheral/sw0")?;
        Ok(machine)
    }

    /// The stopwatch of the device tree's `index`th node.
    pub fn device(&self, index: usize) -> Stopwatch {
        Stopwatch::at(&self.layout.devices[index])
    }

    /// A new QMP connection.
    pub fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.scratch.join("qmp.sock"))
    }

    /// What the device logged with `-d guest_errors` so far.
    pub fn guest_error_log(&self) -> String {
        std::fs::read_to_string(self.scratch.join("guest-errors.log")).unwrap_or_default()
    }
}
