// SPDX-License-Identifier: GPL-2.0-or-later
//! Every key of the line editor: the line it makes, and what the terminal
//! shows (the [`Session`] checks the screen against the line and the
//! cursor after every byte).

mod terminal;

use stopwatch_shell::line_editor::keys::{
    BACKSPACE, CTRL_A, CTRL_C, CTRL_E, CTRL_U, CTRL_W, DELETE as DEL, TAB,
};
use stopwatch_shell::{LineEditor, HISTORY_LEN, MAX_LINE_LEN, PROMPT};
use terminal::{lines, Outcome, Session};

const UP: &[u8] = b"\x1b[A";
const DOWN: &[u8] = b"\x1b[B";
const RIGHT: &[u8] = b"\x1b[C";
const LEFT: &[u8] = b"\x1b[D";
const DELETE_KEY: &[u8] = b"\x1b[3~";

fn typed(input: &[u8]) -> Session {
    let mut session = Session::new();
    session.type_bytes(input);
    session
}

#[test]
fn cr_lf_and_crlf_each_end_one_line() {
    let mut session = typed(b"a\rb\nc\r\n");
    assert_eq!(session.take_outcomes(), lines(&["a", "b", "c"]));
    // LF LF is two lines; CR CR LF (a pty's CR LF) is two lines too.
    session.type_bytes(b"x\n\ny\r\r\n");
    assert_eq!(session.take_outcomes(), lines(&["x", "", "y", ""]));
    // The typed line stays on the screen above the next prompt.
    assert_eq!(session.terminal.row_above(1), format!("{PROMPT}"));
    assert_eq!(session.terminal.row_above(2), format!("{PROMPT}y"));
}

#[test]
fn typing_at_the_end_echoes_exactly_the_characters() {
    // What a paste relies on: the echo of a line is the line.
    let mut session = Session::new();
    for &byte in b"read trap" {
        session.type_byte(byte);
        assert_eq!(session.last_output, [byte]);
    }
    session.type_byte(b'\r');
    assert_eq!(session.last_output, b"\r\n");
}

#[test]
fn left_and_right_move_and_insert_in_the_middle() {
    for (left, right) in [(LEFT, RIGHT), (&b"\x1bOD"[..], &b"\x1bOC"[..])] {
        let mut session = typed(b"stat");
        session.type_bytes(left);
        session.type_bytes(left);
        assert_eq!(session.state(), ("stat", 2));
        session.type_bytes(b"XY");
        assert_eq!(session.state(), ("stXYat", 4));
        session.type_bytes(right);
        assert_eq!(session.state(), ("stXYat", 5));
        // Right stops at the end, Left at the start.
        for _ in 0..3 {
            session.type_bytes(right);
        }
        assert_eq!(session.state(), ("stXYat", 6));
        for _ in 0..8 {
            session.type_bytes(left);
        }
        assert_eq!(session.state(), ("stXYat", 0));
        session.type_bytes(b"<\r");
        assert_eq!(session.take_outcomes(), lines(&["<stXYat"]));
    }
}

#[test]
fn home_and_end_in_every_form() {
    let homes: [&[u8]; 5] = [b"\x1b[H", b"\x1bOH", b"\x1b[1~", b"\x1b[7~", &[CTRL_A]];
    let ends: [&[u8]; 5] = [b"\x1b[F", b"\x1bOF", b"\x1b[4~", b"\x1b[8~", &[CTRL_E]];
    for (home, end) in homes.into_iter().zip(ends) {
        let mut session = typed(b"tat");
        session.type_bytes(LEFT);
        session.type_bytes(home);
        assert_eq!(session.state(), ("tat", 0), "home {home:?}");
        session.type_bytes(b"s");
        session.type_bytes(end);
        assert_eq!(session.state(), ("stat", 4), "end {end:?}");
        session.type_bytes(b"us\r");
        assert_eq!(session.take_outcomes(), lines(&["status"]));
    }
}

#[test]
fn backspace_and_del_delete_left_of_the_cursor() {
    for erase in [BACKSPACE, DEL] {
        let mut session = typed(b"abcd");
        session.type_byte(erase);
        assert_eq!(session.state(), ("abc", 3));
        session.type_bytes(LEFT);
        session.type_byte(erase);
        assert_eq!(session.state(), ("ac", 1));
        session.type_byte(erase);
        session.type_byte(erase);
        assert_eq!(session.state(), ("c", 0));
        session.type_bytes(b"ok\r");
        assert_eq!(session.take_outcomes(), lines(&["okc"]));
    }
}

#[test]
fn delete_key_deletes_under_the_cursor() {
    let mut session = typed(b"abcd");
    session.type_bytes(DELETE_KEY);
    assert_eq!(session.state(), ("abcd", 4));
    session.type_bytes(b"\x1b[H");
    session.type_bytes(DELETE_KEY);
    assert_eq!(session.state(), ("bcd", 0));
    session.type_bytes(RIGHT);
    session.type_bytes(DELETE_KEY);
    assert_eq!(session.state(), ("bd", 1));
}

