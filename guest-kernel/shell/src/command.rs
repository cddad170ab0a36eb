// SPDX-License-Identifier: GPL-2.0-or-later
//! Shell commands and their parser.
//!
//! Commands come in two kinds: [`DeviceCommand`]s act on the selected
//! stopwatch; the other [`Command`]s act on the shell or the machine.

use core::fmt;
use stopwatch_abi::{MAX_TIMEOUT_NS, MIN_PERIOD_NS, NANOS_PER_SEC};

/// A parsed shell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A command for the selected stopwatch.
    Device(DeviceCommand),
    /// `help`: list the commands.
    Help,
    /// `list`: every stopwatch with its status, elapsed time, timeouts.
    List,
    /// `use N`: select stopwatch N for the device commands.
    Use(usize),
    /// `watch` (time page) or `watch trap` (UPDATE): a live display of the
    /// selected stopwatch until a key is pressed.
    Watch(ReadPath),
    /// `irqs`: interrupt counts per source.
    Irqs,
    /// `irq-cpu N`: the selected stopwatch's interrupt to CPU N.
    IrqCpu(usize),
    /// `info`: what the device tree said.
    Info,
    /// `bench`: measure the access paths and the interrupt latency.
    Bench,
    /// `exit [code]`: end the run through semihosting with this code.
    Exit(u8),
    /// `poweroff`: PSCI SYSTEM_OFF.
    Poweroff,
}

/// A command for one stopwatch device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceCommand {
    /// `start`: START the stopwatch.
    Start,
    /// `pause` (alias `stop`): PAUSE it.
    Pause,
    /// `reset`: RESET it.
    Reset,
    /// `read` (alias `show`) or `read trap`: the elapsed time.
    Read(ReadPath),
    /// `status`: the STATUS register.
    Status,
    /// `timeout DURATION`: arm a timeout.
    SetTimeout(Timeout),
    /// `timeout`: how many timeout interrupts have arrived.
    TimeoutCount,
    // tutorial:lap-shell-command begin
    /// `lap`: record the elapsed time as the next lap (LAP).
    Lap,
    /// `laps`: the laps recorded since the last reset.
    Laps,
    // tutorial:lap-shell-command end
    // tutorial:periodic-shell-command begin
    /// `every DURATION`: a periodic timeout (PERIODIC), period in ns.
    Every(u64),
    // tutorial:periodic-shell-command end
}

/// How the elapsed time is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// From the time page and the guest's counter: no exit to QEMU.
    TimePage,
    /// The original way: UPDATE (an exit), then the text.
    Trap,
}

/// A timeout to arm, in the device command that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// A whole number of seconds in 1..=MAX_TIMEOUT_SECS: the original
    /// TIMEOUT command.
    Seconds(u64),
    /// Anything else up to MAX_TIMEOUT_NS: TIMEOUT_NS.
    Nanoseconds(u64),
}

impl Timeout {
    /// The timeout in nanoseconds.
    pub const fn as_ns(self) -> u64 {
        match self {
            Timeout::Seconds(seconds) => seconds * NANOS_PER_SEC,
            Timeout::Nanoseconds(ns) => ns,
        }
    }
}

/// Every command name (aliases included, `?` aside): what Tab completes.
///
/// [`parse`] rejects any other first word, and the tests check that each of
/// these parses and is in [`HELP`], and that [`HELP`] lists no other: a new
/// command goes here, in the parser and in [`HELP`], or its tests fail.
///
/// One string, the names separated by single spaces, rather than a slice
/// of strings: the slice's table would cost the kernel image 272 bytes of
/// read-only data. [`command_names`] iterates over them.
pub const COMMAND_NAMES: &str = "help start pause stop reset read show status timeout every lap \
                                 laps list use watch irqs irq-cpu info bench exit poweroff";

