//! The PL011 console UART, through the `arm-pl011-uart` crate, with
//! interrupt-driven input into a small ring buffer.
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
//!   stranded until the next keystroke.

use core::ptr::NonNull;

use arm_pl011_uart::{Interrupts, PL011Registers, Uart};
use safe_mmio::UniqueMmioPointer;

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

/// Bytes received but not read yet. Power of two, so the indices wrap.
const RX_BUFFER_LEN: usize = 256;

/// A ring buffer of received bytes, filled by the interrupt handler.
pub struct RxBuffer {
    bytes: [u8; RX_BUFFER_LEN],
    /// Next byte to read; `write - read` bytes are buffered (wrapping).
    read: usize,
    write: usize,
    /// Bytes dropped because the buffer was full.
    pub dropped: u64,
    /// Receive errors the UART reported (overrun, break, parity, framing).
    pub errors: u64,
}

impl RxBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        RxBuffer {
            bytes: [0; RX_BUFFER_LEN],
            read: 0,
            write: 0,
            dropped: 0,
            errors: 0,
        }
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.read == self.write
    }

    fn push(&mut self, byte: u8) {
        if self.write.wrapping_sub(self.read) == RX_BUFFER_LEN {
            self.dropped += 1;
        } else {
            self.bytes[self.write % RX_BUFFER_LEN] = byte;
            self.write = self.write.wrapping_add(1);
        }
    }

    /// Takes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.is_empty() {
            return None;
        }
        let byte = self.bytes[self.read % RX_BUFFER_LEN];
        self.read = self.read.wrapping_add(1);
        Some(byte)
    }
}

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
    /// the FIFO (it raised no interrupt) into `buffer`.
    pub fn enable_receive_interrupt(&mut self, buffer: &mut RxBuffer) {
        let masks = self.uart.interrupt_masks() | RECEIVE_INTERRUPTS;
        self.uart.set_interrupt_masks(masks);
        self.drain_into(buffer);
    }

    /// The interrupt handler: clear, then drain.
    pub fn handle_interrupt(&mut self, buffer: &mut RxBuffer) {
        self.uart.clear_interrupts(RECEIVE_INTERRUPTS);
        self.drain_into(buffer);
    }

    fn drain_into(&mut self, buffer: &mut RxBuffer) {
        loop {
            match self.uart.read_word() {
                Ok(Some(byte)) => buffer.push(byte),
                Ok(None) => break,
                // The byte was consumed with an error flag: count and go on.
                Err(_) => buffer.errors += 1,
            }
        }
    }
}
