// SPDX-License-Identifier: GPL-2.0-or-later
//! Exception vectors: IRQs go to the interrupt dispatcher, a semihosting
//! call that QEMU does not implement is skipped, everything else is a bug,
//! reported (ESR, FAR, ELR) before the run ends with a non-zero status.
//! The boot code also points VBAR_EL2 and VBAR_EL3 here, so that a fault
//! at those ELs is reported too, with that EL's syndrome registers.
//!
//! Every entry saves the complete interrupted state, including all 32
//! FP/SIMD registers and FPSR/FPCR: Rust code on this target uses NEON
//! registers freely (memcpy, formatting), so an IRQ handler would clobber
//! the interrupted code's vector registers otherwise. (The AAPCS64 only
//! makes the callee preserve the low 64 bits of v8-v15.) The handlers then
//! run with FPCR at its default (0), whatever the interrupted code set.
//! The in-guest test `fp_simd_registers_survive_interrupts` checks this
//! with `set_clobber_fp_simd_after_irq` (test kernel only).

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};

/// The interrupted state, as the vector code saves it on the stack.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0 to x30.
    pub gpr: [u64; 31],
    /// ELR_EL1: where the exception was taken.
    pub elr: u64,
    /// SPSR_EL1: the interrupted PSTATE.
    pub spsr: u64,
    /// FPSR.
    pub fpsr: u64,
    /// FPCR.
    pub fpcr: u64,
    _padding: u64,
    /// q0 to q31.
    pub simd: [u128; 32],
}

/// Offsets used by the assembly below; checked against the struct.
const FRAME_SIZE: usize = 800;
const SIMD_OFFSET: usize = 288;
const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == FRAME_SIZE);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, simd) == SIMD_OFFSET);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, spsr) == 256);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, fpcr) == 272);