#[test]
fn ctrl_u_clears_the_line() {
    let mut session = typed(b"timeout 5");
    session.type_bytes(LEFT);
    session.type_bytes(LEFT);
    session.type_byte(CTRL_U);
    assert_eq!(session.state(), ("", 0));
    assert_eq!(session.terminal.current_row(), PROMPT);
    session.type_byte(CTRL_U);
    session.type_bytes(b"read\r");
    assert_eq!(session.take_outcomes(), lines(&["read"]));
}

#[test]
fn ctrl_w_deletes_the_word_left_of_the_cursor() {
    let mut session = typed(b"read trap");
    session.type_byte(CTRL_W);
    assert_eq!(session.state(), ("read ", 5));
    // Spaces left of the cursor go with the word before them.
    session.type_bytes(b"x  ");
    session.type_byte(CTRL_W);
    assert_eq!(session.state(), ("read ", 5));
    // In the middle: only what is left of the cursor.
    session.type_bytes(b"trap");
    for _ in 0..2 {
        session.type_bytes(LEFT);
    }
    session.type_byte(CTRL_W);
    assert_eq!(session.state(), ("read ap", 5));
    session.type_bytes(b"\x1b[H");
    session.type_byte(CTRL_W);
    assert_eq!(session.state(), ("read ap", 0));
    session.type_bytes(b"\x1b[F");
    session.type_byte(CTRL_W);
    session.type_byte(CTRL_W);
    session.type_byte(CTRL_W);
    assert_eq!(session.state(), ("", 0));
}

#[test]
fn ctrl_c_abandons_the_line() {
    let mut session = typed(b"sta");
    session.type_bytes(LEFT);
    session.type_byte(CTRL_C);
    assert_eq!(session.take_outcomes(), [Outcome::Cancelled]);
    assert_eq!(session.terminal.row_above(1), format!("{PROMPT}sta^C"));
    assert_eq!(session.state(), ("", 0));
    session.type_bytes(b"read\r");
    assert_eq!(session.take_outcomes(), lines(&["read"]));
    // An abandoned line is not history.
    session.type_bytes(b"reset");
    session.type_byte(CTRL_C);
    session.type_bytes(UP);
    assert_eq!(session.state(), ("read", 4));
}

#[test]
fn up_and_down_walk_the_history_and_keep_the_draft() {
    let mut session = typed(b"start\rread\r");
    session.take_outcomes();
    session.type_bytes(b"sta");
    session.type_bytes(UP);
    assert_eq!(session.state(), ("read", 4));
    session.type_bytes(b"\x1bOA");
    assert_eq!(session.state(), ("start", 5));
    session.type_bytes(UP);
    assert_eq!(session.state(), ("start", 5), "no older line");
    session.type_bytes(DOWN);
    assert_eq!(session.state(), ("read", 4));
    session.type_bytes(b"\x1bOB");
    assert_eq!(session.state(), ("sta", 3), "the draft is back");
    session.type_bytes(DOWN);
    assert_eq!(session.state(), ("sta", 3));
}

#[test]
fn a_recalled_line_can_be_edited_and_run() {
    let mut session = typed(b"timeout 3\r");
    session.type_bytes(UP);
    session.type_byte(BACKSPACE);
    session.type_bytes(b"7\r");
    assert_eq!(session.take_outcomes(), lines(&["timeout 3", "timeout 7"]));
    session.type_bytes(UP);
    assert_eq!(session.state(), ("timeout 7", 9));
    session.type_bytes(UP);
    assert_eq!(
        session.state(),
        ("timeout 3", 9),
        "the entry itself is unchanged"
    );
    // A recalled line run as it is.
    session.type_bytes(b"\r");
    assert_eq!(session.take_outcomes(), lines(&["timeout 3"]));
}

#[test]
fn history_skips_blank_lines_and_repeats() {
    let mut session = typed(b"start\rread\r\r   \rread\rread\rstatus\rstatus\r");
    session.type_bytes(UP);
    assert_eq!(session.state(), ("status", 6));
    session.type_bytes(UP);
    assert_eq!(session.state(), ("read", 4), "one entry for the repeats");
    session.type_bytes(UP);
    assert_eq!(session.state(), ("start", 5), "one entry for the repeats");
    session.type_bytes(UP);
    assert_eq!(session.state(), ("start", 5), "no blank entries");
    // A repeat of the very first line too: one Down from the oldest entry
    // reaches the newest of two.
    let mut session = typed(b"read\rread\rstatus\r");
    for key in [UP, UP, UP, DOWN] {
        session.type_bytes(key);
    }
    assert_eq!(session.state(), ("status", 6), "one entry for the repeats");
}

