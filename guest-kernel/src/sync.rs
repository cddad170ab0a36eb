// SPDX-License-Identifier: GPL-2.0-or-later
//! Sharing state between the main program and interrupt handlers.
//!
//! The kernel runs on one CPU (the others stay parked), so the only
//! concurrency is an interrupt arriving in the middle of the main program.
//! [`IrqMutex`] masks IRQs while its data is borrowed, which is enough for
//! exclusive access; [`SetOnce`] holds a value that is set once at boot and
//! only read afterwards.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, DAIF};

/// Data shared with interrupt handlers, borrowed with IRQs masked.
pub struct IrqMutex<T> {
    value: UnsafeCell<T>,
    /// Catches re-entry (a `lock` inside `lock`, or from an exception
    /// taken while locked), which would alias the `&mut T`.
    locked: AtomicBool,
}

// SAFETY: Access to `value` only happens inside `lock`, with IRQs masked on
// the only CPU that runs, and `locked` rejects re-entry; so no two `&mut T`
// exist at once. `T: Send` because the value may be used from an interrupt
// handler as well as the main program.
unsafe impl<T: Send> Sync for IrqMutex<T> {}

impl<T> IrqMutex<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        IrqMutex {
            value: UnsafeCell::new(value),
            locked: AtomicBool::new(false),
        }
    }

    /// Runs `f` with exclusive access to the data and IRQs masked.
    ///
    /// # Panics
    ///
    /// On re-entry (a bug: the lock is not recursive).
    pub fn lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let guard = Guard::acquire(&self.locked);
        // SAFETY: IRQs are masked and `locked` was false, so this is the only
        // live reference to the value until the guard is dropped.
        let result = f(unsafe { &mut *self.value.get() });
        drop(guard);
        result
    }
}

/// Holds an [`IrqMutex`]: IRQs masked and the `locked` flag set. Kept
/// apart from the generic `lock` so its code exists once.
struct Guard<'a> {
    locked: &'a AtomicBool,
    _masked: IrqsMasked,
}

impl<'a> Guard<'a> {
    #[inline(never)]
    fn acquire(locked: &'a AtomicBool) -> Self {
        let masked = IrqsMasked::new();
        assert!(
            !locked.swap(true, Ordering::Acquire),
            "IrqMutex locked twice"
        );
        Guard {
            locked,
            _masked: masked,
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Masks IRQs on creation and restores the previous mask on drop.
pub struct IrqsMasked {
    saved_daif: u64,
}

impl IrqsMasked {
    /// Masks IRQs (PSTATE.I), remembering whether they were masked.
    pub fn new() -> Self {
        let saved_daif = DAIF.get();
        DAIF.set(saved_daif | (1 << 7));
        IrqsMasked { saved_daif }
    }
}

impl Drop for IrqsMasked {
    fn drop(&mut self) {
        DAIF.set(self.saved_daif);
    }
}

const EMPTY: u8 = 0;
const SETTING: u8 = 1;
const SET: u8 = 2;

/// A value set once (at boot) and then shared read-only.
pub struct SetOnce<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    state: AtomicU8,
}

// SAFETY: The value is written once, before `state` becomes SET with
// Release ordering, and only read (shared) after `state` is seen SET with
// Acquire ordering; `T: Sync` because every reader gets a `&T`.
unsafe impl<T: Sync + Send> Sync for SetOnce<T> {}

impl<T> SetOnce<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        SetOnce {
            value: UnsafeCell::new(MaybeUninit::uninit()),
            state: AtomicU8::new(EMPTY),
        }
    }

    /// Stores `value`; gives it back if the cell was already set.
    pub fn set(&self, value: T) -> Result<&T, T> {
        if self
            .state
            .compare_exchange(EMPTY, SETTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: The state moved EMPTY -> SETTING here, so no other writer
        // exists and no reader looks at the value until it is SET.
        let stored = unsafe { (*self.value.get()).write(value) };
        self.state.store(SET, Ordering::Release);
        Ok(stored)
    }

    /// The value, if it has been set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == SET {
            // SAFETY: SET means the value was fully written and is never
            // written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}