/// The names of [`COMMAND_NAMES`].
pub fn command_names() -> impl Iterator<Item = &'static str> + Clone {
    COMMAND_NAMES.split(' ')
}

/// The `help` text, one command per line.
// doc:shell-help begin
pub const HELP: &str = "\
commands for the selected stopwatch:
  start            start it
  pause | stop     pause it, keeping the elapsed time
  reset            stop it and clear the elapsed time
  read | show      elapsed time from the time page (no exit to QEMU)
  read trap        elapsed time the original way (UPDATE, then the text)
  status           the STATUS register
  timeout T        interrupt after T: 3 or 3s (seconds), 1.5s, 250ms, 100us,
                   5000ns; from 1 ns up to 10 s
  timeout          number of timeout interrupts so far
  every T          interrupt every T (100us up to 10 s) until pause or reset
  lap              record the elapsed time as the next lap (8 at most)
  laps             the laps recorded since the last reset
other commands:
  list             every stopwatch: status, elapsed time, timeouts
  use N            select stopwatch N for the commands above
  watch            live elapsed time from the time page (any key stops)
  watch trap       the same, with an UPDATE (an exit) per refresh
  irqs             interrupt counts per source (and per CPU)
  irq-cpu N        the selected stopwatch's interrupt to CPU N (see 'info')
  info             what the device tree described
  bench            measure access costs and interrupt latency
  help             this list
  exit [code]      end the run with this exit status (default 0)
  poweroff         power the machine off (PSCI SYSTEM_OFF)";
// doc:shell-help end

/// The accepted forms of a timeout, for error messages.
const TIMEOUT_FORMS: &str =
    "give seconds (3, 3s, 1.5s) or 250ms, 100us, 5000ns, from 1 ns up to 10 s";

