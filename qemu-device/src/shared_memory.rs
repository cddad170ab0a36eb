// SPDX-License-Identifier: GPL-2.0-or-later
//! The pass-through RAM (region 0) as the state machine writes it: atomic
//! accesses with the orderings of the time page's protocol.

use std::{
    ptr::NonNull,
    sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering},
};

use stopwatch_abi::shared;
use stopwatch_model::{ordering, SharedMemory};

/// The pass-through RAM, written with atomic accesses: the guest's vCPU
/// threads may read and write it at the same time as the device.
///
/// Those threads run translated guest code, outside Rust's memory model,
/// with accesses of any width; what the device needs is that each of its
/// own accesses is single-copy atomic and ordered as the time page's
/// protocol says, which aligned atomics and the release fences give (their
/// orderings are [`stopwatch_model::ordering`], the ones the protocol's
/// model check explores). The guest can only ever make the page's contents
/// wrong, never the device unsound.
pub struct SharedRam {
    base: NonNull<u8>,
}

impl SharedRam {
    /// The region whose RAM starts at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the start of `shared::SIZE` bytes of RAM that stay
    /// allocated, at that address, as long as the returned value is used.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        SharedRam { base }
    }

    /// A pointer to the `T` at `offset`; panics on an offset outside the
    /// region or misaligned for `T` (the model uses the ABI's constants, so
    /// this is a bug in the device, never the guest's doing).
    fn at<T>(&self, offset: u64) -> *mut T {
        let size = std::mem::size_of::<T>() as u64;
        assert!(offset
            .checked_add(size)
            .is_some_and(|end| end <= shared::SIZE));
        assert!(offset % std::mem::align_of::<T>() as u64 == 0);
        // SAFETY: in bounds of the region's RAM block, checked above.
        unsafe { self.base.as_ptr().add(offset as usize).cast() }
    }
}

impl SharedMemory for SharedRam {
    fn read_u64(&self, offset: u64) -> u64 {
        // SAFETY: `at` checked the u64 is aligned and inside the RAM block,
        // which stays allocated while `self` is used (`new`'s contract);
        // see `SharedRam` on sharing.
        let word = unsafe { AtomicU64::from_ptr(self.at(offset)) };
        u64::from_le(word.load(Ordering::Relaxed))
    }

    fn write_u64(&mut self, offset: u64, value: u64) {
        // SAFETY: as in `read_u64`.
        let word = unsafe { AtomicU64::from_ptr(self.at(offset)) };
        word.store(value.to_le(), ordering::STORE);
    }

    fn write_u32(&mut self, offset: u64, value: u32) {
        // SAFETY: as in `read_u64`, for a u32.
        let word = unsafe { AtomicU32::from_ptr(self.at(offset)) };
        word.store(value.to_le(), ordering::STORE);
    }

    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        for (index, &byte) in bytes.iter().enumerate() {
            // SAFETY: as in `read_u64`, for one byte.
            let cell = unsafe { AtomicU8::from_ptr(self.at(offset + index as u64)) };
            cell.store(byte, ordering::STORE);
        }
    }

    fn write_barrier(&mut self) {
        fence(ordering::WRITE_BARRIER);
    }
}
