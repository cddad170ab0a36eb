//! The interactive shell: console bytes through the line editor, lines
//! through the parser (both in the host-tested `stopwatch-shell` crate),
//! commands run against the drivers here.

use core::fmt;
use core::sync::atomic::Ordering;

use board_discovery::PsciConduit;
use embedded_io::{Read, Write};
use stopwatch_abi::Status;
use stopwatch_shell::{parse, Action, Command, LineEditor, HELP, MAX_LINE_LEN, PROMPT};

use crate::console::Console;
use crate::drivers::stopwatch::Stopwatch;
use crate::interrupts::{self, COUNTS};
use crate::{board, power, println, stopwatch};

/// Erases the character left of the cursor on a terminal.
const ERASE_CHAR: &[u8] = b"\x08 \x08";

/// Reads and runs commands forever (until `exit` or `poweroff`).
pub fn run() -> ! {
    let mut console = Console;
    let mut editor = LineEditor::new();
    println!("type 'help' for the commands");
    write(&mut console, PROMPT.as_bytes());
    let mut input = [0u8; 32];
    loop {
        let Ok(count) = console.read(&mut input);
        for &byte in &input[..count] {
            match editor.feed(byte) {
                Action::Nothing => {}
                Action::Echo(byte) => write(&mut console, &[byte]),
                Action::EraseChar => write(&mut console, ERASE_CHAR),
                Action::EraseLine(count) => {
                    for _ in 0..count {
                        write(&mut console, ERASE_CHAR);
                    }
                }
                Action::Line(line) => {
                    write(&mut console, b"\r\n");
                    execute(line);
                    write(&mut console, PROMPT.as_bytes());
                }
                Action::Overlong => {
                    write(&mut console, b"\r\n");
                    println!("error: line too long (at most {MAX_LINE_LEN} characters); ignored");
                    write(&mut console, PROMPT.as_bytes());
                }
            }
        }
    }
}

fn write(console: &mut Console, bytes: &[u8]) {
    let Ok(()) = console.write_all(bytes);
}

/// Parses and runs one line.
fn execute(line: &str) {
    match parse(line) {
        Ok(None) => {}
        Ok(Some(command)) => run_command(command),
        Err(error) => println!("error: {error}"),
    }
}

fn run_command(command: Command) {
    match command {
        Command::Help => println!("{HELP}"),
        Command::Info => print_info(),
        Command::Irqs => print_irqs(),
        Command::Exit(code) => power::exit(i32::from(code)),
        Command::Poweroff => power::system_off(),
        Command::Bench => {
            if stopwatch().is_some() {
                crate::bench::run_and_print();
            } else {
                no_device();
            }
        }
        _ => match stopwatch() {
            Some(stopwatch) => run_stopwatch_command(stopwatch, command),
            None => no_device(),
        },
    }
}

fn no_device() {
    println!("error: no stopwatch device (QEMU was started without -device stopwatch)");
}

fn run_stopwatch_command(stopwatch: &Stopwatch, command: Command) {
    match command {
        Command::Start => {
            if stopwatch.status() == Ok(Status::Running) {
                println!("already running (the device ignores START)");
            }
            stopwatch.start();
            print_status(stopwatch);
        }
        Command::Pause => {
            if stopwatch.status() != Ok(Status::Running) {
                println!("not running (the device ignores PAUSE)");
            }
            stopwatch.pause();
            print_status(stopwatch);
        }
        Command::Reset => {
            stopwatch.reset();
            print_status(stopwatch);
        }
        Command::Status => print_status(stopwatch),
        Command::Read => match stopwatch.read_zero_exit() {
            Some(reading) => println!(
                "{} seconds ({}, time page)",
                Seconds(reading.elapsed_ns),
                reading.snapshot.status.name()
            ),
            None => println!(
                "{} (UPDATE: this device has no time page)",
                stopwatch.update_text().as_str()
            ),
        },
        Command::ReadTrap => println!("{}", stopwatch.update_text().as_str()),
        Command::SetTimeout(seconds) => {
            let pending = stopwatch
                .read_zero_exit()
                .is_some_and(|reading| reading.snapshot.timeout_deadline_ns != 0);
            match stopwatch.timeout_secs(seconds) {
                Ok(()) if pending => {
                    println!("a timeout is already pending (the device ignores this one)")
                }
                Ok(()) => println!("timeout armed: interrupt in {seconds} s"),
                Err(_) => println!("error: timeout out of range"),
            }
        }
        Command::TimeoutCount => println!("{}", stopwatch.timeouts()),
        _ => unreachable!(),
    }
}

