// SPDX-License-Identifier: GPL-2.0-or-later
//! The entry point: from whatever state a loader leaves the CPU in to Rust
//! at Non-secure EL1. (One file of ~500 lines on purpose: the boot
//! assembly for every entry EL and for the other CPUs reads top to bottom
//! as the path a CPU takes, and splitting it would scatter that path.)
//!
//! The kernel is booted two ways, with the same code:
//! - as an ELF (`target/vm/guest-kernel`): QEMU starts it at `_start` with
//!   the MMU off and x0 = 0 (the device tree is then at the start of RAM,
//!   see `main.rs`), at EL1, at EL2 with `-M virt,virtualization=on`, and
//!   at Secure EL3 with `-M virt,secure=on` (as boards with TrustZone do:
//!   no firmware, and with `-smp N` every CPU starts here: all but the boot
//!   CPU wait in `secondary_hold` until `smp` releases them);
//! - as a flat arm64 Image (`target/vm/guest-kernel.bin`, the format of
//!   Linux's `Documentation/arch/arm64/booting.rst`): a loader (QEMU, a VMM,
//!   U-Boot, EDK2) reads the 64-byte header at `_start`, loads the file
//!   `text_offset` bytes above a 2 MiB-aligned base near the start of RAM
//!   and enters at its first byte at EL2 or Non-secure EL1, MMU off, with
//!   the device tree's address in x0.
//!
//! From EL3 we make the lower ELs Non-secure AArch64 and drop to EL2 if the
//! CPU has it, else to EL1; from EL2 we set up EL1 and drop to it. The
//! kernel itself only ever runs at EL1.
//!
//! The other CPUs enter at `secondary_entry` (from PSCI CPU_ON, or from the
//! hold) with their index in x0 and take the same way down to EL1, with
//! their own stacks, and turn their MMU on there with the boot CPU's tables
//! before they store anything (`secondary_at_el1`).
//!
//! Nothing here may fail silently: an entry the kernel cannot handle (EL0,
//! or an image loaded somewhere else than where it is linked to run) ends
//! the run through [`early_fail`](self) with its own exit status (see
//! `power.rs`): semihosting if QEMU has it, else PSCI SYSTEM_OFF, else a
//! WFI loop. A fault in this code or in Rust at EL2/EL3 goes through the
//! kernel's exception vectors, which report it.

use board_discovery::FDT_MAGIC;
use core::arch::global_asm;

use crate::power::exit_status;
use crate::sync::SetOnce;

/// Start of RAM on `virt`: where QEMU puts the device tree when it loads
/// an ELF kernel (x0 is then 0), provided the DTB fits below the image.
/// (With the flat Image, QEMU's boot stub is there and x0 has the DTB.)
pub const VIRT_RAM_BASE: usize = 0x4000_0000;

/// The exception level QEMU started the kernel at.
static ENTRY_EL: SetOnce<u64> = SetOnce::new();

/// Records the exception level the boot code found (once the MMU is on:
/// the cell is an atomic).
pub fn set_entry_el(el: u64) {
    let _ = ENTRY_EL.set(el);
}

/// The exception level the kernel was entered at (1, 2 or 3).
pub fn entry_el() -> u64 {
    ENTRY_EL.get().copied().unwrap_or(0)
}

/// The device tree: at the loader's x0 if that holds one, else at the
/// start of RAM. (Also called at EL3, before .bss and the MMU: no statics.)
pub fn find_device_tree(loader_dtb: usize) -> Option<&'static [u8]> {
    [loader_dtb, VIRT_RAM_BASE]
        .into_iter()
        .filter(|&address| address != 0 && address.is_multiple_of(8))
        .find_map(|address| {
            let header = address as *const u32;
            // SAFETY: Both candidates are RAM addresses on `virt` (the
            // loader's x0, or RAM's base), readable with the MMU off; the
            // header is 8-byte aligned. (RAM, not MMIO.)
            let (magic, total_size) = unsafe {
                (
                    u32::from_be(header.read_volatile()),
                    u32::from_be(header.add(1).read_volatile()),
                )
            };
            // SAFETY: A valid magic means QEMU wrote a device tree of
            // `total_size` bytes there, which nothing overwrites.
            (magic == FDT_MAGIC).then(|| unsafe {
                core::slice::from_raw_parts(address as *const u8, total_size as usize)
            })
        })
}

