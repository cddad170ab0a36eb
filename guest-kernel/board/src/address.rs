// SPDX-License-Identifier: GPL-2.0-or-later
//! A node's `reg`, translated to CPU physical addresses through every
//! parent bus's `ranges`.

use crate::decode::read_cells;
use crate::properties::{CellSizes, NodeProperties, Property};
use crate::{PropertyError, Region};

/// Deepest bus nesting followed when translating addresses.
pub(crate) const MAX_BUS_DEPTH: usize = 6;
/// Most cells in an address or size: `reg` and `ranges` are read as u64.
const MAX_CELLS: u32 = 2;

/// A bus between a node and the root, as needed to translate addresses.
#[derive(Clone, Copy)]
pub(crate) struct Bus<'a> {
    /// Raw `ranges`; `None` if the property is absent (no translation).
    pub(crate) ranges: Option<&'a [u8]>,
    /// `#address-cells` / `#size-cells` of the bus's children.
    pub(crate) child_cells: CellSizes,
    /// `#address-cells` of the bus's own parent.
    pub(crate) parent_address_cells: u32,
}

/// What a node inherits from its ancestors.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Buses from the root's child (index 0) down to the node's parent.
    pub(crate) buses: [Option<Bus<'a>>; MAX_BUS_DEPTH],
    pub(crate) depth: usize,
    /// Cell sizes the node's `reg` is written in (its parent's).
    pub(crate) cells: CellSizes,
    /// Phandle of the inherited `interrupt-parent`.
    pub(crate) interrupt_parent: Option<u32>,
}

impl Context<'_> {
    /// Translates a region at a bus address of this node to CPU physical
    /// addresses; `None` unless every bus's `ranges` holds all of it.
    pub(crate) fn translate(&self, mut region: Region) -> Option<Region> {
        for bus in self.buses[..self.depth].iter().rev() {
            region.base = bus.as_ref()?.translate(region)?;
        }
        Some(region)
    }
}

impl Bus<'_> {
    /// Translates one level, through this bus's `ranges`.
    fn translate(&self, region: Region) -> Option<u64> {
        let ranges = self.ranges?;
        if ranges.is_empty() {
            // `ranges;` (empty): the bus maps its children one to one.
            return Some(region.base);
        }
        let child = self.child_cells.address_cells as usize;
        let parent = self.parent_address_cells as usize;
        let size = self.child_cells.size_cells as usize;
        if child.max(parent).max(size) > MAX_CELLS as usize || child + parent + size == 0 {
            return None;
        }
        for entry in ranges.chunks_exact((child + parent + size) * 4) {
            let (child_base, rest) = entry.split_at(child * 4);
            let (parent_base, length) = rest.split_at(parent * 4);
            let length = read_cells(length)?;
            let Some(offset) = region.base.checked_sub(read_cells(child_base)?) else {
                continue;
            };
            if offset < length {
                // The whole region, not only its start, inside the window.
                return (region.size <= length - offset)
                    .then_some(())
                    .and(offset.checked_add(read_cells(parent_base)?));
            }
        }
        None
    }
}

/// The node's `reg` entries as CPU physical regions, `None` if it has no
/// `reg`; an error if `reg` is not whole entries of at most two-cell
/// numbers, and an entry is an error if its bus cannot translate it.
pub(crate) fn regions<'a>(
    node: &NodeProperties<'a>,
    context: &Context<'a>,
) -> Result<Option<impl Iterator<Item = Result<Region, PropertyError>> + 'a>, PropertyError> {
    let Some(reg) = node.get(Property::Reg) else {
        return Ok(None);
    };
    let address_cells = context.cells.address_cells as usize;
    let size_cells = context.cells.size_cells as usize;
    if address_cells.max(size_cells) > MAX_CELLS as usize || address_cells == 0 {
        return Err(PropertyError::new("reg", "parent's cell counts not 1 or 2"));
    }
    let entry_len = (address_cells + size_cells) * 4;
    if !reg.len().is_multiple_of(entry_len) {
        return Err(PropertyError::new(
            "reg",
            "not whole (address, size) entries",
        ));
    }
    let context = *context;
    Ok(Some(reg.chunks_exact(entry_len).map(move |entry| {
        let (address, size) = entry.split_at(address_cells * 4);
        // Two cells at most each, checked above: `read_cells` succeeds.
        let region = Region::new(
            read_cells(address).unwrap_or(0),
            read_cells(size).unwrap_or(0),
        );
        context
            .translate(region)
            .ok_or(PropertyError::new("reg", "outside its bus's ranges"))
    })))
}
