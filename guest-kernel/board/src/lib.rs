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

#![no_std]
#![forbid(unsafe_code)]

use fdt::node::FdtNode;
use fdt::Fdt;

pub use fdt::FdtError;

/// How many `memory` regions [`BoardInfo`] keeps; more are only counted
/// ([`FixedList::dropped`]), and the kernel's banner says so.
pub const MAX_MEMORY_REGIONS: usize = 4;
/// How many stopwatch nodes [`BoardInfo`] keeps (usable ones, and broken
/// ones apart); more are only counted, as for memory regions. As many as
/// `virt`'s platform bus can hold: each stopwatch takes one of its 64
/// interrupts (`PLATFORM_BUS_NUM_IRQS` in QEMU's `hw/arm/virt.c`).
pub const MAX_STOPWATCHES: usize = 64;
/// Deepest bus nesting followed when translating addresses.
const MAX_BUS_DEPTH: usize = 6;
/// Bytes of one GIC interrupt specifier: three cells.
const GIC_SPECIFIER_LEN: usize = 12;
/// The generic timer binding lists the secure physical, non-secure
/// physical, virtual and hypervisor timers' interrupts, in that order.
const VIRTUAL_TIMER_INDEX: usize = 2;
/// Longest node path kept while walking the tree.
const MAX_PATH_LEN: usize = 192;

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

/// Why a stopwatch node could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopwatchError {
    /// The node has no usable `reg` property.
    MissingReg,
    /// `reg` has fewer than the two required entries.
    TooFewRegions(usize),
    /// A `reg` address is not reachable through the parents' `ranges`.
    Untranslatable,
    /// No `interrupts` property, or no GIC interrupt parent to decode it.
    MissingInterrupt,
    /// The interrupt specifier is not one the kernel understands.
    BadInterrupt,
}

impl core::fmt::Display for StopwatchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StopwatchError::MissingReg => f.write_str("no reg property"),
            StopwatchError::TooFewRegions(found) => {
                write!(f, "reg has {found} entries, 2 are needed")
            }
            StopwatchError::Untranslatable => {
                f.write_str("a reg address is outside its bus's ranges")
            }
            StopwatchError::MissingInterrupt => {
                f.write_str("no interrupts property or no GIC interrupt parent")
            }
            StopwatchError::BadInterrupt => f.write_str("interrupt specifier not understood"),
        }
    }
}

/// A stopwatch node that was found but could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenStopwatch<'a> {
    /// Node name.
    pub node_name: &'a str,
    /// What is wrong with it.
    pub error: StopwatchError,
}

/// How PSCI calls reach the firmware (or hypervisor): `/psci/method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `hvc`: what QEMU `virt` uses when it emulates PSCI itself.
    Hvc,
    /// `smc`: EL3 firmware.
    Smc,
}

/// A list with a fixed capacity and no heap: what the kernel can afford.
#[derive(Clone, Copy, Debug)]
pub struct FixedList<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
    /// Entries that did not fit.
    dropped: usize,
}

impl<T: Copy, const N: usize> FixedList<T, N> {
    const fn new() -> Self {
        FixedList {
            items: [None; N],
            len: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = Some(item);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Number of entries kept.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry was kept.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of entries found beyond the capacity (and not kept).
    pub const fn dropped(&self) -> usize {
        self.dropped
    }

    /// The entry at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(index)?.as_ref()
    }

    /// The entries, in device-tree order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..self.len].iter().flatten()
    }
}

impl<T: PartialEq + Copy, const N: usize> PartialEq for FixedList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter()) && self.dropped == other.dropped
    }
}

/// Everything the kernel needs from the device tree.
#[derive(Clone, Copy, Debug)]
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
    /// The EL1 virtual timer's interrupt (`arm,armv8-timer`, entry 2).
    pub virtual_timer: Option<Interrupt>,
}

