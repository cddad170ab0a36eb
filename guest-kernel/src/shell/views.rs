// SPDX-License-Identifier: GPL-2.0-or-later
//! The views over the whole machine: `list`, `watch`, `irqs` and `info`.

use core::fmt;
use core::sync::atomic::Ordering;

use board_discovery::PsciConduit;
use embedded_io::Read;
use stopwatch_shell::protocol::{Seconds, UartInput, WatchSummary};
use stopwatch_shell::ReadPath;

use super::notices::{input_ready, Notices};
use super::{elapsed_and_status, no_device, running_period, Shell, CLEAR_LINE};
use crate::arch::timer;
use crate::console::Console;
use crate::drivers::stopwatch::Stopwatch;
use crate::interrupts::{self, UNEXPECTED};
use crate::print;

/// Refreshes of `watch` per second.
const WATCH_REFRESH_NS: u64 = 100_000_000;

impl Shell {
    /// `list`: every stopwatch, the selected one marked.
    pub(super) fn print_list(&self, out: &mut dyn fmt::Write) {
        if self.stopwatches().is_empty() {
            return no_device(out);
        }
        let selected = self.selected;
        for (index, stopwatch) in self.stopwatches().iter().enumerate() {
            let mark = if index == selected { "*" } else { " " };
            let (elapsed, status, _) = elapsed_and_status(stopwatch, ReadPath::TimePage);
            let elapsed = Seconds::nanos(elapsed.unwrap_or(0));
            let _ = write!(
                out,
                "{mark} stopwatch[{index}]  {status:<7}  {elapsed} s  {} timeouts",
                stopwatch.timeouts()
            );
            match running_period(stopwatch) {
                Some(period_ns) => say!(out, ", every {} s", Seconds::nanos(period_ns)),
                None => say!(out, ""),
            }
        }
    }

    /// `watch`: the elapsed time redrawn in place about 10 times a second until
    /// a key is pressed (the key is taken, not run); timeout notices still
    /// appear. Ends with how many refreshes and exits to QEMU it made.
    pub(super) fn watch(&self, stopwatch: &Stopwatch, path: ReadPath, out: &mut dyn fmt::Write) {
        let index = self.selected;
        let mut notices = Notices::new(self.stopwatches());
        let mut refreshes = 0u64;
        let clock = timer::clock();
        let started = timer::counter();
        let how = match path {
            ReadPath::TimePage => "time page",
            ReadPath::Trap => "UPDATE",
        };
        say!(
            out,
            "watching stopwatch[{index}] ({how}); press any key to stop"
        );
        // Exits per refresh: the same for every refresh of one device and path.
        let exits_per_refresh = loop {
            let (elapsed, status, exits) = elapsed_and_status(stopwatch, path);
            refreshes += 1;
            match elapsed {
                Some(ns) => print!(
                    "{CLEAR_LINE}stopwatch[{index}]  {} s  {status}",
                    Seconds::millis(ns)
                ),
                None => print!("{CLEAR_LINE}stopwatch[{index}]  (unreadable)  {status}"),
            }
            let deadline = timer::counter() + clock.ns_to_ticks(WATCH_REFRESH_NS);
            timer::wait_until_or(deadline, || input_ready() || notices.pending());
            if notices.pending() {
                print!("{CLEAR_LINE}");
                notices.print(out);
            }
            if input_ready() {
                let mut key = [0u8; 1];
                let Ok(_) = Console.read(&mut key);
                break exits;
            }
        };
        print!("\r\n");
        let summary = WatchSummary {
            refreshes,
            elapsed_ns: clock.ticks_to_ns(timer::counter() - started),
            exits_per_refresh,
        };
        say!(out, "{summary}");
    }
}

pub(super) fn print_irqs(out: &mut dyn fmt::Write) {
    say!(out, "interrupts handled:");
    // With several CPUs, each one's count, and the CPU an SPI goes to.
    let online = crate::smp::online();
    for route in interrupts::routes().iter() {
        let padding = 14usize.saturating_sub(DisplayLen::of(&route.source));
        let _ = write!(
            out,
            "  {}{:padding$} INTID {:<4} {}",
            route.source,
            "",
            route.intid,
            route.count()
        );
        if online > 1 {
            let _ = write!(out, "  per CPU:");
            let cpus = route.counts.iter().enumerate();
            for (_, count) in cpus.filter(|&(cpu, _)| crate::smp::cpu(cpu).is_some()) {
                let _ = write!(out, " {}", count.load(Ordering::Relaxed));
            }
            if route.intid >= 32 {
                let _ = write!(out, "  (to CPU {})", route.target.load(Ordering::Relaxed));
            }
        }
        say!(out, "");
    }
    say!(
        out,
        "  {:<14} (none)     {}",
        "unexpected",
        UNEXPECTED.load(Ordering::Relaxed)
    );
    let (errors, hold_backs) = crate::console::receive_statistics();
    say!(out, "{}", UartInput { errors, hold_backs });
}

impl Shell {
    pub(super) fn print_info(&self, out: &mut dyn fmt::Write) {
        let board = &self.machine.board;
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
        say!(
            out,
            "CPUs:          {} online of {}",
            crate::smp::online(),
            board.cpu_count
        );
        for (index, &mpidr) in board.cpus.iter().enumerate() {
            if crate::smp::cpu(index).is_some_and(|(_, online)| !online) {
                say!(out, "  cpu {index} (MPIDR {mpidr:#x}): not online");
            }
        }
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
            crate::arch::boot::entry_el(),
            crate::arch::current_el()
        );
        if board.stopwatches.is_empty() {
            say!(out, "stopwatch:     none in the device tree");
        }
        for (index, stopwatch) in board.stopwatches.iter().enumerate() {
            let in_use = if index == self.selected {
                " (selected)"
            } else {
                ""
            };
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
        if let Some(stopwatch) = self.stopwatch() {
            let time_page = if stopwatch.has_time_page() {
                "present"
            } else {
                "absent (original device)"
            };
            say!(out, "time page:     {time_page}");
        }
    }
}

/// The length of a value's `Display` text, for aligning columns (the
/// sources' `Display` does not pad).
struct DisplayLen(usize);

impl DisplayLen {
    fn of(value: &dyn fmt::Display) -> usize {
        let mut len = DisplayLen(0);
        let _ = fmt::write(&mut len, format_args!("{value}"));
        len.0
    }
}

impl fmt::Write for DisplayLen {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0 += text.len();
        Ok(())
    }
}
