//! The interactive shell: console bytes through the line editor, lines
//! through the parser (both in the host-tested `stopwatch-shell` crate),
//! commands run against the drivers here.
//!
//! Commands write their answers to any [`fmt::Write`] ([`execute`]): the
//! console here, a buffer in the in-guest tests.

use core::fmt;
use core::sync::atomic::Ordering;

use board_discovery::PsciConduit;
use embedded_io::{Read, Write};
use stopwatch_abi::Status;
use stopwatch_shell::{
    parse, Command, Event, LineEditor, COMMAND_NAMES, HELP, MAX_LINE_LEN, PROMPT,
};

use crate::console::Console;
use crate::drivers::stopwatch::{Stopwatch, TimePageError};
use crate::interrupts::{self, COUNTS};
use crate::{board, power, println, stopwatch};

/// Writes one line of a command's answer to `$out` (a `&mut dyn
/// fmt::Write`); a sink that fails only loses the text.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Reads and runs commands forever (until `exit` or `poweroff`).
pub fn run() -> ! {
    let mut editor = LineEditor::new(COMMAND_NAMES);
    // The editor's echo, cursor moves and redraws go straight out.
    let mut show = |bytes: &[u8]| {
        let Ok(()) = Console.write_all(bytes);
    };
    println!("type 'help' for the commands");
    show(PROMPT.as_bytes());
    let mut input = [0u8; 32];
    loop {
        let Ok(count) = Console.read(&mut input);
        for &byte in &input[..count] {
            match editor.feed(byte, &mut show) {
                None => {}
                Some(Event::Line(line)) => {
                    execute(line, &mut Console);
                    show(PROMPT.as_bytes());
                }
                Some(Event::Overlong) => {
                    println!("error: line too long (at most {MAX_LINE_LEN} characters); ignored");
                    show(PROMPT.as_bytes());
                }
                Some(Event::Cancelled) => show(PROMPT.as_bytes()),
                Some(Event::Redraw) => editor.redraw(PROMPT, &mut show),
            }
        }
    }
}

/// Parses and runs one line, writing the answer to `out`.
pub fn execute(line: &str, out: &mut dyn fmt::Write) {
    match parse(line) {
        Ok(None) => {}
        Ok(Some(command)) => run_command(command, out),
        Err(error) => say!(out, "error: {error}"),
    }
}

fn run_command(command: Command, out: &mut dyn fmt::Write) {
    match command {
        Command::Help => say!(out, "{HELP}"),
        Command::Info => print_info(out),
        Command::Irqs => print_irqs(out),
        Command::Exit(code) => power::exit(i32::from(code)),
        Command::Poweroff => power::system_off(),
        Command::Bench => {
            if stopwatch().is_some() {
                crate::bench::run_and_print();
            } else {
                no_device(out);
            }
        }
        _ => match stopwatch() {
            Some(stopwatch) => run_stopwatch_command(stopwatch, command, out),
            None => no_device(out),
        },
    }
}

fn no_device(out: &mut dyn fmt::Write) {
    say!(
        out,
        "error: no stopwatch device (QEMU was started without -device stopwatch)"
    );
}

fn run_stopwatch_command(stopwatch: &Stopwatch, command: Command, out: &mut dyn fmt::Write) {
    match command {
        // START while RUNNING and PAUSE while RESET are guest mistakes the
        // device logs: not sent when the driver knows the status. (PAUSE
        // while PAUSED is harmless, but does nothing either.)
        Command::Start => {
            if stopwatch.status() == Ok(Status::Running) {
                say!(out, "already running (START not sent)");
            } else {
                stopwatch.start();
            }
            print_status(stopwatch, out);
        }
        Command::Pause => {
            if let Ok(Status::Reset | Status::Paused) = stopwatch.status() {
                say!(out, "not running (PAUSE not sent)");
            } else {
                stopwatch.pause();
            }
            print_status(stopwatch, out);
        }
        Command::Reset => {
            stopwatch.reset();
            print_status(stopwatch, out);
        }
        Command::Status => print_status(stopwatch, out),
        Command::Read => match stopwatch.read_zero_exit() {
            Ok(reading) => say!(
                out,
                "{} seconds ({}, time page)",
                Seconds(reading.elapsed_ns),
                reading.snapshot.status.name()
            ),
            Err(TimePageError::Absent) => say!(
                out,
                "{} (UPDATE: this device has no time page)",
                stopwatch.update_text().as_str()
            ),
            Err(error) => say!(out, "error: {error}; 'read trap' asks the device"),
        },
        Command::ReadTrap => say!(out, "{}", stopwatch.update_text().as_str()),
        // The parser has checked the range.
        Command::SetTimeout(seconds) => {
            // A second TIMEOUT while one is armed is a mistake the device
            // logs: not sent when the time page shows an armed deadline.
            match stopwatch.read_time_page() {
                Ok(page) if page.timeout_deadline_ns != 0 => {
                    say!(out, "a timeout is already pending (TIMEOUT not sent)");
                    return;
                }
                Ok(_) | Err(TimePageError::Absent) => {}
                Err(error) => say!(
                    out,
                    "warning: {error}: cannot tell whether a timeout is pending"
                ),
            }
            stopwatch.timeout_secs(seconds);
            say!(out, "timeout armed: interrupt in {seconds} s");
        }
        Command::TimeoutCount => say!(out, "{}", stopwatch.timeouts()),
        _ => unreachable!(),
    }
}

