// SPDX-License-Identifier: GPL-2.0-or-later
//! Fuzz-style test: random byte streams through the line editor and the
//! parser. Nothing may panic, the terminal must always show the editor's
//! line with the cursor in place (checked after every byte by the
//! [`Session`]), every finished line must be short printable ASCII, and an
//! overlong line must never leak into the next one.
//!
//! A fixed-seed generator keeps the test deterministic; each run covers a
//! few hundred thousand bytes.

mod terminal;

use stopwatch_shell::{parse, Event, LineEditor, COMMAND_NAMES, MAX_LINE_LEN};
use stopwatch_test_rng::TestRng;
use terminal::{Outcome, Session};

/// The generator, with a bias towards what a person types.
struct Random(TestRng);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// The next input bytes: mostly what a person types (command words,
    /// editing keys, whole escape sequences), with plenty of noise (any
    /// byte, pieces of sequences). With `long_lines`, the keys that end
    /// or empty a line are rare, so lines grow past [`MAX_LINE_LEN`].
    fn keys(&mut self, long_lines: bool) -> &'static [u8] {
        const WORDS: &[&[u8]] = &[
            b"help", b"start", b"pause", b"stop", b"reset", b"read", b"show", b"trap", b"status",
            b"timeout", b"irqs", b"info", b"exit", b"list", b"use", b"watch", b"0", b"7", b"12",
            b" ", b" ", b"  ", b"x",
        ];
        const KEYS: &[&[u8]] = &[
            b"\x1b[A",
            b"\x1b[B",
            b"\x1b[C",
            b"\x1b[D",
            b"\x1bOA",
            b"\x1bOB",
            b"\x1bOC",
            b"\x1bOD",
            b"\x1b[H",
            b"\x1b[F",
            b"\x1bOH",
            b"\x1bOF",
            b"\x1b[1~",
            b"\x1b[4~",
            b"\x1b[7~",
            b"\x1b[8~",
            b"\x1b[3~",
            b"\x01",
            b"\x05",
            b"\x08",
            b"\x7f",
            b"\t",
            b"\t\t",
            b"\x1b[1;5C",
            b"\x1b[2~",
            b"\x1bOP",
            b"\x1bx",
            b"\x1b",
            b"\x1b[",
            b"[",
            b"~",
            b"O",
            b"A",
            b";",
        ];
        const ENDS: &[&[u8]] = &[b"\r", b"\n", b"\r\n", b"\x03", b"\x15", b"\x17"];
        const BYTES: [[u8; 1]; 256] = {
            let mut all = [[0; 1]; 256];
            let mut index = 0;
            while index < 256 {
                all[index][0] = index as u8;
                index += 1;
            }
            all
        };
        let pick = |random: &mut Self, from: &[&'static [u8]]| {
            from[random.below(from.len() as u64) as usize]
        };
        match self.below(16) {
            0 | 1 if !long_lines || self.below(32) == 0 => pick(self, ENDS),
            0..=6 => pick(self, KEYS),
            7 => &BYTES[self.below(256) as usize],
            _ => pick(self, WORDS),
        }
    }
}

#[test]
fn random_bytes_never_panic_and_the_screen_always_shows_the_line() {
    let mut random = Random(TestRng::new(0x5eed_1234_abcd_0001));
    let mut session = Session::new();
    let mut finished = 0;
    let mut longest = 0;
    let mut overlong = 0;
    for index in 0..100_000 {
        session.type_bytes(random.keys(index / 2_000 % 2 == 1));
        longest = longest.max(session.editor.line().len());
        for outcome in session.take_outcomes() {
            if outcome == Outcome::Overlong {
                overlong += 1;
            }
            if let Outcome::Line(line) = outcome {
                finished += 1;
                assert!(line.len() <= MAX_LINE_LEN);
                assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)));
                // Whatever the line, parsing answers and never panics.
                let _ = parse(&line);
            }
        }
        // The screen keeps growing; a real terminal scrolls.
        if session.terminal.rows.len() > 64 {
            session.terminal.rows.drain(..32);
        }
    }
    assert!(finished > 1000, "the generator should end many lines");
    assert!(longest == MAX_LINE_LEN, "the generator should fill lines");
    assert!(overlong > 10, "the generator should make overlong lines");
}

#[test]
fn random_overlong_lines_are_rejected_without_touching_the_next() {
    let mut random = Random(TestRng::new(0x0dd_ba11));
    let mut ignore = |_: &[u8]| {};
    for _ in 0..2_000 {
        let mut editor = LineEditor::new(COMMAND_NAMES);
        let length = MAX_LINE_LEN as u64 + 1 + random.below(300);
        for _ in 0..length {
            editor.feed(b' ' + random.below(95) as u8, &mut ignore);
        }
        let terminator: &[u8] = match random.below(3) {
            0 => b"\r",
            1 => b"\n",
            _ => b"\r\n",
        };
        let mut outcome = None;
        for &byte in terminator {
            match editor.feed(byte, &mut ignore) {
                Some(Event::Overlong) => outcome = Some("overlong"),
                Some(Event::Line(_)) => outcome = Some("line"),
                _ => {}
            }
        }
        assert_eq!(outcome, Some("overlong"));
        let mut next = None;
        for &byte in b"status\r\n" {
            if let Some(Event::Line(line)) = editor.feed(byte, &mut ignore) {
                assert!(next.is_none(), "CR LF must end one line only");
                next = Some(parse(line).ok().flatten());
            }
        }
        assert_eq!(
            next,
            Some(Some(stopwatch_shell::Command::Device(
                stopwatch_shell::DeviceCommand::Status
            )))
        );
    }
}

#[test]
fn random_printable_lines_parse_without_panicking() {
    let mut random = Random(TestRng::new(42));
    let mut line = String::new();
    for _ in 0..50_000 {
        line.clear();
        for _ in 0..random.below(40) {
            line.push((b' ' + random.below(95) as u8) as char);
        }
        let _ = parse(&line);
    }
}
