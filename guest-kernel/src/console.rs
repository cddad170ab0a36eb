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

use crate::drivers::uart::{Pl011, RxBuffer};
use crate::sync::{IrqMutex, SetOnce};

/// The UART and its receive buffer, shared with the UART interrupt.
struct ConsoleState {
    uart: Pl011,
    rx: RxBuffer,
}

static CONSOLE: IrqMutex<Option<ConsoleState>> = IrqMutex::new(None);

/// Base of the console UART, for the paths that must work without the
/// console lock: [`emergency_print`] and [`flush`].
static UART_BASE: SetOnce<usize> = SetOnce::new();

/// Takes over the PL011 at `base` as the console and enables it.
///
/// # Safety
///
/// `base` must be a PL011 register block, mapped as Device memory, that
/// nothing else uses.
pub unsafe fn init(base: NonNull<arm_pl011_uart::PL011Registers>) {
    // SAFETY: Passed on from our caller.
    let mut uart = unsafe { Pl011::new(base) };
    uart.enable();
    let _ = UART_BASE.set(base.as_ptr() as usize);
    CONSOLE.lock(|console| {
        *console = Some(ConsoleState {
            uart,
            rx: RxBuffer::new(),
        })
    });
}

/// A second driver instance for the console UART, for the paths that must
/// not take the console lock (it may be held by the code a panic or an
/// exception interrupted). `None` before [`init`].
fn unlocked_uart() -> Option<Pl011> {
    let base = NonNull::new(*UART_BASE.get()? as *mut _)?;
    // SAFETY: `base` is the console PL011, mapped since `init`. This breaks
    // `Pl011::new`'s "nothing else" rule knowingly: callers only write the
    // data register and read the flag register, which hold no state the
    // console's instance depends on; at worst output interleaves.
    Some(unsafe { Pl011::new(base) })
}

/// Unmasks the UART's receive interrupt (the GIC side is set up by the
/// caller) and collects input that arrived before.
pub fn enable_receive_interrupt() {
    CONSOLE.lock(|console| {
        if let Some(ConsoleState { uart, rx }) = console {
            uart.enable_receive_interrupt(rx);
        }
    });
}

/// The UART interrupt handler.
pub fn handle_interrupt() {
    CONSOLE.lock(|console| {
        if let Some(ConsoleState { uart, rx }) = console {
            uart.handle_interrupt(rx);
        }
    });
}

/// Receive statistics: (bytes dropped because the buffer was full, UART
/// receive errors).
pub fn receive_losses() -> (u64, u64) {
    CONSOLE.lock(|console| {
        console
            .as_ref()
            .map_or((0, 0), |state| (state.rx.dropped, state.rx.errors))
    })
}

/// Writes raw bytes (no newline translation).
pub fn write_bytes(bytes: &[u8]) {
    CONSOLE.lock(|console| {
        if let Some(state) = console {
            state.uart.write_bytes(bytes);
        }
    });
}

/// Waits until all output has been sent. Takes no lock, so it also works
/// on the way out of a panic that interrupted a print.
pub fn flush() {
    if let Some(mut uart) = unlocked_uart() {
        uart.flush();
    }
}

/// Formats to the UART, turning `\n` into `\r\n` for terminals.
struct LineWriter<'a>(&'a mut Pl011);

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for (index, line) in text.split('\n').enumerate() {
            if index > 0 {
                self.0.write_bytes(b"\r\n");
            }
            self.0.write_bytes(line.as_bytes());
        }
        Ok(())
    }
}

/// Used by `print!` and `println!`.
pub fn print(args: fmt::Arguments<'_>) {
    CONSOLE.lock(|console| {
        if let Some(state) = console {
            let _ = LineWriter(&mut state.uart).write_fmt(args);
        }
    });
}

/// Prints when the normal path may be unusable: from an exception or a
/// panic, possibly while the console lock is held (see [`unlocked_uart`]).
/// Before the console exists the message goes to the semihosting debug
/// output instead.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    match unlocked_uart() {
        Some(mut uart) => {
            let _ = LineWriter(&mut uart).write_fmt(args);
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
            let count = CONSOLE.lock(|console| {
                let Some(state) = console else { return 0 };
                let mut count = 0;
                while count < buf.len() {
                    let Some(byte) = state.rx.pop() else { break };
                    buf[count] = byte;
                    count += 1;
                }
                count
            });
            if count > 0 {
                return Ok(count);
            }
            crate::arch::timer::wait_for_interrupt_unless(|| {
                CONSOLE.lock(|console| console.as_ref().is_some_and(|s| !s.rx.is_empty()))
            });
        }
    }
}

impl ReadReady for Console {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(CONSOLE.lock(|console| console.as_ref().is_some_and(|s| !s.rx.is_empty())))
    }
}

/// The console as a text sink (`\n` becomes `\r\n`), for code that
/// writes to any [`fmt::Write`].
impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        CONSOLE.lock(|console| match console {
            Some(state) => LineWriter(&mut state.uart).write_str(text),
            None => Ok(()),
        })
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
