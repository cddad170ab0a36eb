// SPDX-License-Identifier: GPL-2.0-or-later
//! Running programs: command lines as a shell would need them, running
//! with or without capturing the output, and durations as people read them.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

/// The command line of `cmd` as a shell would need it, for messages and
/// for printing what is about to run.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes one word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with the terminal as its stdin/stdout/stderr; fails unless it
/// exits with status 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = command_line(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}` (is it installed?)"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` capturing its output; on failure the error carries the
/// command line and what it printed.
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    let line = command_line(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("could not start `{line}` (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Runs `cmd` and returns its standard output as text.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let output = run_captured(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// "2.4s", "5m07s": durations as people read them.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = duration.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_words_that_need_it() {
        assert_eq!(shell_quote(OsStr::new("-M")), "-M");
        assert_eq!(
            shell_quote(OsStr::new("virt,gic-version=3")),
            "virt,gic-version=3"
        );
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_millis(2400)), "2.4s");
        assert_eq!(format_duration(Duration::from_secs(307)), "5m07s");
    }
}
