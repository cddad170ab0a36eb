//! Shell commands and their parser.

use core::fmt;
use stopwatch_abi::MAX_TIMEOUT_SECS;

/// A parsed shell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`: list the commands.
    Help,
    /// `start`: START the stopwatch.
    Start,
    /// `pause` (alias `stop`): PAUSE it.
    Pause,
    /// `reset`: RESET it.
    Reset,
    /// `read` (alias `show`): elapsed time from the time page, no exit.
    Read,
    /// `read trap`: the original path, UPDATE and the `data` text.
    ReadTrap,
    /// `status`: the STATUS register.
    Status,
    /// `timeout N`: arm a timeout of N seconds.
    SetTimeout(u64),
    /// `timeout`: how many timeout interrupts have arrived.
    TimeoutCount,
    /// `irqs`: interrupt counts per source.
    Irqs,
    /// `info`: what the device tree said.
    Info,
    /// `bench`: measure the access paths and the interrupt latency.
    Bench,
    /// `exit [code]`: end the run through semihosting with this code.
    Exit(u8),
    /// `poweroff`: PSCI SYSTEM_OFF.
    Poweroff,
}

/// Every command name (aliases included, `?` aside): what Tab completes.
///
/// [`parse`] rejects any other first word, and the tests check that each of
/// these parses and is in [`HELP`], and that [`HELP`] lists no other: a new
/// command goes here, in the parser and in [`HELP`], or its tests fail.
pub const COMMAND_NAMES: &[&str] = &[
    "help", "start", "pause", "stop", "reset", "read", "show", "status", "timeout", "irqs", "info",
    "bench", "exit", "poweroff",
];

