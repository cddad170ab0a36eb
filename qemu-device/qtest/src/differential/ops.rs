// SPDX-License-Identifier: GPL-2.0-or-later
//! The differential run's operations: what each is, their one-line script
//! form (written by [`script`], read back by [`parse_script`]), and the
//! seeded generator that mixes them at given [`Rates`].

use std::fmt;

use anyhow::{anyhow, bail, Context, Result};
use stopwatch_abi::{regs, shared, Command, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, MIN_PERIOD_NS};
use stopwatch_test_rng::TestRng;

use super::{BEYOND_END, CHECKED_BLOCK};
use crate::parse_number;

/// The two memory regions of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Region 0: the pass-through RAM.
    Shared,
    /// Region 1: the trapping registers.
    Registers,
}

impl Region {
    fn name(self) -> &'static str {
        match self {
            Region::Shared => "shared",
            Region::Registers => "registers",
        }
    }
}

/// One step of a differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A guest store of `size` bytes at `offset` from the region's base
    /// (which may reach beyond the region).
    Write {
        region: Region,
        offset: u64,
        size: u32,
        value: u64,
    },
    /// A guest load.
    Read {
        region: Region,
        offset: u64,
        size: u32,
    },
    /// `clock_step`: the virtual clock moves by this many nanoseconds.
    ClockStep(u64),
    /// `clock_step` onto the armed timeout's deadline plus this many
    /// nanoseconds (-1, 0 or 1: the edges where a timer is most easily
    /// wrong); 1 ns if no timeout is armed or the target is not ahead.
    StepToDeadline(i8),
    /// QMP `system_reset`.
    SystemReset,
    /// The machine is saved to a file and a new QEMU continues from it.
    Migrate,
}

impl fmt::Display for Op {
    /// The script form, one line: `write registers 0x0 8 0x5`,
    /// `read shared 0xffc 8`, `clock_step 1500`, `system_reset`, `migrate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Write {
                region,
                offset,
                size,
                value,
            } => write!(f, "write {} {offset:#x} {size} {value:#x}", region.name()),
            Op::Read {
                region,
                offset,
                size,
            } => write!(f, "read {} {offset:#x} {size}", region.name()),
            Op::ClockStep(ns) => write!(f, "clock_step {ns}"),
            Op::StepToDeadline(delta) => write!(f, "step_to_deadline {delta}"),
            Op::SystemReset => write!(f, "system_reset"),
            Op::Migrate => write!(f, "migrate"),
        }
    }
}

impl std::str::FromStr for Op {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Op> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let region = |word: &str| match word {
            "shared" => Ok(Region::Shared),
            "registers" => Ok(Region::Registers),
            _ => Err(anyhow!("{word:?} is not a region (shared, registers)")),
        };
        let size = |word: &str| match word.parse() {
            Ok(size @ (1 | 2 | 4 | 8)) => Ok(size),
            _ => Err(anyhow!("{word:?} is not an access size (1, 2, 4, 8)")),
        };
        match words[..] {
            ["write", r, offset, s, value] => Ok(Op::Write {
                region: region(r)?,
                offset: parse_number(offset)?,
                size: size(s)?,
                value: parse_number(value)?,
            }),
            ["read", r, offset, s] => Ok(Op::Read {
                region: region(r)?,
                offset: parse_number(offset)?,
                size: size(s)?,
            }),
            ["clock_step", ns] => match parse_number(ns)? {
                0 => bail!("clock_step 0: qtest refuses a step of 0"),
                ns => Ok(Op::ClockStep(ns)),
            },
            ["step_to_deadline", delta] => match delta.parse() {
                Ok(delta @ -1..=1) => Ok(Op::StepToDeadline(delta)),
                _ => bail!("step_to_deadline {delta}: give -1, 0 or 1"),
            },
            ["system_reset"] => Ok(Op::SystemReset),
            ["migrate"] => Ok(Op::Migrate),
            _ => bail!(
                "{line:?} is not an operation (write REGION OFFSET SIZE VALUE, \
                 read REGION OFFSET SIZE, clock_step NS, step_to_deadline -1|0|1, \
                 system_reset, migrate)"
            ),
        }
    }
}

/// The script of `ops`: one operation per line, as [`parse_script`] reads.
pub fn script(ops: &[Op]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

/// Reads a script: one operation per line; `#` starts a comment.
pub fn parse_script(text: &str) -> Result<Vec<Op>> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.split('#').next().unwrap_or("").trim();
            (!line.is_empty()).then(|| {
                line.parse()
                    .with_context(|| format!("script line {}", index + 1))
            })
        })
        .collect()
}

/// How often the rare operations come.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// One system reset per this many operations, on average.
    pub ops_per_reset: u64,
    /// One migration per this many operations, on average.
    pub ops_per_migration: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            ops_per_reset: 1_000,
            ops_per_migration: 10_000,
        }
    }
}

