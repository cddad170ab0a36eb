// SPDX-License-Identifier: GPL-2.0-or-later
//! The interactive shell: console bytes through the line editor, lines
//! through the parser (both in the host-tested `stopwatch-shell` crate),
//! commands run against the drivers here.
//!
//! Commands write their answers to any [`fmt::Write`]
//! ([`Shell::execute`]): the console here, a buffer in the in-guest tests.
//! The shell owns its state: which stopwatch the device commands act on.

use core::fmt;

use embedded_io::{Read, Write};
use stopwatch_abi::Status;
use stopwatch_shell::protocol::{LapLine, Seconds, TimePageReading};
use stopwatch_shell::{
    parse, Command, DeviceCommand, Event, LineEditor, Prompt, ReadPath, Timeout, COMMAND_NAMES,
    HELP, MAX_LINE_LEN,
};

use crate::arch::timer;
use crate::console::Console;
use crate::devices::{Machine, Stopwatches};
use crate::drivers::stopwatch::{Stopwatch, TimePageError};
use crate::interrupts::{self, RouteError, Source};
use crate::{power, print, println};

/// Writes one line of a command's answer to `$out` (a `&mut dyn
/// fmt::Write`); a sink that fails only loses the text.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Moves to the start of the line and clears it.
const CLEAR_LINE: &str = "\r\x1b[K";

mod notices;
mod views;

use notices::{input_ready, Notices};
use views::print_irqs;

/// The shell: the machine it works on and the selected stopwatch.
pub struct Shell {
    machine: &'static Machine,
    /// The index of the stopwatch the device commands act on.
    selected: usize,
}

impl Shell {
    /// A shell on `machine`, with stopwatch 0 selected.
    pub fn new(machine: &'static Machine) -> Self {
        Shell {
            machine,
            selected: 0,
        }
    }

    /// The help hint and the first prompt. `kernel_main` prints them as
    /// soon as the stopwatches are known (the prompt names the selection
    /// among several), before it sets up interrupts, then calls
    /// [`run`](Self::run); input typed meanwhile waits in the UART. Without
    /// `core::fmt`, as the banner.
    pub fn greet(&self) {
        crate::console::print_pieces(&[crate::console::Piece::Text(
            "type 'help' for the commands\n",
        )]);
        self.print_prompt();
    }

    /// Reads and runs commands forever (until `exit` or `poweroff`), after
    /// [`greet`](Self::greet).
    pub fn run(mut self) -> ! {
        let mut editor = LineEditor::new(COMMAND_NAMES);
        let mut notices = Notices::new(self.stopwatches());
        // The editor's echo, cursor moves and redraws go straight out.
        let mut show = |bytes: &[u8]| {
            let Ok(()) = Console.write_all(bytes);
        };
        let mut input = [0u8; 32];
        loop {
            timer::wait_for_interrupt_unless(|| input_ready() || notices.pending());
            if notices.pending() {
                // The notice goes above the line being typed, which is then
                // drawn again as it was, cursor included.
                print!("{CLEAR_LINE}");
                notices.print(&mut Console);
                self.print_prompt();
                editor.redraw(&mut show);
            }
            if !input_ready() {
                continue;
            }
            let Ok(count) = Console.read(&mut input);
            for &byte in &input[..count] {
                match editor.feed(byte, &mut show) {
                    None => {}
                    Some(Event::Line(line)) => {
                        self.execute(line, &mut Console);
                        self.print_prompt();
                    }
                    Some(Event::Overlong) => {
                        println!(
                            "error: line too long (at most {MAX_LINE_LEN} characters); ignored"
                        );
                        self.print_prompt();
                    }
                    Some(Event::Cancelled) => self.print_prompt(),
                    Some(Event::Redraw) => {
                        self.print_prompt();
                        editor.redraw(&mut show);
                    }
                }
            }
        }
    }

    /// The stopwatches.
    fn stopwatches(&self) -> &'static Stopwatches {
        &self.machine.stopwatches
    }

    /// The selected stopwatch, if there is one.
    fn stopwatch(&self) -> Option<&'static Stopwatch> {
        self.stopwatches().get(self.selected)
    }

    /// Prints the prompt, naming the selected stopwatch when there are
    /// several: [`Prompt::parts`], printed without `core::fmt` (see
    /// [`greet`](Self::greet)).
    fn print_prompt(&self) {
        use crate::console::Piece::{Decimal, Text};
        let prompt = Prompt {
            selected: self.selected,
            count: self.stopwatches().len(),
        };
        match prompt.parts() {
            (before, Some(number), after) => {
                crate::console::print_pieces(&[Text(before), Decimal(number as u64), Text(after)]);
            }
            (text, None, _) => crate::console::write_bytes(text.as_bytes()),
        }
    }
}

