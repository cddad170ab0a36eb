// SPDX-License-Identifier: GPL-2.0-or-later
//! The seeded random generator every randomized test and fuzzer of the
//! project uses: xorshift64*, deterministic and dependency-free, so a
//! failing run is replayed from its seed alone.

#![no_std]

/// xorshift64* (Vigna): 64 bits of state, good enough to pick test inputs.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator for `seed` (any value; 0 is mapped to a non-zero state,
    /// which xorshift needs).
    pub const fn new(seed: u64) -> Self {
        TestRng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound` > 0; the tiny modulo bias does not
    /// matter for tests).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A number in `range`.
    pub fn in_range(&mut self, range: core::ops::RangeInclusive<u64>) -> u64 {
        let span = range.end() - range.start();
        match span.checked_add(1) {
            Some(count) => range.start() + self.below(count),
            None => self.next_u64(),
        }
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (TestRng::new(42), TestRng::new(42));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(TestRng::new(1).next_u64(), TestRng::new(2).next_u64());
    }

    #[test]
    fn zero_seed_still_moves() {
        let mut rng = TestRng::new(0);
        assert_ne!(rng.next_u64(), rng.next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut rng = TestRng::new(7);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            assert!((5..=9).contains(&rng.in_range(5..=9)));
        }
        assert_eq!(rng.in_range(3..=3), 3);
        let _ = rng.in_range(0..=u64::MAX);
    }
}
