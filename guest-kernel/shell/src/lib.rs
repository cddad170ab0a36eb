// SPDX-License-Identifier: GPL-2.0-or-later
//! The guest kernel's shell, without any hardware: the console's receive
//! ring (with back-pressure toward the UART), a line editor that turns
//! input bytes into lines, and a parser that turns lines into commands.
//!
//! All are pure state machines, so they are tested on the host; the kernel
//! only moves bytes between the UART and these types.
//!
//! The line editor is written here rather than taken from the `noline`
//! crate because the shell needs behaviour `noline` 0.5 does not have: a
//! CR LF pair ends one line (noline ends a line at CR and again at LF), an
//! overlong line is rejected as a whole (noline silently drops the extra
//! characters), and it must work on a plain byte stream (noline queries the
//! terminal's cursor position with escape sequences and waits for the
//! answer, which a pipe or a test harness never sends).

#![no_std]
#![forbid(unsafe_code)]

pub mod command;
pub mod line_editor;
pub mod protocol;
pub mod receive;

pub use command::{
    command_names, parse, Command, DeviceCommand, ParseError, ReadPath, Timeout, COMMAND_NAMES,
    HELP,
};
pub use line_editor::{Event, LineEditor, HISTORY_LEN, MAX_LINE_LEN};

/// The prompt printed before each line while there is at most one
/// stopwatch.
pub const PROMPT: &str = "stopwatch> ";

/// The prompt: [`PROMPT`], or with several stopwatches the selected one's
/// number, as in `stopwatch[1]> `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The stopwatch the device commands act on.
    pub selected: usize,
    /// How many there are.
    pub count: usize,
}

impl Prompt {
    /// The prompt as the text before the selection's number, the number
    /// (shown only among several stopwatches) and the text after it: the
    /// one definition of its format, for a console that prints without
    /// `core::fmt` (the kernel's, on its boot path) and for [`Display`].
    ///
    /// [`Display`]: core::fmt::Display
    pub const fn parts(&self) -> (&'static str, Option<usize>, &'static str) {
        if self.count > 1 {
            ("stopwatch[", Some(self.selected), "]> ")
        } else {
            (PROMPT, None, "")
        }
    }
}

impl core::fmt::Display for Prompt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (before, number, after) = self.parts();
        f.write_str(before)?;
        if let Some(number) = number {
            write!(f, "{number}")?;
        }
        f.write_str(after)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;

    #[test]
    fn the_prompt_names_the_selection_only_among_several() {
        for count in [0, 1] {
            let prompt = Prompt { selected: 0, count };
            assert_eq!(format!("{prompt}"), PROMPT);
        }
        let prompt = Prompt {
            selected: 2,
            count: 3,
        };
        assert_eq!(format!("{prompt}"), "stopwatch[2]> ");
    }
}
