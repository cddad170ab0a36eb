//! The entry point: from QEMU's reset state to Rust at EL1.
//!
//! QEMU starts an ELF given to `-kernel` at `_start` on every CPU that is
//! powered on (only CPU 0: the others wait for PSCI CPU_ON), at EL2 with
//! `-M virt,virtualization=on` and at EL1 otherwise, with the MMU off and
//! x0 = 0 (the device tree is then at the start of RAM, see `main.rs`).
//!
//! At EL2 we configure the hypervisor controls so EL1 runs unhindered and
//! drop to EL1: the kernel itself only ever runs at EL1.

use core::arch::global_asm;

global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    // Keep the loader's x0 (device tree address, or 0) for kernel_main.
    mov     x19, x0

    // Only CPU 0 (affinity 0.0.0) runs the kernel.
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, park

    mrs     x1, CurrentEL
    lsr     x20, x1, #2     // entry EL, reported by kernel_main
    cmp     x20, #1
    b.eq    at_el1
    cmp     x20, #2
    b.ne    park            // EL3 is not supported

    // --- EL2: set up EL1 and drop to it. ---
    // HCR_EL2.RW: EL1 is AArch64. Nothing else: no stage 2, no traps.
    mov     x1, #(1 << 31)
    msr     hcr_el2, x1
    // CNTHCTL_EL2.EL1PCTEN | EL1PCEN: EL1 may use the physical counter
    // and timer; CNTVOFF_EL2 = 0: the virtual counter equals the physical.
    mrs     x1, cnthctl_el2
    orr     x1, x1, #3
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    // CPTR_EL2: do not trap FP/SIMD (bits 13:12 and 9:0 are RES1).
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    // With a GICv3 CPU interface (ID_AA64PFR0_EL1.GIC != 0), let EL1 use
    // its system registers: ICC_SRE_EL2.Enable, DIB, DFB and SRE.
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #24, #4
    cbz     x1, 1f
    mrs     x1, S3_4_C12_C9_5       // ICC_SRE_EL2
    orr     x1, x1, #0xf
    msr     S3_4_C12_C9_5, x1
    isb
1:
    // Enter EL1h at at_el1 with all exceptions masked.
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    adr     x1, at_el1
    msr     elr_el2, x1
    eret

at_el1:
    // SCTLR_EL1: MMU and caches off, alignment checks off (RES1 bits set).
    ldr     x1, =0x30d00800
    msr     sctlr_el1, x1
    // CPACR_EL1.FPEN = 0b11: Rust code uses the FP/SIMD registers.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb

    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    // Zero .bss (16-byte aligned by the linker script). With the MMU off
    // these stores go past the caches: `mmu::KernelMap::activate`
    // invalidates the stale lines they may leave before caches go on.
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    isb

    mov     x0, x19
    mov     x1, x20
    bl      kernel_main

park:
    wfe
    b       park
"#
);
