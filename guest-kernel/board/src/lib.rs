// SPDX-License-Identifier: GPL-2.0-or-later
//! What the guest kernel learns from the device tree (DTB) that QEMU hands
//! to it: memory, console UART, interrupt controller, PSCI conduit, boot
//! arguments and every stopwatch device.
//!
//! Everything here is plain data decoded from a byte slice, so it is tested
//! on the host against DTBs dumped from QEMU (`tests/fixtures/`). The kernel
//! calls [`BoardInfo::from_dtb`] once at boot, before the MMU is on.
//!
//! Addresses are translated to CPU physical addresses through every parent
//! bus's `ranges` (a stopwatch sits under QEMU's `platform-bus@c000000`,
//! whose children have bus-relative addresses). Interrupts are decoded from
//! the raw `interrupts` property by the interrupt parent's `#interrupt-cells`
//! (the `fdt` crate's own `interrupts()` does not handle the GIC's three-cell
//! specifiers).
//!
//! Nothing in the blob is trusted: its structure is checked before the
//! `fdt` crate reads it (`structure`), and every value the kernel uses
//! (cell counts, regions, interrupts) is checked where it is decoded
//! (`walk`, `check`). A fault makes [`BoardInfo::from_dtb`] return a
//! [`DtbError`] naming the node and property, or, in a stopwatch node,
//! sets that one stopwatch apart as a [`BrokenStopwatch`]. Never a panic
//! (`tests/mutations.rs` corrupts real trees to show it).

#![no_std]
#![forbid(unsafe_code)]

mod address;
mod check;
mod decode;
mod fixed_list;
#[cfg(feature = "mutations")]
pub mod mutations;
mod properties;
mod structure;
mod walk;

pub use decode::decode_gic_interrupt;
pub use fdt::FdtError;
pub use fixed_list::FixedList;
pub use structure::FDT_MAGIC;
pub use structure::MAX_NESTING;

/// How many `memory` regions [`BoardInfo`] keeps; more are only counted
/// ([`FixedList::dropped`]), and the kernel's banner says so.
pub const MAX_MEMORY_REGIONS: usize = 4;
/// How many stopwatch nodes [`BoardInfo`] keeps (usable ones, and broken
/// ones apart); more are only counted, as for memory regions. As many as
/// `virt`'s platform bus can hold: each stopwatch takes one of its 64
/// interrupts (`PLATFORM_BUS_NUM_IRQS` in QEMU's `hw/arm/virt.c`).
pub const MAX_STOPWATCHES: usize = 64;
/// How many CPUs [`BoardInfo::cpus`] keeps (more are only counted): the
/// most a GICv2 can serve, and as many as the kernel has stacks for.
pub const MAX_CPUS: usize = 8;
/// Every region must end below this address: the kernel's identity map
/// has 39-bit (512 GiB) virtual addresses (`arch::mmu`), and cannot map
/// anything above.
pub const ADDRESS_LIMIT: u64 = 1 << 39;
/// The kernel maps memory in 4 KiB pages: a region must start on one, or
/// its page would be mapped with the attributes of whatever shares it.
pub const PAGE_SIZE: u64 = 4096;

/// A range of physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// Builds a region from its base and size.
    pub const fn new(base: u64, size: u64) -> Self {
        Region { base, size }
    }

    /// One past the last address (saturating at the top of the space).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether the two regions share at least one address.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// Trigger type of an interrupt, from the GIC binding's flags cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge, rising (flags 1).
    EdgeRising,
    /// Edge, falling (flags 2).
    EdgeFalling,
    /// Level, active high (flags 4).
    LevelHigh,
    /// Level, active low (flags 8).
    LevelLow,
}

/// A GIC interrupt: its interrupt ID (INTID) and trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupt {
    /// GIC INTID: SPI n is 32 + n, PPI n is 16 + n.
    pub intid: u32,
    /// Trigger type.
    pub trigger: Trigger,
}

/// The interrupt controller and its register frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    /// GICv2 (`arm,cortex-a15-gic` and friends).
    V2 {
        /// Distributor (GICD).
        distributor: Region,
        /// CPU interface (GICC).
        cpu_interface: Region,
    },
    /// GICv3 (`arm,gic-v3`).
    V3 {
        /// Distributor (GICD).
        distributor: Region,
        /// First redistributor region (GICR), one frame pair per CPU.
        redistributors: Region,
    },
}

impl Gic {
    /// 2 or 3.
    pub const fn version(&self) -> u8 {
        match self {
            Gic::V2 { .. } => 2,
            Gic::V3 { .. } => 3,
        }
    }

    /// The two register regions, in `reg` order.
    pub const fn regions(&self) -> [Region; 2] {
        match *self {
            Gic::V2 {
                distributor,
                cpu_interface,
            } => [distributor, cpu_interface],
            Gic::V3 {
                distributor,
                redistributors,
            } => [distributor, redistributors],
        }
    }
}

/// The console UART named by `/chosen/stdout-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart<'a> {
    /// Node name, e.g. `pl011@9000000`.
    pub node_name: &'a str,
    /// Whether the node is compatible with `arm,pl011`.
    pub is_pl011: bool,
    /// Register region.
    pub region: Region,
    /// Its interrupt, if the node has one the kernel can decode.
    pub interrupt: Option<Interrupt>,
}

/// One `compatible = "stopwatch"` node, fully decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopwatch<'a> {
    /// Node name, e.g. `stopwatch@0`.
    pub node_name: &'a str,
    /// `reg` entry 0: the pass-through (shared RAM) region.
    pub shared: Region,
    /// `reg` entry 1: the trapping register region.
    pub registers: Region,
    /// `interrupts` entry 0: the timeout interrupt.
    pub timeout_interrupt: Interrupt,
}

