// SPDX-License-Identifier: GPL-2.0-or-later
//! Where the device is: read from the device tree that QEMU generates, as
//! a guest would read it.

use std::{path::Path, process::Command};

use anyhow::{anyhow, bail, ensure, Context, Result};
use board_discovery::{BoardInfo, Trigger};

/// One stopwatch node of the device tree, with bus addresses translated to
/// guest-physical ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNode {
    /// Node name, e.g. `stopwatch@c000000`.
    pub name: String,
    /// `reg` entry 0: the pass-through memory (physical base, size).
    pub shared_memory: (u64, u64),
    /// `reg` entry 1: the registers (physical base, size).
    pub registers: (u64, u64),
    /// The `interrupts` cells: (type, number, flags); type 0 is a GIC SPI.
    pub interrupt: (u32, u32, u32),
}

/// Every stopwatch node of one machine's device tree.
#[derive(Clone, Debug)]
pub struct Layout {
    /// In device-tree order.
    pub devices: Vec<DeviceNode>,
}

impl Layout {
    /// Dumps the device tree of `qemu -M <machine>,dumpdtb=...` with `args`
    /// (the `-device` options) and reads it.
    pub fn dump(qemu: &Path, scratch: &Path, machine: &str, args: &[String]) -> Result<Layout> {
        let dtb = scratch.join("virt.dtb");
        let output = Command::new(qemu)
            .args(["-M", &format!("{machine},dumpdtb={}", dtb.display())])
            .args(["-display", "none", "-nodefaults"])
            .args(args)
            .output()
            .with_context(|| format!("starting {}", qemu.display()))?;
        ensure!(
            output.status.success(),
            "dumping the device tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Layout::parse(&std::fs::read(&dtb)?)
    }

    /// Reads the stopwatch nodes of a flattened device tree with the guest
    /// kernel's own, host-tested discovery (the `board-discovery` crate):
    /// one device-tree walker for the guest and the tests.
    pub fn parse(blob: &[u8]) -> Result<Layout> {
        let board =
            BoardInfo::from_dtb(blob).map_err(|error| anyhow!("bad device tree: {error:?}"))?;
        if let Some(broken) = board.broken_stopwatches.iter().next() {
            bail!(
                "stopwatch node {} unusable: {}",
                broken.node_name,
                broken.error
            );
        }
        let devices = board
            .stopwatches
            .iter()
            .map(|node| {
                let interrupt = node.timeout_interrupt;
                ensure!(interrupt.intid >= 32, "{}: not an SPI", node.node_name);
                Ok(DeviceNode {
                    name: node.node_name.to_owned(),
                    shared_memory: (node.shared.base, node.shared.size),
                    registers: (node.registers.base, node.registers.size),
                    interrupt: (
                        GIC_SPI,
                        interrupt.intid - 32,
                        trigger_flags(interrupt.trigger),
                    ),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Layout { devices })
    }
}

/// The GIC binding's interrupt type cell for a shared peripheral interrupt.
const GIC_SPI: u32 = 0;

/// The GIC binding's flags cell for a trigger type.
fn trigger_flags(trigger: Trigger) -> u32 {
    match trigger {
        Trigger::EdgeRising => 1,
        Trigger::EdgeFalling => 2,
        Trigger::LevelHigh => 4,
        Trigger::LevelLow => 8,
    }
}
