// SPDX-License-Identifier: GPL-2.0-or-later
//! The time page under concurrency, checked exactly: boots the test
//! kernel's `concurrency` mode (`guest-kernel/src/selftest/concurrency.rs`:
//! CPUs 1..N-1 read the time page with the driver's zero-exit read while
//! CPU 0 drives the device at random) with the device's
//! `stopwatch_time_page` trace written to a file, and checks that every
//! reading the guest kept is a state the device published under that
//! sequence number. One reading that matches none fails the test: a reader
//! that accepted a torn page, or a writer that published out of order.

use anyhow::{bail, ensure, Context, Result};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::repo::Repo;
use crate::serial::SerialConsole;
use crate::vm::VmConfig;

/// The test's name in the suite, before the machine.
pub const NAME: &str = "concurrency::time_page_readings_match_publications";

/// Fewer successful reads than this and the run proved too little.
const MIN_READINGS: u64 = 100_000;

/// What a planted reader's run adds to the boot argument: CPU 0 sends
/// 2000 commands at most 1 ms apart, asleep in between, without waiting
/// for the readers to see each (`fast`): more publications while a
/// reader's thread is descheduled in the middle of its read, in less time
/// (about 1.5 s on 2 vCPUs); and 2000 more, up to 16000, while no reader
/// has counted a torn or backwards reading (`until-caught`). Alone on this
/// 2-core host each plant was caught about 190 times in the first 2000;
/// beside the other trials, 3 to 69 times: the readers and the writer
/// overlap less on a loaded host, and the rounds keep that from becoming
/// 0.
const PLANTED_PACE: &str = "commands=2000,fast,until-caught";

/// (status code, accumulated_ns, run_start_ns, deadline_ns).
type PageState = (u64, u64, u64, u64);

/// The states the device published, by sequence, from the trace file's
/// `stopwatch_time_page` lines (sw0 only).
fn publications(trace: &str) -> Result<HashMap<u64, HashSet<PageState>>> {
    let mut published: HashMap<u64, HashSet<PageState>> = HashMap::new();
    for line in trace.lines() {
        let Some(at) = line.find("stopwatch_time_page sw0: time page ") else {
            continue;
        };
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        // stopwatch_time_page sw0: time page sequence N status S
        // accumulated_ns A run_start_ns R deadline_ns D
        let field = |name: &str| -> Result<&str> {
            let index = words
                .iter()
                .position(|word| *word == name)
                .with_context(|| format!("no {name} in trace line {line:?}"))?;
            words
                .get(index + 1)
                .copied()
                .with_context(|| format!("no value after {name} in {line:?}"))
        };
        let number = |name: &str| -> Result<u64> {
            field(name)?
                .parse()
                .with_context(|| format!("{name} in {line:?}"))
        };
        let status = match field("status")? {
            "RUNNING" => 0,
            "RESET" => 1,
            "PAUSED" => 2,
            other => bail!("unknown status {other:?} in {line:?}"),
        };
        published.entry(number("sequence")?).or_default().insert((
            status,
            number("accumulated_ns")?,
            number("run_start_ns")?,
            number("deadline_ns")?,
        ));
    }
    Ok(published)
}

/// One kept reading: (cpu, sequence, state).
fn reading(line: &str) -> Result<(u64, u64, PageState)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    ensure!(words.len() == 7, "malformed reading line {line:?}");
    let hex = |index: usize| {
        u64::from_str_radix(words[index], 16).with_context(|| format!("field {index} of {line:?}"))
    };
    Ok((hex(1)?, hex(2)?, (hex(3)?, hex(4)?, hex(5)?, hex(6)?)))
}

/// The number after `"name":` in the guest's summary line.
pub(crate) fn summary_number(summary: &str, name: &str) -> Result<u64> {
    let key = format!("\"{name}\":");
    let start = summary
        .find(&key)
        .with_context(|| format!("no {name} in {summary:?}"))?
        + key.len();
    summary[start..]
        .split([',', '}'])
        .next()
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("{name} in {summary:?}"))
}

