// SPDX-License-Identifier: GPL-2.0-or-later
//! [`FixedVec`]: a list with a fixed capacity and no heap, for the kernel's
//! tables of things that are not `Copy` (drivers, interrupt routes).

/// Up to `N` items, in the order they were pushed.
pub struct FixedVec<T, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T, const N: usize> FixedVec<T, N> {
    /// An empty list.
    pub const fn new() -> Self {
        FixedVec {
            items: [const { None }; N],
            len: 0,
        }
    }

    /// Appends `item`, or gives it back when the list is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(item);
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }

    /// Number of items.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no item.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(index)?.as_ref()
    }

    /// The items, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..self.len].iter().flatten()
    }
}
