// SPDX-License-Identifier: GPL-2.0-or-later
//! The console: `print!`/`println!`, and [`Console`], the byte stream the
//! shell reads and writes through the `embedded-io` traits.
//!
//! Output goes straight to the UART; input comes from the receive ring
//! buffer that the UART interrupt fills, so reading sleeps in WFI instead
//! of polling.

use core::convert::Infallible;
use core::fmt::{self, Write as _};
use core::ptr::NonNull;

use embedded_io::{ErrorType, Read, ReadReady, Write};
use tock_registers::interfaces::Readable;

use stopwatch_shell::receive::ReceiveRing;

use crate::arch::mmio::{register, Registers};
use crate::drivers::uart::{self, Pl011, Pl011Registers, FR};
use crate::sync::{IrqMutex, SetOnce};

/// The UART and its receive ring, shared with the UART interrupt.
struct ConsoleState {
    uart: Pl011,
    rx: ReceiveRing,
}

/// Set once by [`init`]. (A `SetOnce` is all zero bytes until then, so the
/// console costs the image no `.data`: an `Option` with a niche would.)
static CONSOLE: SetOnce<IrqMutex<ConsoleState>> = SetOnce::new();

/// Runs `f` on the console with its lock held; `None` before [`init`].
fn with_console<R>(f: impl FnOnce(&mut ConsoleState) -> R) -> Option<R> {
    CONSOLE.get().map(|console| console.lock(f))
}

/// Base of the console UART, for the paths that must work without the
/// console lock: [`emergency_print`] and [`flush`].
static UART_BASE: SetOnce<usize> = SetOnce::new();

/// Takes over the PL011 at `base` as the console and enables it.
///
/// # Safety
///
/// `base` must be a PL011 register block, mapped as Device memory, that
/// nothing else uses.
pub unsafe fn init(base: NonNull<Pl011Registers>) {
    // SAFETY: Passed on from our caller.
    let mut uart = unsafe { Pl011::new(base) };
    uart.enable();
    let _ = UART_BASE.set(base.as_ptr() as usize);
    let state = ConsoleState {
        uart,
        rx: ReceiveRing::new(),
    };
    if CONSOLE.set(IrqMutex::new(state)).is_err() {
        panic!("console initialised twice");
    }
}

/// The console UART's transmit side, for the paths that must not take the
/// console lock (it may be held by the code a panic or an exception
/// interrupted): [`emergency_print`] and [`flush`]. Direct accesses to two
/// registers, UARTFR and UARTDR; no second [`Pl011`] driver instance.
#[derive(Clone, Copy)]
struct EmergencyUart(Registers<Pl011Registers>);

impl EmergencyUart {
    /// `None` before [`init`].
    fn get() -> Option<Self> {
        let base = NonNull::new(*UART_BASE.get()? as *mut Pl011Registers)?;
        // SAFETY: `base` is the console PL011's, mapped as Device memory
        // before `init` stored it (and never unmapped). The console's
        // `Pl011` claims the block as its own, but this only reads UARTFR
        // (no side effect) and writes UARTDR, which only queues a byte to
        // send: `Pl011` keeps no state about the transmit FIFO (it polls
        // the flags too), so the worst this does to an interrupted print
        // is interleave its output with ours.
        Some(EmergencyUart(unsafe { Registers::new(base) }))
    }

    fn write_bytes(self, bytes: &[u8]) {
        uart::send(self.0, bytes);
    }

    fn flush(self) {
        while register!(self.0, fr).is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

/// Unmasks the UART's receive interrupt (the GIC side is set up by the
/// caller) and collects input that arrived before.
pub fn enable_receive_interrupt() {
    with_console(|ConsoleState { uart, rx }| uart.enable_receive_interrupt(rx));
}

/// The UART interrupt handler.
pub fn handle_interrupt() {
    with_console(|ConsoleState { uart, rx }| uart.handle_interrupt(rx));
}

/// Receive statistics: (receive errors the UART reported, times input was
/// held back in the UART because the shell fell behind).
pub fn receive_statistics() -> (u64, u64) {
    with_console(|state| (state.rx.errors(), state.rx.hold_backs())).unwrap_or((0, 0))
}

/// Writes raw bytes (no newline translation).
pub fn write_bytes(bytes: &[u8]) {
    with_console(|state| state.uart.write_bytes(bytes));
}

/// Waits until all output has been sent. Takes no lock, so it also works
/// on the way out of a panic that interrupted a print.
pub fn flush() {
    if let Some(uart) = EmergencyUart::get() {
        uart.flush();
    }
}

/// Formats to a byte sink (a UART's `write_bytes`), turning `\n` into
/// `\r\n` for terminals.
struct LineWriter<'a>(&'a mut dyn FnMut(&[u8]));

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_lines(self.0, text.as_bytes());
        Ok(())
    }
}