#[test]
fn history_keeps_the_last_sixteen_lines() {
    let mut session = Session::new();
    for index in 0..HISTORY_LEN + 4 {
        session.type_bytes(format!("line {index}\r").as_bytes());
    }
    for _ in 0..HISTORY_LEN + 10 {
        session.type_bytes(UP);
    }
    assert_eq!(session.editor.line(), "line 4");
    for _ in 0..HISTORY_LEN - 1 {
        session.type_bytes(DOWN);
    }
    assert_eq!(session.editor.line(), format!("line {}", HISTORY_LEN + 3));
}

#[test]
fn a_long_recalled_line_replaces_a_short_one_and_back() {
    let long = "x".repeat(MAX_LINE_LEN);
    let mut session = typed(format!("{long}\rab\r").as_bytes());
    session.type_bytes(UP);
    session.type_bytes(UP);
    assert_eq!(session.editor.line(), long);
    session.type_bytes(DOWN);
    assert_eq!(session.state(), ("ab", 2));
}

#[test]
fn tab_completes_a_unique_command_with_a_space() {
    let mut session = typed(b"tim");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("timeout ", 8));
    session.type_bytes(b"3\r");
    // With spaces before it, and a whole name.
    session.type_bytes(b"  po");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("  poweroff ", 11));
    session.type_byte(CTRL_U);
    session.type_bytes(b"start");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("start ", 6));
    assert_eq!(session.take_outcomes(), lines(&["timeout 3"]));
}

#[test]
fn tab_completes_the_shared_prefix_then_lists() {
    let mut session = typed(b"s");
    session.type_byte(TAB);
    // start, stop, status, show: nothing they all share past "s".
    assert_eq!(session.state(), ("s", 1));
    session.type_bytes(b"t");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("st", 2));
    let rows = session.terminal.rows.len();
    session.type_byte(TAB);
    // The candidates on their own line, then prompt and line again.
    assert_eq!(session.terminal.rows.len(), rows + 2);
    assert_eq!(
        session.terminal.row_above(1).trim_end(),
        "start  stop  status"
    );
    assert_eq!(session.terminal.row_above(2), format!("{PROMPT}st"));
    assert_eq!(session.state(), ("st", 2));
    session.type_bytes(b"o");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("stop ", 5));
    // A shared prefix longer than what was typed is added at once.
    let mut session = session_with("status statistics", b"s");
    session.type_byte(TAB);
    assert_eq!(session.state(), ("stat", 4));
}

#[test]
fn tab_lists_every_command_on_an_empty_line_and_ignores_arguments() {
    let mut session = typed(b"");
    session.type_byte(TAB);
    session.type_byte(TAB);
    let listed = session.terminal.row_above(1);
    for name in stopwatch_shell::command_names() {
        assert!(
            listed.split_whitespace().any(|n| n == name),
            "{name} in {listed:?}"
        );
    }
    session.type_bytes(b"read t");
    session.type_byte(TAB);
    session.type_byte(TAB);
    assert_eq!(session.state(), ("read t", 6));
    assert!(session.last_output.is_empty());
    // No candidate: nothing happens, however often.
    let mut session = typed(b"xyz");
    for _ in 0..3 {
        session.type_byte(TAB);
        assert!(session.last_output.is_empty());
    }
    assert_eq!(session.state(), ("xyz", 3));
    // In the middle of a word: what is left of the cursor is completed.
    let mut session = typed(b"tix");
    session.type_bytes(LEFT);
    session.type_byte(TAB);
    assert_eq!(session.state(), ("timeout x", 8));
}

fn session_with(completions: &'static str, input: &[u8]) -> Session {
    let mut session = Session::new();
    session.editor = LineEditor::new(completions);
    session.type_bytes(input);
    session
}

#[test]
fn unknown_escape_sequences_are_consumed_whole() {
    let unknown: [&[u8]; 9] = [
        b"\x1b[1;5C",   // Ctrl-Right
        b"\x1b[2~",     // Insert
        b"\x1b[200~",   // bracketed paste start
        b"\x1b[15~",    // F5
        b"\x1b[?25h",   // a private mode
        b"\x1bOP",      // F1 (SS3)
        b"\x1bx",       // Alt-x
        b"\x1b[3;5~",   // Ctrl-Delete
        b"\x1b[99999A", // a saturating parameter
    ];
    for sequence in unknown {
        let mut session = typed(b"ab");
        session.type_bytes(LEFT);
        session.type_bytes(sequence);
        assert_eq!(session.state(), ("ab", 1), "{sequence:?}");
        session.type_bytes(b"\r");
        assert_eq!(session.take_outcomes(), lines(&["ab"]), "{sequence:?}");
    }
    // A control byte ends a sequence and acts as itself.
    let mut session = typed(b"s\x1b\rt\x1b[\ru\x1bO\r");
    assert_eq!(session.take_outcomes(), lines(&["s", "t", "u"]));
    session.type_bytes(b"v\x1b[1\x7fw\x1b\x1b[Dx\r");
    assert_eq!(session.take_outcomes(), lines(&["xw"]));
    // Other control bytes are ignored.
    session.type_bytes(b"re\x00\x07\x0b\x1a\xffad\r");
    assert_eq!(session.take_outcomes(), lines(&["read"]));
}

