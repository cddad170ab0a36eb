// SPDX-License-Identifier: GPL-2.0-or-later
//! The PL011 console UART, through the `arm-pl011-uart` crate, with
//! interrupt-driven input into the shell's receive ring
//! ([`stopwatch_shell::receive`], which holds input back in the UART
//! instead of dropping it when the shell falls behind).
//!
//! QEMU resets its PL011 with the transmitter and receiver enabled but
//! the UART itself disabled (UARTCR = TXE | RXE, UARTEN clear): it still
//! sends and receives, but logs every byte as a guest error. QEMU's model
//! also has pitfalls that decide what this driver does *not* do:
//! - it never calls `Uart::enable` or otherwise writes LCR_H: changing
//!   LCR_H.FEN empties the receive FIFO, losing typed-ahead input; so
//!   [`Pl011::enable`] sets only the UARTCR enable bits (the baud rate and
//!   line settings do not matter to QEMU);
//! - bytes that arrived before the receive interrupt was unmasked raise no
//!   interrupt, so the FIFO is drained once right after unmasking;
//! - the handler clears the interrupt first and then drains: a byte that
//!   arrives during the drain raises a new interrupt instead of being
//!   stranded until the next keystroke;
//! - with LCR_H.FEN clear the receive FIFO is one byte deep, and QEMU takes
//!   the next byte from its character device only once that one is read:
//!   a byte left in the FIFO holds the sender back, losing nothing.

use core::ptr::NonNull;

use arm_pl011_uart::{Interrupts, PL011Registers, Uart};
use safe_mmio::UniqueMmioPointer;
use stopwatch_shell::receive::{ReceiveError, ReceiveFifo, ReceiveRing};

use crate::arch::mmio;

/// Receive interrupts: FIFO level reached, and receive timeout (the FIFO
/// holds fewer bytes than the level but nothing more came for a while).
const RECEIVE_INTERRUPTS: Interrupts = Interrupts::RXI.union(Interrupts::RTI);

/// UARTCR, the control register (`arm-pl011-uart` keeps it private).
const UARTCR_OFFSET: usize = 0x30;
/// UARTCR bits: UART enable, transmit enable, receive enable.
const UARTCR_UARTEN: u32 = 1 << 0;
const UARTCR_TXE: u32 = 1 << 8;
const UARTCR_RXE: u32 = 1 << 9;

/// The console PL011.
pub struct Pl011 {
    uart: Uart<'static>,
    /// UARTCR, which `Uart` offers no access to.
    control: NonNull<u32>,
}

// SAFETY: `control` points to a register of the same MMIO block `uart`
// owns, which any CPU may access; `Uart` itself is `Send`.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Takes over the PL011 at `base` with its line settings as they are
    /// (QEMU's reset state: 8N1, FIFOs off).
    ///
    /// # Safety
    ///
    /// `base` must be the PL011's register block, mapped as Device memory,
    /// and nothing else may access it while this driver exists.
    pub unsafe fn new(base: NonNull<PL011Registers>) -> Self {
        // SAFETY: The caller promises `base` is a mapped, unaliased PL011.
        let registers = unsafe { UniqueMmioPointer::new(base) };
        // SAFETY: UARTCR lies inside the PL011's 4 KiB register block.
        let control = unsafe { base.byte_add(UARTCR_OFFSET) }.cast();
        Pl011 {
            uart: Uart::new(registers),
            control,
        }
    }

    /// Sets UARTEN, TXE and RXE in UARTCR if any is clear, keeping the
    /// other bits; LCR_H (and so the FIFO setting) is left alone.
    pub fn enable(&mut self) {
        let wanted = UARTCR_UARTEN | UARTCR_TXE | UARTCR_RXE;
        // SAFETY: UARTCR is an aligned 32-bit register inside the block
        // `new`'s caller gave us, mapped as Device memory; `Uart` never
        // touches it (only its `enable` and `disable` do, which are not
        // called), so this does not conflict.
        unsafe {
            let control = mmio::read_u32(self.control.as_ptr());
            if control & wanted != wanted {
                mmio::write_u32(self.control.as_ptr(), control | wanted);
            }
        }
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            while self.uart.is_tx_fifo_full() {
                core::hint::spin_loop();
            }
            self.uart.write_word(byte);
        }
    }

    /// Unmasks the receive interrupts, then moves whatever is already in
    /// the FIFO (it raised no interrupt) into `ring`.
    pub fn enable_receive_interrupt(&mut self, ring: &mut ReceiveRing) {
        self.set_receive_interrupts(true);
        ring.fill_from(self);
    }

    /// The interrupt handler: clear, then drain.
    pub fn handle_interrupt(&mut self, ring: &mut ReceiveRing) {
        self.uart.clear_interrupts(RECEIVE_INTERRUPTS);
        ring.fill_from(self);
    }
}

impl ReceiveFifo for Pl011 {
    fn take_byte(&mut self) -> Option<Result<u8, ReceiveError>> {
        match self.uart.read_word() {
            Ok(Some(byte)) => Some(Ok(byte)),
            Ok(None) => None,
            // The byte was consumed with an error flag.
            Err(_) => Some(Err(ReceiveError)),
        }
    }

    fn set_receive_interrupts(&mut self, unmasked: bool) {
        let masks = self.uart.interrupt_masks();
        let masks = if unmasked {
            masks | RECEIVE_INTERRUPTS
        } else {
            masks - RECEIVE_INTERRUPTS
        };
        self.uart.set_interrupt_masks(masks);
    }
}
