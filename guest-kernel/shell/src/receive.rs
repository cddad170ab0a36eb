// SPDX-License-Identifier: GPL-2.0-or-later
//! The console's receive ring, with back-pressure instead of loss.
//!
//! The UART's receive interrupt moves bytes from the UART's FIFO into a
//! [`ReceiveRing`]; the shell takes them out. When the shell falls behind
//! (a pasted script, a long command), the ring fills up. A ring that then
//! dropped bytes would lose input the UART delivered; this one stops
//! draining the FIFO instead and masks the receive interrupt. The bytes
//! stay in the UART's FIFO, and behind it the sender waits: QEMU's PL011
//! takes no byte from its character device while its FIFO is full, just as
//! a real UART's hardware flow control would hold a real sender. As the
//! shell consumes, the ring resumes: it unmasks the interrupt and drains
//! the FIFO again.
//!
//! The ring resumes only once it is at most half full, so that a steady
//! stream of input toggles the interrupt mask once per half ring, not once
//! per byte.
//!
//! The UART is reached through [`ReceiveFifo`], so the whole flow control
//! is tested on the host against a model UART.

/// Bytes the ring holds. A power of two, so the wrapping indices stay
/// correct across `usize` overflow.
pub const RING_LEN: usize = 256;

/// The ring resumes draining the UART once it holds at most this many.
pub const RESUME_AT: usize = RING_LEN / 2;

/// A byte the UART received with an error flag (overrun, break, parity,
/// framing): consumed from the FIFO, but not a byte of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveError;

/// The receive side of a UART, as the ring needs it.
pub trait ReceiveFifo {
    /// Takes the oldest byte from the receive FIFO: `None` when it is
    /// empty.
    fn take_byte(&mut self) -> Option<Result<u8, ReceiveError>>;

    /// Unmasks (`true`) or masks (`false`) the receive interrupts. While
    /// they are unmasked, the UART must interrupt whenever its FIFO holds
    /// a byte the ring has not taken (a level, as the PL011's are once
    /// unmasked with data waiting).
    fn set_receive_interrupts(&mut self, unmasked: bool);
}

/// Received bytes the shell has not read yet.
pub struct ReceiveRing {
    bytes: [u8; RING_LEN],
    /// Next byte to read; `write - read` bytes are buffered (wrapping).
    read: usize,
    write: usize,
    /// Whether the ring stopped draining the UART because it was full.
    held_back: bool,
    /// Receive errors the UART reported (overrun, break, parity,
    /// framing): the only way input can be lost.
    errors: u64,
    /// How many times the ring filled up and held input back in the UART.
    hold_backs: u64,
}

