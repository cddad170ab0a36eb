// SPDX-License-Identifier: GPL-2.0-or-later
//! A line editor for a serial console: cursor movement, history and
//! command-name completion on a plain byte stream, in fixed-size buffers.
//! (About 500 lines, kept whole: one state machine over one buffer, each
//! key's effect beside the others; its tests are in `tests/`.)
//!
//! Bytes go in one at a time ([`LineEditor::feed`]). The editor keeps the
//! line and writes what the terminal must show through the `out` callback:
//! the echo, cursor moves (backspace to go left; rewriting the characters
//! under the cursor to go right, so no number is ever formatted), the tail
//! of the line redrawn after an edit in the middle, and `ESC [ K` (clear to
//! the end of the line) when the line got shorter. After every byte, the
//! terminal line shows the prompt and [`LineEditor::line`], with the cursor
//! [`LineEditor::cursor`] characters after the prompt.
//!
//! Keys:
//!
//! | key                                  | effect                              |
//! |--------------------------------------|-------------------------------------|
//! | printable ASCII                      | inserted at the cursor              |
//! | Left / Right                         | move the cursor                     |
//! | Home / End, Ctrl-A / Ctrl-E          | cursor to the start / end           |
//! | Backspace (0x08), DEL (0x7f)         | delete left of the cursor           |
//! | Delete (`ESC [ 3 ~`)                 | delete under the cursor             |
//! | Ctrl-U                               | clear the line                      |
//! | Ctrl-W                               | delete the word left of the cursor  |
//! | Up / Down                            | older / newer line from the history |
//! | Tab                                  | complete the command name           |
//! | Ctrl-C                               | abandon the line ([`Event::Cancelled`]) |
//! | CR, LF, CR LF                        | end the line ([`Event::Line`])      |
//!
//! Arrows come as `ESC [ A`..`ESC [ D` or `ESC O A`..`ESC O D`; Home and End
//! as `ESC [ H` / `ESC [ F`, `ESC O H` / `ESC O F`, `ESC [ 1 ~` / `ESC [ 4 ~`
//! or `ESC [ 7 ~` / `ESC [ 8 ~`. Any other escape sequence (a CSI with other
//! parameters, such as Ctrl-Right's `ESC [ 1 ; 5 C`, another SS3, or ESC and
//! one character) is consumed whole and ignored; a control byte inside a
//! sequence ends it and then acts as itself, so a stray ESC cannot swallow
//! the Enter after it. Other control bytes are ignored, so a finished line
//! is always printable ASCII.
//!
//! The line is limited to [`MAX_LINE_LEN`] characters: a character typed
//! into a full line marks it overlong; it then ignores every key but Enter
//! (which rejects it, [`Event::Overlong`]), Ctrl-U and Ctrl-C.
//!
//! How a shell drives it, and prints a notice while a line is typed:
//!
//! ```
//! use stopwatch_shell::{Event, LineEditor, COMMAND_NAMES, PROMPT};
//!
//! let mut screen = Vec::new(); // the console
//! let mut show = |bytes: &[u8]| screen.extend_from_slice(bytes);
//! let mut editor = LineEditor::new(COMMAND_NAMES);
//! show(PROMPT.as_bytes());
//! for &byte in b"sta\x1b[Dtu\r" {
//!     match editor.feed(byte, &mut show) {
//!         None => {}
//!         Some(Event::Line(line)) => {
//!             assert_eq!(line, "sttua"); // run it, then:
//!             show(PROMPT.as_bytes());
//!         }
//!         Some(Event::Overlong) => show(b"error: line too long\r\n"), // then the prompt
//!         Some(Event::Cancelled) => show(PROMPT.as_bytes()),
//!         Some(Event::Redraw) => {
//!             show(PROMPT.as_bytes());
//!             editor.redraw(&mut show);
//!         }
//!     }
//! }
//! // A notice: erase the terminal line, print it, show prompt and line again.
//! editor.feed(b'r', &mut show);
//! show(b"\r\x1b[K[timeout] stopwatch[0] fired\r\n");
//! show(PROMPT.as_bytes());
//! editor.redraw(&mut show);
//! ```
//!
//! Moving left is done with backspaces, which do not go back across a
//! terminal's line wrap: a prompt and line wider than the terminal are
//! shown wrongly when edited before the wrap (the line itself stays right).

