// SPDX-License-Identifier: GPL-2.0-or-later
//! Sharing state between CPUs and interrupt handlers.
//!
//! Two kinds of concurrency meet here: an interrupt arriving in the middle
//! of the code it interrupts, on the same CPU, and the other CPUs (`smp`)
//! running at the same time. [`IrqMutex`] masks IRQs on this CPU and spins
//! until no other CPU holds it, which together give exclusive access;
//! [`SetOnce`] holds a value that is set once at boot and only read
//! afterwards. Data kept per CPU is in `arch::cpu::PerCpu`.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, DAIF};

use crate::arch::cpu;

/// Data shared between CPUs and with interrupt handlers, borrowed with
/// IRQs masked and the lock held: a spinlock that also catches re-entry.
pub struct IrqMutex<T> {
    value: UnsafeCell<T>,
    /// 0 when free, else the holder's CPU index + 1 (zero so that a
    /// `static` mutex lands in `.bss`). Another CPU waits; the holder
    /// itself trying again (a `lock` inside `lock`, or from an exception
    /// taken while locked) would alias the `&mut T`, and panics instead.
    owner: AtomicUsize,
}

// SAFETY: Access to `value` only happens inside `lock`, between an Acquire
// that moved `owner` from 0 to this CPU and a Release that puts 0 back: so
// no two CPUs hold a `&mut T` at once, the holder's writes are visible to
// the next holder, and with IRQs masked nothing else runs on the holder's
// CPU. `T: Send` because the value is used from whichever CPU or
// interrupt handler holds the lock.
unsafe impl<T: Send> Sync for IrqMutex<T> {}

impl<T> IrqMutex<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        IrqMutex {
            value: UnsafeCell::new(value),
            owner: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with exclusive access to the data and IRQs masked, after
    /// waiting for another CPU that holds it.
    ///
    /// # Panics
    ///
    /// On re-entry (a bug: the lock is not recursive).
    pub fn lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let guard = Guard::acquire(&self.owner);
        // SAFETY: IRQs are masked and `owner` moved from 0 to this CPU, so
        // this is the only live reference to the value until the guard is
        // dropped.
        let result = f(unsafe { &mut *self.value.get() });
        drop(guard);
        result
    }
}

/// Holds an [`IrqMutex`]: IRQs masked and `owner` set to this CPU. Kept
/// apart from the generic `lock` so its code exists once.
struct Guard<'a> {
    owner: &'a AtomicUsize,
    _masked: IrqsMasked,
}

impl<'a> Guard<'a> {
    #[inline(never)]
    fn acquire(owner: &'a AtomicUsize) -> Self {
        let masked = IrqsMasked::new();
        let me = cpu::index() + 1;
        loop {
            match owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(holder) => {
                    assert!(holder != me, "IrqMutex locked twice");
                    core::hint::spin_loop();
                }
            }
        }
        Guard {
            owner,
            _masked: masked,
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
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
