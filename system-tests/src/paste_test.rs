// SPDX-License-Identifier: GPL-2.0-or-later
//! Input faster than the shell answers: a script pasted into the serial
//! console in one write must be answered whole, in order, with no byte
//! lost (the guest holds input back in its UART instead of dropping it).

use anyhow::{bail, ensure, Context, Result};
use std::time::Duration;

use crate::demo::demo_commands;
use crate::repo::Repo;
use crate::serial::{boot_to_prompt, clean_response, SerialConsole, PROMPT};
use crate::vm::VmConfig;
use stopwatch_shell::protocol::UartInput;

/// Commands pasted in one write by [`run_paste`].
pub const PASTED_COMMANDS: usize = 1_000;

/// What the paste cycles through: answers of different lengths, a device
/// register read, an UPDATE, the time page; nothing the device would log
/// as a guest error.
const PASTE_CYCLE: &[&str] = &["status", "read", "timeout", "read trap", "irqs"];

/// How long the shell may take for the whole paste.
const PASTE_TIMEOUT: Duration = Duration::from_secs(120);

/// Pastes [`PASTED_COMMANDS`] commands in one write and checks that each
/// is echoed whole and answered, in order, and that the UART reported no
/// receive error. Returns a one-line result.
pub fn run_paste(repo: &Repo, config: &VmConfig, boot_timeout: Duration) -> Result<String> {
    let commands: Vec<&str> = PASTE_CYCLE
        .iter()
        .copied()
        .cycle()
        .take(PASTED_COMMANDS)
        .collect();
    let script: String = commands.iter().map(|c| format!("{c}\r")).collect();
    let (mut console, guest_errors) = boot_to_prompt(repo, config, "paste", boot_timeout)?;
    console.send_bytes(script.as_bytes())?;
    let answers = collect_answers(&mut console, &commands)?;
    for (index, (command, answer)) in commands.iter().zip(&answers).enumerate() {
        ensure!(
            !answer.is_empty() && !answer.lines().any(|line| line.starts_with("error")),
            "command {index} (`{command}`) got {answer:?}"
        );
    }
    // The paste must have been more than the receive ring holds, or
    // nothing was tested; and nothing may have been lost in the UART.
    let irqs = ask(&mut console, "irqs")?;
    let UartInput { errors, hold_backs } = irqs
        .lines()
        .find_map(UartInput::parse)
        .with_context(|| format!("`irqs` shows no `uart input:` line:\n{irqs}"))?;
    ensure!(
        errors == 0,
        "the UART reported {errors} receive errors:\n{irqs}"
    );
    ensure!(
        hold_backs > 0,
        "the paste never filled the guest's receive ring (no hold-back): it tests nothing"
    );
    guest_errors.ensure_none("the paste")?;
    Ok(format!(
        "{PASTED_COMMANDS} commands ({} bytes) in one write: all answered in order, \
         0 receive errors, input held back {hold_backs} times",
        script.len()
    ))
}

/// Runs the original demo's commands typed one by one (each after the
/// previous answer) in one guest and pasted as one block in another: the
/// two transcripts must be the same, digits aside (the elapsed times
/// differ by microseconds).
pub fn run_demo_paste(repo: &Repo, config: &VmConfig, boot_timeout: Duration) -> Result<String> {
    let commands: Vec<&str> = demo_commands().collect();
    let (mut typed, typed_errors) = boot_to_prompt(repo, config, "demo-typed", boot_timeout)?;
    let mut typed_answers = Vec::new();
    for command in &commands {
        typed_answers.push(ask(&mut typed, command)?);
    }
    let (mut pasted, pasted_errors) = boot_to_prompt(repo, config, "demo-pasted", boot_timeout)?;
    let script: String = commands.iter().map(|c| format!("{c}\r")).collect();
    pasted.send_bytes(script.as_bytes())?;
    let pasted_answers = collect_answers(&mut pasted, &commands)?;
    for ((command, typed), pasted) in commands.iter().zip(&typed_answers).zip(&pasted_answers) {
        if digits_masked(typed) != digits_masked(pasted) {
            bail!("`{command}` answered {typed:?} when typed but {pasted:?} when pasted");
        }
    }
    typed_errors.ensure_none("the demo typed")?;
    pasted_errors.ensure_none("the demo pasted")?;
    Ok(format!(
        "{} demo commands: pasted transcript = typed transcript",
        commands.len()
    ))
}

/// Types `command` and returns its answer.
fn ask(console: &mut SerialConsole, command: &str) -> Result<String> {
    console.send_line(command)?;
    Ok(collect_answers(console, &[command])?.remove(0))
}

/// Waits for one prompt per command of `commands` (already sent) and
/// splits the output into answers, checking that each starts with its
/// command echoed exactly (a lost or corrupted byte shows there first).
fn collect_answers(console: &mut SerialConsole, commands: &[&str]) -> Result<Vec<String>> {
    let text = console
        .expect_many(PROMPT, commands.len(), PASTE_TIMEOUT)
        .context("the shell did not answer every command")?;
    let segments: Vec<&str> = text.split(PROMPT).collect();
    let mut answers = Vec::with_capacity(commands.len());
    for (index, (command, segment)) in commands.iter().zip(&segments).enumerate() {
        let echoed = segment.replace('\r', "");
        let echoed = echoed.lines().next().unwrap_or("");
        if echoed != *command {
            bail!("command {index}: sent `{command}`, the shell echoed `{echoed}`");
        }
        answers.push(clean_response(segment, command));
    }
    Ok(answers)
}

/// `text` with every run of digits replaced by `#`.
fn digits_masked(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_digit() {
            masked.push(c);
        } else if !masked.ends_with('#') {
            masked.push('#');
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_digit_runs() {
        assert_eq!(
            digits_masked("1.000250 seconds (RUNNING)"),
            "#.# seconds (RUNNING)"
        );
        assert_eq!(digits_masked("0 seconds"), digits_masked("12 seconds"));
    }
}
