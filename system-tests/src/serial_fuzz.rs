// SPDX-License-Identifier: GPL-2.0-or-later
//! Serial-line fuzzing of the real guest: bursts of hostile bytes on the
//! shell's input, each followed by a known command whose answer must come
//! back right. The guest must never hang, panic or lose its prompt, and no
//! burst may make the device log a guest error.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use stopwatch_shell::command_names;
use stopwatch_test_rng::TestRng;

use crate::repo::Repo;
use crate::serial::{GuestErrorLog, SerialConsole, PROMPT};
use crate::vm::VmConfig;

/// The fuzz of `cargo xtask test`: 2,000 bursts in all, as sessions of
/// 500, each with its own guest and seed ([`test_seed`]), which run side
/// by side: the serial line takes one byte per round trip through QEMU,
/// so a session spends most of its time waiting, not computing.
pub const TEST_SESSIONS: u64 = 4;
/// Bursts in one session of `cargo xtask test`'s fuzz.
pub const TEST_BURSTS_PER_SESSION: u64 = 500;
/// Bursts of the ignored trial that fuzzes at length in one session
/// (`cargo test -p system-tests -- --ignored`), and of `cargo xtask fuzz
/// serial`.
pub const LONG_BURSTS: u64 = 20_000;
/// The seed of the first session of `cargo xtask test`'s fuzz (and of
/// the long one).
pub const TEST_SEED: u64 = 0x5e41_a1f0;

/// The seed of session `session` (from 0) of `cargo xtask test`'s fuzz.
pub const fn test_seed(session: u64) -> u64 {
    TEST_SEED + session
}

/// Bursts sent in one write (each still followed by its probe).
const BURSTS_PER_WRITE: u64 = 8;

/// How long the guest may take to answer after one burst.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Ends whatever a burst left half done, whatever the line editor's state:
/// `~` is the final byte of any escape sequence in progress (and ends an
/// `ESC x` pair), Ctrl-U then clears the line, overlong or not.
const RESYNC: &[u8] = b"~\x15";

/// Bytes a burst never sends: Tab (completion) and the history keys could
/// turn the fuzz's own lines into a command that ends the session (`e` Tab
/// Enter is `exit`; Up recalls an earlier line). The line editor's host
/// tests feed those keys at random instead.
const NEVER_SENT: &[u8] = b"\t";

/// Commands that end the session or run for long: never named with a
/// garbage argument (the editor's Ctrl-W could strip the argument).
const NOT_NAMED: &[&str] = &["exit", "poweroff", "bench", "watch"];

/// One burst of hostile input.
pub fn burst(rng: &mut TestRng) -> Vec<u8> {
    let mut bytes = raw_burst(rng);
    for byte in &mut bytes {
        if NEVER_SENT.contains(byte) {
            *byte = b' ';
        }
    }
    // History keys (Up, Down) are left out for the same reason as Tab, and
    // random bytes can spell one too: any CSI or SS3 sequence
    // whose final byte is A or B (Up, Down, with or without parameters)
    // ends with `z` (an unknown key) instead.
    let mut index = 0;
    while index + 1 < bytes.len() {
        if bytes[index] == 0x1b && matches!(bytes[index + 1], b'[' | b'O') {
            let mut end = index + 2;
            while end < bytes.len() && (0x20..=0x3f).contains(&bytes[end]) {
                end += 1;
            }
            if end < bytes.len() && matches!(bytes[end], b'A' | b'B') {
                bytes[end] = b'z';
            }
        }
        index += 1;
    }
    bytes
}