impl<'a> BoardInfo<'a> {
    /// Decodes a flattened device tree.
    ///
    /// Only a structurally invalid blob is an error; missing pieces are left
    /// empty for the caller to judge (a kernel without a stopwatch still
    /// boots to its shell).
    ///
    /// The kernel runs this before its prompt, under TCG mostly as code
    /// translated for the first time: the tree is walked once, each node's
    /// properties read in one scan (`NodeProperties`), and the interrupt
    /// parent looked up once (`Walker::interrupt_parent_is_gic`).
    pub fn from_dtb(dtb: &'a [u8]) -> Result<Self, FdtError> {
        let fdt = Fdt::new(dtb)?;
        if !blocks_inside(dtb) {
            return Err(FdtError::BufferTooSmall);
        }
        let mut info = BoardInfo {
            memory: FixedList::new(),
            uart: None,
            gic: None,
            stopwatches: FixedList::new(),
            broken_stopwatches: FixedList::new(),
            bootargs: "",
            psci: None,
            cpu_count: 0,
            virtual_timer: None,
        };

        // The root is the first node; `/chosen` and `/aliases` are its
        // children, found in one pass over them. (Looked up directly:
        // `Fdt::find_node` would add a path parser the kernel does not
        // otherwise need.)
        let root = fdt.all_nodes().next().ok_or(FdtError::BadPtr)?;
        let (mut chosen, mut aliases) = (None, None);
        for node in root.children() {
            match node.name {
                "chosen" => chosen = Some(node),
                "aliases" => aliases = Some(node),
                _ => {}
            }
        }
        info.bootargs = string_property(chosen, "bootargs").unwrap_or("");
        let stdout_path =
            string_property(chosen, "stdout-path").and_then(|path| resolve_alias(aliases, path));

        let mut walker = Walker {
            fdt: &fdt,
            info: &mut info,
            stdout_path,
            path: NodePath::new(),
            interrupt_parent: None,
        };
        let root_properties = NodeProperties::of(root);
        let root_context = Context {
            buses: [None; MAX_BUS_DEPTH],
            depth: 0,
            cells: root_properties.cells(),
            interrupt_parent: root_properties.cell(Property::InterruptParent),
        };
        walker.visit_children(root, &root_context);
        Ok(info)
    }

    /// The stopwatch discovered first, if any.
    pub fn first_stopwatch(&self) -> Option<&Stopwatch<'a>> {
        self.stopwatches.get(0)
    }
}

/// Whether the header's structure and strings blocks lie inside `dtb`:
/// `Fdt::new` checks only the magic and the total size, and the `fdt`
/// crate slices the blocks where the header says (a panic on a corrupted
/// offset or size). A corrupted block itself can still make it panic.
fn blocks_inside(dtb: &[u8]) -> bool {
    // The header's first ten words (`Fdt::new` parsed them: never `None`).
    let Some(header) = dtb.first_chunk::<40>() else {
        return false;
    };
    let word = |at: usize| {
        u64::from(u32::from_be_bytes([
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ]))
    };
    let len = dtb.len() as u64;
    // off_dt_struct + size_dt_struct, off_dt_strings + size_dt_strings.
    word(8) + word(36) <= len && word(12) + word(32) <= len
}

/// The properties the walk reads; [`NodeProperties`] keeps their values in
/// this order.
#[derive(Clone, Copy)]
enum Property {
    /// No `status`, or `"okay"` (`"ok"` in older trees), means in use.
    /// QEMU's `secure=on` tree has a disabled memory node (`secram`, RAM
    /// only the Secure world can reach) and a disabled Secure UART: neither
    /// may be used by a Non-secure kernel.
    Status,
    DeviceType,
    Compatible,
    InterruptController,
    /// Raw `ranges` (absent: no translation; empty: one to one).
    Ranges,
    /// `#address-cells` / `#size-cells`: the cell sizes of the children.
    AddressCells,
    SizeCells,
    InterruptCells,
    InterruptParent,
    Reg,
    Interrupts,
    /// `method` (of the PSCI node).
    Method,
}

/// The names of the [`Property`] variants, in their order.
const PROPERTY_NAMES: [&str; 12] = [
    "status",
    "device_type",
    "compatible",
    "interrupt-controller",
    "ranges",
    "#address-cells",
    "#size-cells",
    "#interrupt-cells",
    "interrupt-parent",
    "reg",
    "interrupts",
    "method",
];

/// What the walk uses of one node, read in a single scan of its properties
/// (each `FdtNode::property` call is a scan of its own, with a string
/// lookup and a UTF-8 check per property). A table, not a `match` on the
/// names: the kernel's image has a 64 KiB budget.
#[derive(Clone, Copy, Default)]
struct NodeProperties<'a> {
    values: [Option<&'a [u8]>; PROPERTY_NAMES.len()],
}