/// `count` operations of the stream of `seed`: the same seed always gives
/// the same operations.
pub fn generate(seed: u64, count: usize, rates: Rates) -> Vec<Op> {
    let mut random = TestRng::new(seed);
    (0..count).map(|_| random_op(&mut random, rates)).collect()
}

fn random_op(random: &mut TestRng, rates: Rates) -> Op {
    if random.chance(1, rates.ops_per_migration) {
        return Op::Migrate;
    }
    if random.chance(1, rates.ops_per_reset) {
        return Op::SystemReset;
    }
    let size = |random: &mut TestRng| *random.pick(&[1, 2, 4, 8]);
    match random.below(100) {
        // A command the usual way, mostly a valid one.
        0..=29 => {
            let value = match random.below(10) {
                0..=7 => random.pick(&Command::ALL).code(),
                8 => random.below(16),
                _ => random.next_u64(),
            };
            let (offset, size) = *random.pick(&[(regs::COMMAND, 8), (regs::COMMAND, 4)]);
            Op::Write {
                region: Region::Registers,
                offset,
                size,
                value,
            }
        }
        // data_len for the next TIMEOUT / TIMEOUT_NS / PERIODIC: around
        // their limits, or garbage.
        30..=44 => {
            let value = match random.below(7) {
                0 => random.below(MAX_TIMEOUT_SECS + 2),
                1 => random.in_range(1..=2_000),
                2 => random.below(3_000_000_000),
                3 => MAX_TIMEOUT_NS + random.below(3) - 1,
                4 => u64::MAX - random.below(2),
                // A short period, whose timeout fires many times per step.
                5 => random.in_range(MIN_PERIOD_NS - 1..=50 * MIN_PERIOD_NS),
                _ => random.next_u64(),
            };
            Op::Write {
                region: Region::Shared,
                offset: shared::DATA_LEN,
                size: if random.chance(7, 8) { 8 } else { size(random) },
                value,
            }
        }
        // Onto a deadline, or just before or after it.
        45..=49 => Op::StepToDeadline(random.in_range(0..=2) as i8 - 1),
        // The clock: 1 ns to 11 s, every scale equally likely.
        50..=69 => {
            let scale = *random.pick(&[
                10,
                1_000,
                100_000,
                10_000_000,
                1_000_000_000,
                11_000_000_000,
            ]);
            Op::ClockStep(random.in_range(1..=scale))
        }
        // Any access to either region, inside or just beyond it.
        _ => {
            let region = if random.chance(1, 2) {
                Region::Registers
            } else {
                Region::Shared
            };
            let offset = match (region, random.below(4)) {
                (Region::Registers, 0 | 1) => random.below(2 * regs::WIDTH + 1),
                (Region::Shared, 0 | 1) => random.below(CHECKED_BLOCK as u64 + 8),
                (Region::Registers, 2) => regs::SIZE - random.in_range(1..=BEYOND_END),
                (Region::Shared, 2) => shared::SIZE - random.in_range(1..=BEYOND_END),
                (Region::Registers, _) => random.below(regs::SIZE + BEYOND_END),
                (Region::Shared, _) => random.below(shared::SIZE + BEYOND_END),
            };
            let size = size(random);
            if random.chance(1, 2) {
                Op::Read {
                    region,
                    offset,
                    size,
                }
            } else {
                Op::Write {
                    region,
                    offset,
                    size,
                    value: random.next_u64(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_round_trip() {
        let ops = generate(7, 5_000, Rates::default());
        assert!(ops.contains(&Op::SystemReset));
        let text = format!("# a comment\n\n{}", script(&ops));
        assert_eq!(parse_script(&text).unwrap(), ops);
        assert!(parse_script("write shared 0x0 3 0x1").is_err());
        assert!(parse_script("clock_step 0").is_err());
        assert!(parse_script("step_to_deadline 2").is_err());
        assert!(ops.contains(&Op::StepToDeadline(-1)));
        assert!(parse_script("jump 3").is_err());
    }

    #[test]
    fn generated_traffic_covers_the_space() {
        let ops = generate(1, 20_000, Rates::default());
        let beyond = |op: &Op| match *op {
            Op::Read { region, offset, .. } | Op::Write { region, offset, .. } => {
                let size = match region {
                    Region::Shared => shared::SIZE,
                    Region::Registers => regs::SIZE,
                };
                offset >= size
            }
            _ => false,
        };
        assert!(ops.iter().any(beyond), "accesses beyond a region");
        assert!(ops
            .iter()
            .any(|op| matches!(op, Op::ClockStep(ns) if *ns > 10_000_000_000)));
        assert!(ops.iter().any(|op| matches!(op, Op::ClockStep(1..=10))));
        assert!(ops.contains(&Op::Migrate));
        for size in [1, 2, 4, 8] {
            assert!(ops.iter().any(
                |op| matches!(op, Op::Read { size: s, offset, .. } if *s == size && offset % 8 != 0)
            ));
        }
    }
}
