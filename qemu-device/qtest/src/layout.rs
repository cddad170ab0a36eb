//! Where the device is: read from the device tree that QEMU generates, as
//! a guest would read it.

use std::{path::Path, process::Command};

use anyhow::{anyhow, bail, ensure, Context, Result};
use fdt::{node::FdtNode, Fdt};
use stopwatch_abi::COMPATIBLE;

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

    /// Reads the stopwatch nodes of a flattened device tree.
    pub fn parse(blob: &[u8]) -> Result<Layout> {
        let tree = Fdt::new(blob).map_err(|error| anyhow!("bad device tree: {error:?}"))?;
        let mut devices = Vec::new();
        for node in tree.all_nodes() {
            let is_stopwatch = node
                .compatible()
                .is_some_and(|compatible| compatible.all().any(|c| c == COMPATIBLE));
            if is_stopwatch {
                devices.push(device_node(&tree, &node)?);
            }
        }
        Ok(Layout { devices })
    }
}

fn device_node(tree: &Fdt, node: &FdtNode) -> Result<DeviceNode> {
    let cells = |name: &str| -> Result<Vec<u32>> {
        let property = node
            .property(name)
            .ok_or_else(|| anyhow!("{} has no {name}", node.name))?;
        Ok(property
            .value
            .chunks_exact(4)
            .map(|cell| u32::from_be_bytes(cell.try_into().unwrap()))
            .collect())
    };
    // Under the platform bus: one address cell, one size cell.
    let reg = cells("reg")?;
    ensure!(
        reg.len() == 4,
        "{}: reg has {} cells, not 4",
        node.name,
        reg.len()
    );
    let interrupts = cells("interrupts")?;
    ensure!(
        interrupts.len() == 3,
        "{}: interrupts has {} cells",
        node.name,
        interrupts.len()
    );
    let bus_base = platform_bus_base(tree)?;
    Ok(DeviceNode {
        name: node.name.to_owned(),
        shared_memory: (bus_base + u64::from(reg[0]), u64::from(reg[1])),
        registers: (bus_base + u64::from(reg[2]), u64::from(reg[3])),
        interrupt: (interrupts[0], interrupts[1], interrupts[2]),
    })
}

/// The physical address of the platform bus's address 0, from its
/// `ranges = <child-address parent-address(2 cells) size>`.
fn platform_bus_base(tree: &Fdt) -> Result<u64> {
    let bus = tree
        .all_nodes()
        .find(|node| node.name.starts_with("platform-bus@"))
        .ok_or_else(|| anyhow!("no platform-bus node"))?;
    let ranges = bus
        .property("ranges")
        .ok_or_else(|| anyhow!("platform-bus has no ranges"))?
        .value;
    let cell =
        |index: usize| u32::from_be_bytes(ranges[index * 4..index * 4 + 4].try_into().unwrap());
    if ranges.len() != 16 || cell(0) != 0 {
        bail!("unexpected platform-bus ranges {ranges:02x?}");
    }
    Ok((u64::from(cell(1)) << 32) | u64::from(cell(2)))
}
