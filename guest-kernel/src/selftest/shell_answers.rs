// SPDX-License-Identifier: GPL-2.0-or-later
//! The shell's answers: each command line, run through the same
//! [`Shell::execute`] the console uses, must answer with a given
//! text, on a machine with the stopwatch (in an order that walks its
//! states) or without it (every stopwatch command says there is none).

use core::fmt;

use super::Checker;
use crate::drivers::stopwatch::Stopwatch;
use crate::shell::Shell;

/// A shell command's answer, kept for checking (cut off if longer).
struct Answer {
    bytes: [u8; 1024],
    len: usize,
}

impl fmt::Write for Answer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let count = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + count].copy_from_slice(&text.as_bytes()[..count]);
        self.len += count;
        Ok(())
    }
}

/// Commands whose answer must contain a text, on any machine.
const SHELL_ANSWERS_ALWAYS: &[(&str, &str)] = &[
    ("help", "commands:"),
    ("frobnicate", "error: unknown command 'frobnicate'"),
    ("timeout 11", "error: timeout: 11 is out of range"),
];

/// ... without a stopwatch: every stopwatch command says so.
const SHELL_ANSWERS_WITHOUT_DEVICE: &[(&str, &str)] = &[
    ("start", "error: no stopwatch device"),
    ("pause", "error: no stopwatch device"),
    ("reset", "error: no stopwatch device"),
    ("status", "error: no stopwatch device"),
    ("read", "error: no stopwatch device"),
    ("read trap", "error: no stopwatch device"),
    ("timeout 1", "error: no stopwatch device"),
    ("timeout", "error: no stopwatch device"),
    ("lap", "error: no stopwatch device"),
    ("every 1s", "error: no stopwatch device"),
    ("laps", "error: no stopwatch device"),
    ("bench", "error: no stopwatch device"),
    ("list", "error: no stopwatch device"),
    ("use 0", "error: no stopwatch device"),
    ("watch", "error: no stopwatch device"),
    ("info", "stopwatch:     none in the device tree"),
    ("irqs", "uart input: 0 receive errors"),
];

/// ... with a (reset) stopwatch, in this order.
const SHELL_ANSWERS_WITH_DEVICE: &[(&str, &str)] = &[
    ("status", "status: RESET"),
    ("read", "0.000000000 seconds (RESET, time page)"),
    ("read trap", "0.00 seconds"),
    ("start", "status: RUNNING"),
    ("start", "already running (START not sent)"),
    ("pause", "status: PAUSED"),
    ("reset", "status: RESET"),
    ("pause", "not running (PAUSE not sent)"),
    ("timeout 1", "timeout armed"),
    ("timeout 1", "already pending (TIMEOUT not sent)"),
    ("reset", "status: RESET"),
    (
        "timeout 0.5",
        "timeout armed: interrupt in 0.500000000 s (TIMEOUT_NS)",
    ),
    ("timeout 250ms", "already pending (TIMEOUT not sent)"),
    ("every 1s", "already pending (PERIODIC not sent)"),
    ("reset", "status: RESET"),
    (
        "every 50us",
        "error: every: '50us' is not a period from 100us up to 10 s",
    ),
    (
        "every 10s",
        "periodic timeout armed: interrupt every 10.000000000 s (PERIODIC)",
    ),
    (
        "status",
        "status: RESET\nperiodic timeout: every 10.000000000 s",
    ),
    ("timeout", "0\nperiodic timeout: every 10.000000000 s"),
    ("list", "0 timeouts, every 10.000000000 s"),
    // A new periodic timeout, or a one-shot, replaces it.
    ("every 5s", "interrupt every 5.000000000 s (PERIODIC)"),
    ("timeout 5", "timeout armed: interrupt in 5 s (TIMEOUT)"),
    ("status", "status: RESET"),
    ("reset", "status: RESET"),
    ("laps", "no laps ('lap' records one)"),
    ("lap", "lap 1: 0.000000000 s"),
    ("lap", "lap 2: 0.000000000 s"),
    ("laps", "lap 1: 0.000000000 s\nlap 2: 0.000000000 s"),
    ("reset", "status: RESET"),
    ("laps", "no laps"),
    ("list", "* stopwatch[0]  RESET    0.000000000 s"),
    // Past the 64 a machine can hold, whatever the number of devices.
    ("use 64", "error: use: there is no stopwatch[64]: give 0.."),
    ("use 0", "using stopwatch[0]"),
    ("irqs", "stopwatch[0]"),
    ("info", "time page:     present"),
];

/// The shell's answers (through the same `execute` the console uses), on
/// a machine with or without the stopwatch.
pub(super) fn shell_answers(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let device_answers = if stopwatch.is_some() {
        SHELL_ANSWERS_WITH_DEVICE
    } else {
        SHELL_ANSWERS_WITHOUT_DEVICE
    };
    let mut shell = Shell::new(t.machine);
    for &(line, expected) in SHELL_ANSWERS_ALWAYS.iter().chain(device_answers) {
        let mut answer = Answer {
            bytes: [0; 1024],
            len: 0,
        };
        shell.execute(line, &mut answer);
        let text = core::str::from_utf8(&answer.bytes[..answer.len]).unwrap_or("");
        check!(t, text.contains(expected), else "'{line}' answered '{text}', not '{expected}'");
    }
}