impl Default for ReceiveRing {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveRing {
    /// An empty ring.
    pub const fn new() -> Self {
        ReceiveRing {
            bytes: [0; RING_LEN],
            read: 0,
            write: 0,
            held_back: false,
            errors: 0,
            hold_backs: 0,
        }
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.write.wrapping_sub(self.read)
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether input is being held back in the UART (the receive interrupt
    /// is masked until the shell has read enough).
    pub fn is_holding_back(&self) -> bool {
        self.held_back
    }

    /// Receive errors the UART reported so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// How many times the ring filled up and held input back.
    pub fn hold_backs(&self) -> u64 {
        self.hold_backs
    }

    /// Moves bytes from the UART's FIFO into the ring until the FIFO is
    /// empty or the ring is full. On a full ring it leaves the rest in the
    /// FIFO and masks the receive interrupts; [`pop`](Self::pop) undoes
    /// that. Call it from the receive interrupt handler (after clearing
    /// the interrupt, so a byte arriving during the drain interrupts
    /// again) and once after unmasking.
    pub fn fill_from(&mut self, fifo: &mut impl ReceiveFifo) {
        while self.len() < RING_LEN {
            match fifo.take_byte() {
                Some(Ok(byte)) => {
                    self.bytes[self.write % RING_LEN] = byte;
                    self.write = self.write.wrapping_add(1);
                }
                Some(Err(ReceiveError)) => self.errors += 1,
                None => return,
            }
        }
        // Full: whatever else the FIFO holds stays there. Without the mask
        // a UART with a FIFO level still set would interrupt again and
        // again with nothing the ring can take.
        if !self.held_back {
            self.held_back = true;
            self.hold_backs += 1;
            fifo.set_receive_interrupts(false);
        }
    }

    /// Takes the oldest byte; once the ring has room again after holding
    /// input back, unmasks the receive interrupts and drains what waited
    /// in the FIFO.
    pub fn pop(&mut self, fifo: &mut impl ReceiveFifo) -> Option<u8> {
        if self.is_empty() {
            return None;
        }
        let byte = self.bytes[self.read % RING_LEN];
        self.read = self.read.wrapping_add(1);
        if self.held_back && self.len() <= RESUME_AT {
            self.held_back = false;
            // Unmask first, then drain: a byte that arrives after the
            // drain finds the interrupt unmasked.
            fifo.set_receive_interrupts(true);
            self.fill_from(fifo);
        }
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;
    use stopwatch_test_rng::TestRng;

    /// A model of QEMU's PL011 with its FIFO off (one byte deep, as the
    /// kernel leaves it) and the host's character device behind it: the
    /// next host byte enters the FIFO only when the FIFO is empty.
    struct ModelUart {
        host: VecDeque<Result<u8, ReceiveError>>,
        fifo: Option<Result<u8, ReceiveError>>,
        unmasked: bool,
        mask_changes: usize,
    }

    impl ModelUart {
        fn new(input: impl IntoIterator<Item = Result<u8, ReceiveError>>) -> Self {
            let mut uart = ModelUart {
                host: input.into_iter().collect(),
                fifo: None,
                unmasked: false,
                mask_changes: 0,
            };
            uart.fifo = uart.host.pop_front();
            uart
        }

        /// Whether the receive interrupt is asserted.
        fn interrupt(&self) -> bool {
            self.unmasked && self.fifo.is_some()
        }
    }

    impl ReceiveFifo for ModelUart {
        fn take_byte(&mut self) -> Option<Result<u8, ReceiveError>> {
            let byte = self.fifo.take()?;
            self.fifo = self.host.pop_front();
            Some(byte)
        }

        fn set_receive_interrupts(&mut self, unmasked: bool) {
            if self.unmasked != unmasked {
                self.mask_changes += 1;
            }
            self.unmasked = unmasked;
        }
    }

    /// Runs the interrupt handler and a consumer that reads `chunk` bytes
    /// at a time, as the kernel does, until the input is used up; returns
    /// what the consumer read.
    fn run(uart: &mut ModelUart, ring: &mut ReceiveRing, chunk: impl Fn() -> usize) -> Vec<u8> {
        uart.set_receive_interrupts(true);
        ring.fill_from(uart);
        let mut read = Vec::new();
        loop {
            if uart.interrupt() {
                ring.fill_from(uart);
            }
            if ring.is_empty() {
                if uart.interrupt() {
                    continue;
                }
                // The consumer would now sleep until an interrupt: that
                // must only happen with nothing left to receive.
                assert!(
                    uart.fifo.is_none() && uart.host.is_empty(),
                    "input stranded"
                );
                return read;
            }
            for _ in 0..chunk() {
                match ring.pop(uart) {
                    Some(byte) => read.push(byte),
                    None => break,
                }
            }
        }
    }

    #[test]
    fn a_paste_larger_than_the_ring_arrives_whole_and_in_order() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut uart = ModelUart::new(input.iter().copied().map(Ok));
        let mut ring = ReceiveRing::new();
        // The shell reads slowly: a few bytes, then the interrupt again.
        let read = run(&mut uart, &mut ring, || 3);
        assert_eq!(read, input);
        assert_eq!(ring.errors(), 0);
        assert!(ring.hold_backs() > 0, "the ring never filled up");
        assert!(!ring.is_holding_back());
        assert!(uart.unmasked, "the interrupt stays masked after the paste");
    }

    #[test]
    fn holds_back_only_when_full_and_resumes_at_half() {
        let mut uart = ModelUart::new((0..RING_LEN as u32 + 10).map(|i| Ok(i as u8)));
        let mut ring = ReceiveRing::new();
        uart.set_receive_interrupts(true);
        ring.fill_from(&mut uart);
        assert_eq!(ring.len(), RING_LEN);
        assert!(ring.is_holding_back());
        assert!(!uart.unmasked);
        // The byte that did not fit is still in the UART, not lost.
        assert_eq!(uart.fifo, Some(Ok(RING_LEN as u8)));
        for expected in 0..(RING_LEN - RESUME_AT - 1) {
            assert_eq!(ring.pop(&mut uart), Some(expected as u8));
            assert!(ring.is_holding_back(), "resumed at {}", ring.len());
        }
        // Down to half: resume, and the waiting bytes come in at once.
        ring.pop(&mut uart);
        assert!(!ring.is_holding_back());
        assert!(uart.unmasked);
        assert_eq!(ring.len(), RESUME_AT + 10);
        assert_eq!(uart.fifo, None);
    }

    #[test]
    fn a_steady_stream_toggles_the_mask_once_per_half_ring() {
        let mut uart = ModelUart::new((0..100_000u32).map(|i| Ok(i as u8)));
        let mut ring = ReceiveRing::new();
        let read = run(&mut uart, &mut ring, || 1);
        assert_eq!(read.len(), 100_000);
        // Each hold-back masks once and unmasks once.
        assert!(uart.mask_changes <= 2 * ring.hold_backs() as usize + 1);
        assert!(ring.hold_backs() <= (100_000 / (RING_LEN - RESUME_AT)) as u64 + 1);
    }

    #[test]
    fn uart_errors_are_counted_and_skipped() {
        let input = [Ok(b'a'), Err(ReceiveError), Ok(b'b'), Err(ReceiveError)];
        let mut uart = ModelUart::new(input);
        let mut ring = ReceiveRing::new();
        let read = run(&mut uart, &mut ring, || 8);
        assert_eq!(read, b"ab");
        assert_eq!(ring.errors(), 2);
    }

    #[test]
    fn random_pacing_never_loses_reorders_or_strands_input() {
        for seed in 1..=200u64 {
            let mut random = TestRng::new(seed);
            let length = random.below(3 * RING_LEN as u64) as usize;
            let input: Vec<u8> = (0..length).map(|_| random.next_u64() as u8).collect();
            let mut uart = ModelUart::new(input.iter().copied().map(Ok));
            let mut ring = ReceiveRing::new();
            let chunk = core::cell::RefCell::new(random);
            let read = run(&mut uart, &mut ring, || {
                1 + chunk.borrow_mut().below(2 * RING_LEN as u64) as usize
            });
            assert_eq!(read, input, "seed {seed}");
            assert!(ring.len() <= RING_LEN);
        }
    }
}
