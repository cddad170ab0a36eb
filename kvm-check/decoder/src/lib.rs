// SPDX-License-Identifier: GPL-2.0-or-later

//! Which A64 instructions a hypervisor can emulate when they access MMIO.
//!
//! Under KVM on arm64, a guest access to an emulated device region traps
//! to the host as a stage-2 data abort. The host can complete the access
//! only when the CPU reports a valid instruction syndrome (ESR_EL2.ISV =
//! 1): the Arm ARM gives one for loads and stores of a single
//! general-purpose register, acquire/release ones included, but not for
//! those with writeback, pairs, SIMD/FP registers, exclusives, atomics or
//! anything else. KVM then fails the access (`kvm_handle_mmio_return`
//! never runs; the VMM gets `-ENOSYS` or the guest an external abort).
//!
//! [`classify`] decodes the load/store encoding classes of the A64
//! instruction set (the "Loads and Stores" group of the encoding index) far
//! enough to tell those apart. It is pure, so it is tested on the host
//! against words assembled by `aarch64-linux-gnu-as`
//! (`tests/assembled_vectors.rs`); the QEMU plugin of `cargo xtask
//! kvm-check` applies it to every instruction that touches an I/O region.

#![no_std]

use core::fmt;

/// How a single-register load or store forms its address (all emulable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `[Xn{, #imm}]`, scaled unsigned offset (LDR, STR, LDRB, ...).
    UnsignedOffset,
    /// `[Xn{, #simm}]`, unscaled signed offset (LDUR, STUR, ...).
    Unscaled,
    /// `[Xn, Xm{, extend}]` (LDR with a register offset).
    RegisterOffset,
    /// Unprivileged (LDTR, STTR, ...).
    Unprivileged,
    /// PC-relative literal (LDR Wt, label).
    Literal,
}

/// The two writeback forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    /// `[Xn, #simm]!`: the base is updated before the access.
    Pre,
    /// `[Xn], #simm`: the base is updated after the access.
    Post,
}

/// What kind of memory access an instruction is, for emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A load or store of one general-purpose register: emulable.
    SingleRegister(Addressing),
    /// Load-acquire / store-release of one general-purpose register
    /// (LDAR, STLR, LDLAR, STLLR, LDAPR, LDAPUR, STLUR): emulable.
    Ordered,
    /// A prefetch (PRFM, PRFUM): no data access at all.
    Prefetch,
    /// A single general-purpose register with pre- or post-index
    /// writeback: not emulable.
    Writeback(Index),
    /// A pair of registers (LDP, STP, LDNP, STNP, LDPSW), any addressing:
    /// not emulable.
    Pair,
    /// A SIMD/FP register (B/H/S/D/Q), single or pair: not emulable.
    SimdFp,
    /// Advanced SIMD structures (LD1..LD4, ST1..ST4, LDnR): not emulable.
    SimdStructure,
    /// Load/store exclusive (LDXR, STXR, LDAXR, LDXP, ...): not emulable.
    Exclusive,
    /// Atomic memory operations and compare-and-swap (LDADD, SWP, CAS,
    /// CASP, ...): not emulable.
    Atomic,
    /// Pointer-authenticated loads (LDRAA, LDRAB): not emulable.
    PointerAuth,
    /// Memory tagging (STG, LDG, ...): not emulable.
    MemoryTag,
    /// Another encoding of the load/store group (memory copy/set, the
    /// newer RCpc pair forms, ...): not emulable.
    OtherLoadStore,
    /// Not in the load/store group (SVE, DC ZVA, ...): not emulable.
    NotLoadStore,
}

impl Class {
    /// Whether KVM could emulate this instruction on an MMIO fault
    /// (ESR_EL2.ISV = 1), or it does not access data at all.
    pub fn is_emulable(self) -> bool {
        matches!(
            self,
            Class::SingleRegister(_) | Class::Ordered | Class::Prefetch
        )
    }