fn raw_burst(rng: &mut TestRng) -> Vec<u8> {
    let mut bytes = Vec::new();
    let pieces = rng.in_range(1..=4);
    for _ in 0..pieces {
        match rng.below(20) {
            // Any bytes at all, high half included.
            0..=3 => {
                for _ in 0..rng.in_range(1..=64) {
                    bytes.push(rng.next_u64() as u8);
                }
            }
            // Control characters: NUL, Ctrl-C, backspace, DEL, tabs, CR, LF.
            4..=6 => {
                for _ in 0..rng.in_range(1..=16) {
                    let byte = match rng.below(4) {
                        0 => 0x7f,
                        _ => rng.below(0x20) as u8,
                    };
                    bytes.push(byte);
                }
            }
            // Escape sequences: known, unknown, cut short, with parameters.
            7..=10 => {
                const SEQUENCES: &[&[u8]] = &[
                    b"\x1b[A",
                    b"\x1b[B",
                    b"\x1b[C",
                    b"\x1b[D",
                    b"\x1b[H",
                    b"\x1b[F",
                    b"\x1bOH",
                    b"\x1bOF",
                    b"\x1b[3~",
                    b"\x1b[1~",
                    b"\x1b[4~",
                    b"\x1b[99z",
                    b"\x1b[1;5C",
                    b"\x1bOx",
                    b"\x1bx",
                    b"\x1b",
                    b"\x1b[",
                    b"\x1b[12;",
                    b"\x1bO",
                    b"\x1b[?25l",
                    b"\x1b\x1b[A",
                ];
                for _ in 0..rng.in_range(1..=6) {
                    bytes.extend_from_slice(rng.pick::<&[u8]>(SEQUENCES));
                    if rng.chance(1, 4) {
                        bytes.push(rng.in_range(0x20..=0x3f) as u8);
                    }
                }
            }
            // An overlong line.
            11 => {
                for _ in 0..rng.in_range(128..=400) {
                    bytes.push(rng.in_range(0x20..=0x7e) as u8);
                }
                bytes.push(b'\r');
            }
            // Thousands of bytes at once, mostly printable with line ends.
            12 if rng.chance(1, 8) => {
                for _ in 0..rng.in_range(1_000..=5_000) {
                    let byte = match rng.below(40) {
                        0 => b'\r',
                        1 => rng.below(0x20) as u8,
                        _ => rng.in_range(0x20..=0x7e) as u8,
                    };
                    bytes.push(byte);
                }
            }
            // A real command with a garbage argument: every command
            // rejects an argument that starts with `#`, so none runs.
            13..=16 => {
                let names: Vec<&str> = command_names()
                    .filter(|name| !NOT_NAMED.contains(name))
                    .collect();
                bytes.extend_from_slice(rng.pick(&names).as_bytes());
                bytes.extend_from_slice(b" #");
                for _ in 0..rng.in_range(0..=12) {
                    bytes.push(rng.in_range(0x21..=0x7e) as u8);
                }
                bytes.push(*rng.pick(b"\r\n"));
            }
            // Printable words with line ends.
            _ => {
                for _ in 0..rng.in_range(1..=40) {
                    let byte = match rng.below(10) {
                        0 => b' ',
                        1 => b'\r',
                        _ => rng.in_range(b'a' as u64..=b'z' as u64) as u8,
                    };
                    bytes.push(byte);
                }
            }
        }
    }
    bytes
}

/// The known command after burst `index` and the text its answer must hold:
/// `use` with a number no burst makes, so the answer names it.
fn probe(index: u64) -> (String, String) {
    let number = 1_000_000 + index;
    (
        format!("use {number}\r"),
        format!("there is no stopwatch[{number}]"),
    )
}

/// `bytes` escaped for a replay script (a Rust byte string).
pub fn escaped(bytes: &[u8]) -> String {
    let mut text = String::from("b\"");
    for &byte in bytes {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(byte as char),
            _ => {
                let _ = write!(text, "\\x{byte:02x}");
            }
        }
    }
    text.push('"');
    text
}

