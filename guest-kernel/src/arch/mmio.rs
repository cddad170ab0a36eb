// SPDX-License-Identifier: GPL-2.0-or-later

//! The kernel's one path to device memory: loads and stores that a
//! hypervisor can emulate, and the register types that reach devices
//! through them.
//!
//! Under KVM on an arm64 host, a guest access to an emulated MMIO region
//! traps to the host as a stage-2 data abort, and the host can complete it
//! only if the CPU reports a valid syndrome (ESR_EL2.ISV = 1): a load or
//! store of one general-purpose register, without writeback. Pairs
//! (LDP/STP), pre- or post-index writeback, SIMD/FP registers, exclusives
//! and atomics give ISV = 0, and KVM cannot emulate them. Rust's
//! `read_volatile`/`write_volatile` leave the instruction to the compiler,
//! which may pick a writeback form (it did: `ldr w8, [x26, #48]!` for the
//! PL011's UARTCR). So every access here is inline assembly with a base
//! register and nothing else: `ldr{b,h} wN, [xM]`, `ldr xN, [xM]` and the
//! matching stores, emulable by construction.
//!
//! A driver describes its device with tock-registers: the layout with
//! `register_structs!` (of this module's [`ReadOnly`], [`WriteOnly`] and
//! [`ReadWrite`] slots, not tock-registers' own types, whose accesses are
//! volatile) and the fields with `register_bitfields!`. It holds a
//! [`Registers`] block and reaches one register with [`register!`], which
//! gives a [`Register`]: tock-registers' `Readable`/`Writeable` (`get`,
//! `read(FIELD)`, `is_set`, `write`, `modify`, ...) on top of the accessors
//! below. No reference to device memory is ever made: a layout is only a
//! map of offsets.
//!
//! The `arm-gic` crate uses `safe-mmio`, which does the same on aarch64.
//! `cargo xtask lint` rejects any other volatile access in the kernel (see
//! `xtask/src/mmio_lint.rs`), and `cargo xtask kvm-check` checks every I/O
//! access of the tests under a QEMU plugin.
//!
//! The asm blocks are not `readonly`/`nomem`: the compiler must treat each
//! one as touching memory, so it neither moves Normal-memory accesses
//! across it nor merges or drops it, as for volatile accesses.

use core::arch::asm;
use core::marker::PhantomData;
use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::{RegisterLongName, UIntLike};

macro_rules! accessors {
    ($(($read:ident, $write:ident, $ty:ty, $load:literal, $store:literal, $reg:literal)),* $(,)?) => {
        $(
            #[doc = concat!("Reads a `", stringify!($ty), "` device register with one `", $load, "`.")]
            ///
            /// # Safety
            ///
            /// `address` must be a naturally aligned register of a device
            /// mapped as Device memory, readable at this size, and the
            /// read's side effects (if the device has any) must be what
            /// the caller wants.
            #[inline(always)]
            pub unsafe fn $read(address: *const $ty) -> $ty {
                let value: $ty;
                // SAFETY: The caller promises a mapped, aligned, readable
                // register. One load of one general-purpose register from
                // a base register: no writeback, ISV = 1 under KVM.
                unsafe {
                    asm!(
                        concat!($load, " {value:", $reg, "}, [{address}]"),
                        address = in(reg) address,
                        value = lateout(reg) value,
                        options(nostack, preserves_flags),
                    );
                }
                value
            }

            #[doc = concat!("Writes a `", stringify!($ty), "` device register with one `", $store, "`.")]
            ///
            /// # Safety
            ///
            /// `address` must be a naturally aligned register of a device
            /// mapped as Device memory, writable at this size, and writing
            /// `value` must be what the caller wants the device to do.
            #[inline(always)]
            pub unsafe fn $write(address: *mut $ty, value: $ty) {
                // SAFETY: The caller promises a mapped, aligned, writable
                // register. One store of one general-purpose register to a
                // base register: no writeback, ISV = 1 under KVM.
                unsafe {
                    asm!(
                        concat!($store, " {value:", $reg, "}, [{address}]"),
                        address = in(reg) address,
                        value = in(reg) value,
                        options(nostack, preserves_flags),
                    );
                }
            }

            impl Width for $ty {
                unsafe fn load(address: *const $ty) -> $ty {
                    // SAFETY: Passed on from the caller.
                    unsafe { $read(address) }
                }

                unsafe fn store(address: *mut $ty, value: $ty) {
                    // SAFETY: Passed on from the caller.
                    unsafe { $write(address, value) }
                }
            }
        )*
    };
}

/// The widths a register can have, each with its single-register load and
/// store.
pub trait Width: UIntLike {
    /// One load of the register at `address`.
    ///
    /// # Safety
    ///
    /// As for [`read_u32`].
    unsafe fn load(address: *const Self) -> Self;

    /// One store of `value` to the register at `address`.
    ///
    /// # Safety
    ///
    /// As for [`write_u32`].
    unsafe fn store(address: *mut Self, value: Self);
}

accessors!(
    (read_u8, write_u8, u8, "ldrb", "strb", "w"),
    (read_u32, write_u32, u32, "ldr", "str", "w"),
    (read_u64, write_u64, u64, "ldr", "str", "x"),
);