/// Longest accepted line, in characters: a line of `MAX_LINE_LEN + 1` (128)
/// characters or more is rejected when it ends.
pub const MAX_LINE_LEN: usize = 127;

/// How many of the last lines [`LineEditor`] keeps for Up/Down.
pub const HISTORY_LEN: usize = 16;

/// The history's ring: one more slot for the line being typed.
const HISTORY_SLOTS: usize = HISTORY_LEN + 1;

/// The control bytes the editor acts on (the tests type them too).
pub mod keys {
    pub const CTRL_A: u8 = 0x01;
    pub const CTRL_C: u8 = 0x03;
    pub const CTRL_E: u8 = 0x05;
    pub const BACKSPACE: u8 = 0x08;
    pub const TAB: u8 = 0x09;
    pub const CTRL_U: u8 = 0x15;
    pub const CTRL_W: u8 = 0x17;
    pub const ESCAPE: u8 = 0x1b;
    pub const DELETE: u8 = 0x7f;
}
use keys::*;

/// Clears from the cursor to the end of the terminal line.
const CLEAR_TO_END: &[u8] = b"\x1b[K";

/// What a byte fed in finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A line ended (its terminator is not included; the editor has moved
    /// the terminal to a new line): run it, then print the prompt.
    Line(&'a str),
    /// A line ended that was too long: it is discarded (the terminal is on
    /// a new line). Report an error, then print the prompt.
    Overlong,
    /// Ctrl-C abandoned the line (the editor printed `^C` and a newline):
    /// print the prompt.
    Cancelled,
    /// The editor printed lines below the one being typed (the candidates
    /// of a Tab completion) and the terminal is on a new line: print the
    /// prompt and call [`LineEditor::redraw`] to show the line again.
    Redraw,
}

/// Where the editor is in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one.
    None,
    /// After ESC.
    Started,
    /// After `ESC [`: the numeric parameter so far (0: none yet;
    /// [`NOT_A_KEY`] once a byte no key of ours has was seen), until a
    /// final byte (0x40..=0x7e).
    Csi(u8),
    /// After `ESC O`: one final byte.
    Ss3,
}

/// A CSI parameter no key of ours uses (it saturates here, too).
const NOT_A_KEY: u8 = u8::MAX;

/// The keys that are more than one character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    Delete,
}

/// The line being typed, and the history.
///
/// Only fixed-size arrays, no allocation: its size is all the memory it
/// ever uses (under 2.5 KiB).
#[derive(Clone, Debug)]
pub struct LineEditor {
    buffer: [u8; MAX_LINE_LEN],
    len: usize,
    /// Where the next character goes, 0..=len.
    cursor: usize,
    /// More characters were typed than fit: the line is rejected at its end.
    overflowed: bool,
    /// The previous byte was a CR that ended a line, so an LF now is the
    /// second half of a CR LF pair, not an empty line.
    after_cr: bool,
    /// The previous byte was a Tab that could not complete anything: a
    /// second Tab lists the candidates.
    after_tab: bool,
    escape: Escape,
    /// The words Tab completes (the first word of a line only), separated
    /// by single spaces.
    completions: &'static str,
    /// Past lines, a ring: `history_len` entries end before `history_next`.
    /// The slot at `history_next` keeps the line being typed while the
    /// history is browsed.
    history: [[u8; MAX_LINE_LEN]; HISTORY_SLOTS],
    history_lens: [u8; HISTORY_SLOTS],
    history_next: usize,
    history_len: usize,
    /// Which history entry the line shows: 0 the line being typed, 1 the
    /// newest entry, and so on.
    browsing: usize,
}