/// Sends `bursts` bursts from `seed`; `Ok` holds a one-line result with
/// the rate.
pub fn run(repo: &Repo, seed: u64, bursts: u64, boot_timeout: Duration) -> Result<String> {
    let guest_errors = GuestErrorLog::new(repo, &format!("serial-fuzz-{seed:#x}"))?;
    let config = VmConfig {
        extra: guest_errors.qemu_args().into(),
        // Every byte to the guest: with QEMU's monitor multiplexed in, a
        // burst's Ctrl-A X would quit QEMU.
        raw_serial: true,
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line(repo));
    eprintln!("    seed {seed:#x}, {bursts} bursts");
    let mut console = SerialConsole::spawn(repo, &config, None)?.named("serial fuzz");
    console
        .expect(PROMPT, boot_timeout)
        .context("the guest shell never showed its prompt")?;
    let mut rng = TestRng::new(seed);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut index = 0;
    while index < bursts {
        // A few bursts per write, each with its probe: the guest answers
        // them in order, and the round trips overlap.
        let group: Vec<(u64, Vec<u8>)> = (index..bursts.min(index + BURSTS_PER_WRITE))
            .map(|i| (i, burst(&mut rng)))
            .collect();
        let mut input = Vec::new();
        for (i, burst) in &group {
            input.extend_from_slice(burst);
            input.extend_from_slice(RESYNC);
            input.extend_from_slice(probe(*i).0.as_bytes());
        }
        sent += input.len();
        console.send_bytes(&input)?;
        for (i, burst) in &group {
            let answer = probe(*i).1;
            let outcome = console
                .expect(&answer, ANSWER_TIMEOUT)
                .and_then(|_| console.expect(PROMPT, ANSWER_TIMEOUT));
            if let Err(error) = outcome {
                let tail: String = console.transcript().chars().rev().take(600).collect();
                let tail: String = tail.chars().rev().collect();
                bail!(
                    "burst {i} of seed {seed:#x}: {error:#}\n\
                     replay: cargo xtask fuzz serial --seed {seed:#x} --bursts {}\n\
                     the burst: {}\nthe console's last output:\n{tail}",
                    i + 1,
                    escaped(burst)
                );
            }
        }
        index += group.len() as u64;
    }
    let elapsed = started.elapsed();
    drop(console);
    guest_errors.ensure_none(&format!("bursts of seed {seed:#x}"))?;
    Ok(format!(
        "{bursts} bursts ({sent} bytes) answered right, no guest error; \
         {:.0} bursts/s",
        bursts as f64 / elapsed.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_reproducible_and_varied() {
        let (mut a, mut b) = (TestRng::new(1), TestRng::new(1));
        let bursts: Vec<Vec<u8>> = (0..2_000).map(|_| burst(&mut a)).collect();
        for burst_a in &bursts {
            assert_eq!(*burst_a, burst(&mut b));
        }
        let all: Vec<u8> = bursts.concat();
        assert!(all.contains(&0), "no NUL");
        assert!(all.contains(&0x1b), "no escape");
        assert!(all.iter().any(|&b| b >= 0x80), "no high byte");
        assert!(bursts.iter().any(|b| b.len() >= 1_000), "no long burst");
        assert!(bursts
            .iter()
            .any(|b| b.windows(3).any(|w| w == b" #x" || w.starts_with(b" #"))));
    }

    /// History keys, which no burst may contain.
    const HISTORY_KEYS: &[&[u8]] = &[b"\x1b[A", b"\x1b[B", b"\x1bOA", b"\x1bOB"];

    /// Every burst `cargo xtask test` sends, with its index in its session.
    fn test_bursts() -> impl Iterator<Item = (u64, Vec<u8>)> {
        (0..TEST_SESSIONS).flat_map(|session| {
            let mut rng = TestRng::new(test_seed(session));
            (0..TEST_BURSTS_PER_SESSION).map(move |index| (index, burst(&mut rng)))
        })
    }

    #[test]
    fn no_burst_can_end_the_session() {
        for (index, burst) in test_bursts() {
            assert!(!burst.contains(&b'\t'), "burst {index} has a Tab");
            for key in HISTORY_KEYS {
                assert!(
                    !burst.windows(key.len()).any(|w| w == *key),
                    "burst {index} has a history key"
                );
            }
            for name in NOT_NAMED {
                assert!(
                    !burst.windows(name.len()).any(|w| w == name.as_bytes()),
                    "burst {index} names `{name}`"
                );
            }
        }
    }

    #[test]
    fn no_burst_answers_the_probe() {
        for (index, burst) in test_bursts() {
            let (_, answer) = probe(index);
            let number = answer.trim_start_matches("there is no stopwatch[");
            let number = number.trim_end_matches(']');
            assert!(
                !burst.windows(number.len()).any(|w| w == number.as_bytes()),
                "burst {index} contains the probe's number"
            );
        }
    }

    #[test]
    fn escapes_for_replay() {
        assert_eq!(escaped(b"a\"\\\x1b\x00~"), "b\"a\\\"\\\\\\x1b\\x00~\"");
    }
}