/// A property value the kernel cannot use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertyError {
    /// The property, e.g. `reg`.
    pub property: &'static str,
    /// What is wrong with its value.
    pub problem: &'static str,
}

impl PropertyError {
    /// `property`'s value has `problem`.
    pub const fn new(property: &'static str, problem: &'static str) -> Self {
        PropertyError { property, problem }
    }
}

impl core::fmt::Display for PropertyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.property, self.problem)
    }
}

/// Why a stopwatch node could not be used: which property, and why.
pub type StopwatchError = PropertyError;

/// A stopwatch node that was found but could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenStopwatch<'a> {
    /// Node name.
    pub node_name: &'a str,
    /// What is wrong with it.
    pub error: StopwatchError,
}

/// Why a device tree was refused (the kernel then exits with status 13).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DtbError<'a> {
    /// The header: not a device tree, or longer than the memory it is in.
    Header(FdtError),
    /// The blob breaks the format at this byte offset.
    Structure {
        /// Byte offset in the blob.
        offset: usize,
        /// What is wrong there.
        problem: &'static str,
    },
    /// A property of a node the kernel uses has a value it cannot use.
    Property {
        /// Node name.
        node: &'a str,
        /// The property and its problem.
        error: PropertyError,
    },
}

impl core::fmt::Display for DtbError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DtbError::Header(error) => write!(f, "header: {error}"),
            DtbError::Structure { offset, problem } => write!(f, "at byte {offset:#x}: {problem}"),
            DtbError::Property { node, error } => write!(f, "node {node}: {error}"),
        }
    }
}

/// How PSCI calls reach the firmware (or hypervisor): `/psci/method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `hvc`: what QEMU `virt` uses when it emulates PSCI itself.
    Hvc,
    /// `smc`: EL3 firmware.
    Smc,
}

/// Everything the kernel needs from the device tree.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardInfo<'a> {
    /// RAM regions (`device_type = "memory"`), in tree order.
    pub memory: FixedList<Region, MAX_MEMORY_REGIONS>,
    /// The console UART, if `/chosen/stdout-path` names a node with `reg`.
    pub uart: Option<Uart<'a>>,
    /// The interrupt controller, if it is a GICv2 or GICv3.
    pub gic: Option<Gic>,
    /// Decoded stopwatch nodes, in tree order.
    pub stopwatches: FixedList<Stopwatch<'a>, MAX_STOPWATCHES>,
    /// Stopwatch nodes that could not be decoded.
    pub broken_stopwatches: FixedList<BrokenStopwatch<'a>, MAX_STOPWATCHES>,
    /// `/chosen/bootargs` (QEMU's `-append`), empty if absent.
    pub bootargs: &'a str,
    /// `/psci/method`, if there is a PSCI node with a known method.
    pub psci: Option<PsciConduit>,
    /// Number of `cpu` nodes under `/cpus`.
    pub cpu_count: usize,
    /// Each `cpu` node's `reg`, in tree order: its MPIDR affinity fields
    /// (Aff3 in bits 32..40, Aff2..Aff0 in bits 0..24), which PSCI CPU_ON
    /// takes and MPIDR_EL1 reads back on that CPU.
    pub cpus: FixedList<u64, MAX_CPUS>,
    /// The EL1 virtual timer's interrupt (`arm,armv8-timer`, entry 2).
    pub virtual_timer: Option<Interrupt>,
    /// The first PL031 real-time clock (`arm,pl031`), if its `reg` is one
    /// the kernel can map, clear of RAM and the devices above. Only the
    /// test kernel's bench reads it (a device QEMU implements in C: the
    /// floor of an MMIO exit), so a bad one is left out, never an error;
    /// and only with the `pl031` feature, which keeps its code out of the
    /// shipped kernel (260 bytes of its size budget: 220 of code, 40 of data).
    #[cfg(feature = "pl031")]
    pub rtc: Option<Region>,
}

impl<'a> BoardInfo<'a> {
    /// Decodes a flattened device tree, checking it first (see the crate's
    /// comment).
    ///
    /// Missing pieces are left empty for the caller to judge (a kernel
    /// without a stopwatch still boots to its shell); a value the kernel
    /// would use but cannot is an error.
    pub fn from_dtb(dtb: &'a [u8]) -> Result<Self, DtbError<'a>> {
        structure::check(dtb)?;
        let fdt = fdt::Fdt::new(dtb).map_err(DtbError::Header)?;
        let mut info = BoardInfo {
            memory: FixedList::new(),
            uart: None,
            gic: None,
            stopwatches: FixedList::new(),
            broken_stopwatches: FixedList::new(),
            bootargs: "",
            psci: None,
            cpu_count: 0,
            cpus: FixedList::new(),
            virtual_timer: None,
            #[cfg(feature = "pl031")]
            rtc: None,
        };
        let gic_node = walk::walk(&fdt, &mut info)?;
        check::board(&mut info, gic_node)?;
        Ok(info)
    }

    /// Sets apart as broken, with `error`, every stopwatch that `usable`
    /// refuses: the kernel's check of what only the hardware knows (the
    /// interrupts its GIC implements).
    pub fn set_apart_stopwatches(
        &mut self,
        mut usable: impl FnMut(&Stopwatch<'a>) -> bool,
        error: PropertyError,
    ) {
        let found = self.stopwatches.take_entries();
        for stopwatch in found.iter() {
            if usable(stopwatch) {
                self.stopwatches.push(*stopwatch);
            } else {
                self.broken_stopwatches.push(BrokenStopwatch {
                    node_name: stopwatch.node_name,
                    error,
                });
            }
        }
    }

    /// The stopwatch discovered first, if any.
    pub fn first_stopwatch(&self) -> Option<&Stopwatch<'a>> {
        self.stopwatches.get(0)
    }
}
