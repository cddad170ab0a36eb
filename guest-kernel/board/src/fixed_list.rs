// SPDX-License-Identifier: GPL-2.0-or-later
//! [`FixedList`]: the lists of [`BoardInfo`](crate::BoardInfo): the
//! kernel's one fixed-capacity list, `heapless::Vec`, plus a count of the
//! entries the device tree had beyond its capacity (the kernel reports
//! them instead of silently ignoring them).

/// A list with a fixed capacity and no heap, counting what did not fit.
#[derive(Clone, Debug)]
pub struct FixedList<T, const N: usize> {
    items: heapless::Vec<T, N>,
    /// Entries that did not fit.
    dropped: usize,
}

impl<T, const N: usize> FixedList<T, N> {
    pub(crate) const fn new() -> Self {
        FixedList {
            items: heapless::Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.items.push(item).is_err() {
            self.dropped += 1;
        }
    }

    /// Takes the entries out, leaving an empty list that still counts the
    /// dropped ones (to filter them back in).
    pub(crate) fn take_entries(&mut self) -> Self {
        let mut empty = Self::new();
        empty.dropped = self.dropped;
        core::mem::replace(self, empty)
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no entry was kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of entries found beyond the capacity (and not kept).
    pub const fn dropped(&self) -> usize {
        self.dropped
    }

    /// The entry at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.items.get(index)
    }

    /// The entries, in device-tree order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for FixedList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items && self.dropped == other.dropped
    }
}
