// SPDX-License-Identifier: GPL-2.0-or-later
//! Architecture support: boot (and what it does at EL3), exception
//! vectors, MMU, device-memory accessors and the generic timer.

pub mod boot;
pub mod cpu;
mod el3;
pub mod exceptions;
pub mod mmio;
pub mod mmu;
pub mod timer;

use aarch64_cpu::registers::{CurrentEL, Readable};

/// The exception level the kernel runs at (always 1 after boot).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}