impl LineEditor {
    /// An empty line and history; Tab completes the first word of a line
    /// to one of the words of `completions` (separated by single spaces,
    /// as in [`COMMAND_NAMES`](crate::COMMAND_NAMES)).
    pub const fn new(completions: &'static str) -> Self {
        LineEditor {
            buffer: [0; MAX_LINE_LEN],
            len: 0,
            cursor: 0,
            overflowed: false,
            after_cr: false,
            after_tab: false,
            escape: Escape::None,
            completions,
            history: [[0; MAX_LINE_LEN]; HISTORY_SLOTS],
            history_lens: [0; HISTORY_SLOTS],
            history_next: 0,
            history_len: 0,
            browsing: 0,
        }
    }

    /// The characters of the current line.
    pub fn line(&self) -> &str {
        text(&self.buffer[..self.len])
    }

    /// Where the cursor is in [`line`](Self::line), in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Feeds one input byte, writing what the terminal must show to `out`.
    ///
    /// An [`Event::Line`] borrows the editor; the next `feed` starts a new
    /// line.
    pub fn feed(&mut self, byte: u8, out: &mut dyn FnMut(&[u8])) -> Option<Event<'_>> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        let after_tab = core::mem::replace(&mut self.after_tab, false);
        let in_sequence = (b' '..=b'~').contains(&byte);
        match self.escape {
            Escape::None => {}
            // A control byte ends a sequence and then acts as itself.
            _ if !in_sequence => self.escape = Escape::None,
            Escape::Started => {
                self.escape = match byte {
                    b'[' => Escape::Csi(0),
                    b'O' => Escape::Ss3,
                    _ => Escape::None,
                };
                return None;
            }
            Escape::Csi(parameter) => {
                let key = match (byte, parameter) {
                    (b'0'..=b'9', _) => {
                        let digit = byte - b'0';
                        let value = parameter.saturating_mul(10).saturating_add(digit);
                        self.escape = Escape::Csi(value);
                        return None;
                    }
                    // Other parameter and intermediate bytes.
                    (..=0x3f, _) => {
                        self.escape = Escape::Csi(NOT_A_KEY);
                        return None;
                    }
                    (b'~', 1 | 7) => Some(Key::Home),
                    (b'~', 4 | 8) => Some(Key::End),
                    (b'~', 3) => Some(Key::Delete),
                    (_, 0) => arrow_or_home_end(byte),
                    _ => None,
                };
                self.escape = Escape::None;
                return self.key(key, out);
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                return self.key(arrow_or_home_end(byte), out);
            }
        }
        // Printable characters before the control bytes: a `match` over
        // both would compile to a 128-entry jump table in the kernel image.
        if (b' '..=b'~').contains(&byte) {
            if self.len == MAX_LINE_LEN {
                self.overflowed = true;
            } else if !self.overflowed {
                self.edit(self.cursor, 0, &[byte], out);
            }
            return None;
        }
        // DEL is Backspace; the control bytes left are all below 0x20.
        let byte = if byte == DELETE { BACKSPACE } else { byte };
        match byte {
            b'\n' if after_cr => None,
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                out(b"\r\n");
                self.finish_line()
            }
            CTRL_C => {
                // After the whole line, so that it stays readable.
                out(&self.buffer[self.cursor..self.len]);
                out(b"^C\r\n");
                self.reset_line();
                Some(Event::Cancelled)
            }
            CTRL_U => {
                self.overflowed = false;
                self.edit(0, self.len, &[], out);
                None
            }
            ESCAPE => {
                self.escape = Escape::Started;
                None
            }
            // A line too long accepts nothing more but the keys above.
            _ if self.overflowed => None,
            CTRL_A => self.key(Some(Key::Home), out),
            CTRL_E => self.key(Some(Key::End), out),
            BACKSPACE if self.cursor > 0 => {
                self.edit(self.cursor - 1, 1, &[], out);
                None
            }
            CTRL_W => {
                let before = &self.buffer[..self.cursor];
                // The spaces left of the cursor go with the word.
                let word_end = before.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
                let start = word_start(&before[..word_end]);
                self.edit(start, self.cursor - start, &[], out);
                None
            }
            TAB => self.complete(after_tab, out),
            _ => None,
        }
    }

    /// Shows the line again, with the cursor in its place, after a prompt
    /// the caller has just printed on a fresh (or erased) terminal line.
    /// (The prompt is the caller's because it changes, e.g. with the
    /// selected stopwatch.) An empty line writes nothing.
    ///
    /// To print something while a line is being typed (a notice), write
    /// `"\r\x1b[K"` (erase the terminal line), the text and `"\r\n"`, then
    /// the prompt, then call `redraw`.
    pub fn redraw(&self, out: &mut dyn FnMut(&[u8])) {
        out(&self.buffer[..self.len]);
        move_left(self.len - self.cursor, out);
    }

    fn key(&mut self, key: Option<Key>, out: &mut dyn FnMut(&[u8])) -> Option<Event<'_>> {
        if self.overflowed {
            return None;
        }
        let (cursor, len) = (self.cursor, self.len);
        match key {
            Some(Key::Left) if cursor > 0 => {
                move_left(1, out);
                self.cursor -= 1;
            }
            Some(Key::Right) if cursor < len => {
                out(&self.buffer[cursor..cursor + 1]);
                self.cursor += 1;
            }
            Some(Key::Home) => {
                move_left(cursor, out);
                self.cursor = 0;
            }
            Some(Key::End) => {
                out(&self.buffer[cursor..len]);
                self.cursor = len;
            }
            Some(Key::Delete) if cursor < len => self.edit(cursor, 1, &[], out),
            Some(Key::Up) if self.browsing < self.history_len => {
                if self.browsing == 0 {
                    self.store(0);
                }
                self.browsing += 1;
                self.show_history(out);
            }
            Some(Key::Down) if self.browsing > 0 => {
                self.browsing -= 1;
                self.show_history(out);
            }
            _ => {}
        }
        None
    }

    /// Replaces the line with the history entry `browsing` points at (the
    /// line being typed for 0), cursor at its end.
    fn show_history(&mut self, out: &mut dyn FnMut(&[u8])) {
        let slot = self.slot(self.browsing);
        let entry = self.history[slot];
        let len = usize::from(self.history_lens[slot]);
        self.edit(0, self.len, &entry[..len], out);
    }

    /// The ring slot of the history entry `back` lines ago (0: the slot
    /// that keeps the line being typed).
    fn slot(&self, back: usize) -> usize {
        (self.history_next + HISTORY_SLOTS - back) % HISTORY_SLOTS
    }

    /// Copies the line into the history slot `back`.
    fn store(&mut self, back: usize) {
        let slot = self.slot(back);
        self.history[slot][..self.len].copy_from_slice(&self.buffer[..self.len]);
        // MAX_LINE_LEN fits in a byte.
        self.history_lens[slot] = self.len as u8;
    }

    /// Tab: completes the first word of the line, left of the cursor, to the
    /// longest prefix its candidates share (a unique candidate: all of it
    /// and a space). When there is nothing to add, a second Tab lists the
    /// candidates.
    fn complete(&mut self, after_tab: bool, out: &mut dyn FnMut(&[u8])) -> Option<Event<'_>> {
        let cursor = self.cursor;
        let start = word_start(&self.buffer[..cursor]);
        if self.buffer[..start].iter().any(|&b| b != b' ') {
            return None; // not the first word
        }
        let completions = self.completions;
        let prefix = &self.buffer[start..cursor];
        let candidates = || {
            completions
                .split_ascii_whitespace()
                .map(str::as_bytes)
                .filter(|name| name.starts_with(prefix))
        };
        // The first candidate, and how much of it all candidates share.
        let mut first: &'static [u8] = &[];
        let mut shared = 0;
        let mut matches = 0;
        for name in candidates() {
            if matches == 0 {
                first = name;
                shared = name.len();
            }
            shared = first[..shared]
                .iter()
                .zip(name)
                .take_while(|(a, b)| a == b)
                .count();
            matches += 1;
        }
        if matches == 0 {
            return None;
        }
        let unique = matches == 1;
        let addition = &first[cursor - start..shared];
        if !addition.is_empty() || unique {
            // A unique candidate gets a space after it.
            if self.len + addition.len() < MAX_LINE_LEN {
                self.edit(cursor, 0, addition, out);
                if unique {
                    self.edit(self.cursor, 0, b" ", out);
                }
            }
            None
        } else if after_tab {
            out(b"\r\n");
            for name in candidates() {
                out(name);
                out(b"  ");
            }
            out(b"\r\n");
            Some(Event::Redraw)
        } else {
            self.after_tab = true;
            None
        }
    }

    /// Replaces `removed` characters at `from` (at most the cursor) with
    /// `inserted` and shows it: the cursor goes back to `from`, the rest of
    /// the line is rewritten, the old end cleared if the line got shorter,
    /// and the cursor goes back to just after `inserted`.
    fn edit(&mut self, from: usize, removed: usize, inserted: &[u8], out: &mut dyn FnMut(&[u8])) {
        let old_len = self.len;
        let new_len = old_len - removed + inserted.len();
        // The rest of the line moves through a copy, not `copy_within`:
        // that is the kernel's only `memmove` (1 KB of code), where
        // `memcpy` is there anyway.
        let mut rest = [0; MAX_LINE_LEN];
        let rest = &mut rest[..old_len - from - removed];
        rest.copy_from_slice(&self.buffer[from + removed..old_len]);
        self.buffer[from..from + inserted.len()].copy_from_slice(inserted);
        self.buffer[from + inserted.len()..new_len].copy_from_slice(rest);
        self.len = new_len;
        move_left(self.cursor - from, out);
        self.cursor = from + inserted.len();
        out(&self.buffer[from..new_len]);
        if new_len < old_len {
            out(CLEAR_TO_END);
        }
        move_left(new_len - self.cursor, out);
    }

    fn finish_line(&mut self) -> Option<Event<'_>> {
        let (len, overflowed) = (self.len, self.overflowed);
        if !overflowed {
            let line = &self.buffer[..len];
            let newest = self.slot(1);
            let repeat = self.history_len > 0
                && self.history[newest][..usize::from(self.history_lens[newest])] == *line;
            if line.iter().any(|&b| b != b' ') && !repeat {
                self.store(0);
                self.history_next = self.slot(HISTORY_SLOTS - 1);
                self.history_len = HISTORY_LEN.min(self.history_len + 1);
            }
        }
        self.reset_line();
        if overflowed {
            return Some(Event::Overlong);
        }
        Some(Event::Line(text(&self.buffer[..len])))
    }

    /// Empties the line (the history stays).
    fn reset_line(&mut self) {
        self.len = 0;
        self.cursor = 0;
        self.overflowed = false;
        self.browsing = 0;
    }
}

/// The key an arrow, Home or End sequence's final byte names.
fn arrow_or_home_end(final_byte: u8) -> Option<Key> {
    match final_byte {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        b'H' => Some(Key::Home),
        b'F' => Some(Key::End),
        _ => None,
    }
}

fn move_left(columns: usize, out: &mut dyn FnMut(&[u8])) {
    for _ in 0..columns {
        out(&[BACKSPACE]);
    }
}

/// Where the last word of `bytes` starts (`bytes.len()` if it ends with a
/// space).
fn word_start(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b' ').map_or(0, |i| i + 1)
}

fn text(bytes: &[u8]) -> &str {
    // Only printable ASCII is ever stored, so this cannot fail.
    core::str::from_utf8(bytes).unwrap_or("")
}
