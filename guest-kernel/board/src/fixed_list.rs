// SPDX-License-Identifier: GPL-2.0-or-later
//! [`FixedList`]: the lists of [`BoardInfo`](crate::BoardInfo), without a heap.

/// A list with a fixed capacity and no heap: what the kernel can afford.
#[derive(Clone, Copy, Debug)]
pub struct FixedList<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
    /// Entries that did not fit.
    dropped: usize,
}

impl<T: Copy, const N: usize> FixedList<T, N> {
    pub(crate) const fn new() -> Self {
        FixedList {
            items: [None; N],
            len: 0,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = Some(item);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// An empty list that counts as many dropped entries as this one.
    pub(crate) const fn emptied(&self) -> Self {
        let mut empty = Self::new();
        empty.dropped = self.dropped;
        empty
    }

    /// Number of entries kept.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry was kept.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of entries found beyond the capacity (and not kept).
    pub const fn dropped(&self) -> usize {
        self.dropped
    }

    /// The entry at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(index)?.as_ref()
    }

    /// The entries, in device-tree order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..self.len].iter().flatten()
    }
}

impl<T: PartialEq + Copy, const N: usize> PartialEq for FixedList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter()) && self.dropped == other.dropped
    }
}