/// The Image header's `text_offset`: where above a 2 MiB-aligned RAM base
/// the loader must put the image. The kernel is linked at RAM base + 2 MiB
/// on `virt` (see `linker/guest-kernel.ld`); a text_offset below 4 KiB
/// would get 2 MiB added by QEMU, so say 2 MiB outright.
const IMAGE_TEXT_OFFSET: u64 = 0x20_0000;
/// The Image header's `flags`: bit 0 = 0, little-endian; bits 1-2 = 1,
/// 4 KiB pages; bit 3 = 0, the 2 MiB-aligned base must be as close as
/// possible to the start of RAM (the kernel is linked for one address, it
/// cannot run "anywhere").
const IMAGE_FLAGS: u64 = 0b0010;

/// SCR_EL3 for the lower ELs, before HCE (set only if EL2 exists):
/// - NS (bit 0): they run Non-secure, the world that QEMU's device tree
///   describes to a kernel (Non-secure UART, the GIC's Non-secure view);
///   an eret to EL2 with NS = 0 would need Secure EL2;
/// - bits 4 and 5: RES1;
/// - SMD (bit 7): SMC is undefined: no monitor stays at EL3 to answer it,
///   so the kernel gets an undefined instruction it can report instead of
///   a jump to an EL3 vector nobody set;
/// - RW (bit 10): the next lower EL is AArch64.
///
/// IRQ, FIQ and EA (bits 1-3) stay 0: interrupts and SErrors are taken
/// by the lower ELs, not routed to EL3.
const SCR_EL3_LOWER_NON_SECURE: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 10);
/// SCR_EL3.HCE: HVC is enabled, as EL2 needs it.
const SCR_EL3_HCE: u64 = 1 << 8;
/// SCTLR_EL2: MMU, caches and alignment checks off, little-endian; the
/// RES1 bits (4, 5, 11, 16, 18, 22, 23, 28, 29) set. Reset value UNKNOWN
/// on hardware.
const SCTLR_EL2_MMU_OFF: u64 = 0x30c5_0830;
/// SPSR for entering EL2h or EL1h (SP_ELx) with D, A, I and F masked.
const SPSR_EL2H_MASKED: u64 = 0x3c9;
const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// Semihosting SYS_EXIT, and its "application exit" reason that carries
/// the exit status.
const SEMIHOSTING_SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;
/// PSCI SYSTEM_OFF (SMC32 function ID).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

