// SPDX-License-Identifier: GPL-2.0-or-later
//! Decoding single values: what a node is (`compatible`), GIC interrupt
//! specifiers, big-endian cells.

use crate::{Interrupt, Trigger};

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
pub(crate) enum NodeKind {
    Stopwatch,
    /// A GIC interrupt controller of this version (2 or 3).
    Gic(u8),
    /// The generic timer.
    Timer,
    Psci,
    Pl011,
    /// The PL031 real-time clock (only the test kernel's bench reads it).
    #[cfg(feature = "pl031")]
    Pl031,
    Other,
}

/// The `compatible` names the kernel knows, what they make a node, and
/// whether that needs the node to be an interrupt controller. (PSCI's
/// `arm,psci*` names are matched by prefix.)
const KNOWN_COMPATIBLES: &[(&[u8], NodeKind, bool)] = &[
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
    #[cfg(feature = "pl031")]
    (b"arm,pl031", NodeKind::Pl031, false),
];

impl NodeKind {
    /// From the raw `compatible` list (NUL-terminated strings, the first
    /// known one decides) and whether the node is an interrupt controller.
    /// Compared as bytes: no UTF-8 check needed.
    pub(crate) fn of(compatible: &[u8], is_interrupt_controller: bool) -> Self {
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

/// Big-endian cells as one number: 0, 1 or 2 cells (more do not fit).
pub(crate) fn read_cells(bytes: &[u8]) -> Option<u64> {
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
}
