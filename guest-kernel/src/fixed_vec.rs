// SPDX-License-Identifier: GPL-2.0-or-later
//! [`FixedVec`]: a list with a fixed capacity and no heap, for the kernel's
//! tables of things that are not `Copy` (drivers, interrupt routes).
//!
//! The slots are `MaybeUninit` rather than `Option`: an empty list is then
//! all zero bytes, so a `static` one costs no space in the image (an array
//! of `None`s with a niche is not zero and lands in `.data`).

use core::mem::MaybeUninit;

/// Up to `N` items, in the order they were pushed; never dropped (the
/// kernel's tables live for ever).
pub struct FixedVec<T, const N: usize> {
    items: [MaybeUninit<T>; N],
    /// `items[..len]` are initialised.
    len: usize,
}

impl<T, const N: usize> FixedVec<T, N> {
    /// An empty list.
    pub const fn new() -> Self {
        FixedVec {
            items: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Appends `item`, or gives it back when the list is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                slot.write(item);
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }

    /// The items, in order.
    pub fn as_slice(&self) -> &[T] {
        let initialised = &self.items[..self.len];
        // SAFETY: `push` initialised every slot below `len`, and nothing
        // ever de-initialises one; `MaybeUninit<T>` has `T`'s layout.
        unsafe { &*(core::ptr::from_ref(initialised) as *const [T]) }
    }
}

impl<T, const N: usize> core::ops::Deref for FixedVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}
