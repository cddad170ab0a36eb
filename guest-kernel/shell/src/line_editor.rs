//! A minimal line editor for a serial console.
//!
//! Bytes go in one at a time ([`LineEditor::feed`]); each returns the
//! [`Action`] the console should take (echo, erase, or handle a finished
//! line). Editing keys: Backspace (0x08) and DEL (0x7f) erase one
//! character, Ctrl-U erases the whole line. CR, LF and the pair CR LF each
//! end exactly one line. Only printable ASCII is kept, so a finished line
//! is always valid text; other control bytes and escape sequences (arrow
//! keys and the like) are ignored.

/// Longest accepted line, in characters: a line of `MAX_LINE_LEN + 1` (128)
/// characters or more is rejected when it ends.
pub const MAX_LINE_LEN: usize = 127;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_U: u8 = 0x15;
const ESCAPE: u8 = 0x1b;

/// What the console should do after a byte was fed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Nothing to show.
    Nothing,
    /// A character was added to the line: echo it.
    Echo(u8),
    /// The last character was removed: move back, blank it, move back.
    EraseChar,
    /// The line was cleared: erase this many characters.
    EraseLine(usize),
    /// A line ended (its terminator is not included): run it.
    Line(&'a str),
    /// A line ended that was too long: report an error; it is discarded.
    Overlong,
}

/// Where the editor is in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one.
    None,
    /// After ESC.
    Started,
    /// After ESC [ or ESC O: parameters until a final byte (0x40..=0x7e).
    Sequence,
}

/// The line being typed.
#[derive(Clone, Debug)]
pub struct LineEditor {
    buffer: [u8; MAX_LINE_LEN],
    len: usize,
    /// More characters were typed than fit: the line is rejected at its end.
    overflowed: bool,
    /// The previous byte was a CR that ended a line, so an LF now is the
    /// second half of a CR LF pair, not an empty line.
    after_cr: bool,
    escape: Escape,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty line.
    pub const fn new() -> Self {
        LineEditor {
            buffer: [0; MAX_LINE_LEN],
            len: 0,
            overflowed: false,
            after_cr: false,
            escape: Escape::None,
        }
    }

    /// The characters typed so far on the current line.
    pub fn current(&self) -> &str {
        // Only printable ASCII is ever stored, so this cannot fail.
        core::str::from_utf8(&self.buffer[..self.len]).unwrap_or("")
    }

    /// Feeds one input byte and says what to do about it.
    ///
    /// The returned [`Action::Line`] borrows the editor; the next `feed`
    /// starts a new line.
    pub fn feed(&mut self, byte: u8) -> Action<'_> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Started => {
                self.escape = if byte == b'[' || byte == b'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return Action::Nothing;
            }
            Escape::Sequence => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Action::Nothing;
            }
            Escape::None => {}
        }
        match byte {
            b'\n' if after_cr => Action::Nothing,
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                self.finish_line()
            }
            BACKSPACE | DELETE => {
                if self.overflowed || self.len == 0 {
                    Action::Nothing
                } else {
                    self.len -= 1;
                    Action::EraseChar
                }
            }
            CTRL_U => {
                let erased = self.len;
                self.clear();
                Action::EraseLine(erased)
            }
            ESCAPE => {
                self.escape = Escape::Started;
                Action::Nothing
            }
            b' '..=b'~' => {
                if self.overflowed {
                    Action::Nothing
                } else if self.len == MAX_LINE_LEN {
                    self.overflowed = true;
                    Action::Nothing
                } else {
                    self.buffer[self.len] = byte;
                    self.len += 1;
                    Action::Echo(byte)
                }
            }
            _ => Action::Nothing,
        }
    }

    fn finish_line(&mut self) -> Action<'_> {
        let (len, overflowed) = (self.len, self.overflowed);
        self.clear();
        if overflowed {
            Action::Overlong
        } else {
            // Only printable ASCII is ever stored, so this cannot fail.
            Action::Line(core::str::from_utf8(&self.buffer[..len]).unwrap_or(""))
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Feeds `input` and collects the finished lines (`None`: overlong).
    fn lines(editor: &mut LineEditor, input: &[u8]) -> Vec<Option<String>> {
        let mut found = Vec::new();
        for &byte in input {
            match editor.feed(byte) {
                Action::Line(line) => found.push(Some(line.to_string())),
                Action::Overlong => found.push(None),
                _ => {}
            }
        }
        found
    }

    fn text(lines: &[&str]) -> Vec<Option<String>> {
        lines.iter().map(|line| Some(line.to_string())).collect()
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let mut editor = LineEditor::new();
        assert_eq!(lines(&mut editor, b"a\rb\nc\r\n"), text(&["a", "b", "c"]));
        // LF LF is two lines; CR CR LF (a pty's CR LF) is two lines too.
        assert_eq!(
            lines(&mut editor, b"x\n\ny\r\r\n"),
            text(&["x", "", "y", ""])
        );
    }

    #[test]
    fn backspace_delete_and_ctrl_u_edit() {
        let mut editor = LineEditor::new();
        assert_eq!(editor.feed(b'a'), Action::Echo(b'a'));
        assert_eq!(editor.feed(b'b'), Action::Echo(b'b'));
        assert_eq!(editor.feed(BACKSPACE), Action::EraseChar);
        assert_eq!(editor.feed(b'c'), Action::Echo(b'c'));
        assert_eq!(editor.feed(DELETE), Action::EraseChar);
        assert_eq!(editor.current(), "a");
        assert_eq!(editor.feed(DELETE), Action::EraseChar);
        assert_eq!(editor.feed(DELETE), Action::Nothing);
        editor.feed(b'x');
        editor.feed(b'y');
        assert_eq!(editor.feed(CTRL_U), Action::EraseLine(2));
        assert_eq!(lines(&mut editor, b"ok\r"), text(&["ok"]));
    }

    #[test]
    fn escape_sequences_and_control_bytes_are_ignored() {
        let mut editor = LineEditor::new();
        assert_eq!(
            lines(&mut editor, b"s\x1b[At\x1bOBa\x1b[1;5Crt\x00\x07\xff\r"),
            text(&["start"])
        );
    }

    #[test]
    fn overlong_line_is_rejected_and_the_next_is_intact() {
        let mut editor = LineEditor::new();
        for _ in 0..MAX_LINE_LEN {
            assert_eq!(editor.feed(b'z'), Action::Echo(b'z'));
        }
        assert_eq!(editor.feed(b'z'), Action::Nothing);
        assert_eq!(editor.feed(BACKSPACE), Action::Nothing);
        assert_eq!(editor.feed(b'\r'), Action::Overlong);
        assert_eq!(lines(&mut editor, b"\nhelp\r\n"), text(&["help"]));
    }

    #[test]
    fn a_line_of_exactly_the_maximum_is_accepted() {
        let mut editor = LineEditor::new();
        let longest = [b'q'; MAX_LINE_LEN];
        let found = lines(&mut editor, &[&longest[..], b"\n"].concat());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].as_ref().map(String::len), Some(MAX_LINE_LEN));
    }

    #[test]
    fn ctrl_u_recovers_from_an_overlong_line() {
        let mut editor = LineEditor::new();
        for _ in 0..200 {
            editor.feed(b'z');
        }
        assert_eq!(editor.feed(CTRL_U), Action::EraseLine(MAX_LINE_LEN));
        assert_eq!(lines(&mut editor, b"read\r"), text(&["read"]));
    }
}