fn print_status(stopwatch: &Stopwatch, out: &mut dyn fmt::Write) {
    match stopwatch.status() {
        Ok(status) => say!(out, "status: {}", status.name()),
        Err(code) => say!(out, "status: unknown code {code}"),
    }
}

fn print_irqs(out: &mut dyn fmt::Write) {
    let routes = interrupts::routes();
    say!(out, "interrupts handled:");
    let sources = [
        ("stopwatch", routes.stopwatch, &COUNTS.stopwatch),
        ("uart receive", routes.uart, &COUNTS.uart),
        ("virtual timer", routes.virtual_timer, &COUNTS.virtual_timer),
        ("unexpected", None, &COUNTS.unexpected),
    ];
    for (name, intid, count) in sources {
        let count = count.load(Ordering::Relaxed);
        match intid {
            Some(intid) => say!(out, "  {name:<14} INTID {intid:<4} {count}"),
            None => say!(out, "  {name:<14} (none)     {count}"),
        }
    }
    let (errors, hold_backs) = crate::console::receive_statistics();
    say!(
        out,
        "uart input: {errors} receive errors (overrun, framing, parity, break), \
         held back in the UART {hold_backs} times"
    );
}

fn print_info(out: &mut dyn fmt::Write) {
    let board = board();
    for (index, ram) in board.memory.iter().enumerate() {
        say!(
            out,
            "memory[{index}]:     {:#010x}..{:#010x} ({} MiB)",
            ram.base,
            ram.end(),
            ram.size >> 20
        );
    }
    if let Some(uart) = board.uart {
        say!(
            out,
            "console:       {} at {:#x} (size {:#x}), INTID {}",
            uart.node_name,
            uart.region.base,
            uart.region.size,
            uart.interrupt.map_or(0, |i| i.intid)
        );
    }
    if let Some(gic) = board.gic {
        let [first, second] = gic.regions();
        let second_name = if gic.version() == 2 { "GICC" } else { "GICR" };
        say!(
            out,
            "GIC:           v{} GICD {:#x} (size {:#x}), {second_name} {:#x} (size {:#x})",
            u32::from(gic.version()),
            first.base,
            first.size,
            second.base,
            second.size
        );
    }
    if let Some(timer) = board.virtual_timer {
        say!(out, "virtual timer: INTID {}", timer.intid);
    }
    say!(out, "CPUs:          {}", board.cpu_count);
    let psci = match board.psci {
        Some(PsciConduit::Hvc) => "HVC",
        Some(PsciConduit::Smc) => "SMC",
        None => "none",
    };
    say!(out, "PSCI:          {psci}");
    say!(out, "boot args:     \"{}\"", board.bootargs);
    say!(
        out,
        "exception level: entered at EL{}, running at EL{}",
        crate::entry_el(),
        crate::arch::current_el()
    );
    if board.stopwatches.is_empty() {
        say!(out, "stopwatch:     none in the device tree");
    }
    for (index, stopwatch) in board.stopwatches.iter().enumerate() {
        let in_use = if index == 0 { " (in use)" } else { "" };
        say!(out, "stopwatch[{index}]:  {}{in_use}", stopwatch.node_name);
        say!(
            out,
            "  shared (reg 0):    {:#x} (size {:#x}), Normal cacheable",
            stopwatch.shared.base,
            stopwatch.shared.size
        );
        say!(
            out,
            "  registers (reg 1): {:#x} (size {:#x}), Device-nGnRE",
            stopwatch.registers.base,
            stopwatch.registers.size
        );
        say!(
            out,
            "  interrupt:         INTID {} ({:?})",
            stopwatch.timeout_interrupt.intid,
            stopwatch.timeout_interrupt.trigger
        );
    }
    for broken in board.broken_stopwatches.iter() {
        say!(
            out,
            "stopwatch {}: unusable: {}",
            broken.node_name,
            broken.error
        );
    }
    if let Some(stopwatch) = stopwatch() {
        let time_page = if stopwatch.has_time_page() {
            "present"
        } else {
            "absent (original device)"
        };
        say!(out, "time page:     {time_page}");
    }
}

/// Nanoseconds shown as seconds with nine decimals.
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = stopwatch_abi::NANOS_PER_SEC;
        write!(f, "{}.{:09}", self.0 / ns, self.0 % ns)
    }
}
