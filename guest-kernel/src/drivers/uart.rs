// SPDX-License-Identifier: GPL-2.0-or-later
//! The PL011 console UART, with interrupt-driven input into the shell's
//! receive ring ([`stopwatch_shell::receive`], which holds input back in
//! the UART instead of dropping it when the shell falls behind); and the
//! kernel's one table of the PL011's registers ([`Pl011Registers`]).
//!
//! QEMU resets its PL011 with the transmitter and receiver enabled but
//! the UART itself disabled (UARTCR = TXE | RXE, UARTEN clear): it still
//! sends and receives, but logs every byte as a guest error. QEMU's model
//! also has pitfalls that decide what this driver does *not* do:
//! - it never writes LCR_H: changing LCR_H.FEN empties the receive FIFO,
//!   losing typed-ahead input; so [`Pl011::enable`] sets only the UARTCR
//!   enable bits (the baud rate and line settings do not matter to QEMU);
//! - bytes that arrived before the receive interrupt was unmasked raise no
//!   interrupt, so the FIFO is drained once right after unmasking;
//! - the handler clears the interrupt first and then drains: a byte that
//!   arrives during the drain raises a new interrupt instead of being
//!   stranded until the next keystroke;
//! - with LCR_H.FEN clear the receive FIFO is one byte deep, and QEMU takes
//!   the next byte from its character device only once that one is read:
//!   a byte left in the FIFO holds the sender back, losing nothing.

use core::ptr::NonNull;

use stopwatch_shell::receive::{ReceiveError, ReceiveFifo, ReceiveRing};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::{register_bitfields, register_structs};

use crate::arch::mmio::{register, ReadOnly, ReadWrite, Registers, WriteOnly};

register_structs! {
    /// The PL011's registers that the kernel uses (Arm's PL011 technical
    /// reference manual, "Summary of registers"): the kernel's one table
    /// of them.
    pub Pl011Registers {
        /// UARTDR: a read takes the next received byte and its error
        /// flags; a write queues one byte to send.
        (0x000 => pub dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        /// UARTFR: the FIFOs' and the transmitter's state; reading it
        /// changes nothing.
        (0x018 => pub fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        /// UARTCR: enables.
        (0x030 => pub cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        /// UARTIMSC: which interrupts are unmasked.
        (0x038 => pub imsc: ReadWrite<u32, INTERRUPTS::Register>),
        (0x03c => _reserved3),
        /// UARTICR: writing a bit clears that interrupt.
        (0x044 => pub icr: WriteOnly<u32, INTERRUPTS::Register>),
        (0x048 => @END),
    }
}

register_bitfields! {
    u32,
    /// UARTDR.
    pub DR [
        /// The byte.
        DATA OFFSET(0) NUMBITS(8) [],
        /// Framing, parity, break and overrun errors of a received byte.
        ERRORS OFFSET(8) NUMBITS(4) []
    ],
    /// UARTFR.
    pub FR [
        /// Still sending.
        BUSY OFFSET(3) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) []
    ],
    /// UARTCR.
    pub CR [
        /// The UART as a whole.
        UARTEN OFFSET(0) NUMBITS(1) [],
        /// The transmitter.
        TXE OFFSET(8) NUMBITS(1) [],
        /// The receiver.
        RXE OFFSET(9) NUMBITS(1) []
    ],
    /// The interrupt bits, the same in UARTIMSC and UARTICR.
    pub INTERRUPTS [
        /// Receive: the FIFO reached its level.
        RX OFFSET(4) NUMBITS(1) [],
        /// Receive timeout: the FIFO holds fewer bytes than the level, but
        /// nothing more came for a while.
        RT OFFSET(6) NUMBITS(1) []
    ]
}

/// The console PL011.
pub struct Pl011 {
    registers: Registers<Pl011Registers>,
}

// SAFETY: The registers are MMIO, which any CPU may access; the driver
// keeps no other state.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Takes over the PL011 at `base` with its line settings as they are
    /// (QEMU's reset state: 8N1, FIFOs off).
    ///
    /// # Safety
    ///
    /// `base` must be the PL011's register block, mapped as Device memory
    /// for good, and nothing but this driver may read or change its
    /// receive side, interrupt masks or enables (the console's emergency
    /// output only sends).
    pub unsafe fn new(base: NonNull<Pl011Registers>) -> Self {
        Pl011 {
            // SAFETY: The caller's promise.
            registers: unsafe { Registers::new(base) },
        }
    }

    /// Sets UARTEN, TXE and RXE in UARTCR if any is clear, keeping the
    /// other bits; LCR_H (and so the FIFO setting) is left alone.
    pub fn enable(&mut self) {
        let control = register!(self.registers, cr);
        let wanted = CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET;
        if !control.matches_all(wanted) {
            control.modify(wanted);
        }
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        send(self.registers, bytes);
    }

    /// Unmasks the receive interrupts, then moves whatever is already in
    /// the FIFO (it raised no interrupt) into `ring`.
    pub fn enable_receive_interrupt(&mut self, ring: &mut ReceiveRing) {
        self.set_receive_interrupts(true);
        ring.fill_from(self);
    }

    /// The interrupt handler: clear, then drain.
    pub fn handle_interrupt(&mut self, ring: &mut ReceiveRing) {
        register!(self.registers, icr).write(INTERRUPTS::RX::SET + INTERRUPTS::RT::SET);
        ring.fill_from(self);
    }
}

/// Sends `bytes` through the PL011 at `registers`, waiting for room in the
/// transmit FIFO: the driver's output, and the console's emergency output
/// (which must not wait for the driver's lock).
pub fn send(registers: Registers<Pl011Registers>, bytes: &[u8]) {
    for &byte in bytes {
        while register!(registers, fr).is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        register!(registers, dr).write(DR::DATA.val(u32::from(byte)));
    }
}

impl ReceiveFifo for Pl011 {
    fn take_byte(&mut self) -> Option<Result<u8, ReceiveError>> {
        if register!(self.registers, fr).is_set(FR::RXFE) {
            return None;
        }
        let data = register!(self.registers, dr).extract();
        if data.read(DR::ERRORS) != 0 {
            // The byte was consumed with an error flag.
            return Some(Err(ReceiveError));
        }
        Some(Ok(data.read(DR::DATA) as u8))
    }

    fn set_receive_interrupts(&mut self, unmasked: bool) {
        let receive = if unmasked {
            INTERRUPTS::RX::SET + INTERRUPTS::RT::SET
        } else {
            INTERRUPTS::RX::CLEAR + INTERRUPTS::RT::CLEAR
        };
        register!(self.registers, imsc).modify(receive);
    }
}
