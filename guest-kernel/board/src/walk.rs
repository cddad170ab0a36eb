// SPDX-License-Identifier: GPL-2.0-or-later
//! The walk over the tree that fills a [`BoardInfo`], checking each value
//! it uses as it decodes it.
//!
//! The kernel runs this before its prompt, under TCG mostly as code
//! translated for the first time: the tree is walked once, each node's
//! properties read in one scan ([`NodeProperties`]), and the interrupt
//! parent looked up once ([`Walker::interrupt_parent_is_gic`]).

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::address::{regions, Context, MAX_BUS_DEPTH};
use crate::check::{device_region, memory_region};
use crate::decode::{decode_gic_interrupt, read_cells, NodeKind};
use crate::properties::{NodeProperties, Property};
use crate::{
    BoardInfo, BrokenStopwatch, DtbError, Gic, Interrupt, PropertyError, PsciConduit, Stopwatch,
    Uart,
};
/// Bytes of one GIC interrupt specifier: three cells.
const GIC_SPECIFIER_LEN: usize = 12;
/// The generic timer binding lists the secure physical, non-secure
/// physical, virtual and hypervisor timers' interrupts, in that order.
const VIRTUAL_TIMER_INDEX: usize = 2;
/// Longest node path kept while walking the tree.
const MAX_PATH_LEN: usize = 192;
/// Bytes of the GIC's registers the kernel's driver reaches: GICv2's
/// distributor and CPU interface, GICv3's distributor, and GICv3's
/// redistributor frames (two 64 KiB frames per CPU, checked per CPU in
/// `check::board`).
const GICV2_DISTRIBUTOR_SIZE: u64 = 0x1000;
const GICV2_CPU_INTERFACE_SIZE: u64 = 0x2000;
const GICV3_DISTRIBUTOR_SIZE: u64 = 0x1_0000;
pub(crate) const GICV3_REDISTRIBUTOR_SIZE: u64 = 0x2_0000;
/// Bytes of a PL011's registers, and of a PL031's.
const UART_SIZE: u64 = 0x1000;
#[cfg(feature = "pl031")]
const RTC_SIZE: u64 = 0x1000;

/// Fills `info` from `fdt`, whose structure `structure::check` accepted;
/// returns the name of the GIC's node (empty if none).
pub(crate) fn walk<'a>(fdt: &Fdt<'a>, info: &mut BoardInfo<'a>) -> Result<&'a str, DtbError<'a>> {
    // The root is the first node; `/chosen` and `/aliases` are its
    // children, found in one pass over them. (Looked up directly:
    // `Fdt::find_node` would add a path parser the kernel does not
    // otherwise need.)
    let root = fdt.all_nodes().next().ok_or(DtbError::Structure {
        offset: 0,
        problem: "no root node",
    })?;
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
        fdt,
        info,
        stdout_path,
        path: NodePath::new(),
        interrupt_parent: None,
        gic_node: "",
    };
    let root_properties = NodeProperties::of(root);
    let root_context = Context {
        buses: [None; MAX_BUS_DEPTH],
        depth: 0,
        cells: root_properties
            .cells()
            .map_err(|error| in_node("/", error))?,
        interrupt_parent: root_properties.cell(Property::InterruptParent),
    };
    walker.visit_children(root, &root_context)?;
    Ok(walker.gic_node)
}

/// `error` as the tree's error, in node `node`.
fn in_node(node: &str, error: PropertyError) -> DtbError<'_> {
    DtbError::Property { node, error }
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
    interrupt_parent: Option<(u32, bool)>,
    /// The node [`BoardInfo::gic`] comes from.
    gic_node: &'a str,
}