/// The hexadecimal numbers of one of the guest's lines (after its prefix).
fn hex_numbers(line: &str, count: usize) -> Result<Vec<u64>> {
    let numbers = line
        .split_whitespace()
        .map(|word| u64::from_str_radix(word, 16).with_context(|| format!("{word:?} in {line:?}")))
        .collect::<Result<Vec<u64>>>()?;
    ensure!(numbers.len() == count, "malformed line {line:?}");
    Ok(numbers)
}

/// A reader's first reading that went backwards (`cpu sequence_before
/// elapsed_before sequence elapsed`), in words.
fn describe_backwards(line: &str) -> Result<String> {
    let n = hex_numbers(line, 5)?;
    Ok(format!(
        "CPU {} read {} ns under sequence {}, then {} ns under sequence {}",
        n[0], n[2], n[1], n[4], n[3]
    ))
}

/// A reader's first torn reading (`cpu sequence status accumulated
/// run_start deadline`), in words.
fn describe_torn(line: &str) -> Result<String> {
    let n = hex_numbers(line, 6)?;
    Ok(format!(
        "CPU {} read sequence {} as (status code {}, accumulated {} ns, run start {} ns, deadline {} ns)",
        n[0], n[1], n[2], n[3], n[4], n[5]
    ))
}

/// A reader's first reading a lap exceeded (`cpu sequence status elapsed
/// slot lap`), in words.
fn describe_lap_over(line: &str) -> Result<String> {
    let n = hex_numbers(line, 6)?;
    Ok(format!(
        "CPU {} read {} ns under sequence {} (status code {}), but lap {} there is {} ns",
        n[0], n[3], n[1], n[2], n[4], n[5]
    ))
}

/// Which zero-exit read the guest's readers use (`reader=` of the boot
/// argument; `guest-kernel/src/drivers/stopwatch/zero_exit.rs`'s
/// `ReaderVariant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The driver's own read: every check must pass.
    Correct,
    /// Planted: no re-check of SEQUENCE after the fields. Its torn
    /// readings must match no published state.
    NoRecheck,
    /// Planted: the counter read after the section. Its elapsed time must
    /// be caught going backwards.
    CounterOutside,
}

impl Reader {
    /// The name the guest knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Reader::Correct => "correct",
            Reader::NoRecheck => "no-recheck",
            Reader::CounterOutside => "counter-outside",
        }
    }
}

/// What one run showed: the guest's counts and every reading that matched
/// nothing.
struct Outcome {
    summary: String,
    readings: u64,
    kept: u64,
    dropped: u64,
    backwards: u64,
    torn: u64,
    laps_checked: u64,
    laps_over: u64,
    errors: u64,
    /// One line per kept reading that matches no published state.
    unmatched: Vec<String>,
    /// The guest's lines naming the first reading of a failed check.
    first_backwards: Vec<String>,
    first_torn: Vec<String>,
    first_lap_over: Vec<String>,
    publications_seen: usize,
    publication_count: usize,
    seconds: f64,
}

impl Outcome {
    /// Why the run fails the checks, each failed check in one message, or
    /// `None`.
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let summary = &self.summary;
        if !self.unmatched.is_empty() {
            failures.push(format!(
                "{} of {} kept readings match no published state; first: {}",
                self.unmatched.len(),
                self.kept,
                self.unmatched[..self.unmatched.len().min(5)].join("; ")
            ));
        }
        if self.torn > 0 {
            failures.push(format!(
                "{} readings differ from the reading before under the same sequence (a torn page: the device publishes one state per sequence); first, per reader: {}",
                self.torn,
                self.first_torn.join("; ")
            ));
        }
        if self.backwards > 0 {
            failures.push(format!(
                "elapsed time went backwards {} times (within a run, or across one publication other than RESET); first, per reader: {}",
                self.backwards,
                self.first_backwards.join("; ")
            ));
        }
        if self.laps_over > 0 {
            failures.push(format!(
                "a lap exceeded the elapsed time read under the same sequence {} times (of {} checked); first, per reader: {}",
                self.laps_over,
                self.laps_checked,
                self.first_lap_over.join("; ")
            ));
        }
        if self.errors > 0 {
            failures.push(format!("unreadable time page: {summary}"));
        }
        failures
    }

    /// The numbers, for a passing run's line.
    fn describe(&self) -> String {
        format!(
            "{} readings, {} kept ({} dropped), {} lap checks; {} of {} publications seen, {:.1} s",
            self.readings,
            self.kept,
            self.dropped,
            self.laps_checked,
            self.publications_seen,
            self.publication_count,
            self.seconds
        )
    }
}

