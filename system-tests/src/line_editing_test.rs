// SPDX-License-Identifier: GPL-2.0-or-later
//! The shell's line editor over the real serial line: the history recalls
//! and runs the previous commands, and a line edited with the cursor keys,
//! Backspace, DEL, Ctrl-W, Ctrl-U, Tab and Ctrl-C runs as the edited text.
//! (Every key's rendering is tested on the host, in
//! `guest-kernel/shell/tests/line_editor.rs`.)

use anyhow::{ensure, Context, Result};
use std::time::Duration;

use crate::repo::Repo;
use crate::serial::{boot_to_prompt, clean_response, SerialConsole, PROMPT};
use crate::vm::VmConfig;

const UP: &[u8] = b"\x1b[A";
const LEFT: &[u8] = b"\x1b[D";
const RIGHT: &[u8] = b"\x1bOC";
const HOME: &[u8] = b"\x1b[1~";
const CTRL_A: &[u8] = b"\x01";
const CTRL_E: &[u8] = b"\x05";
const END: &[u8] = b"\x1b[F";
const BACKSPACE: &[u8] = b"\x08";
const DEL: &[u8] = b"\x7f";
const TAB: &[u8] = b"\t";
const CTRL_C: &[u8] = b"\x03";
const CTRL_U: &[u8] = b"\x15";
const CTRL_W: &[u8] = b"\x17";

/// How long the shell may take to answer one line.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Types two commands, then recalls them with Up: Up Enter runs the last
/// one again, Up Up Enter the one before.
pub fn run_history(repo: &Repo, config: &VmConfig, boot_timeout: Duration) -> Result<String> {
    let (mut console, guest_errors) = boot_to_prompt(repo, config, "history", boot_timeout)?;
    let status = answer(&mut console, b"status\r", "status")?;
    ensure!(
        status.starts_with("status: "),
        "`status` answered {status:?}"
    );
    let count = answer(&mut console, b"timeout\r", "timeout")?;
    ensure!(count.parse::<u64>().is_ok(), "`timeout` answered {count:?}");
    let again = answer(&mut console, &[UP, b"\r"].concat(), "timeout")?;
    ensure!(
        again == count,
        "Up Enter after `timeout` answered {again:?}, not {count:?}"
    );
    // `timeout` again was not stored twice: two Ups reach `status`.
    let older = answer(&mut console, &[UP, UP, b"\r"].concat(), "status")?;
    ensure!(
        older == status,
        "Up Up Enter answered {older:?}, not `status`'s {status:?}"
    );
    guest_errors.ensure_none("the history keys")?;
    Ok(format!(
        "Up Enter ran `timeout` again ({again:?}), Up Up Enter `status` ({older:?})"
    ))
}

/// Edits lines in the middle and checks what ran: the answers of the
/// edited lines must be those of the lines typed plainly.
pub fn run_editing(repo: &Repo, config: &VmConfig, boot_timeout: Duration) -> Result<String> {
    let (mut console, guest_errors) = boot_to_prompt(repo, config, "editing", boot_timeout)?;
    // A line the parser rejects quoting it exactly: the error shows what
    // ran, character for character.
    let keys = [
        b"bogus line".as_slice(),
        CTRL_U, // cleared
        b"pause junk",
        CTRL_W, // "pause "
        b"nw",
        LEFT, // "pause n|w"
        b"o", // "pause no|w"
        RIGHT,
        b"x",
        BACKSPACE, // "pause now"
        HOME,
        b"x",
        DEL, // still "pause now"
        END,
        CTRL_A,
        b"y",
        DEL,
        CTRL_E,
        b"\r",
    ]
    .concat();
    let edited = answer(&mut console, &keys, "pause now")?;
    let expected = "error: 'pause' does not take the argument 'now'";
    ensure!(
        edited == expected,
        "the edited line answered {edited:?}, not {expected:?}: it did not run as `pause now`"
    );

    // Tab: the shared prefix of `start` and `status`, their list, then the
    // unique completion; Ctrl-C abandons a line without running it: the
    // stopwatch, running, must not be reset.
    let started = answer(&mut console, b"start\r", "start")?;
    ensure!(
        started.ends_with("status: RUNNING"),
        "`start` answered {started:?}"
    );
    let keys = [
        b"reset".as_slice(),
        CTRL_C,
        b"sta",
        TAB,
        TAB,
        b"tu",
        TAB,
        b"\r",
    ]
    .concat();
    console.send_bytes(&keys)?;
    let abandoned = console
        .expect(PROMPT, ANSWER_TIMEOUT)
        .context("no prompt after Ctrl-C")?;
    ensure!(
        abandoned.contains("reset^C"),
        "Ctrl-C did not show `^C` after the line: {abandoned:?}"
    );
    let completed = console
        .expect_many(PROMPT, 2, ANSWER_TIMEOUT)
        .context("no prompt after the Tab-completed line")?;
    let completed = completed.replace('\r', "");
    ensure!(
        completed.contains("\nstart  status  \n"),
        "the second Tab did not list `start` and `status`: {completed:?}"
    );
    let status = completed.rsplit('\n').nth(1).unwrap_or_default();
    ensure!(
        status == "status: RUNNING",
        "the Tab-completed `status` answered {status:?} (RESET: the abandoned `reset` ran)"
    );
    guest_errors.ensure_none("the edited lines")?;
    Ok(
        "Ctrl-U/Ctrl-W/Left/Right/Home/End/Ctrl-A/Ctrl-E/Backspace/DEL ran `pause now`; \
        Tab listed and completed `status`; Ctrl-C ran nothing"
            .to_string(),
    )
}

/// Sends `keys` (ending with Enter) and returns the answer of the line
/// that ran, `line`.
fn answer(console: &mut SerialConsole, keys: &[u8], line: &str) -> Result<String> {
    console.send_bytes(keys)?;
    let raw = console
        .expect(PROMPT, ANSWER_TIMEOUT)
        .with_context(|| format!("no prompt after the keys for `{line}`"))?;
    // The echo is the edited line's rendering, escape sequences and all:
    // drop it (everything up to the first newline).
    let answer = raw.split_once('\n').map_or("", |(_, rest)| rest);
    Ok(clean_response(answer, line))
}
