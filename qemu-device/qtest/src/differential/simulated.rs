// SPDX-License-Identifier: GPL-2.0-or-later
//! The model side of a differential run's guest accesses: QEMU's memory
//! core splits an access over the pass-through RAM, the registers and
//! unassigned space; the model's [`Simulation`](stopwatch_model::Simulation)
//! memory and register calls get the same pieces.

use stopwatch_abi::{regs, shared};

use super::runner::Runner;

impl Runner {
    /// A guest store as the memory core splits it over RAM, the registers
    /// and unassigned space.
    pub(super) fn model_store(&mut self, address: u64, size: u32, value: u64) {
        for piece in self.pieces(address, size) {
            let bytes = (value >> (8 * piece.skip)) & mask(piece.len);
            match piece.target {
                Target::Ram(offset) => {
                    let at = offset as usize;
                    self.env.memory[at..at + piece.len as usize]
                        .copy_from_slice(&bytes.to_le_bytes()[..piece.len as usize]);
                }
                Target::Registers(offset) => {
                    self.model.write(&mut self.env, offset, bytes, piece.len);
                }
                Target::Unassigned => {}
            }
        }
    }

    /// A guest load, split likewise; unassigned space reads 0.
    pub(super) fn model_load(&mut self, address: u64, size: u32) -> u64 {
        let mut value = 0;
        for piece in self.pieces(address, size) {
            let bytes = match piece.target {
                Target::Ram(offset) => {
                    let mut bytes = [0; 8];
                    let at = offset as usize;
                    bytes[..piece.len as usize]
                        .copy_from_slice(&self.env.memory[at..at + piece.len as usize]);
                    u64::from_le_bytes(bytes)
                }
                Target::Registers(offset) => {
                    self.model.read(&mut self.env, offset, piece.len) & mask(piece.len)
                }
                Target::Unassigned => 0,
            };
            value |= bytes << (8 * piece.skip);
        }
        value
    }

    /// How QEMU's memory core (`flatview_read_continue`) splits an access:
    /// RAM takes what lies inside it; an MMIO region gets the largest
    /// power-of-two piece of at most its maximum size, even if that runs
    /// past its end (QEMU does not clamp MMIO accesses to their region:
    /// the registers see an 8-byte access at 0xffa); unassigned space
    /// takes at most 4 bytes, aligned, and reads 0.
    fn pieces(&self, address: u64, size: u32) -> Vec<Piece> {
        let shared = self.shared_base..self.shared_base + shared::SIZE;
        let registers = self.registers_base..self.registers_base + regs::SIZE;
        let pow2floor = |len: u64| 1 << (63 - len.leading_zeros());
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < size {
            let at = address + u64::from(done);
            let left = u64::from(size - done);
            let (target, len) = if shared.contains(&at) {
                (Target::Ram(at - shared.start), left.min(shared.end - at))
            } else if registers.contains(&at) {
                // The registers allow any size up to 8 and any alignment.
                (
                    Target::Registers(at - registers.start),
                    pow2floor(left.min(8)),
                )
            } else {
                // QEMU's unassigned region: 4 bytes at most, and no more
                // than the address's alignment.
                let alignment = at & at.wrapping_neg();
                let mut most = 4;
                if alignment != 0 && alignment < most {
                    most = alignment;
                }
                (Target::Unassigned, pow2floor(left.min(most)))
            };
            let len = len as u32;
            pieces.push(Piece {
                target,
                skip: done,
                len,
            });
            done += len;
        }
        pieces
    }
}

/// Part of an access that lands in one place.
struct Piece {
    target: Target,
    /// Bytes of the access before this piece.
    skip: u32,
    len: u32,
}

enum Target {
    Ram(u64),
    Registers(u64),
    Unassigned,
}

pub(super) fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1 << (size * 8)) - 1
    }
}