#[test]
fn overlong_line_is_rejected_and_the_next_is_intact() {
    let mut session = Session::new();
    session.type_bytes(&[b'z'; MAX_LINE_LEN]);
    // In the middle too, one more is too many; then only Enter, Ctrl-U and
    // Ctrl-C act.
    session.type_bytes(LEFT);
    session.type_bytes(b"z");
    for key in [
        &[BACKSPACE][..],
        LEFT,
        UP,
        b"\x1b[H",
        &[TAB],
        &[CTRL_W],
        b"q",
    ] {
        session.type_bytes(key);
        assert_eq!(session.editor.line().len(), MAX_LINE_LEN);
    }
    session.type_bytes(b"\r");
    assert_eq!(session.take_outcomes(), [Outcome::Overlong]);
    session.type_bytes(b"\nhelp\r\n");
    assert_eq!(session.take_outcomes(), lines(&["help"]));
    // Not history either.
    session.type_bytes(UP);
    session.type_bytes(UP);
    assert_eq!(session.state(), ("help", 4));
}

#[test]
fn a_line_of_exactly_the_maximum_is_accepted() {
    let mut session = Session::new();
    session.type_bytes(&[b'q'; MAX_LINE_LEN]);
    session.type_bytes(b"\n");
    let longest = "q".repeat(MAX_LINE_LEN);
    assert_eq!(session.take_outcomes(), lines(&[&longest]));
}

#[test]
fn ctrl_u_and_ctrl_c_recover_from_an_overlong_line() {
    let mut session = Session::new();
    session.type_bytes(&[b'z'; 200]);
    session.type_byte(CTRL_U);
    assert_eq!(session.state(), ("", 0));
    session.type_bytes(b"read\r");
    assert_eq!(session.take_outcomes(), lines(&["read"]));
    session.type_bytes(&[b'z'; 200]);
    session.type_byte(CTRL_C);
    session.type_bytes(b"status\r");
    assert_eq!(
        session.take_outcomes(),
        [Outcome::Cancelled, Outcome::Line("status".into())]
    );
}

#[test]
fn a_tab_completion_that_does_not_fit_is_not_made() {
    let mut session = Session::new();
    session.type_bytes(&[b' '; MAX_LINE_LEN - 3]);
    session.type_bytes(b"tim");
    session.type_byte(TAB);
    assert_eq!(session.editor.line().len(), MAX_LINE_LEN);
    session.type_bytes(b"\r");
    assert_eq!(session.take_outcomes().len(), 1);
}

#[test]
fn redraw_reprints_prompt_and_line_after_a_notice() {
    let mut session = typed(b"timeout 5");
    session.type_bytes(LEFT);
    // What the shell does for an asynchronous notice.
    session
        .terminal
        .apply(b"\r\x1b[K[timeout] stopwatch[0] fired\r\n");
    session.terminal.apply(PROMPT.as_bytes());
    let terminal = &mut session.terminal;
    session
        .editor
        .redraw(&mut |bytes: &[u8]| terminal.apply(bytes));
    session.check_screen(0);
    assert_eq!(
        session.terminal.row_above(1),
        "[timeout] stopwatch[0] fired"
    );
    // Over a longer, stale line once erased, with another prompt.
    session
        .terminal
        .apply(b"\rsome much longer text than the prompt and line\r\x1b[Kother> ");
    let terminal = &mut session.terminal;
    session
        .editor
        .redraw(&mut |bytes: &[u8]| terminal.apply(bytes));
    assert_eq!(session.terminal.current_row(), "other> timeout 5");
    assert_eq!(session.terminal.column, "other> timeout ".len());
}

#[test]
fn redraw_of_an_empty_line_writes_nothing() {
    // What lets the shell redraw after every notice without changing its
    // output when nothing is being typed.
    let session = typed(b"read\r");
    let mut written = Vec::new();
    session
        .editor
        .redraw(&mut |bytes: &[u8]| written.extend_from_slice(bytes));
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn the_editor_is_small_and_fixed_in_size() {
    // No allocation anywhere (the crate is no_std without `alloc`): this
    // is all the memory it uses.
    let size = std::mem::size_of::<LineEditor>();
    assert!(size < 2560, "LineEditor is {size} bytes");
}