/// Writes `text` to `sink`, `\n` becoming `\r\n`. By byte, not
/// `str::split`: this is on the way to the prompt (see [`print_pieces`]).
fn write_lines(sink: &mut dyn FnMut(&[u8]), text: &[u8]) {
    let mut rest = text;
    while let Some(at) = rest.iter().position(|&byte| byte == b'\n') {
        sink(&rest[..at]);
        sink(b"\r\n");
        rest = &rest[at + 1..];
    }
    sink(rest);
}

/// One piece of a line printed by [`print_pieces`].
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    /// Text, `\n` becoming `\r\n` as with `print!`.
    Text(&'a str),
    /// A number in decimal, as `{}` prints it.
    Decimal(u64),
    /// A number in hexadecimal with `0x`, as `{:#x}` prints it.
    Hex(u64),
}

/// Prints without `core::fmt`: the boot path up to the first prompt uses
/// this, so that QEMU's TCG does not have to translate the formatting
/// machinery before the prompt (code run for the first time is translated
/// first; that is most of the time to the prompt). `print!` is for
/// everything else.
pub fn print_pieces(pieces: &[Piece<'_>]) {
    with_console(|state| {
        let sink = &mut |bytes: &[u8]| state.uart.write_bytes(bytes);
        for piece in pieces {
            let mut digits = [0; 20];
            match *piece {
                Piece::Text(text) => write_lines(sink, text.as_bytes()),
                Piece::Decimal(value) => sink(digits_of(value, 10, &mut digits)),
                Piece::Hex(value) => {
                    sink(b"0x");
                    sink(digits_of(value, 16, &mut digits));
                }
            }
        }
    });
}

/// `value`'s digits in `radix` (at most 16; lowercase), written at the end
/// of `buffer`: 20 digits hold any u64 in decimal.
fn digits_of(mut value: u64, radix: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b"0123456789abcdef"[(value % radix) as usize];
        value /= radix;
        if value == 0 {
            return &buffer[start..];
        }
    }
}

/// Used by `print!` and `println!`.
pub fn print(args: fmt::Arguments<'_>) {
    with_console(|state| {
        let _ = LineWriter(&mut |bytes: &[u8]| state.uart.write_bytes(bytes)).write_fmt(args);
    });
}

/// Prints when the normal path may be unusable: from an exception or a
/// panic, possibly while the console lock is held (see [`EmergencyUart`]).
/// Before the console exists the message goes to the semihosting debug
/// output instead.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    match EmergencyUart::get() {
        Some(uart) => {
            let _ = LineWriter(&mut |bytes: &[u8]| uart.write_bytes(bytes)).write_fmt(args);
            uart.flush();
        }
        None => {
            let _ = SemihostingWriter.write_fmt(args);
        }
    }
}

/// Writes to the semihosting debug output, one character at a time.
struct SemihostingWriter;

impl fmt::Write for SemihostingWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            semihosting::sys::arm_compat::sys_writec(byte);
        }
        Ok(())
    }
}

/// Whether received input waits in the ring.
fn input_waiting() -> bool {
    with_console(|state| !state.rx.is_empty()).unwrap_or(false)
}

/// The console as an `embedded-io` byte stream.
pub struct Console;

impl ErrorType for Console {
    type Error = Infallible;
}

impl Read for Console {
    /// Blocks (sleeping in WFI) until at least one byte has been received.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let count = with_console(|ConsoleState { uart, rx }| {
                let mut count = 0;
                while count < buf.len() {
                    let Some(byte) = rx.pop(uart) else { break };
                    buf[count] = byte;
                    count += 1;
                }
                count
            })
            .unwrap_or(0);
            if count > 0 {
                return Ok(count);
            }
            crate::arch::timer::wait_for_interrupt_unless(input_waiting);
        }
    }
}

impl ReadReady for Console {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(input_waiting())
    }
}

/// The console as a text sink (`\n` becomes `\r\n`), for code that
/// writes to any [`fmt::Write`].
impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        with_console(|state| {
            LineWriter(&mut |bytes: &[u8]| state.uart.write_bytes(bytes)).write_str(text)
        })
        .unwrap_or(Ok(()))
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        write_bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        flush();
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!($($arg)*))
    };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