impl Shell {
    /// Parses and runs one line, writing the answer to `out`.
    pub fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) {
        match parse(line) {
            Ok(None) => {}
            Ok(Some(command)) => self.run_command(command, out),
            Err(error) => say!(out, "error: {error}"),
        }
    }

    fn run_command(&mut self, command: Command, out: &mut dyn fmt::Write) {
        match command {
            Command::Device(command) => match self.stopwatch() {
                Some(stopwatch) => run_device_command(stopwatch, command, out),
                None => no_device(out),
            },
            Command::Help => say!(out, "{HELP}"),
            Command::List => self.print_list(out),
            Command::Use(index) => match self.select(index) {
                Ok(()) => say!(out, "using stopwatch[{index}]"),
                Err(0) => no_device(out),
                Err(count) => say!(
                    out,
                    "error: use: there is no stopwatch[{index}]: give 0..{} (see 'list')",
                    count - 1
                ),
            },
            Command::Watch(path) => match self.stopwatch() {
                Some(stopwatch) => self.watch(stopwatch, path, out),
                None => no_device(out),
            },
            Command::Info => self.print_info(out),
            Command::Irqs => print_irqs(out),
            Command::IrqCpu(cpu) => match self.stopwatch() {
                Some(_) => self.route_interrupt_to(cpu, out),
                None => no_device(out),
            },
            Command::Exit(code) => power::exit(i32::from(code)),
            Command::Poweroff => power::system_off(),
            Command::Bench => match self.stopwatch() {
                Some(stopwatch) => crate::bench::run_and_print(stopwatch),
                None => no_device(out),
            },
        }
    }

    /// `irq-cpu N`: the selected stopwatch's interrupt to CPU `cpu`.
    fn route_interrupt_to(&self, cpu: usize, out: &mut dyn fmt::Write) {
        let index = self.selected;
        match interrupts::route_to_cpu(Source::Stopwatch(index), cpu) {
            Ok(()) => say!(out, "stopwatch[{index}]'s interrupt now goes to CPU {cpu}"),
            Err(RouteError::CpuNotReady) => say!(
                out,
                "error: irq-cpu: CPU {cpu} is not online ({} online: see 'info')",
                crate::smp::online()
            ),
            Err(error) => say!(out, "error: irq-cpu: {error:?}"),
        }
    }

    /// Selects stopwatch `index`; `Err` holds how many there are.
    fn select(&mut self, index: usize) -> Result<(), usize> {
        let count = self.stopwatches().len();
        if index >= count {
            return Err(count);
        }
        self.selected = index;
        Ok(())
    }
}

fn no_device(out: &mut dyn fmt::Write) {
    say!(
        out,
        "error: no stopwatch device (QEMU was started without -device stopwatch)"
    );
}

fn run_device_command(stopwatch: &Stopwatch, command: DeviceCommand, out: &mut dyn fmt::Write) {
    match command {
        // START while RUNNING and PAUSE while RESET are guest mistakes the
        // device logs: not sent when the driver knows the status. (PAUSE
        // while PAUSED is harmless, but does nothing either.)
        DeviceCommand::Start => {
            if stopwatch.status() == Ok(Status::Running) {
                say!(out, "already running (START not sent)");
            } else {
                stopwatch.start();
            }
            print_status(stopwatch, out);
        }
        DeviceCommand::Pause => {
            if let Ok(Status::Reset | Status::Paused) = stopwatch.status() {
                say!(out, "not running (PAUSE not sent)");
            } else {
                stopwatch.pause();
            }
            print_status(stopwatch, out);
        }
        DeviceCommand::Reset => {
            stopwatch.reset();
            print_status(stopwatch, out);
        }
        DeviceCommand::Status => {
            print_status(stopwatch, out);
            print_period(stopwatch, out);
        }
        DeviceCommand::Read(ReadPath::TimePage) => match stopwatch.read_zero_exit() {
            Ok(reading) => say!(
                out,
                "{}",
                TimePageReading {
                    elapsed_ns: reading.elapsed_ns,
                    status: reading.snapshot.status.name(),
                }
            ),
            Err(TimePageError::Absent) => say!(
                out,
                "{} (UPDATE: this device has no time page)",
                stopwatch.update_text().as_str()
            ),
            Err(error) => say!(out, "error: {error}; 'read trap' asks the device"),
        },
        DeviceCommand::Read(ReadPath::Trap) => say!(out, "{}", stopwatch.update_text().as_str()),
        // The parser has checked the range.
        DeviceCommand::SetTimeout(timeout) => {
            // A second TIMEOUT while one is armed is a mistake the device
            // logs: not sent when the time page shows an armed one-shot
            // (a periodic one it replaces).
            if one_shot_pending(stopwatch, out, "TIMEOUT") {
                return;
            }
            match timeout {
                Timeout::Seconds(seconds) => {
                    stopwatch.timeout_secs(seconds);
                    say!(out, "timeout armed: interrupt in {seconds} s (TIMEOUT)");
                }
                Timeout::Nanoseconds(ns) => {
                    stopwatch.timeout_ns(ns);
                    say!(
                        out,
                        "timeout armed: interrupt in {} s (TIMEOUT_NS)",
                        Seconds::nanos(ns)
                    );
                }
            }
        }
        DeviceCommand::TimeoutCount => {
            say!(out, "{}", stopwatch.timeouts());
            print_period(stopwatch, out);
        }
        DeviceCommand::Every(period_ns) => every(stopwatch, period_ns, out),
        // tutorial:lap-shell-run begin
        // A LAP with every slot taken is a mistake the device logs: not
        // sent when the laps show it.
        DeviceCommand::Lap => match stopwatch.laps() {
            Ok(laps) if laps.is_full() => say!(
                out,
                "all {} lap slots taken: 'reset' clears them (LAP not sent)",
                laps.as_slice().len()
            ),
            Ok(_) => {
                stopwatch.lap();
                print_laps(stopwatch, out, true);
            }
            Err(error) => say!(out, "error: {error}"),
        },
        DeviceCommand::Laps => print_laps(stopwatch, out, false),
        // tutorial:lap-shell-run end
    }
}