impl<'a> NodeProperties<'a> {
    fn of(node: FdtNode<'_, 'a>) -> Self {
        let mut properties = NodeProperties::default();
        for property in node.properties() {
            if let Some(index) = PROPERTY_NAMES
                .iter()
                .position(|&name| name == property.name)
            {
                properties.values[index] = Some(property.value);
            }
        }
        properties
    }

    fn get(&self, property: Property) -> Option<&'a [u8]> {
        self.values[property as usize]
    }

    /// A string property, without its terminating NULs.
    fn text(&self, property: Property) -> Option<&'a [u8]> {
        self.get(property).map(text)
    }

    /// A property holding exactly one cell.
    fn cell(&self, property: Property) -> Option<u32> {
        Some(u32::from_be_bytes(self.get(property)?.try_into().ok()?))
    }

    fn disabled(&self) -> bool {
        self.text(Property::Status)
            .is_some_and(|status| status != b"okay" && status != b"ok")
    }

    /// The cell sizes of the node's children, with the defaults of the
    /// devicetree specification (2 and 1) where the node does not say.
    fn cells(&self) -> CellSizes {
        CellSizes {
            address_cells: self.cell(Property::AddressCells).unwrap_or(2) as usize,
            size_cells: self.cell(Property::SizeCells).unwrap_or(1) as usize,
        }
    }

    fn kind(&self) -> NodeKind {
        self.get(Property::Compatible)
            .map_or(NodeKind::Other, |compatible| {
                NodeKind::of(
                    compatible,
                    self.get(Property::InterruptController).is_some(),
                )
            })
    }
}

/// A string property's bytes without its terminating NULs.
fn text(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    &value[..end]
}

/// `#address-cells` / `#size-cells` (see [`NodeProperties::cells`]).
#[derive(Clone, Copy)]
struct CellSizes {
    address_cells: usize,
    size_cells: usize,
}

/// `stdout-path` may carry options after `:` and may name an alias.
fn resolve_alias<'a>(aliases: Option<FdtNode<'_, 'a>>, stdout_path: &'a str) -> Option<&'a str> {
    // By byte, not `split(':')`: the kernel decodes the tree before its
    // prompt, and the char searcher is more code to translate.
    let end = stdout_path.bytes().position(|byte| byte == b':');
    // `get`, not slicing: no panic path (the image has a size budget).
    let path = stdout_path.get(..end.unwrap_or(stdout_path.len()))?;
    if path.starts_with('/') {
        return Some(path);
    }
    string_property(aliases, path)
}

/// A string property of `node`, if both exist.
fn string_property<'a>(node: Option<FdtNode<'_, 'a>>, name: &str) -> Option<&'a str> {
    node?.property(name)?.as_str()
}

/// A bus between a node and the root, as needed to translate addresses.
#[derive(Clone, Copy)]
struct Bus<'a> {
    /// Raw `ranges`; `None` if the property is absent (no translation).
    ranges: Option<&'a [u8]>,
    /// `#address-cells` / `#size-cells` of the bus's children.
    child_cells: CellSizes,
    /// `#address-cells` of the bus's own parent.
    parent_address_cells: usize,
}

/// What a node inherits from its ancestors.
#[derive(Clone, Copy)]
struct Context<'a> {
    /// Buses from the root's child (index 0) down to the node's parent.
    buses: [Option<Bus<'a>>; MAX_BUS_DEPTH],
    depth: usize,
    /// Cell sizes the node's `reg` is written in (its parent's).
    cells: CellSizes,
    /// Phandle of the inherited `interrupt-parent`.
    interrupt_parent: Option<u32>,
}

impl Context<'_> {
    /// Translates a bus address of this node to a CPU physical address.
    fn translate(&self, mut address: u64) -> Option<u64> {
        for bus in self.buses[..self.depth].iter().rev() {
            address = bus.as_ref()?.translate(address)?;
        }
        Some(address)
    }
}

