// SPDX-License-Identifier: GPL-2.0-or-later
//! A tiny terminal for the line editor's tests: it applies what the editor
//! writes to a screen, and [`Session`] checks after every byte that the
//! screen shows the prompt and the editor's line, with the cursor where the
//! editor says it is.
//!
//! The terminal understands only what the editor may write: printable
//! ASCII, CR, LF, backspace (cursor left), `ESC [ n C` / `ESC [ n D`
//! (cursor right / left) and `ESC [ K` (clear to the end of the line).
//! Anything else, or a cursor moved left of column 0, fails the test.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use stopwatch_shell::{Event, LineEditor, COMMAND_NAMES, MAX_LINE_LEN, PROMPT};

/// The most one input byte may make the editor write: a whole line
/// rewritten with cursor moves around it, or the list of completions.
pub const MAX_OUTPUT_PER_BYTE: usize = 4 * MAX_LINE_LEN + 16;

#[derive(Default)]
pub struct Terminal {
    /// Every line of the screen, the cursor's last.
    pub rows: Vec<Vec<u8>>,
    pub column: usize,
    /// An escape sequence being received.
    escape: Option<Vec<u8>>,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            rows: vec![Vec::new()],
            ..Terminal::default()
        }
    }

    pub fn apply(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.apply_byte(byte);
        }
    }

    fn apply_byte(&mut self, byte: u8) {
        if let Some(sequence) = &mut self.escape {
            sequence.push(byte);
            if sequence.len() == 1 {
                assert_eq!(byte, b'[', "the editor wrote ESC {:?}", byte as char);
                return;
            }
            if byte.is_ascii_digit() {
                return;
            }
            let digits = std::str::from_utf8(&sequence[1..sequence.len() - 1]).unwrap();
            let count: usize = if digits.is_empty() {
                1
            } else {
                digits.parse().unwrap()
            };
            match byte {
                b'C' => self.column += count,
                b'D' => {
                    assert!(count <= self.column, "cursor moved left of column 0");
                    self.column -= count;
                }
                b'K' if digits.is_empty() => {
                    let column = self.column;
                    self.row().truncate(column);
                }
                _ => panic!(
                    "the editor wrote an escape sequence ESC [ {digits} {}",
                    byte as char
                ),
            }
            self.escape = None;
            return;
        }
        match byte {
            b'\r' => self.column = 0,
            b'\n' => self.rows.push(Vec::new()),
            0x08 => {
                assert!(self.column > 0, "backspace at column 0");
                self.column -= 1;
            }
            0x1b => self.escape = Some(Vec::new()),
            b' '..=b'~' => {
                let column = self.column;
                let row = self.row();
                if row.len() <= column {
                    row.resize(column + 1, b' ');
                }
                row[column] = byte;
                self.column += 1;
            }
            _ => panic!("the editor wrote the control byte {byte:#04x}"),
        }
    }

    fn row(&mut self) -> &mut Vec<u8> {
        self.rows.last_mut().unwrap()
    }

    /// The cursor's line.
    pub fn current_row(&self) -> String {
        String::from_utf8(self.rows.last().unwrap().clone()).unwrap()
    }

    /// The line `back` lines above the cursor's.
    pub fn row_above(&self, back: usize) -> String {
        String::from_utf8(self.rows[self.rows.len() - 1 - back].clone()).unwrap()
    }
}

/// What a finished line turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Line(String),
    Overlong,
    Cancelled,
}

/// An editor on a terminal, driven as the kernel's shell drives it: the
/// prompt after each line, `redraw` when the editor asks for it.
pub struct Session {
    pub editor: LineEditor,
    pub terminal: Terminal,
    pub outcomes: Vec<Outcome>,
    /// What the editor wrote for the last byte.
    pub last_output: Vec<u8>,
}

impl Session {
    /// A session with the shell's commands for Tab, prompt shown.
    pub fn new() -> Self {
        let mut terminal = Terminal::new();
        terminal.apply(PROMPT.as_bytes());
        Session {
            editor: LineEditor::new(COMMAND_NAMES),
            terminal,
            outcomes: Vec::new(),
            last_output: Vec::new(),
        }
    }

    /// Feeds `input` byte by byte, checking the screen after each.
    pub fn type_bytes(&mut self, input: &[u8]) {
        for &byte in input {
            self.type_byte(byte);
        }
    }

    pub fn type_byte(&mut self, byte: u8) {
        let mut output = Vec::new();
        let event = self
            .editor
            .feed(byte, &mut |bytes: &[u8]| output.extend_from_slice(bytes));
        let outcome = match event {
            None => None,
            Some(Event::Line(line)) => Some(Outcome::Line(line.to_string())),
            Some(Event::Overlong) => Some(Outcome::Overlong),
            Some(Event::Cancelled) => Some(Outcome::Cancelled),
            Some(Event::Redraw) => {
                self.terminal.apply(&output);
                self.terminal.apply(PROMPT.as_bytes());
                self.editor.redraw(&mut |bytes: &[u8]| {
                    output.extend_from_slice(bytes);
                    self.terminal.apply(bytes);
                });
                self.finish_byte(byte, output);
                return;
            }
        };
        self.terminal.apply(&output);
        if let Some(outcome) = outcome {
            // The editor has moved to a new line; the shell prints the
            // prompt (after the command's answer).
            assert_eq!(
                self.terminal.current_row(),
                "",
                "{outcome:?} left the cursor mid-line"
            );
            self.terminal.apply(PROMPT.as_bytes());
            self.outcomes.push(outcome);
        }
        self.finish_byte(byte, output);
    }

    fn finish_byte(&mut self, byte: u8, output: Vec<u8>) {
        assert!(
            output.len() <= MAX_OUTPUT_PER_BYTE,
            "{byte:#04x} made the editor write {} bytes",
            output.len()
        );
        self.last_output = output;
        self.check_screen(byte);
    }

    /// The screen shows the prompt and the line, the cursor in place.
    pub fn check_screen(&self, byte: u8) {
        let line = self.editor.line();
        assert!(line.len() <= MAX_LINE_LEN);
        assert!(self.editor.cursor() <= line.len());
        assert_eq!(
            self.terminal.current_row(),
            format!("{PROMPT}{line}"),
            "screen differs from the line after {byte:#04x}"
        );
        assert_eq!(
            self.terminal.column,
            PROMPT.len() + self.editor.cursor(),
            "terminal cursor differs from the editor's after {byte:#04x} (line {line:?})"
        );
    }

    /// The lines finished so far (`None`: overlong or cancelled), emptied.
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// Line and cursor.
    pub fn state(&self) -> (&str, usize) {
        (self.editor.line(), self.editor.cursor())
    }
}

/// `Outcome::Line`s of `lines`.
pub fn lines(lines: &[&str]) -> Vec<Outcome> {
    lines
        .iter()
        .map(|line| Outcome::Line(line.to_string()))
        .collect()
}
