// SPDX-License-Identifier: GPL-2.0-or-later
//! Decoding a guest access to the register region.

use stopwatch_abi::regs;

use crate::GuestError;

/// A register of the trapping region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// [`regs::COMMAND`]: write-only.
    Command,
    /// [`regs::STATUS`]: read-only.
    Status,
}

/// Which part of a 64-bit register an access covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// An 8-byte access.
    Whole,
    /// A 4-byte access to bits 0..32 (the original driver's `readl`/`writel`).
    Lower,
    /// A 4-byte access to bits 32..64.
    Upper,
}

/// A decoded, valid access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The register accessed.
    pub register: Register,
    /// The part of it.
    pub half: Half,
}

/// Decodes an access of `size` bytes at `offset` into the register region.
///
/// Only naturally aligned 4- and 8-byte accesses to a register are valid;
/// anything else is a guest mistake that the device reports and ignores.
pub fn decode(offset: u64, size: u32) -> Result<Access, GuestError> {
    let half = match size {
        8 => Half::Whole,
        4 if offset % regs::WIDTH == 0 => Half::Lower,
        4 => Half::Upper,
        _ => return Err(GuestError::BadAccessSize { offset, size }),
    };
    if offset % u64::from(size) != 0 {
        return Err(GuestError::UnalignedAccess { offset, size });
    }
    let register = match offset - offset % regs::WIDTH {
        regs::COMMAND => Register::Command,
        regs::STATUS => Register::Status,
        _ => return Err(GuestError::UnknownOffset { offset }),
    };
    Ok(Access { register, half })
}