global_asm!(
    r#"
// One vector entry: make room for the frame, free x0/x1, pass the entry's
// index (0..15) to the common code.
.macro VECTOR_ENTRY index
.balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    // Current EL with SP_EL0: synchronous, IRQ, FIQ, SError.
    VECTOR_ENTRY 0
    VECTOR_ENTRY 1
    VECTOR_ENTRY 2
    VECTOR_ENTRY 3
    // Current EL with SP_ELx (the kernel's own).
    VECTOR_ENTRY 4
    VECTOR_ENTRY 5
    VECTOR_ENTRY 6
    VECTOR_ENTRY 7
    // Lower EL, AArch64.
    VECTOR_ENTRY 8
    VECTOR_ENTRY 9
    VECTOR_ENTRY 10
    VECTOR_ENTRY 11
    // Lower EL, AArch32.
    VECTOR_ENTRY 12
    VECTOR_ENTRY 13
    VECTOR_ENTRY 14
    VECTOR_ENTRY 15

exception_common:
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #16 * 15]
    mrs     x1, spsr_el1
    mrs     x2, fpsr
    stp     x1, x2, [sp, #16 * 16]
    mrs     x1, fpcr
    str     x1, [sp, #16 * 17]
    msr     fpcr, xzr           // the handlers' FP environment: the default
    add     x1, sp, #{simd_offset}
    stp     q0, q1, [x1, #32 * 0]
    stp     q2, q3, [x1, #32 * 1]
    stp     q4, q5, [x1, #32 * 2]
    stp     q6, q7, [x1, #32 * 3]
    stp     q8, q9, [x1, #32 * 4]
    stp     q10, q11, [x1, #32 * 5]
    stp     q12, q13, [x1, #32 * 6]
    stp     q14, q15, [x1, #32 * 7]
    stp     q16, q17, [x1, #32 * 8]
    stp     q18, q19, [x1, #32 * 9]
    stp     q20, q21, [x1, #32 * 10]
    stp     q22, q23, [x1, #32 * 11]
    stp     q24, q25, [x1, #32 * 12]
    stp     q26, q27, [x1, #32 * 13]
    stp     q28, q29, [x1, #32 * 14]
    stp     q30, q31, [x1, #32 * 15]

    mov     x1, x0              // entry index
    mov     x0, sp              // &mut ExceptionFrame
    bl      handle_exception

    add     x1, sp, #{simd_offset}
    ldp     q0, q1, [x1, #32 * 0]
    ldp     q2, q3, [x1, #32 * 1]
    ldp     q4, q5, [x1, #32 * 2]
    ldp     q6, q7, [x1, #32 * 3]
    ldp     q8, q9, [x1, #32 * 4]
    ldp     q10, q11, [x1, #32 * 5]
    ldp     q12, q13, [x1, #32 * 6]
    ldp     q14, q15, [x1, #32 * 7]
    ldp     q16, q17, [x1, #32 * 8]
    ldp     q18, q19, [x1, #32 * 9]
    ldp     q20, q21, [x1, #32 * 10]
    ldp     q22, q23, [x1, #32 * 11]
    ldp     q24, q25, [x1, #32 * 12]
    ldp     q26, q27, [x1, #32 * 13]
    ldp     q28, q29, [x1, #32 * 14]
    ldp     q30, q31, [x1, #32 * 15]
    ldr     x1, [sp, #16 * 17]
    msr     fpcr, x1
    ldp     x1, x2, [sp, #16 * 16]
    msr     spsr_el1, x1
    msr     fpsr, x2
    ldp     x30, x1, [sp, #16 * 15]
    msr     elr_el1, x1
    ldp     x28, x29, [sp, #16 * 14]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x0, x1, [sp, #16 * 0]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const FRAME_SIZE,
    simd_offset = const SIMD_OFFSET,
);

/// Vector entry index of "IRQ, current EL, SP_EL0": the only expected one
/// (the kernel runs on SP_EL0; exceptions run on SP_EL1).
const IRQ_CURRENT_EL_SP0: u64 = 1;
/// Vector entry index of "synchronous, current EL, SP_EL0".
const SYNC_CURRENT_EL_SP0: u64 = 0;
/// `HLT #0xf000`: a semihosting call. Without `-semihosting-config
/// enable=on` QEMU treats it as an undefined instruction (ESR.EC = 0).
const SEMIHOSTING_HLT: u32 = 0xd45e_0000;

/// Whether IRQ handling ends by overwriting the FP/SIMD state (see
/// `set_clobber_fp_simd_after_irq`).
static CLOBBER_FP_SIMD_AFTER_IRQ: AtomicBool = AtomicBool::new(false);

#[cfg(feature = "selftest")]
/// For the FP/SIMD test: while `on`, every IRQ ends by overwriting all 32
/// vector registers and FPSR, as a handler using them freely could, so
/// that only the vector code's save and restore keep the interrupted
/// values. (The kernel's own handlers happen not to touch them.)
pub fn set_clobber_fp_simd_after_irq(on: bool) {
    CLOBBER_FP_SIMD_AFTER_IRQ.store(on, Ordering::Release);
}

fn clobber_fp_simd() {
    // SAFETY: Writes only the vector registers, all declared clobbered
    // (the C ABI's clobbers include v0-v31), and FPSR's cumulative flags,
    // about which Rust code assumes nothing; FPCR is left alone.
    unsafe {
        asm!(
            ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            "movi v\\n\\().16b, #0xee",
            ".endr",
            "msr fpsr, xzr",
            clobber_abi("C"),
            options(nomem, nostack, preserves_flags),
        );
    }
}

/// Called by the vector code with the saved state and the entry's index.
///
/// # Safety
///
/// Only the vector code calls this, with `frame` pointing to the frame it
/// just saved on the stack.
#[unsafe(no_mangle)]
unsafe extern "C" fn handle_exception(frame: &mut ExceptionFrame, entry: u64) {
    if entry == IRQ_CURRENT_EL_SP0 {
        crate::interrupts::handle_irq();
        if CLOBBER_FP_SIMD_AFTER_IRQ.load(Ordering::Acquire) {
            clobber_fp_simd();
        }
        return;
    }
    let el = crate::arch::current_el();
    let report = if el == 1 {
        FatalException {
            el,
            entry,
            esr: ESR_EL1.get(),
            far: FAR_EL1.get(),
            elr: frame.elr,
            spsr: frame.spsr,
        }
    } else {
        FatalException::at_boot_el(el, entry)
    };
    if entry == SYNC_CURRENT_EL_SP0 && el == 1 && (report.esr >> 26) == 0 {
        // SAFETY: ELR points at the instruction that was undefined: mapped
        // and readable kernel text, 4-byte aligned.
        let instruction = unsafe { (report.elr as *const u32).read() };
        if instruction == SEMIHOSTING_HLT {
            // No semihosting: carry on as if the call had done nothing
            // (`power::exit` then powers off instead).
            frame.elr += 4;
            return;
        }
    }
    crate::power::fatal(format_args!("{report}"));
}

/// What is printed about an unexpected exception.
struct FatalException {
    /// The EL it was taken to: 1, or 2 or 3 during boot.
    el: u64,
    entry: u64,
    esr: u64,
    far: u64,
    elr: u64,
    spsr: u64,
}

impl FatalException {
    /// The syndrome registers of EL2 or EL3 (the vector code saved EL1's).
    fn at_boot_el(el: u64, entry: u64) -> Self {
        let (esr, far, elr, spsr): (u64, u64, u64, u64);
        // SAFETY: Reads of the current EL's own syndrome registers.
        unsafe {
            if el == 2 {
                core::arch::asm!(
                    "mrs {}, esr_el2", "mrs {}, far_el2", "mrs {}, elr_el2", "mrs {}, spsr_el2",
                    out(reg) esr, out(reg) far, out(reg) elr, out(reg) spsr,
                    options(nomem, nostack, preserves_flags),
                );
            } else {
                core::arch::asm!(
                    "mrs {}, esr_el3", "mrs {}, far_el3", "mrs {}, elr_el3", "mrs {}, spsr_el3",
                    out(reg) esr, out(reg) far, out(reg) elr, out(reg) spsr,
                    options(nomem, nostack, preserves_flags),
                );
            }
        }
        FatalException {
            el,
            entry,
            esr,
            far,
            elr,
            spsr,
        }
    }
}

impl fmt::Display for FatalException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ORIGINS: [&str; 4] = [
            "current EL, SP_EL0",
            "current EL, SP_ELx",
            "lower EL, AArch64",
            "lower EL, AArch32",
        ];
        const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
        let exception_class = (self.esr >> 26) & 0x3f;
        write!(
            f,
            "unexpected {} exception ({}): {}\n  ESR_EL{el}={:#018x} FAR_EL{el}={:#018x}\n  ELR_EL{el}={:#018x} SPSR_EL{el}={:#018x}",
            KINDS[(self.entry % 4) as usize],
            ORIGINS[(self.entry / 4) as usize % 4],
            exception_class_name(exception_class),
            self.esr,
            self.far,
            self.elr,
            self.spsr,
            el = self.el,
        )?;
        if let Some((stack, cpu)) = crate::arch::mmu::stack_guard_hit(self.far) {
            write!(
                f,
                "\n  stack overflow: the {stack} stack ran into its guard page (FAR), CPU {cpu}"
            )?;
        }
        Ok(())
    }
}

/// A short name for ESR_EL1.EC, for the common classes.
fn exception_class_name(class: u64) -> &'static str {
    match class {
        0x00 => "unknown reason (undefined instruction?)",
        0x07 => "FP/SIMD access trapped",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "system register access trapped",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK instruction",
        _ => "other (see ESR_EL1.EC)",
    }
}