    /// A short stable name, used by the tests and in reports.
    pub fn key(self) -> &'static str {
        match self {
            Class::SingleRegister(Addressing::UnsignedOffset) => "single/unsigned-offset",
            Class::SingleRegister(Addressing::Unscaled) => "single/unscaled",
            Class::SingleRegister(Addressing::RegisterOffset) => "single/register-offset",
            Class::SingleRegister(Addressing::Unprivileged) => "single/unprivileged",
            Class::SingleRegister(Addressing::Literal) => "single/literal",
            Class::Ordered => "ordered",
            Class::Prefetch => "prefetch",
            Class::Writeback(Index::Pre) => "writeback/pre-index",
            Class::Writeback(Index::Post) => "writeback/post-index",
            Class::Pair => "pair",
            Class::SimdFp => "simd-fp",
            Class::SimdStructure => "simd-structure",
            Class::Exclusive => "exclusive",
            Class::Atomic => "atomic",
            Class::PointerAuth => "pointer-auth",
            Class::MemoryTag => "memory-tag",
            Class::OtherLoadStore => "other-load-store",
            Class::NotLoadStore => "not-load-store",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_emulable() {
            "emulable"
        } else {
            "NOT emulable under KVM"
        };
        write!(f, "{} ({verdict})", self.key())
    }
}

/// Bits `high..=low` of `word`.
const fn bits(word: u32, high: u32, low: u32) -> u32 {
    (word >> low) & ((1 << (high - low + 1)) - 1)
}

/// Classifies one A64 instruction word (little-endian as fetched).
pub fn classify(word: u32) -> Class {
    // The "Loads and Stores" group: op0 (bits 28:25) = x1x0.
    if bits(word, 27, 27) != 1 || bits(word, 25, 25) != 0 {
        return Class::NotLoadStore;
    }
    let simd = bits(word, 26, 26) == 1;
    let size = bits(word, 31, 30);
    match bits(word, 29, 28) {
        0b00 => exclusive_or_structures(word, simd, size),
        0b01 => literal_or_rcpc(word, simd, size),
        0b10 => {
            // Load/store pair: no-allocate, post-index, offset, pre-index.
            if simd {
                Class::SimdFp
            } else {
                Class::Pair
            }
        }
        _ => register(word, simd, size),
    }
}

/// Bits 29:28 = 00: exclusives, ordered, compare-and-swap, SIMD structures.
fn exclusive_or_structures(word: u32, simd: bool, size: u32) -> Class {
    if simd {
        // Bit 31 = 0 and bits 29:25 = 00110: LD1..LD4 / ST1..ST4 / LDnR.
        return if bits(word, 31, 31) == 0 && bits(word, 24, 24) <= 1 {
            Class::SimdStructure
        } else {
            Class::OtherLoadStore
        };
    }
    if bits(word, 24, 24) != 0 {
        // LSE128, RCpc3 and other newer encodings.
        return Class::OtherLoadStore;
    }
    let o2 = bits(word, 23, 23);
    let o1 = bits(word, 21, 21);
    match (o2, o1) {
        // LDAR, STLR, LDLAR, STLLR: one register, no writeback.
        (1, 0) => Class::Ordered,
        // CAS{A}{L}{B,H}.
        (1, 1) => Class::Atomic,
        // CASP (sizes 00 and 01); LDXP/STXP/LDAXP/STLXP (10 and 11).
        (0, 1) if size < 0b10 => Class::Atomic,
        _ => Class::Exclusive,
    }
}

/// Bits 29:28 = 01: load literal, RCpc unscaled, memory copy/set.
fn literal_or_rcpc(word: u32, simd: bool, size: u32) -> Class {
    if bits(word, 24, 24) == 0 {
        // Load register (literal); size is `opc` here.
        return if simd {
            Class::SimdFp
        } else if size == 0b11 {
            Class::Prefetch
        } else {
            Class::SingleRegister(Addressing::Literal)
        };
    }
    if simd {
        // LDAPUR/STLUR of SIMD/FP registers (RCpc3).
        return Class::SimdFp;
    }
    if bits(word, 31, 24) == 0b1101_1001 && bits(word, 21, 21) == 1 {
        // STG, STZG, ST2G, LDG, STGM, LDGM, ...
        return Class::MemoryTag;
    }
    if bits(word, 21, 21) == 0 && bits(word, 11, 10) == 0b00 {
        // LDAPUR/STLUR{B,H}, LDAPURS*: one register, no writeback.
        Class::Ordered
    } else {
        Class::OtherLoadStore
    }
}