impl Bus<'_> {
    /// Translates one level, through this bus's `ranges`.
    fn translate(&self, address: u64) -> Option<u64> {
        let ranges = self.ranges?;
        if ranges.is_empty() {
            // `ranges;` (empty): the bus maps its children one to one.
            return Some(address);
        }
        let child = self.child_cells.address_cells;
        let parent = self.parent_address_cells;
        let size = self.child_cells.size_cells;
        let entry_len = (child + parent + size) * 4;
        if entry_len == 0 {
            return None;
        }
        for entry in ranges.chunks_exact(entry_len) {
            let (child_base, rest) = entry.split_at(child * 4);
            let (parent_base, length) = rest.split_at(parent * 4);
            let child_base = read_cells(child_base)?;
            let length = read_cells(length)?;
            if address >= child_base && address - child_base < length {
                return (address - child_base).checked_add(read_cells(parent_base)?);
            }
        }
        None
    }
}

/// A node's path, built while walking, to match `stdout-path`.
struct NodePath {
    bytes: [u8; MAX_PATH_LEN],
    len: usize,
}

impl NodePath {
    const fn new() -> Self {
        NodePath {
            bytes: [0; MAX_PATH_LEN],
            len: 0,
        }
    }

    /// Appends `/name`; returns the previous length to restore, or `None`
    /// if the path would not fit (the node is then not matched by path).
    fn push(&mut self, name: &str) -> Option<usize> {
        let previous = self.len;
        let end = previous + 1 + name.len();
        if end > MAX_PATH_LEN {
            return None;
        }
        self.bytes[previous] = b'/';
        self.bytes[previous + 1..end].copy_from_slice(name.as_bytes());
        self.len = end;
        Some(previous)
    }

    fn is(&self, path: &str) -> bool {
        &self.bytes[..self.len] == path.as_bytes()
    }
}

/// Depth-first walk over the tree, filling a [`BoardInfo`].
struct Walker<'w, 'b, 'a> {
    fdt: &'b Fdt<'a>,
    info: &'w mut BoardInfo<'a>,
    stdout_path: Option<&'a str>,
    path: NodePath,
    /// The last interrupt parent looked up, and whether it is a GIC with
    /// three-cell specifiers: on `virt` every interrupt the kernel decodes
    /// has the same parent, and a lookup scans the whole tree.
    interrupt_parent: Option<(u32, Result<(), StopwatchError>)>,
}

impl<'a> Walker<'_, '_, 'a> {
    fn visit_children(&mut self, parent: FdtNode<'_, 'a>, context: &Context<'a>) {
        for child in parent.children() {
            let Some(previous_len) = self.path.push(child.name) else {
                continue;
            };
            let properties = NodeProperties::of(child);
            self.visit(child.name, &properties, context);
            if context.depth < MAX_BUS_DEPTH {
                let mut child_context = *context;
                child_context.buses[context.depth] = Some(Bus {
                    ranges: properties.get(Property::Ranges),
                    child_cells: properties.cells(),
                    parent_address_cells: context.cells.address_cells,
                });
                child_context.depth += 1;
                child_context.cells = properties.cells();
                if let Some(phandle) = properties.cell(Property::InterruptParent) {
                    child_context.interrupt_parent = Some(phandle);
                }
                self.visit_children(child, &child_context);
            }
            self.path.len = previous_len;
        }
    }

    fn visit(&mut self, name: &'a str, node: &NodeProperties<'a>, context: &Context<'a>) {
        if node.disabled() {
            return;
        }
        match node.text(Property::DeviceType) {
            Some(b"memory") => {
                for region in regions(node, context).into_iter().flatten().flatten() {
                    self.info.memory.push(region);
                }
            }
            Some(b"cpu") => self.info.cpu_count += 1,
            _ => {}
        }
        let kind = node.kind();
        if self.stdout_path.is_some_and(|path| self.path.is(path)) {
            self.info.uart = self.decode_uart(name, kind, node, context);
        }
        match kind {
            NodeKind::Stopwatch => match self.decode_stopwatch(name, node, context) {
                Ok(stopwatch) => self.info.stopwatches.push(stopwatch),
                Err(error) => self.info.broken_stopwatches.push(BrokenStopwatch {
                    node_name: name,
                    error,
                }),
            },
            NodeKind::Gic(version) => {
                if self.info.gic.is_none() {
                    self.info.gic = decode_gic(node, context, version);
                }
            }
            NodeKind::Timer => {
                self.info.virtual_timer = self.interrupt(node, context, VIRTUAL_TIMER_INDEX).ok();
            }
            NodeKind::Psci => {
                self.info.psci = match node.text(Property::Method) {
                    Some(b"hvc") => Some(PsciConduit::Hvc),
                    Some(b"smc") => Some(PsciConduit::Smc),
                    _ => None,
                };
            }
            NodeKind::Pl011 | NodeKind::Other => {}
        }
    }