fn print_status(stopwatch: &Stopwatch) {
    match stopwatch.status() {
        Ok(status) => println!("status: {}", status.name()),
        Err(code) => println!("status: unknown code {code}"),
    }
}

fn print_irqs() {
    let routes = interrupts::routes();
    let line = |name: &str, intid: Option<u32>, count: u64| match intid {
        Some(intid) => println!("  {name:<14} INTID {intid:<4} {count}"),
        None => println!("  {name:<14} (none)     {count}"),
    };
    println!("interrupts handled:");
    line(
        "stopwatch",
        routes.stopwatch,
        COUNTS.stopwatch.load(Ordering::Relaxed),
    );
    line(
        "uart receive",
        routes.uart,
        COUNTS.uart.load(Ordering::Relaxed),
    );
    line(
        "virtual timer",
        routes.virtual_timer,
        COUNTS.virtual_timer.load(Ordering::Relaxed),
    );
    line(
        "unexpected",
        None,
        COUNTS.unexpected.load(Ordering::Relaxed),
    );
    let (dropped, errors) = crate::console::receive_losses();
    if dropped + errors > 0 {
        println!("  uart input lost: {dropped} bytes dropped, {errors} receive errors");
    }
}

fn print_info() {
    let board = board();
    for (index, ram) in board.memory.iter().enumerate() {
        println!(
            "memory[{index}]:     {:#010x}..{:#010x} ({} MiB)",
            ram.base,
            ram.end(),
            ram.size >> 20
        );
    }
    if let Some(uart) = board.uart {
        println!(
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
        println!(
            "GIC:           v{} GICD {:#x} (size {:#x}), {second_name} {:#x} (size {:#x})",
            u32::from(gic.version()),
            first.base,
            first.size,
            second.base,
            second.size
        );
    }
    if let Some(timer) = board.virtual_timer {
        println!("virtual timer: INTID {}", timer.intid);
    }
    println!("CPUs:          {}", board.cpu_count);
    let psci = match board.psci {
        Some(PsciConduit::Hvc) => "HVC",
        Some(PsciConduit::Smc) => "SMC",
        None => "none",
    };
    println!("PSCI:          {psci}");
    println!("boot args:     \"{}\"", board.bootargs);
    println!(
        "exception level: entered at EL{}, running at EL{}",
        crate::entry_el(),
        crate::arch::current_el()
    );
    if board.stopwatches.is_empty() {
        println!("stopwatch:     none in the device tree");
    }
    for (index, stopwatch) in board.stopwatches.iter().enumerate() {
        let in_use = if index == 0 { " (in use)" } else { "" };
        println!("stopwatch[{index}]:  {}{in_use}", stopwatch.node_name);
        println!(
            "  shared (reg 0):    {:#x} (size {:#x}), Normal cacheable",
            stopwatch.shared.base, stopwatch.shared.size
        );
        println!(
            "  registers (reg 1): {:#x} (size {:#x}), Device-nGnRE",
            stopwatch.registers.base, stopwatch.registers.size
        );
        println!(
            "  interrupt:         INTID {} ({:?})",
            stopwatch.timeout_interrupt.intid, stopwatch.timeout_interrupt.trigger
        );
    }
    for broken in board.broken_stopwatches.iter() {
        println!("stopwatch {}: unusable: {}", broken.node_name, broken.error);
    }
    if let Some(stopwatch) = stopwatch() {
        let time_page = if stopwatch.read_zero_exit().is_some() {
            "present"
        } else {
            "absent (original device)"
        };
        println!("time page:     {time_page}");
    }
}

/// Nanoseconds shown as seconds with nine decimals.
pub struct Seconds(pub u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = stopwatch_abi::NANOS_PER_SEC;
        write!(f, "{}.{:09}", self.0 / ns, self.0 % ns)
    }
}