/// Bits 29:28 = 11: load/store register, all addressing forms, atomics.
fn register(word: u32, simd: bool, size: u32) -> Class {
    let opc = bits(word, 23, 22);
    // PRFM/PRFUM: size = 11, opc = 10, general-purpose.
    let prefetch = !simd && size == 0b11 && opc == 0b10;
    let single = |addressing| {
        if simd {
            Class::SimdFp
        } else if prefetch {
            Class::Prefetch
        } else {
            Class::SingleRegister(addressing)
        }
    };
    if bits(word, 24, 24) == 1 {
        return single(Addressing::UnsignedOffset);
    }
    if bits(word, 21, 21) == 0 {
        return match bits(word, 11, 10) {
            0b00 => single(Addressing::Unscaled),
            0b10 => single(Addressing::Unprivileged),
            0b01 if simd => Class::SimdFp,
            0b01 => Class::Writeback(Index::Post),
            _ if simd => Class::SimdFp,
            _ => Class::Writeback(Index::Pre),
        };
    }
    match bits(word, 11, 10) {
        0b10 => single(Addressing::RegisterOffset),
        0b00 if simd => Class::OtherLoadStore,
        0b00 => {
            // Atomic memory operations, except LDAPR (o3 = 1, opc = 100,
            // Rs = 11111, A = 1, R = 0): a load-acquire of one register.
            let ldapr = bits(word, 23, 22) == 0b10
                && bits(word, 20, 16) == 0b11111
                && bits(word, 15, 12) == 0b1100;
            if ldapr {
                Class::Ordered
            } else {
                Class::Atomic
            }
        }
        _ if simd => Class::OtherLoadStore,
        _ => Class::PointerAuth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trial_s_offender_is_a_pre_index_writeback() {
        // `ldr w8, [x26, #48]!`, from `Pl011::enable` inlined into
        // `kernel_main`: the access that would kill the guest under KVM.
        assert_eq!(classify(0xb843_0f48), Class::Writeback(Index::Pre));
        assert!(!classify(0xb843_0f48).is_emulable());
    }

    #[test]
    fn what_safe_mmio_emits_is_emulable() {
        // `ldr w0, [x1]`, `str w0, [x1]`, `ldrb w0, [x1]`, `str x0, [x1]`.
        for word in [0xb940_0020, 0xb900_0020, 0x3940_0020, 0xf900_0020] {
            assert!(classify(word).is_emulable(), "{word:#010x}");
        }
    }

    #[test]
    fn non_load_store_words() {
        // nop, b ., dc zva, x0.
        for word in [0xd503_201f, 0x1400_0000, 0xd50b_7420] {
            assert_eq!(classify(word), Class::NotLoadStore, "{word:#010x}");
        }
    }

    #[test]
    fn keys_are_distinct() {
        let all = [
            Class::SingleRegister(Addressing::UnsignedOffset),
            Class::SingleRegister(Addressing::Unscaled),
            Class::SingleRegister(Addressing::RegisterOffset),
            Class::SingleRegister(Addressing::Unprivileged),
            Class::SingleRegister(Addressing::Literal),
            Class::Ordered,
            Class::Prefetch,
            Class::Writeback(Index::Pre),
            Class::Writeback(Index::Post),
            Class::Pair,
            Class::SimdFp,
            Class::SimdStructure,
            Class::Exclusive,
            Class::Atomic,
            Class::PointerAuth,
            Class::MemoryTag,
            Class::OtherLoadStore,
            Class::NotLoadStore,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.key(), b.key());
            }
        }
    }
}