    fn decode_uart(
        &mut self,
        name: &'a str,
        kind: NodeKind,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
    ) -> Option<Uart<'a>> {
        let region = regions(node, context)?.next()??;
        Some(Uart {
            node_name: name,
            is_pl011: kind == NodeKind::Pl011,
            region,
            interrupt: self.interrupt(node, context, 0).ok(),
        })
    }

    fn decode_stopwatch(
        &mut self,
        name: &'a str,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
    ) -> Result<Stopwatch<'a>, StopwatchError> {
        let mut regions = regions(node, context).ok_or(StopwatchError::MissingReg)?;
        let shared = regions.next().ok_or(StopwatchError::TooFewRegions(0))?;
        let registers = regions.next().ok_or(StopwatchError::TooFewRegions(1))?;
        Ok(Stopwatch {
            node_name: name,
            shared: shared.ok_or(StopwatchError::Untranslatable)?,
            registers: registers.ok_or(StopwatchError::Untranslatable)?,
            timeout_interrupt: self.interrupt(node, context, 0)?,
        })
    }

    /// Decodes `interrupts` entry `index` through the interrupt parent,
    /// which must be a GIC with three-cell specifiers `<type number flags>`.
    fn interrupt(
        &mut self,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
        index: usize,
    ) -> Result<Interrupt, StopwatchError> {
        let specifier = node
            .get(Property::Interrupts)
            .ok_or(StopwatchError::MissingInterrupt)?;
        let parent = node
            .cell(Property::InterruptParent)
            .or(context.interrupt_parent)
            .ok_or(StopwatchError::MissingInterrupt)?;
        self.interrupt_parent_is_gic(parent)?;
        let start = index * GIC_SPECIFIER_LEN;
        let specifier = specifier
            .get(start..start + GIC_SPECIFIER_LEN)
            .ok_or(StopwatchError::MissingInterrupt)?;
        decode_gic_interrupt(specifier).ok_or(StopwatchError::BadInterrupt)
    }

    /// `Ok` if the node of `phandle` is a GIC with three-cell interrupt
    /// specifiers; remembers the answer for the next interrupt.
    fn interrupt_parent_is_gic(&mut self, phandle: u32) -> Result<(), StopwatchError> {
        if let Some((known, answer)) = self.interrupt_parent {
            if known == phandle {
                return answer;
            }
        }
        let answer = match self.fdt.find_phandle(phandle) {
            None => Err(StopwatchError::MissingInterrupt),
            Some(parent) => {
                let parent = NodeProperties::of(parent);
                let is_gic = matches!(parent.kind(), NodeKind::Gic(_));
                if is_gic && parent.cell(Property::InterruptCells) == Some(3) {
                    Ok(())
                } else {
                    Err(StopwatchError::BadInterrupt)
                }
            }
        };
        self.interrupt_parent = Some((phandle, answer));
        answer
    }
}

