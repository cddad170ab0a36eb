// SPDX-License-Identifier: GPL-2.0-or-later
//! Which CPU this is, and data kept per CPU.
//!
//! Every CPU the kernel runs on has a small index, 0 for the boot CPU and
//! 1.. in device-tree order for the others (`smp`), which the boot code
//! writes to TPIDR_EL1 before any Rust code runs at EL1 and which never
//! changes: there is no scheduler, code never moves to another CPU.
//!
//! [`PerCpu`] is an array with one slot per possible CPU. It needs no
//! `unsafe`: it is `Sync` exactly when its item type is (atomics, locks),
//! because any CPU may read any slot (the shell lists them all, the boot
//! CPU watches the others come up). The index only tells a CPU which slot
//! is its own; a CPU that stored into another's slot would be a logic
//! error, never a data race.

use aarch64_cpu::registers::{Readable, MPIDR_EL1, TPIDR_EL1};

pub use board_discovery::MAX_CPUS;

/// This CPU's index (0 for the boot CPU), from TPIDR_EL1.
#[inline(always)]
pub fn index() -> usize {
    TPIDR_EL1.get() as usize
}

/// This CPU's MPIDR affinity fields (Aff3 in bits 32..40, Aff2..Aff0 in
/// bits 0..24), the value the device tree's `cpu` nodes give as `reg`.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// Aff3 (bits 32..40) and Aff2..Aff0 (bits 0..24) of MPIDR_EL1.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// One `T` per possible CPU, indexed by [`index`].
pub struct PerCpu<T>([T; MAX_CPUS]);

impl<T> PerCpu<T> {
    /// The slots, CPU 0's first.
    pub const fn new(slots: [T; MAX_CPUS]) -> Self {
        PerCpu(slots)
    }

    /// This CPU's slot.
    #[inline]
    pub fn this(&self) -> &T {
        &self.0[index()]
    }

    /// CPU `cpu`'s slot, if there is such a CPU index.
    pub fn of(&self, cpu: usize) -> Option<&T> {
        self.0.get(cpu)
    }

    /// Every slot, CPU 0's first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}
