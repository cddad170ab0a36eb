// SPDX-License-Identifier: GPL-2.0-or-later
//! The boot-time floor of `cargo xtask bench`: a kernel that does the least
//! a kernel can do before its prompt. It prints the guest kernel's shell
//! prompt on the PL011 and waits, in a dozen instructions: no device tree,
//! no MMU, no GIC, no stack.
//!
//! The bench boots it exactly as it boots the real kernel (same QEMU, same
//! options, `-device stopwatch` included) and times launch to prompt; the
//! difference is what the real kernel spends before its prompt.
//!
//! The UART is `virt`'s PL011 at its fixed address (the real kernel finds
//! it in the device tree: that is part of what it is measured against).

#![no_std]
#![no_main]

use stopwatch_shell::PROMPT;

/// `virt`'s first PL011 (`/chosen/stdout-path`).
const PL011_BASE: u64 = 0x0900_0000;

/// The prompt, where the assembly can address it.
#[unsafe(no_mangle)]
static PROMPT_BYTES: [u8; PROMPT.len()] = {
    let mut bytes = [0; PROMPT.len()];
    let mut index = 0;
    while index < bytes.len() {
        bytes[index] = PROMPT.as_bytes()[index];
        index += 1;
    }
    bytes
};

// Entered with the MMU off (every access is Device memory) at the EL QEMU
// starts it at. Single-register accesses without writeback only, as
// everywhere in the project (KVM could emulate them).
core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x0, #{base_high}",
    "    lsl x0, x0, #16",
    // UARTCR: UART, transmit and receive enabled (as the kernel's driver).
    "    mov w1, #0x301",
    "    str w1, [x0, #0x30]",
    "    adr x1, {prompt}",
    "    mov x2, #{len}",
    "1:  ldr w4, [x0, #0x18]",
    // UARTFR.TXFF: wait while the transmit FIFO is full.
    "    tbnz w4, #5, 1b",
    "    ldrb w3, [x1]",
    "    add x1, x1, #1",
    // UARTDR.
    "    str w3, [x0]",
    "    subs x2, x2, #1",
    "    b.ne 1b",
    "2:  wfi",
    "    b 2b",
    base_high = const PL011_BASE >> 16,
    prompt = sym PROMPT_BYTES,
    len = const PROMPT.len(),
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing here can panic; the attribute is required of a no_std binary.
    loop {
        core::hint::spin_loop();
    }
}