/// Decodes one GIC interrupt specifier: `<type number flags>`, where type
/// 0 is an SPI (INTID 32 + number) and 1 a PPI (INTID 16 + number).
pub fn decode_gic_interrupt(specifier: &[u8]) -> Option<Interrupt> {
    let cell = |index: usize| {
        let bytes = specifier.get(index * 4..index * 4 + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    let (kind, number, flags) = (cell(0)?, cell(1)?, cell(2)?);
    let intid = match kind {
        0 if number < 988 => 32 + number,
        1 if number < 16 => 16 + number,
        _ => return None,
    };
    let trigger = match flags & 0xf {
        1 => Trigger::EdgeRising,
        2 => Trigger::EdgeFalling,
        4 => Trigger::LevelHigh,
        8 => Trigger::LevelLow,
        _ => return None,
    };
    Some(Interrupt { intid, trigger })
}

/// What a node is, as far as the kernel cares, from its `compatible`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Stopwatch,
    /// A GIC interrupt controller of this version (2 or 3).
    Gic(u8),
    /// The generic timer.
    Timer,
    Psci,
    Pl011,
    Other,
}

/// The `compatible` names the kernel knows, what they make a node, and
/// whether that needs the node to be an interrupt controller. (PSCI's
/// `arm,psci*` names are matched by prefix.)
const KNOWN_COMPATIBLES: [(&[u8], NodeKind, bool); 8] = [
    (
        stopwatch_abi::COMPATIBLE.as_bytes(),
        NodeKind::Stopwatch,
        false,
    ),
    (
        stopwatch_abi::COMPATIBLE_ORIGINAL.as_bytes(),
        NodeKind::Stopwatch,
        false,
    ),
    (b"arm,gic-v3", NodeKind::Gic(3), true),
    (b"arm,cortex-a15-gic", NodeKind::Gic(2), true),
    (b"arm,gic-400", NodeKind::Gic(2), true),
    (b"arm,cortex-a7-gic", NodeKind::Gic(2), true),
    (b"arm,armv8-timer", NodeKind::Timer, false),
    (b"arm,pl011", NodeKind::Pl011, false),
];

impl NodeKind {
    /// From the raw `compatible` list (NUL-terminated strings, the first
    /// known one decides) and whether the node is an interrupt controller.
    /// Compared as bytes: no UTF-8 check needed.
    fn of(compatible: &[u8], is_interrupt_controller: bool) -> Self {
        for name in compatible.split(|&byte| byte == 0) {
            let known = KNOWN_COMPATIBLES
                .iter()
                .find(|(known, _, needs_controller)| {
                    *known == name && (is_interrupt_controller || !needs_controller)
                });
            if let Some(&(_, kind, _)) = known {
                return kind;
            }
            if name.starts_with(b"arm,psci") {
                return NodeKind::Psci;
            }
        }
        NodeKind::Other
    }
}

/// The GIC of `version` described by `node` (in its own context).
fn decode_gic(node: &NodeProperties<'_>, context: &Context<'_>, version: u8) -> Option<Gic> {
    let mut regions = regions(node, context)?;
    let first = regions.next()??;
    let second = regions.next()??;
    Some(if version == 3 {
        Gic::V3 {
            distributor: first,
            redistributors: second,
        }
    } else {
        Gic::V2 {
            distributor: first,
            cpu_interface: second,
        }
    })
}

/// The node's `reg` entries as CPU physical regions; an entry is `None` if
/// it cannot be translated.
fn regions<'a>(
    node: &NodeProperties<'a>,
    context: &Context<'a>,
) -> Option<impl Iterator<Item = Option<Region>> + 'a> {
    let reg = node.get(Property::Reg)?;
    let address_cells = context.cells.address_cells;
    let size_cells = context.cells.size_cells;
    let entry_len = (address_cells + size_cells) * 4;
    if entry_len == 0 {
        return None;
    }
    let context = *context;
    Some(reg.chunks_exact(entry_len).map(move |entry| {
        let (address, size) = entry.split_at(address_cells * 4);
        Some(Region {
            base: context.translate(read_cells(address)?)?,
            size: read_cells(size)?,
        })
    }))
}

/// Big-endian cells as one number: 0, 1 or 2 cells (more do not fit).
fn read_cells(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gic_specifiers_decode_to_intids() {
        let spi_112_level = [0, 0, 0, 0, 0, 0, 0, 112, 0, 0, 0, 4];
        assert_eq!(
            decode_gic_interrupt(&spi_112_level),
            Some(Interrupt {
                intid: 144,
                trigger: Trigger::LevelHigh
            })
        );
        let ppi_14 = [0, 0, 0, 1, 0, 0, 0, 14, 0, 0, 0x01, 0x04];
        assert_eq!(decode_gic_interrupt(&ppi_14).unwrap().intid, 30);
        assert_eq!(decode_gic_interrupt(&[0, 0, 0, 0]), None);
        let bad_type = [0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 4];
        assert_eq!(decode_gic_interrupt(&bad_type), None);
    }

    #[test]
    fn cells_read_big_endian() {
        assert_eq!(read_cells(&[]), Some(0));
        assert_eq!(read_cells(&[0, 0, 0x10, 0]), Some(0x1000));
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2]), Some(0x1_0000_0002));
        assert_eq!(read_cells(&[0; 12]), None);
    }

    #[test]
    fn regions_overlap() {
        let a = Region::new(0x1000, 0x1000);
        assert!(a.overlaps(&Region::new(0x1fff, 1)));
        assert!(!a.overlaps(&Region::new(0x2000, 1)));
        assert_eq!(a.end(), 0x2000);
    }
}