/// The `help` text, one command per line.
pub const HELP: &str = "\
commands:
  help             this list
  start            start the stopwatch
  pause | stop     pause it, keeping the elapsed time
  reset            stop it and clear the elapsed time
  read | show      elapsed time from the time page (no exit to QEMU)
  read trap        elapsed time the original way (UPDATE, then the text)
  status           the STATUS register
  timeout N        interrupt after N seconds (1..10)
  timeout          number of timeout interrupts so far
  irqs             interrupt counts per source
  info             what the device tree described
  bench            measure access costs and interrupt latency
  exit [code]      end the run with this exit status (default 0)
  poweroff         power the machine off (PSCI SYSTEM_OFF)";

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
    /// `timeout` was given something that is not a whole number.
    TimeoutNotANumber(&'a str),
    /// `timeout` was given a number outside 1..=MAX_TIMEOUT_SECS.
    TimeoutOutOfRange(&'a str),
    /// `exit` was given something that is not a number in 0..=255.
    BadExitCode(&'a str),
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
            ParseError::TimeoutNotANumber(word) => write!(
                f,
                "timeout: '{word}' is not a whole number of seconds (1..{MAX_TIMEOUT_SECS})"
            ),
            ParseError::TimeoutOutOfRange(word) => write!(
                f,
                "timeout: {word} is out of range: give 1..{MAX_TIMEOUT_SECS} seconds"
            ),
            ParseError::BadExitCode(word) => {
                write!(f, "exit: '{word}' is not an exit code (0..255)")
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
    if name != "?" && !COMMAND_NAMES.contains(&name) {
        return Err(ParseError::UnknownCommand(name));
    }
    let argument = words.next();
    let extra = words.next();

    // Commands that take no argument.
    let plain = match name {
        "help" | "?" => Some(Command::Help),
        "start" => Some(Command::Start),
        "pause" | "stop" => Some(Command::Pause),
        "reset" => Some(Command::Reset),
        "status" => Some(Command::Status),
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

    let command = match (name, argument) {
        ("read" | "show", None) => Command::Read,
        ("read" | "show", Some("trap")) => Command::ReadTrap,
        ("timeout", None) => Command::TimeoutCount,
        ("timeout", Some(seconds)) => Command::SetTimeout(parse_timeout(seconds)?),
        ("exit", None) => Command::Exit(0),
        ("exit", Some(code)) => {
            Command::Exit(code.parse().map_err(|_| ParseError::BadExitCode(code))?)
        }
        ("read" | "show", Some(argument)) => {
            return Err(ParseError::UnexpectedArgument {
                command: name,
                argument,
            })
        }
        _ => return Err(ParseError::UnknownCommand(name)),
    };
    match extra {
        None => Ok(Some(command)),
        Some(argument) => Err(ParseError::UnexpectedArgument {
            command: name,
            argument,
        }),
    }
}

/// Parses the seconds of `timeout N`: digits only, 1..=MAX_TIMEOUT_SECS.
fn parse_timeout(word: &str) -> Result<u64, ParseError<'_>> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::TimeoutNotANumber(word));
    }
    // All digits: the only way `parse` fails is overflow, which is simply
    // out of range too.
    match word.parse::<u64>() {
        Ok(seconds @ 1..=MAX_TIMEOUT_SECS) => Ok(seconds),
        _ => Err(ParseError::TimeoutOutOfRange(word)),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::vec::Vec;

    /// The command names `HELP` lists: the first word of each alternative
    /// in its first column (`pause | stop`, `read trap`, `timeout N`).
    fn names_in_help() -> Vec<&'static str> {
        let mut names = Vec::new();
        for line in HELP.lines().skip(1) {
            let column = line.trim_start().split("  ").next().unwrap_or("");
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
        for name in COMMAND_NAMES {
            assert!(
                !matches!(parse(name), Err(ParseError::UnknownCommand(_))),
                "parse does not accept `{name}` from COMMAND_NAMES"
            );
            assert!(in_help.contains(name), "HELP does not list `{name}`");
        }
        for name in in_help {
            assert!(
                COMMAND_NAMES.contains(&name),
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
            ("start", Command::Start),
            ("pause", Command::Pause),
            ("stop", Command::Pause),
            ("reset", Command::Reset),
            ("read", Command::Read),
            ("show", Command::Read),
            ("read trap", Command::ReadTrap),
            ("show trap", Command::ReadTrap),
            ("status", Command::Status),
            ("timeout", Command::TimeoutCount),
            ("irqs", Command::Irqs),
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
    fn whitespace_and_blank_lines() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t "), Ok(None));
        assert_eq!(parse("  read \t trap  "), Ok(Some(Command::ReadTrap)));
    }

    #[test]
    fn timeout_accepts_one_to_ten_seconds() {
        for seconds in 1..=MAX_TIMEOUT_SECS {
            assert_eq!(parse_timeout(&format!("{seconds}")), Ok(seconds));
        }
        assert_eq!(parse("timeout 3"), Ok(Some(Command::SetTimeout(3))));
        assert_eq!(parse("timeout 007"), Ok(Some(Command::SetTimeout(7))));
    }

    #[test]
    fn timeout_rejects_bad_arguments() {
        assert_eq!(parse("timeout 0"), Err(ParseError::TimeoutOutOfRange("0")));
        assert_eq!(
            parse("timeout 11"),
            Err(ParseError::TimeoutOutOfRange("11"))
        );
        assert_eq!(
            parse("timeout 99999999999999999999999"),
            Err(ParseError::TimeoutOutOfRange("99999999999999999999999"))
        );
        for word in ["abc", "1.5", "-1", "+2", "1s", "0x3"] {
            let line = format!("timeout {word}");
            assert_eq!(
                parse(&line),
                Err(ParseError::TimeoutNotANumber(word)),
                "{word}"
            );
        }
        assert_eq!(
            parse("timeout 1 2"),
            Err(ParseError::UnexpectedArgument {
                command: "timeout",
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
            parse("read fast"),
            Err(ParseError::UnexpectedArgument {
                command: "read",
                argument: "fast"
            })
        );
        assert_eq!(parse("exit 3"), Ok(Some(Command::Exit(3))));
        assert_eq!(parse("exit 256"), Err(ParseError::BadExitCode("256")));
        assert_eq!(parse("exit -1"), Err(ParseError::BadExitCode("-1")));
    }
}
