// SPDX-License-Identifier: GPL-2.0-or-later
//! What the walk reads of one node: its properties, found in one scan.

use fdt::node::FdtNode;

use crate::decode::NodeKind;
use crate::PropertyError;

/// The properties the walk reads; [`NodeProperties`] keeps their values in
/// this order.
#[derive(Clone, Copy)]
pub(crate) enum Property {
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
/// names: the kernel's image has a size budget.
#[derive(Clone, Copy, Default)]
pub(crate) struct NodeProperties<'a> {
    pub(crate) values: [Option<&'a [u8]>; PROPERTY_NAMES.len()],
}

impl<'a> NodeProperties<'a> {
    pub(crate) fn of(node: FdtNode<'_, 'a>) -> Self {
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

    pub(crate) fn get(&self, property: Property) -> Option<&'a [u8]> {
        self.values[property as usize]
    }

    /// A string property, without its terminating NULs.
    pub(crate) fn text(&self, property: Property) -> Option<&'a [u8]> {
        self.get(property).map(text)
    }

    /// A property holding exactly one cell.
    pub(crate) fn cell(&self, property: Property) -> Option<u32> {
        Some(u32::from_be_bytes(self.get(property)?.try_into().ok()?))
    }

    pub(crate) fn disabled(&self) -> bool {
        self.text(Property::Status)
            .is_some_and(|status| status != b"okay" && status != b"ok")
    }

    /// The cell sizes of the node's children, with the defaults of the
    /// devicetree specification (2 and 1) where the node does not say; an
    /// error if it says it in other than one cell. (Larger counts, as a PCI
    /// bus's 3, are refused only where a `reg` or `ranges` written in them
    /// is read.)
    pub(crate) fn cells(&self) -> Result<CellSizes, PropertyError> {
        let count = |property, name, default| match self.get(property) {
            None => Ok(default),
            Some(_) => self
                .cell(property)
                .ok_or(PropertyError::new(name, "not one cell")),
        };
        Ok(CellSizes {
            address_cells: count(Property::AddressCells, "#address-cells", 2)?,
            size_cells: count(Property::SizeCells, "#size-cells", 1)?,
        })
    }

    pub(crate) fn kind(&self) -> NodeKind {
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
pub(crate) struct CellSizes {
    pub(crate) address_cells: u32,
    pub(crate) size_cells: u32,
}