/// How a register may be accessed: the `A` of a [`Slot`].
pub mod access {
    /// Readable and writable.
    pub enum ReadWrite {}
    /// Readable only.
    pub enum ReadOnly {}
    /// Writable only.
    pub enum WriteOnly {}

    /// The access modes that allow reads.
    pub trait Read {}
    impl Read for ReadWrite {}
    impl Read for ReadOnly {}

    /// The access modes that allow writes.
    pub trait Write {}
    impl Write for ReadWrite {}
    impl Write for WriteOnly {}
}

/// One register in a device's `register_structs!` layout: `T` wide, with
/// the fields of `R` (a `register_bitfields!` register; `()` for a plain
/// value) and the access `A`. Only a map: its bytes are never read as
/// memory; [`register!`] gives the [`Register`] at the device's address.
#[repr(transparent)]
pub struct Slot<T, R = (), A = access::ReadWrite> {
    _width: T,
    _fields: PhantomData<(R, A)>,
}

/// A register that can be read and written, in a layout.
pub type ReadWrite<T, R = ()> = Slot<T, R, access::ReadWrite>;
/// A register that can only be read, in a layout.
pub type ReadOnly<T, R = ()> = Slot<T, R, access::ReadOnly>;
/// A register that can only be written, in a layout.
pub type WriteOnly<T, R = ()> = Slot<T, R, access::WriteOnly>;

/// A device's registers: the address of a block mapped as Device memory,
/// laid out as `L` (a `register_structs!` struct of [`Slot`]s).
pub struct Registers<L> {
    base: NonNull<L>,
}

impl<L> Clone for Registers<L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for Registers<L> {}

impl<L> Registers<L> {
    /// The registers at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be a register block laid out as `L`, mapped as Device
    /// memory for as long as this value or a copy exists, and every access
    /// that [`Readable`]/[`Writeable`] allow on it (reads included: some
    /// registers change state when read) must be one its users want; a
    /// block shared between two users says why that holds where they are
    /// created.
    pub const unsafe fn new(base: NonNull<L>) -> Self {
        Registers { base }
    }

    /// The block's address.
    pub fn base(&self) -> NonNull<L> {
        self.base
    }

    /// The register at `slot`: use [`register!`], which passes a field of
    /// this block.
    ///
    /// # Safety
    ///
    /// `slot` must be the address of one of `L`'s fields in this block.
    #[doc(hidden)]
    pub unsafe fn at<T, R, A>(&self, slot: *mut Slot<T, R, A>) -> Register<'_, T, R, A> {
        Register {
            address: slot.cast(),
            _block: PhantomData,
        }
    }
}

/// The register `$field` of `$registers` (a [`Registers`]), for
/// tock-registers' `Readable`/`Writeable`:
/// `register!(self.registers, fr).is_set(FR::TXFF)`.
macro_rules! register {
    ($registers:expr, $field:ident) => {{
        let registers = &$registers;
        // SAFETY: The address of a field of the block's layout, computed
        // from its base without making a reference to device memory.
        unsafe { registers.at(&raw mut (*registers.base().as_ptr()).$field) }
    }};
}
pub(crate) use register;

/// One register of a mapped device, read and written with one load or
/// store of [`Width`] each; tock-registers' `Readable` and `Writeable`
/// add the fields (`read`, `is_set`, `write`, `modify`, ...).
pub struct Register<'a, T, R, A> {
    /// Inside the block of the [`Registers`] it came from.
    address: *mut T,
    _block: PhantomData<(&'a (), R, A)>,
}

impl<T: Width, R: RegisterLongName, A: access::Read> Readable for Register<'_, T, R, A> {
    type T = T;
    type R = R;

    #[inline(always)]
    fn get(&self) -> T {
        // SAFETY: A register of a block `Registers::new`'s caller promised
        // is mapped and may be read (`Registers::at`'s caller promised it
        // is one of the block's).
        unsafe { T::load(self.address) }
    }
}

impl<T: Width, R: RegisterLongName, A: access::Write> Writeable for Register<'_, T, R, A> {
    type T = T;
    type R = R;

    #[inline(always)]
    fn set(&self, value: T) {
        // SAFETY: As in `get`, for a write.
        unsafe { T::store(self.address, value) }
    }
}

/// The negative control of `cargo xtask kvm-check` (boot argument
/// `kvm-negative-control`): ONE load from a device register with
/// pre-index writeback, the form KVM cannot emulate, which the check's
/// plugin must catch and name. Only in the test kernel.
///
/// # Safety
///
/// As for [`read_u32`].
#[cfg(feature = "selftest")]
#[inline(never)]
pub unsafe fn writeback_negative_control(address: *const u32) -> u32 {
    let value: u32;
    // SAFETY: As for `read_u32`; the writeback only changes the scratch
    // copy of the address in a register.
    unsafe {
        asm!(
            "ldr {value:w}, [{address}, #0]!",
            address = inout(reg) address => _,
            // Not `lateout`: with writeback, Rt = Rn is unpredictable.
            value = out(reg) value,
            options(nostack, preserves_flags),
        );
    }
    value
}