global_asm!(
    r#"
// Every CPU's EL1 controls before its first Rust code (clobbers x1):
// SCTLR_EL1 with the MMU and caches off, alignment checks off (RES1 bits
// set); CPACR_EL1.FPEN = 0b11, as Rust code uses the FP/SIMD registers.
.macro el1_controls
    ldr     x1, =0x30d00800
    msr     sctlr_el1, x1
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
.endm

.section .text.boot, "ax"
// 2 KiB aligned: `early_fail` uses _start as an exception vector table.
.balign 2048
.global _start
_start:
    // --- The arm64 Image header, 64 bytes. For the ELF it is just a
    // branch over data.
    b       primary_entry           // code0 (0x14000010: 64 bytes ahead)
    .long   0                       // code1
    .quad   {text_offset}           // text_offset
    .quad   __image_size            // image_size: file, .bss and stack
    .quad   {flags}                 // flags
    .quad   0, 0, 0                 // res2, res3, res4
    .byte   0x41, 0x52, 0x4d, 0x64  // magic "ARM\x64"
    .long   0                       // res5: no PE/COFF header

primary_entry:
    // Keep the loader's x0 (device tree address, or 0) for kernel_main.
    mov     x19, x0
    mrs     x20, CurrentEL
    lsr     x20, x20, #2            // entry EL, reported by kernel_main

    // Only the boot CPU (affinity 0.0.0.0) goes on from here. Any other
    // CPU that starts here (at EL3 entry QEMU starts them all at once)
    // waits until the boot CPU releases it (`secondary_hold`).
    mrs     x1, mpidr_el1
    and     x2, x1, #0xffffff
    ubfx    x3, x1, #32, #8
    orr     x1, x2, x3, lsl #32
    cbnz    x1, secondary_hold

    // EL0 is no place to start a kernel.
    mov     w0, #{exit_unsupported_entry}
    cbz     x20, early_fail
    // The kernel is linked for one address (absolute addresses in .rodata):
    // the literal holds it, adr says where the image actually is.
    adr     x1, _start
    ldr     x2, =_start
    cmp     x1, x2
    mov     w0, #{exit_wrong_address}
    b.ne    early_fail

    // A stack and a zeroed .bss (16-byte aligned by the linker script) for
    // the Rust code, at EL3 already. With the MMU off these stores go past
    // the caches: `mmu::KernelMap::activate` invalidates the stale lines
    // they may leave before the caches go on.
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    // For the code of the entry ELs, shared with the other CPUs: where to
    // go at EL1, whether the EL3 code hands over the whole GIC (x21 = 0)
    // or only this CPU's part, and the device tree's address for it.
    adr     x23, at_el1
    mov     x21, #0
    mov     x22, x19
    cmp     x20, #2
    b.lo    at_el1
    b.eq    at_el2

    // --- EL3 (Secure): make the lower ELs Non-secure and drop to them.
at_el3:
    // No FP/SIMD traps to EL3 (CPTR_EL3 = 0: the Rust code below and the
    // kernel use those registers) and no debug or PMU traps to EL3
    // (MDCR_EL3 = 0: nothing here would handle them); both reset to
    // UNKNOWN values on hardware.
    msr     cptr_el3, xzr
    msr     mdcr_el3, xzr
    // A fault at EL3 is reported instead of jumping to an unset vector.
    adr     x1, exception_vectors
    msr     vbar_el3, x1
    isb
    // The GIC resets with every interrupt Secure (Group 0): hand them to
    // the Non-secure world (Rust: the GIC's address is in the device tree).
    mov     x0, x22
    mov     x1, x21
    bl      el3_hand_over_interrupts
    cbz     x21, 6f
    bl      secondary_forget_el3_stack
6:
    // With a GICv3 CPU interface (ID_AA64PFR0_EL1.GIC != 0), let EL2 and
    // EL1 use its system registers: ICC_SRE_EL3.Enable, DIB, DFB and SRE
    // (UNKNOWN at reset on hardware).
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #24, #4
    cbz     x1, 5f
    mrs     x1, S3_6_C12_C12_5      // ICC_SRE_EL3
    orr     x1, x1, #0xf
    msr     S3_6_C12_C12_5, x1
    isb
5:
    mov     x1, #{scr_el3}
    // ID_AA64PFR0_EL1.EL2 (bits 11:8) is 0 when the CPU has no EL2.
    mrs     x2, id_aa64pfr0_el1
    ubfx    x2, x2, #8, #4
    cbz     x2, 3f
    orr     x1, x1, #{scr_el3_hce}
    msr     scr_el3, x1
    mov     x1, #{spsr_el2h}
    adr     x2, at_el2
    b       4f
3:  msr     scr_el3, x1
    mov     x1, #{spsr_el1h}
    mov     x2, x23
4:  msr     spsr_el3, x1
    msr     elr_el3, x2
    eret

at_el1:
    el1_controls
    // Two stacks (.bss was cleared at the entry EL): the kernel runs on
    // SP_EL0 (EL1t), exceptions arrive on SP_EL1 (EL1h). An exception then
    // always has a good stack, even when the kernel's overflowed into the
    // guard page below it (linker/guest-kernel.ld).
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    mov     sp, x1
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    msr     sp_el0, x1
    msr     spsel, #0
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    // This is CPU 0 (`arch::cpu::index`).
    msr     tpidr_el1, xzr
    isb

    mov     x0, x19
    mov     x1, x20
    bl      kernel_main
park:
    wfi
    b       park

// Filling what is left before the vector entry at 0x200: the SYS_EXIT
// parameter block and the literals so far.
.balign 8
early_exit_block:
    .quad   0, 0
.ltorg

// Fallbacks in `early_fail` that fault land here: _start + 0x200 is the
// "synchronous, current EL with SP_ELx" entry of a vector table at _start
// (the other entries cannot be taken: SP_ELx is in use and D, A, I, F are
// masked). Carry on with the next fallback.
.org 0x200
    br      x22

// Ends the run with exit status w0, before any Rust code can run (which
// needs the image at its link address): semihosting SYS_EXIT, else PSCI
// SYSTEM_OFF through SMC (firmware, or QEMU at EL2) then HVC (QEMU at
// EL1), else WFI forever. A fallback that faults comes back through the
// vector entry at _start + 0x200 to the next one, at x22. Only
// PC-relative addresses: the image may be anywhere.
early_fail:
    mov     x21, x0
    adr     x1, _start
    cmp     x20, #2
    b.lo    1f
    b.eq    2f
    msr     vbar_el3, x1
    b       3f
1:  cbz     x20, park               // EL0: nothing can be tried
    msr     vbar_el1, x1
    b       3f
2:  msr     vbar_el2, x1
3:  isb
    // The SYS_EXIT parameter block goes into the image itself, the only
    // memory known to be RAM.
    adr     x1, early_exit_block
    ldr     x2, ={adp_exit}
    stp     x2, x21, [x1]
    mov     x0, #{sys_exit}
    adr     x22, 4f
    hlt     #0xf000
4:  ldr     x0, ={psci_system_off}
    adr     x22, 5f
    smc     #0
5:  ldr     x0, ={psci_system_off}
    adr     x22, park
    hvc     #0
    b       park

// --- EL2: set up EL1 and drop to it (the boot CPU and the others).
at_el2:
    ldr     x1, ={sctlr_el2}
    msr     sctlr_el2, x1
    // A trap to EL2 (a fault here, an HVC from EL1) is reported.
    adr     x1, exception_vectors
    msr     vbar_el2, x1
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
    // Enter EL1h at x23 (at_el1 or secondary_at_el1) with all exceptions
    // masked.
    mov     x1, #{spsr_el1h}
    msr     spsr_el2, x1
    msr     elr_el2, x23
    eret

// The literals of the code above, in this section.
.ltorg

// --- The other CPUs: in a section of their own, placed anywhere in .text
// (linker/guest-kernel.ld): only the code above must come first, so that
// it and the bench's loops fit before the exception vectors' 2 KiB
// boundary.
.section .text.boot_secondary, "ax"
//
// A CPU other than the boot CPU that started at _start (x1 = its MPIDR
// affinity) waits here, MMU and caches off, until the boot CPU writes
// `hold_tag | affinity` into slot N of SECONDARY_RELEASE (`smp`), cleans
// that line to the point of coherency and sends an event: N is then its
// CPU index. No stack, no writes: nothing here touches memory but those
// loads, which see memory itself (MMU off: Device, uncached). Before the
// boot CPU clears .bss the slots may hold anything, which the tag in bits
// 48..63 makes unlikely to match (QEMU's RAM starts zeroed).
secondary_hold:
    ldr     x2, ={hold_tag}
    orr     x1, x1, x2
    adrp    x2, SECONDARY_RELEASE
    add     x2, x2, :lo12:SECONDARY_RELEASE
1:  mov     x3, #0
2:  ldr     x4, [x2, x3, lsl #3]
    cmp     x4, x1
    b.eq    3f
    add     x3, x3, #1
    cmp     x3, #{max_cpus}
    b.lo    2b
    wfe
    b       1b
3:  mov     x0, x3

// Where a released CPU goes, and where PSCI CPU_ON starts one (`smp`):
// x0 = its CPU index, MMU and caches off, at EL3 (released from the hold),
// EL2 or EL1. The same way down to EL1 as the boot CPU's, without the
// boot CPU's work (checks, .bss).
.global secondary_entry
secondary_entry:
    mov     x19, x0
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    // This CPU's kernel stack, for the EL3 code: CPU 0's plus x19 times
    // the distance between two CPUs' (linker/guest-kernel.ld).
    ldr     x2, =__cpu_stacks_size
    mul     x2, x19, x2
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    add     x1, x1, x2
    mov     sp, x1
    adr     x23, secondary_at_el1
    mov     x21, #1
    mov     x22, #0
    cmp     x20, #2
    b.lo    secondary_at_el1
    b.eq    at_el2
    b       at_el3

// At EL3 the Rust code (el3_hand_over_interrupts) ran on this CPU's stack
// with the MMU off: its writes went to memory, past every cache, while a
// cache may hold older lines of those addresses (the boot CPU's, from its
// speculative reads through its cacheable map of RAM). Invalidate them to
// the point of coherency (DC IVAC, broadcast to every cache), so that this
// CPU reads its own writes once its caches are on. Nothing writes memory
// after this until the MMU is on (secondary_at_el1), so no stale line can
// come back. Called with sp at the stack's top; uses x1-x4.
secondary_forget_el3_stack:
    adrp    x2, __stack_bottom
    add     x2, x2, :lo12:__stack_bottom
    adrp    x3, __stack_top
    add     x3, x3, :lo12:__stack_top
    sub     x2, x3, x2              // the stack's size
    mov     x1, sp
    sub     x2, x1, x2              // its bottom
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4         // DminLine: log2(words per line)
    mov     x4, #4
    lsl     x4, x4, x3              // line size in bytes
1:  dc      ivac, x2
    add     x2, x2, x4
    cmp     x2, x1
    b.lo    1b
    dsb     sy
    ret

secondary_at_el1:
    el1_controls
    // The MMU on with the boot CPU's tables and settings (MAIR, TCR,
    // TTBR0, SCTLR: `mmu::SECONDARY_MMU`, in memory since the boot CPU
    // stored them with its own MMU off, so these uncached loads see them).
    // Before any store: with the MMU off a store would go past the
    // caches, and could be hidden by a stale line once they are on.
    adrp    x1, SECONDARY_MMU
    add     x1, x1, :lo12:SECONDARY_MMU
    ldp     x2, x3, [x1]
    ldp     x4, x5, [x1, #16]
    msr     mair_el1, x2
    msr     tcr_el1, x3
    msr     ttbr0_el1, x4
    isb
    // This CPU's TLB and instruction cache may hold entries from before
    // (UNKNOWN at reset): drop them. Local maintenance (no other CPU uses
    // this CPU's), as the boot CPU's in `mmu::KernelMap::activate`. The
    // page tables need none: the walks are cacheable and coherent with
    // the boot CPU's caches, and its tables never change.
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    msr     sctlr_el1, x5
    isb
    // Its two stacks, as the boot CPU's (at_el1), x19 slots higher.
    ldr     x2, =__cpu_stacks_size
    mul     x2, x19, x2
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    add     x1, x1, x2
    mov     sp, x1
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    add     x1, x1, x2
    msr     sp_el0, x1
    msr     spsel, #0
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    // Its index (`arch::cpu::index`).
    msr     tpidr_el1, x19
    isb
    mov     x0, x19
    bl      secondary_main
    b       park
.ltorg
"#,
    text_offset = const IMAGE_TEXT_OFFSET,
    flags = const IMAGE_FLAGS,
    exit_unsupported_entry = const exit_status::UNSUPPORTED_ENTRY,
    exit_wrong_address = const exit_status::WRONG_ADDRESS,
    scr_el3 = const SCR_EL3_LOWER_NON_SECURE,
    scr_el3_hce = const SCR_EL3_HCE,
    sctlr_el2 = const SCTLR_EL2_MMU_OFF,
    spsr_el2h = const SPSR_EL2H_MASKED,
    spsr_el1h = const SPSR_EL1H_MASKED,
    sys_exit = const SEMIHOSTING_SYS_EXIT,
    adp_exit = const ADP_STOPPED_APPLICATION_EXIT,
    psci_system_off = const PSCI_SYSTEM_OFF,
    hold_tag = const HOLD_TAG,
    max_cpus = const super::cpu::MAX_CPUS,
);

/// What the boot CPU puts above a CPU's MPIDR affinity in its
/// `SECONDARY_RELEASE` slot to release it from `secondary_hold`: bits
/// 48..63, which no affinity uses.
pub const HOLD_TAG: u64 = 0x484c_0000_0000_0000;