// tutorial:lap-shell-print begin
/// The laps, one per line as `lap N: S s` (N from 1), or only the last.
fn print_laps(stopwatch: &Stopwatch, out: &mut dyn fmt::Write, last_only: bool) {
    let laps = match stopwatch.laps() {
        Ok(laps) => laps,
        Err(error) => return say!(out, "error: {error}"),
    };
    let laps = laps.as_slice();
    if laps.is_empty() {
        return say!(out, "no laps ('lap' records one)");
    }
    let first = if last_only { laps.len() - 1 } else { 0 };
    for (index, &ns) in laps.iter().enumerate().skip(first) {
        let number = index + 1;
        say!(out, "{}", LapLine { number, ns });
    }
}
// tutorial:lap-shell-print end

// tutorial:periodic-shell-run begin
/// `every T`: PERIODIC, which replaces a periodic timeout. Not sent while a
/// one-shot is pending: the device would log it as a mistake.
fn every(stopwatch: &Stopwatch, period_ns: u64, out: &mut dyn fmt::Write) {
    if one_shot_pending(stopwatch, out, "PERIODIC") {
        return;
    }
    stopwatch.periodic(period_ns);
    say!(
        out,
        "periodic timeout armed: interrupt every {} s (PERIODIC)",
        Seconds::nanos(period_ns)
    );
}

/// Whether the time page shows a one-shot timeout pending, which the
/// device would refuse `command` for; says so. An unreadable page: warns,
/// and lets the command through.
fn one_shot_pending(stopwatch: &Stopwatch, out: &mut dyn fmt::Write, command: &str) -> bool {
    match stopwatch.pending_timeout() {
        Ok(pending) if pending.one_shot_armed() => {
            say!(out, "a timeout is already pending ({command} not sent)");
            true
        }
        Ok(_) | Err(TimePageError::Absent) => false,
        Err(error) => {
            say!(
                out,
                "warning: {error}: cannot tell whether a timeout is pending"
            );
            false
        }
    }
}

/// The running periodic timeout's period, on a line of its own: what tells
/// it from a one-shot (`status`, `timeout`).
fn print_period(stopwatch: &Stopwatch, out: &mut dyn fmt::Write) {
    if let Some(period_ns) = running_period(stopwatch) {
        say!(
            out,
            "periodic timeout: every {} s",
            Seconds::nanos(period_ns)
        );
    }
}

/// The period of the periodic timeout that runs, if one does.
fn running_period(stopwatch: &Stopwatch) -> Option<u64> {
    stopwatch.pending_timeout().ok()?.period()
}
// tutorial:periodic-shell-run end

fn print_status(stopwatch: &Stopwatch, out: &mut dyn fmt::Write) {
    match stopwatch.status() {
        Ok(status) => say!(out, "status: {}", status.name()),
        Err(code) => say!(out, "status: unknown code {code}"),
    }
}

/// The elapsed time and status of `stopwatch`: from the time page (no
/// exit), or on an original device with UPDATE and STATUS; and the number
/// of exits to QEMU that took.
fn elapsed_and_status(stopwatch: &Stopwatch, path: ReadPath) -> (Option<u64>, &'static str, u64) {
    if path == ReadPath::TimePage {
        match stopwatch.read_zero_exit() {
            Ok(reading) => return (Some(reading.elapsed_ns), reading.snapshot.status.name(), 0),
            Err(TimePageError::Absent) => {}
            Err(_) => return (None, "?", 0),
        }
    }
    let elapsed = stopwatch.update_text().to_ns();
    let status = stopwatch.status().map_or("?", Status::name);
    // UPDATE is a write to COMMAND, STATUS a read: two exits.
    (elapsed, status, 2)
}
