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
    /// properties read in one scan ([`NodeProperties`]), and the interrupt
    /// parent looked up once ([`Walker::interrupt_parent_is_gic`]).
    pub fn from_dtb(dtb: &'a [u8]) -> Result<Self, FdtError> {
        let fdt = Fdt::new(dtb)?;
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
        info.bootargs = chosen
            .and_then(|node| node.property("bootargs"))
            .and_then(|prop| prop.as_str())
            .unwrap_or("");
        let stdout_path = chosen
            .and_then(|node| node.property("stdout-path"))
            .and_then(|prop| prop.as_str())
            .and_then(|path| resolve_alias(aliases, path));

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
            cells: root_properties.cells,
            interrupt_parent: root_properties.interrupt_parent,
        };
        walker.visit_children(root, &root_context);
        Ok(info)
    }

    /// The stopwatch discovered first, if any.
    pub fn first_stopwatch(&self) -> Option<&Stopwatch<'a>> {
        self.stopwatches.get(0)
    }
}

/// What the walk uses of one node, read in a single scan of its properties
/// (each `FdtNode::property` call is a scan of its own, with a string
/// lookup and a UTF-8 check per property).
#[derive(Clone, Copy, Default)]
struct NodeProperties<'a> {
    /// No `status` property, or `"okay"` (`"ok"` in older trees). QEMU's
    /// `secure=on` tree has a disabled memory node (`secram`, RAM only the
    /// Secure world can reach) and a disabled Secure UART: neither may be
    /// used by a Non-secure kernel.
    disabled: bool,
    /// `device_type`, without its NUL (as are the other strings).
    device_type: Option<&'a [u8]>,
    compatible: Option<&'a [u8]>,
    interrupt_controller: bool,
    /// Raw `ranges`; `None` if absent.
    ranges: Option<&'a [u8]>,
    /// `#address-cells` / `#size-cells`: the cell sizes of the children.
    cells: CellSizes,
    interrupt_parent: Option<u32>,
    interrupt_cells: Option<u32>,
    reg: Option<&'a [u8]>,
    interrupts: Option<&'a [u8]>,
    phandle: Option<u32>,
    /// `method` (of the PSCI node).
    method: Option<&'a [u8]>,
}

impl<'a> NodeProperties<'a> {
    fn of(node: FdtNode<'_, 'a>) -> Self {
        let mut properties = NodeProperties::default();
        for property in node.properties() {
            let value = property.value;
            match property.name {
                "status" => properties.disabled = !matches!(text(value), b"okay" | b"ok"),
                "device_type" => properties.device_type = Some(text(value)),
                "compatible" => properties.compatible = Some(value),
                "interrupt-controller" => properties.interrupt_controller = true,
                "ranges" => properties.ranges = Some(value),
                "#address-cells" => {
                    if let Some(cells) = cell(value) {
                        properties.cells.address_cells = cells as usize;
                    }
                }
                "#size-cells" => {
                    if let Some(cells) = cell(value) {
                        properties.cells.size_cells = cells as usize;
                    }
                }
                "#interrupt-cells" => properties.interrupt_cells = cell(value),
                "interrupt-parent" => properties.interrupt_parent = cell(value),
                "reg" => properties.reg = Some(value),
                "interrupts" => properties.interrupts = Some(value),
                "phandle" => properties.phandle = cell(value),
                "method" => properties.method = Some(text(value)),
                _ => {}
            }
        }
        properties
    }

    fn kind(&self) -> NodeKind {
        self.compatible.map_or(NodeKind::Other, |compatible| {
            NodeKind::of(compatible, self.interrupt_controller)
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

/// A property holding exactly one cell.
fn cell(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// `#address-cells` / `#size-cells`, with the defaults of the devicetree
/// specification (2 and 1) where a node does not say.
#[derive(Clone, Copy)]
struct CellSizes {
    address_cells: usize,
    size_cells: usize,
}

impl Default for CellSizes {
    fn default() -> Self {
        CellSizes {
            address_cells: 2,
            size_cells: 1,
        }
    }
}

/// `stdout-path` may carry options after `:` and may name an alias.
fn resolve_alias<'a>(aliases: Option<FdtNode<'_, 'a>>, stdout_path: &'a str) -> Option<&'a str> {
    // By byte, not `split(':')`: the kernel decodes the tree before its
    // prompt, and the char searcher is more code to translate.
    let end = stdout_path.bytes().position(|byte| byte == b':');
    let path = &stdout_path[..end.unwrap_or(stdout_path.len())];
    if path.starts_with('/') {
        return Some(path);
    }
    aliases?.property(path)?.as_str()
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
                    ranges: properties.ranges,
                    child_cells: properties.cells,
                    parent_address_cells: context.cells.address_cells,
                });
                child_context.depth += 1;
                child_context.cells = properties.cells;
                if let Some(phandle) = properties.interrupt_parent {
                    child_context.interrupt_parent = Some(phandle);
                }
                self.visit_children(child, &child_context);
            }
            self.path.len = previous_len;
        }
    }

    fn visit(&mut self, name: &'a str, node: &NodeProperties<'a>, context: &Context<'a>) {
        if node.disabled {
            return;
        }
        match node.device_type {
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
                self.info.psci = match node.method {
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
        let specifier = node.interrupts.ok_or(StopwatchError::MissingInterrupt)?;
        let parent = node
            .interrupt_parent
            .or(context.interrupt_parent)
            .ok_or(StopwatchError::MissingInterrupt)?;
        self.interrupt_parent_is_gic(parent)?;
        let specifier = specifier
            .chunks_exact(GIC_SPECIFIER_LEN)
            .nth(index)
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
                if is_gic && parent.interrupt_cells == Some(3) {
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
    let mut cells = specifier
        .chunks_exact(4)
        .map(|cell| u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]));
    let (kind, number, flags) = (cells.next()?, cells.next()?, cells.next()?);
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

impl NodeKind {
    /// From the raw `compatible` list (NUL-terminated strings) and whether
    /// the node is an interrupt controller. Compared as bytes: no UTF-8
    /// check needed.
    fn of(compatible: &[u8], is_interrupt_controller: bool) -> Self {
        compatible
            .split(|&byte| byte == 0)
            .find_map(|name| match name {
                name if name == stopwatch_abi::COMPATIBLE.as_bytes() => Some(NodeKind::Stopwatch),
                b"arm,gic-v3" if is_interrupt_controller => Some(NodeKind::Gic(3)),
                b"arm,cortex-a15-gic" | b"arm,gic-400" | b"arm,cortex-a7-gic"
                    if is_interrupt_controller =>
                {
                    Some(NodeKind::Gic(2))
                }
                b"arm,armv8-timer" => Some(NodeKind::Timer),
                b"arm,pl011" => Some(NodeKind::Pl011),
                _ if name.starts_with(b"arm,psci") => Some(NodeKind::Psci),
                _ => None,
            })
            .unwrap_or(NodeKind::Other)
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
    let reg = node.reg?;
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