/// Boots `config` (CPUs from its `-smp`) in the `concurrency` mode with
/// the readers' read `reader` and checks every kept reading against the
/// trace.
fn run_checks(
    repo: &Repo,
    config: &VmConfig,
    reader: Reader,
    timeout: Duration,
) -> Result<Outcome> {
    let trace_path = std::env::temp_dir().join(format!(
        "stopwatch-concurrency-{}-{}-{}.trace",
        std::process::id(),
        reader.name(),
        crate::catalogue::slug(&config.to_string())
    ));
    let mut config = config.clone();
    config.tests = true;
    config.append = Some(match reader {
        Reader::Correct => "concurrency".to_string(),
        planted => format!("concurrency=reader={},{PLANTED_PACE}", planted.name()),
    });
    config.extra.extend([
        "-trace".to_string(),
        "stopwatch_time_page".to_string(),
        "-D".to_string(),
        trace_path.display().to_string(),
    ]);
    eprintln!("    {}", config.command_line(repo));
    let began = Instant::now();
    let mut console =
        SerialConsole::spawn(repo, &config, None)?.named(&format!("concurrency {config}"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung("no exit after the concurrency run", timeout));
    };
    let seconds = began.elapsed().as_secs_f64();
    let transcript = console.transcript();
    let trace = std::fs::read_to_string(&trace_path)
        .with_context(|| format!("reading the trace {}", trace_path.display()));
    std::fs::remove_file(&trace_path).ok();
    let trace = trace?;
    let summary = transcript
        .lines()
        .find(|line| line.starts_with("CONCURRENCY {"))
        .with_context(|| format!("QEMU exited ({status}) without a CONCURRENCY line"))?
        .trim()
        .to_string();
    ensure!(!summary.contains("\"error\""), "the guest said {summary}");
    ensure!(status.success(), "QEMU exited with {status}: {summary}");
    ensure!(
        summary.contains(&format!("\"reader\":\"{}\"", reader.name())),
        "the guest ran another reader than {}: {summary}",
        reader.name()
    );

    let published = publications(&trace)?;
    let publication_count: usize = published.values().map(HashSet::len).sum();
    let mut matched: HashSet<(u64, PageState)> = HashSet::new();
    let mut kept = 0u64;
    let mut unmatched = Vec::new();
    for line in transcript
        .lines()
        .filter(|line| line.starts_with("CONCURRENCY-READING "))
    {
        let (cpu, sequence, state) = reading(line.trim())?;
        kept += 1;
        if published
            .get(&sequence)
            .is_some_and(|states| states.contains(&state))
        {
            matched.insert((sequence, state));
        } else {
            unmatched.push(format!(
                "CPU {cpu} read sequence {sequence} as {state:?}, published: {:?}",
                published.get(&sequence)
            ));
        }
    }
    let lines_after = |prefix: &str| -> Vec<String> {
        transcript
            .lines()
            .filter_map(|line| line.trim().strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    let number = |name| summary_number(&summary, name);
    let outcome = Outcome {
        readings: number("readings")?,
        kept,
        dropped: number("dropped")?,
        backwards: number("backwards")?,
        torn: number("torn")?,
        laps_checked: number("laps_checked")?,
        laps_over: number("laps_over")?,
        errors: number("errors")?,
        unmatched,
        first_backwards: lines_after("CONCURRENCY-BACKWARDS ")
            .iter()
            .map(|line| describe_backwards(line))
            .collect::<Result<_>>()?,
        first_torn: lines_after("CONCURRENCY-TORN ")
            .iter()
            .map(|line| describe_torn(line))
            .collect::<Result<_>>()?,
        first_lap_over: lines_after("CONCURRENCY-LAP-OVER ")
            .iter()
            .map(|line| describe_lap_over(line))
            .collect::<Result<_>>()?,
        publications_seen: matched.len(),
        publication_count,
        seconds,
        summary: summary.clone(),
    };
    ensure!(
        kept == number("kept")?,
        "the guest kept more readings than it printed: {summary}"
    );
    ensure!(
        outcome.readings >= MIN_READINGS,
        "only {} readings (at least {MIN_READINGS} wanted): {summary}",
        outcome.readings
    );
    ensure!(kept > 0, "no reading kept: {summary}");
    Ok(outcome)
}

/// Boots `config` (CPUs from its `-smp`) in the `concurrency` mode and
/// checks every kept reading against the trace, and the guest's own
/// checks; `Ok` holds the numbers.
pub fn run(repo: &Repo, config: &VmConfig, timeout: Duration) -> Result<String> {
    let outcome = run_checks(repo, config, Reader::Correct, timeout)?;
    let failures = outcome.failures();
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    ensure!(
        outcome.laps_checked > 0,
        "no lap check ran: {}",
        outcome.summary
    );
    Ok(format!("all match; {}", outcome.describe()))
}

/// Boots `config` in the `concurrency` mode with a planted reader bug
/// (`PLANTED_PACE`) and checks that the checks fail, with the kinds of
/// failure that bug must cause; `Ok` holds the failure messages the checks
/// gave.
///
/// [`Reader::NoRecheck`]: a torn page (a reading that matches no
/// publication, or differs from the one before under its sequence), or a
/// time going backwards: the re-check also validates the counter read in
/// the section, so without it a counter read after the device's next
/// publication passes. Torn pages need a reader's thread descheduled in
/// the middle of its read (under TCG a read runs as one translation
/// block), which the 2-core host does often; the backwards time needs no
/// such luck. [`Reader::CounterOutside`]: time going backwards, and no
/// torn page (its page reads are checked).
pub fn run_planted(
    repo: &Repo,
    config: &VmConfig,
    reader: Reader,
    timeout: Duration,
) -> Result<String> {
    let outcome = run_checks(repo, config, reader, timeout)?;
    let torn_pages = outcome.unmatched.len() as u64 + outcome.torn;
    let (caught, expected) = match reader {
        Reader::Correct => bail!("the correct reader is no plant"),
        Reader::NoRecheck => (
            torn_pages + outcome.backwards > 0,
            "a torn page or elapsed time going backwards",
        ),
        Reader::CounterOutside => (
            outcome.backwards > 0 && torn_pages == 0,
            "elapsed time going backwards, and no torn page",
        ),
    };
    let failures = outcome.failures();
    ensure!(
        caught,
        "the planted reader {} was not caught as expected ({expected}): {}; {}",
        reader.name(),
        if failures.is_empty() {
            "every check passed".to_string()
        } else {
            failures.join("; ")
        },
        outcome.describe()
    );
    Ok(format!(
        "caught: {} readings match nothing, {} torn, {} backwards ({}): {}",
        outcome.unmatched.len(),
        outcome.torn,
        outcome.backwards,
        outcome.describe(),
        failures.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_trace_line_and_a_reading() {
        let trace = "123@1.5:stopwatch_time_page sw0: time page sequence 8 status RUNNING \
                     accumulated_ns 5 run_start_ns 7 deadline_ns 1000000000\n";
        let published = publications(trace).unwrap();
        assert!(published[&8].contains(&(0, 5, 7, 1_000_000_000)));
        let (cpu, sequence, state) = reading("CONCURRENCY-READING 1 8 0 5 7 3b9aca00").unwrap();
        assert_eq!((cpu, sequence, state), (1, 8, (0, 5, 7, 1_000_000_000)));
        let summary = "CONCURRENCY {\"readings\":12,\"kept\":3}";
        assert_eq!(summary_number(summary, "readings").unwrap(), 12);
        assert_eq!(summary_number(summary, "kept").unwrap(), 3);
        assert_eq!(
            describe_backwards("1 6a 10 6c f").unwrap(),
            "CPU 1 read 16 ns under sequence 106, then 15 ns under sequence 108"
        );
        assert_eq!(
            describe_torn("1 8 2 5 7 0").unwrap(),
            "CPU 1 read sequence 8 as (status code 2, accumulated 5 ns, run start 7 ns, deadline 0 ns)"
        );
        assert_eq!(
            describe_lap_over("2 40 0 a 1 b").unwrap(),
            "CPU 2 read 10 ns under sequence 64 (status code 0), but lap 1 there is 11 ns"
        );
    }
}
