// SPDX-License-Identifier: GPL-2.0-or-later
//! The pass-through memory as the model writes it: the trait the QEMU
//! glue implements with atomics, its memory orderings, and plain memory for
//! tests.

use stopwatch_abi::shared;

/// The pass-through memory (region 0), as the device sees it.
///
/// The guest may touch the same memory at any time from another thread, so
/// the QEMU implementation uses atomic accesses; offsets are byte offsets
/// into the region and always naturally aligned.
pub trait SharedMemory {
    /// Reads a little-endian `u64`.
    fn read_u64(&self, offset: u64) -> u64;
    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, offset: u64, value: u64);
    /// Writes a little-endian `u32`.
    fn write_u32(&mut self, offset: u64, value: u32);
    /// Writes bytes.
    fn write_bytes(&mut self, offset: u64, bytes: &[u8]);
    /// Orders all writes before it before all writes after it, as seen by
    /// the guest (a release fence).
    fn write_barrier(&mut self);
}

/// The memory orderings of a [`SharedMemory`] that other threads read while
/// the device writes it: QEMU's, whose region the guest's vCPUs read with
/// no exit. One definition, used by the device (`qemu-device/src`) and by
/// the model checker that explores the time page's protocol with them
/// (`qemu-device/protocol-check`, with loom).
pub mod ordering {
    use core::sync::atomic::Ordering;

    /// Each store: single-copy atomic, ordered only by the barriers.
    pub const STORE: Ordering = Ordering::Relaxed;
    /// [`SharedMemory::write_barrier`](super::SharedMemory::write_barrier):
    /// a fence of this ordering.
    pub const WRITE_BARRIER: Ordering = Ordering::Release;
}

/// Plain memory, for tests and reference runs of the model: a copy of the
/// region with no other writer, so barriers have nothing to order.
pub type PlainMemory = [u8; shared::SIZE as usize];

impl SharedMemory for PlainMemory {
    fn read_u64(&self, offset: u64) -> u64 {
        let at = offset as usize;
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self[at..at + 8]);
        u64::from_le_bytes(bytes)
    }
    fn write_u64(&mut self, offset: u64, value: u64) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn write_u32(&mut self, offset: u64, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        let at = offset as usize;
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn write_barrier(&mut self) {}
}
