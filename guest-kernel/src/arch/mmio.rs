// SPDX-License-Identifier: GPL-2.0-or-later

//! The kernel's one path to device memory: loads and stores that a
//! hypervisor can emulate.
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
//! The `arm-gic` and `arm-pl011-uart` crates use `safe-mmio`, which does the
//! same on aarch64. `cargo xtask lint` rejects any other volatile access in
//! the kernel (see `xtask/src/mmio_lint.rs`), and `cargo xtask kvm-check`
//! checks every I/O access of the tests under a QEMU plugin.
//!
//! The asm blocks are not `readonly`/`nomem`: the compiler must treat each
//! one as touching memory, so it neither moves Normal-memory accesses
//! across it nor merges or drops it, as for volatile accesses.

use core::arch::asm;

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
        )*
    };
}

accessors!(
    (read_u8, write_u8, u8, "ldrb", "strb", "w"),
    (read_u32, write_u32, u32, "ldr", "str", "w"),
    (read_u64, write_u64, u64, "ldr", "str", "x"),
);

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
