//! Fuzz-style test: random byte streams through the line editor and the
//! parser. Nothing may panic, every finished line must be short printable
//! ASCII, and an overlong line must never leak into the next one.
//!
//! A fixed-seed xorshift generator keeps the test deterministic and free of
//! dependencies; each run covers a few hundred thousand bytes.

use stopwatch_shell::{parse, Action, LineEditor, MAX_LINE_LEN};

use stopwatch_test_rng::TestRng;

/// The generator, with a bias towards what a person types.
struct Random(TestRng);

impl Random {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// A byte biased towards what a person types, with plenty of noise.
    fn byte(&mut self) -> u8 {
        const WORDS: &[u8] =
            b"help start pause stop reset read show trap status timeout irqs info exit 0123456789 ";
        match self.below(16) {
            0 => b'\r',
            1 => b'\n',
            2 => 0x7f,
            3 => 0x08,
            4 => 0x15,
            5 => 0x1b,
            6 => b'[',
            7 | 8 => self.next() as u8,
            _ => WORDS[self.below(WORDS.len() as u64) as usize],
        }
    }
}

#[test]
fn random_bytes_never_panic_and_lines_stay_valid() {
    let mut random = Random(TestRng::new(0x5eed_1234_abcd_0001));
    let mut editor = LineEditor::new();
    let mut finished = 0;
    for _ in 0..300_000 {
        let byte = random.byte();
        if let Action::Line(line) = editor.feed(byte) {
            finished += 1;
            assert!(line.len() <= MAX_LINE_LEN);
            assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)));
            // Whatever the line, parsing answers and never panics.
            let _ = parse(line);
        }
        assert!(editor.current().len() <= MAX_LINE_LEN);
    }
    assert!(finished > 1000, "the generator should end many lines");
}

#[test]
fn random_overlong_lines_are_rejected_without_touching_the_next() {
    let mut random = Random(TestRng::new(0x0dd_ba11));
    for _ in 0..2_000 {
        let mut editor = LineEditor::new();
        let length = MAX_LINE_LEN as u64 + 1 + random.below(300);
        for _ in 0..length {
            editor.feed(b' ' + random.below(95) as u8);
        }
        let terminator: &[u8] = match random.below(3) {
            0 => b"\r",
            1 => b"\n",
            _ => b"\r\n",
        };
        let mut outcome = None;
        for &byte in terminator {
            match editor.feed(byte) {
                Action::Overlong => outcome = Some("overlong"),
                Action::Line(_) => outcome = Some("line"),
                _ => {}
            }
        }
        assert_eq!(outcome, Some("overlong"));
        let mut next = None;
        for &byte in b"status\r\n" {
            if let Action::Line(line) = editor.feed(byte) {
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