impl<'a> Walker<'_, '_, 'a> {
    fn visit_children(
        &mut self,
        parent: FdtNode<'_, 'a>,
        context: &Context<'a>,
    ) -> Result<(), DtbError<'a>> {
        for child in parent.children() {
            let Some(previous_len) = self.path.push(child.name) else {
                continue;
            };
            let properties = NodeProperties::of(child);
            let name = child.name;
            self.visit(name, &properties, context)
                .map_err(|error| in_node(name, error))?;
            if context.depth < MAX_BUS_DEPTH {
                let cells = properties.cells().map_err(|error| in_node(name, error))?;
                let mut child_context = *context;
                child_context.buses[context.depth] = Some(crate::address::Bus {
                    ranges: properties.get(Property::Ranges),
                    child_cells: cells,
                    parent_address_cells: context.cells.address_cells,
                });
                child_context.depth += 1;
                child_context.cells = cells;
                if let Some(phandle) = properties.cell(Property::InterruptParent) {
                    child_context.interrupt_parent = Some(phandle);
                }
                self.visit_children(child, &child_context)?;
            }
            self.path.len = previous_len;
        }
        Ok(())
    }

    /// Reads what the kernel uses of one node; an error if it cannot use
    /// it (a stopwatch's own problems only set that stopwatch apart).
    fn visit(
        &mut self,
        name: &'a str,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
    ) -> Result<(), PropertyError> {
        if node.disabled() {
            return Ok(());
        }
        match node.text(Property::DeviceType) {
            Some(b"memory") => {
                for region in regions(node, context)?.into_iter().flatten() {
                    self.info.memory.push(memory_region(region?)?);
                }
            }
            Some(b"cpu") => {
                self.info.cpu_count += 1;
                // `reg` is one address of the parent's #address-cells, no
                // size: not a bus address, so not translated.
                let address_len = context.cells.address_cells as usize * 4;
                let reg = node
                    .get(Property::Reg)
                    .and_then(|reg| reg.get(..address_len));
                if let Some(mpidr) = reg.and_then(read_cells) {
                    self.info.cpus.push(mpidr);
                }
            }
            _ => {}
        }
        let kind = node.kind();
        if self.stdout_path.is_some_and(|path| self.path.is(path)) {
            self.info.uart = self.decode_uart(name, kind, node, context)?;
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
                    self.info.gic = decode_gic(node, context, version)?;
                    self.gic_node = name;
                }
            }
            NodeKind::Timer => {
                let timer = self.interrupt(node, context, VIRTUAL_TIMER_INDEX)?;
                if timer.is_some_and(|timer| !(16..32).contains(&timer.intid)) {
                    return Err(PropertyError::new("interrupts", "not a PPI"));
                }
                self.info.virtual_timer = timer;
            }
            NodeKind::Psci => {
                self.info.psci = match node.text(Property::Method) {
                    Some(b"hvc") => Some(PsciConduit::Hvc),
                    Some(b"smc") => Some(PsciConduit::Smc),
                    _ => None,
                };
            }
            #[cfg(feature = "pl031")]
            NodeKind::Pl031 if self.info.rtc.is_none() => {
                // Its first `reg` entry, if usable; else no RTC.
                let region = regions(node, context)
                    .ok()
                    .flatten()
                    .and_then(|mut r| r.next());
                self.info.rtc = region
                    .and_then(Result::ok)
                    .and_then(|region| device_region(region, RTC_SIZE).ok());
            }
            #[cfg(feature = "pl031")]
            NodeKind::Pl031 => {}
            NodeKind::Pl011 | NodeKind::Other => {}
        }
        Ok(())
    }

    /// The console UART: `None` if it has no `reg`.
    fn decode_uart(
        &mut self,
        name: &'a str,
        kind: NodeKind,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
    ) -> Result<Option<Uart<'a>>, PropertyError> {
        let Some(region) = regions(node, context)?.and_then(|mut regions| regions.next()) else {
            return Ok(None);
        };
        let interrupt = self.interrupt(node, context, 0)?;
        if interrupt.is_some_and(|interrupt| interrupt.intid < 32) {
            return Err(PropertyError::new("interrupts", "not an SPI"));
        }
        Ok(Some(Uart {
            node_name: name,
            is_pl011: kind == NodeKind::Pl011,
            region: device_region(region?, UART_SIZE)?,
            interrupt,
        }))
    }

    fn decode_stopwatch(
        &mut self,
        name: &'a str,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
    ) -> Result<Stopwatch<'a>, PropertyError> {
        let missing = PropertyError::new("reg", "fewer than 2 entries");
        let mut regions = regions(node, context)?.ok_or(missing)?;
        let shared = regions.next().ok_or(missing)??;
        let registers = regions.next().ok_or(missing)??;
        let interrupt = self
            .interrupt(node, context, 0)?
            .ok_or(PropertyError::new("interrupts", "missing, or not a GIC's"))?;
        if interrupt.intid < 32 {
            return Err(PropertyError::new("interrupts", "not an SPI"));
        }
        Ok(Stopwatch {
            node_name: name,
            shared: device_region(shared, stopwatch_abi::shared::SIZE)?,
            registers: device_region(registers, stopwatch_abi::regs::SIZE)?,
            timeout_interrupt: interrupt,
        })
    }

    /// Decodes `interrupts` entry `index` through the interrupt parent,
    /// which must be a GIC with three-cell specifiers `<type number flags>`.
    /// `None` if the node has no `interrupts` or its interrupt parent is not
    /// such a GIC (the kernel cannot use it: the caller says what that
    /// means, e.g. status 16 for a tree without a GIC); an error if the
    /// GIC's specifier is not one.
    fn interrupt(
        &mut self,
        node: &NodeProperties<'a>,
        context: &Context<'a>,
        index: usize,
    ) -> Result<Option<Interrupt>, PropertyError> {
        let Some(specifiers) = node.get(Property::Interrupts) else {
            return Ok(None);
        };
        let parent = node
            .cell(Property::InterruptParent)
            .or(context.interrupt_parent);
        if !parent.is_some_and(|parent| self.interrupt_parent_is_gic(parent)) {
            return Ok(None);
        }
        let start = index * GIC_SPECIFIER_LEN;
        let specifier = specifiers
            .get(start..start + GIC_SPECIFIER_LEN)
            .ok_or(PropertyError::new("interrupts", "entry missing"))?;
        decode_gic_interrupt(specifier)
            .map(Some)
            .ok_or(PropertyError::new("interrupts", "not a GIC SPI or PPI"))
    }

    /// Whether the node of `phandle` is a GIC with three-cell interrupt
    /// specifiers; remembers the answer for the next interrupt.
    fn interrupt_parent_is_gic(&mut self, phandle: u32) -> bool {
        if let Some((known, answer)) = self.interrupt_parent {
            if known == phandle {
                return answer;
            }
        }
        let answer = self.fdt.find_phandle(phandle).is_some_and(|parent| {
            let parent = NodeProperties::of(parent);
            matches!(parent.kind(), NodeKind::Gic(_))
                && parent.cell(Property::InterruptCells) == Some(3)
        });
        self.interrupt_parent = Some((phandle, answer));
        answer
    }
}

/// The GIC of `version` described by `node` (in its own context), if it
/// has a `reg`.
fn decode_gic(
    node: &NodeProperties<'_>,
    context: &Context<'_>,
    version: u8,
) -> Result<Option<Gic>, PropertyError> {
    let Some(mut regions) = regions(node, context)? else {
        return Ok(None);
    };
    let too_few = PropertyError::new("reg", "fewer than 2 entries");
    let first = regions.next().ok_or(too_few)??;
    let second = regions.next().ok_or(too_few)??;
    Ok(Some(if version == 3 {
        Gic::V3 {
            distributor: device_region(first, GICV3_DISTRIBUTOR_SIZE)?,
            redistributors: device_region(second, GICV3_REDISTRIBUTOR_SIZE)?,
        }
    } else {
        Gic::V2 {
            distributor: device_region(first, GICV2_DISTRIBUTOR_SIZE)?,
            cpu_interface: device_region(second, GICV2_CPU_INTERFACE_SIZE)?,
        }
    }))
}