/// Why a line is not a valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// The first word is not a command.
    UnknownCommand(&'a str),
    /// The command takes fewer arguments than were given.
    UnexpectedArgument {
        /// The command, as typed.
        command: &'a str,
        /// The first argument too many.
        argument: &'a str,
    },
    /// The command needs an argument that was not given.
    MissingArgument {
        /// The command, as typed.
        command: &'a str,
        /// What it needs.
        wanted: &'a str,
    },
    /// `timeout` was given something that is not a duration.
    TimeoutMalformed(&'a str),
    /// `timeout` was given a duration of 0 or over MAX_TIMEOUT_NS.
    TimeoutOutOfRange(&'a str),
    /// `every` was given something that is not a period in
    /// MIN_PERIOD_NS..=MAX_TIMEOUT_NS.
    BadPeriod(&'a str),
    /// `use` was given something that is not a number.
    BadStopwatchNumber(&'a str),
    /// `exit` was given something that is not a number in 0..=255.
    BadExitCode(&'a str),
    /// `irq-cpu` was given something that is not a number.
    BadCpuNumber(&'a str),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(word) => {
                write!(f, "unknown command '{word}' (try 'help')")
            }
            ParseError::UnexpectedArgument { command, argument } => {
                write!(f, "'{command}' does not take the argument '{argument}'")
            }
            ParseError::MissingArgument { command, wanted } => {
                write!(f, "'{command}' needs {wanted}")
            }
            ParseError::TimeoutMalformed(word) => {
                write!(f, "timeout: '{word}' is not a duration: {TIMEOUT_FORMS}")
            }
            ParseError::TimeoutOutOfRange(word) => {
                write!(f, "timeout: {word} is out of range: {TIMEOUT_FORMS}")
            }
            ParseError::BadPeriod(word) => {
                write!(f, "every: '{word}' is not a period from 100us up to 10 s")
            }
            ParseError::BadStopwatchNumber(word) => {
                write!(f, "use: '{word}' is not a stopwatch number (see 'list')")
            }
            ParseError::BadExitCode(word) => {
                write!(f, "exit: '{word}' is not an exit code (0..255)")
            }
            ParseError::BadCpuNumber(word) => {
                write!(f, "irq-cpu: '{word}' is not a CPU number (see 'info')")
            }
        }
    }
}

/// Parses one line. A blank line is `Ok(None)`.
///
/// Words are separated by spaces or tabs; commands are lower case.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError<'_>> {
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    if name != "?" && !command_names().any(|known| known == name) {
        return Err(ParseError::UnknownCommand(name));
    }
    let argument = words.next();
    let extra = words.next();
    let device = |command| Some(Command::Device(command));

    // Commands that take no argument.
    let plain = match name {
        "help" | "?" => Some(Command::Help),
        "start" => device(DeviceCommand::Start),
        "pause" | "stop" => device(DeviceCommand::Pause),
        "reset" => device(DeviceCommand::Reset),
        "status" => device(DeviceCommand::Status),
        // tutorial:lap-shell-parse begin
        "lap" => device(DeviceCommand::Lap),
        "laps" => device(DeviceCommand::Laps),
        // tutorial:lap-shell-parse end
        "list" => Some(Command::List),
        "irqs" => Some(Command::Irqs),
        "info" => Some(Command::Info),
        "bench" => Some(Command::Bench),
        "poweroff" => Some(Command::Poweroff),
        _ => None,
    };
    if let Some(command) = plain {
        return match argument {
            None => Ok(Some(command)),
            Some(argument) => Err(ParseError::UnexpectedArgument {
                command: name,
                argument,
            }),
        };
    }

    let unexpected = |argument| ParseError::UnexpectedArgument {
        command: name,
        argument,
    };
    let command = match (name, argument) {
        ("read" | "show", None) => Command::Device(DeviceCommand::Read(ReadPath::TimePage)),
        ("read" | "show", Some("trap")) => Command::Device(DeviceCommand::Read(ReadPath::Trap)),
        ("watch", None) => Command::Watch(ReadPath::TimePage),
        ("watch", Some("trap")) => Command::Watch(ReadPath::Trap),
        ("timeout", None) => Command::Device(DeviceCommand::TimeoutCount),
        ("timeout", Some(duration)) => {
            Command::Device(DeviceCommand::SetTimeout(parse_timeout(duration)?))
        }
        // tutorial:periodic-shell-parse begin
        ("every", None) => {
            return Err(ParseError::MissingArgument {
                command: name,
                wanted: "a period (e.g. 500ms)",
            })
        }
        ("every", Some(period)) => Command::Device(DeviceCommand::Every(parse_period(period)?)),
        // tutorial:periodic-shell-parse end
        ("use", None) => {
            return Err(ParseError::MissingArgument {
                command: name,
                wanted: "a stopwatch number (see 'list')",
            })
        }
        ("use", Some(number)) => Command::Use(
            number
                .parse()
                .map_err(|_| ParseError::BadStopwatchNumber(number))?,
        ),
        ("irq-cpu", None) => {
            return Err(ParseError::MissingArgument {
                command: name,
                wanted: "a CPU number (see 'info')",
            })
        }
        ("irq-cpu", Some(number)) => Command::IrqCpu(
            number
                .parse()
                .map_err(|_| ParseError::BadCpuNumber(number))?,
        ),
        ("exit", None) => Command::Exit(0),
        ("exit", Some(code)) => {
            Command::Exit(code.parse().map_err(|_| ParseError::BadExitCode(code))?)
        }
        ("read" | "show" | "watch", Some(argument)) => return Err(unexpected(argument)),
        _ => return Err(ParseError::UnknownCommand(name)),
    };
    match extra {
        None => Ok(Some(command)),
        Some(argument) => Err(unexpected(argument)),
    }
}

/// Parses the period of `every T`: a duration as `timeout T` takes it,
/// from MIN_PERIOD_NS to MAX_TIMEOUT_NS, in nanoseconds.
fn parse_period(word: &str) -> Result<u64, ParseError<'_>> {
    match parse_timeout(word) {
        Ok(timeout) if timeout.as_ns() >= MIN_PERIOD_NS => Ok(timeout.as_ns()),
        _ => Err(ParseError::BadPeriod(word)),
    }
}

/// Parses the duration of `timeout T`: a decimal number of seconds, or one
/// with a unit (`s`, `ms`, `us`, `ns`), exact to the nanosecond (no
/// floating point), from 1 ns to MAX_TIMEOUT_NS.
fn parse_timeout(word: &str) -> Result<Timeout, ParseError<'_>> {
    let malformed = ParseError::TimeoutMalformed(word);
    let (number, unit_ns) = [
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", NANOS_PER_SEC),
    ]
    .into_iter()
    .find_map(|(unit, ns)| Some((word.strip_suffix(unit)?, ns)))
    .unwrap_or((word, NANOS_PER_SEC));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(malformed);
    }
    if number.ends_with('.') {
        return Err(malformed);
    }
    let out_of_range = ParseError::TimeoutOutOfRange(word);
    // All digits: `parse` fails only on overflow, which is out of range.
    let whole: u64 = whole.parse().map_err(|_| out_of_range)?;
    let mut ns = whole.checked_mul(unit_ns).ok_or(out_of_range)?;
    let mut scale = unit_ns;
    for digit in fraction.bytes().map(|b| u64::from(b - b'0')) {
        if scale % 10 != 0 {
            // Finer than a nanosecond: only zeros may follow.
            if digit != 0 {
                return Err(malformed);
            }
            continue;
        }
        scale /= 10;
        ns += digit * scale;
    }
    match ns {
        0 => Err(out_of_range),
        ns if ns > MAX_TIMEOUT_NS => Err(out_of_range),
        ns if ns % NANOS_PER_SEC == 0 => Ok(Timeout::Seconds(ns / NANOS_PER_SEC)),
        ns => Ok(Timeout::Nanoseconds(ns)),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::vec::Vec;
    use stopwatch_abi::MAX_TIMEOUT_SECS;

    const fn device(command: DeviceCommand) -> Command {
        Command::Device(command)
    }

    /// The command names `HELP` lists: the first word of each alternative
    /// in its first column (`pause | stop`, `read trap`, `timeout N`).
    fn names_in_help() -> Vec<&'static str> {
        let mut names = Vec::new();
        // Command lines start with two spaces; headings with none, the
        // continuations of a description with more.
        let commands = HELP
            .lines()
            .filter_map(|line| line.strip_prefix("  "))
            .filter(|line| !line.starts_with(' '));
        for line in commands {
            let column = line.split("  ").next().unwrap_or("");
            for alternative in column.split(" | ") {
                names.extend(alternative.split(' ').next());
            }
        }
        names
    }

    #[test]
    fn command_names_are_what_parse_accepts_and_help_lists() {
        let in_help = names_in_help();
        assert!(in_help.len() > 10, "HELP's format changed: {in_help:?}");
        for name in command_names() {
            assert!(
                !matches!(parse(name), Err(ParseError::UnknownCommand(_))),
                "parse does not accept `{name}` from COMMAND_NAMES"
            );
            assert!(in_help.contains(&name), "HELP does not list `{name}`");
        }
        for name in in_help {
            assert!(
                command_names().any(|known| known == name),
                "HELP lists `{name}`, COMMAND_NAMES does not (Tab cannot complete it)"
            );
        }
        // Anything else is unknown, even with arguments.
        assert_eq!(parse("helpme 1"), Err(ParseError::UnknownCommand("helpme")));
        assert_eq!(parse("?"), Ok(Some(Command::Help)));
    }

    #[test]
    fn plain_commands_and_aliases() {
        let cases = [
            ("help", Command::Help),
            ("start", device(DeviceCommand::Start)),
            ("pause", device(DeviceCommand::Pause)),
            ("stop", device(DeviceCommand::Pause)),
            ("reset", device(DeviceCommand::Reset)),
            ("read", device(DeviceCommand::Read(ReadPath::TimePage))),
            ("show", device(DeviceCommand::Read(ReadPath::TimePage))),
            ("read trap", device(DeviceCommand::Read(ReadPath::Trap))),
            ("show trap", device(DeviceCommand::Read(ReadPath::Trap))),
            ("status", device(DeviceCommand::Status)),
            ("timeout", device(DeviceCommand::TimeoutCount)),
            ("lap", device(DeviceCommand::Lap)),
            ("laps", device(DeviceCommand::Laps)),
            ("list", Command::List),
            ("use 2", Command::Use(2)),
            ("watch", Command::Watch(ReadPath::TimePage)),
            ("watch trap", Command::Watch(ReadPath::Trap)),
            ("irqs", Command::Irqs),
            ("irq-cpu 1", Command::IrqCpu(1)),
            ("info", Command::Info),
            ("bench", Command::Bench),
            ("exit", Command::Exit(0)),
            ("poweroff", Command::Poweroff),
        ];
        for (line, command) in cases {
            assert_eq!(parse(line), Ok(Some(command)), "{line}");
        }
    }

    #[test]
    fn every_command_name_parses_and_is_in_help() {
        for name in command_names() {
            // `use`, `every` and `irq-cpu` alone miss their argument;
            // anything else parses.
            let line = match name {
                "use" => "use 0",
                "every" => "every 1s",
                "irq-cpu" => "irq-cpu 0",
                _ => name,
            };
            assert!(parse(line).is_ok(), "{name} does not parse");
            assert!(
                HELP.lines()
                    .any(|l| l.split_ascii_whitespace().any(|w| w == name)),
                "{name} is not in help"
            );
        }
    }

    #[test]
    fn whitespace_and_blank_lines() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t "), Ok(None));
        assert_eq!(
            parse("  read \t trap  "),
            Ok(Some(device(DeviceCommand::Read(ReadPath::Trap))))
        );
    }

    #[test]
    fn whole_seconds_use_the_original_timeout() {
        for seconds in 1..=MAX_TIMEOUT_SECS {
            for word in [
                format!("{seconds}"),
                format!("{seconds}s"),
                format!("{seconds}.0"),
            ] {
                assert_eq!(
                    parse_timeout(&word),
                    Ok(Timeout::Seconds(seconds)),
                    "{word}"
                );
            }
        }
        assert_eq!(
            parse("timeout 007"),
            Ok(Some(device(DeviceCommand::SetTimeout(Timeout::Seconds(7)))))
        );
        assert_eq!(parse_timeout("1000ms"), Ok(Timeout::Seconds(1)));
    }

    #[test]
    fn other_durations_use_timeout_ns() {
        let cases = [
            ("250ms", 250_000_000),
            ("1.5s", 1_500_000_000),
            ("1.5", 1_500_000_000),
            ("0.25", 250_000_000),
            ("100us", 100_000),
            ("1ns", 1),
            ("0.000000001", 1),
            ("2.5ms", 2_500_000),
            ("9.999999999s", 9_999_999_999),
            ("1.0000000000", 1_000_000_000),
        ];
        for (word, ns) in cases {
            let expected = if ns % NANOS_PER_SEC == 0 {
                Timeout::Seconds(ns / NANOS_PER_SEC)
            } else {
                Timeout::Nanoseconds(ns)
            };
            assert_eq!(parse_timeout(word), Ok(expected), "{word}");
            assert_eq!(expected.as_ns(), ns);
        }
    }

    #[test]
    fn timeout_rejects_bad_arguments() {
        for word in [
            "0",
            "0s",
            "0ms",
            "11",
            "10.000000001",
            "10001ms",
            "99999999999999999999999",
        ] {
            assert_eq!(
                parse_timeout(word),
                Err(ParseError::TimeoutOutOfRange(word)),
                "{word}"
            );
        }
        for word in [
            "abc",
            "-1",
            "+2",
            "0x3",
            "1.",
            ".5",
            "1..5",
            "1.5.2",
            "ms",
            "3 s",
            "1m",
            "0.0000000001",
        ] {
            assert_eq!(
                parse_timeout(word),
                Err(ParseError::TimeoutMalformed(word)),
                "{word}"
            );
        }
        let message = format!("{}", ParseError::TimeoutMalformed("x"));
        assert!(
            message.contains("250ms") && message.contains("1.5s"),
            "{message}"
        );
        assert_eq!(
            parse("timeout 1 2"),
            Err(ParseError::UnexpectedArgument {
                command: "timeout",
                argument: "2"
            })
        );
    }

    #[test]
    fn every_takes_a_period_from_100us_to_10s() {
        let cases = [
            ("every 500ms", 500_000_000),
            ("every 100us", MIN_PERIOD_NS),
            ("every 2", 2 * NANOS_PER_SEC),
            ("every 10s", MAX_TIMEOUT_NS),
        ];
        for (line, period) in cases {
            assert_eq!(
                parse(line),
                Ok(Some(device(DeviceCommand::Every(period)))),
                "{line}"
            );
        }
        for word in ["99us", "99999ns", "0", "11s", "x", "1m"] {
            assert_eq!(
                parse(&format!("every {word}")).map_err(|e| format!("{e}")),
                Err(format!(
                    "every: '{word}' is not a period from 100us up to 10 s"
                )),
            );
        }
        assert_eq!(
            parse("every"),
            Err(ParseError::MissingArgument {
                command: "every",
                wanted: "a period (e.g. 500ms)"
            })
        );
        assert_eq!(
            parse("every 1s 2"),
            Err(ParseError::UnexpectedArgument {
                command: "every",
                argument: "2"
            })
        );
    }

    #[test]
    fn use_needs_a_number() {
        assert_eq!(
            parse("use"),
            Err(ParseError::MissingArgument {
                command: "use",
                wanted: "a stopwatch number (see 'list')"
            })
        );
        assert_eq!(parse("use x"), Err(ParseError::BadStopwatchNumber("x")));
        assert_eq!(parse("use -1"), Err(ParseError::BadStopwatchNumber("-1")));
        assert_eq!(parse("irq-cpu x"), Err(ParseError::BadCpuNumber("x")));
        assert!(matches!(
            parse("irq-cpu"),
            Err(ParseError::MissingArgument { .. })
        ));
        assert_eq!(
            parse("use 1 2"),
            Err(ParseError::UnexpectedArgument {
                command: "use",
                argument: "2"
            })
        );
    }

    #[test]
    fn other_errors() {
        assert_eq!(
            parse("frobnicate"),
            Err(ParseError::UnknownCommand("frobnicate"))
        );
        assert_eq!(parse("START"), Err(ParseError::UnknownCommand("START")));
        assert_eq!(
            parse("stop now"),
            Err(ParseError::UnexpectedArgument {
                command: "stop",
                argument: "now"
            })
        );
        assert_eq!(
            parse("lap 3"),
            Err(ParseError::UnexpectedArgument {
                command: "lap",
                argument: "3"
            })
        );
        assert_eq!(
            parse("read fast"),
            Err(ParseError::UnexpectedArgument {
                command: "read",
                argument: "fast"
            })
        );
        assert_eq!(
            parse("watch fast"),
            Err(ParseError::UnexpectedArgument {
                command: "watch",
                argument: "fast"
            })
        );
        assert_eq!(parse("exit 3"), Ok(Some(Command::Exit(3))));
        assert_eq!(parse("exit 256"), Err(ParseError::BadExitCode("256")));
        assert_eq!(parse("exit -1"), Err(ParseError::BadExitCode("-1")));
    }
}
