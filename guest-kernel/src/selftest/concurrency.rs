// SPDX-License-Identifier: GPL-2.0-or-later
//! The time page under concurrency (boot argument `concurrency` or
//! `concurrency=OPTIONS`, see [`Options`]; test kernel). The system tests
//! `concurrency::time_page_readings_match_publications` and
//! `concurrency::planted_*` boot it with the device's
//! `stopwatch_time_page` trace on. `reader=` picks the readers' read
//! (`ReaderVariant`): the driver's own (`correct`, the default), or one of
//! the two planted bugs the checks must catch, `no-recheck` and
//! `counter-outside`; `commands=N` how many commands CPU 0 sends; `fast`
//! its pace; `until-caught` whether it goes on while no reader has failed
//! a check (the planted readers' runs).
//!
//! CPUs 1..N-1 run the zero-exit read in a tight loop and keep every
//! reading that differs from the one they kept last (so every change of
//! sequence, and any torn reading under a sequence already seen), while
//! CPU 0 drives stopwatch 0 with a seeded random mix of START, PAUSE,
//! RESET, LAP, short TIMEOUT_NS and TIMEOUT_ACK (the timeouts fire from
//! QEMU's timer, the handler acknowledges them); after each command it
//! gives the readers up to `SEEN_PATIENCE_NS` to see the page it left,
//! so that a loaded host, which may not run a reader's thread for a
//! while, still has most publications read (not with `fast`). At the end
//! it prints the kept readings, one a line:
//!
//! `CONCURRENCY-READING cpu sequence status accumulated_ns run_start_ns deadline_ns`
//!
//! (numbers in hex, the status as its code), then each reader's first
//! failure of each check below, if any, naming the reading (hex):
//!
//! `CONCURRENCY-BACKWARDS cpu sequence_before elapsed_before sequence elapsed`
//! `CONCURRENCY-TORN cpu sequence status accumulated_ns run_start_ns deadline_ns`
//! `CONCURRENCY-LAP-OVER cpu sequence status elapsed slot lap`
//!
//! then
//!
//! `CONCURRENCY {"seed":..,"reader":"..","readers":..,"commands":..,"fast":..,"readings":..,"kept":..,"dropped":..,"backwards":..,"torn":..,"laps_checked":..,"laps_over":..,"errors":..}`
//!
//! The host compares each kept reading with what the device published for
//! its sequence. Checked here, by each reader over its own readings (the
//! summary's counts are the failures):
//! - `torn`: a reading differs from the one before it under the same
//!   sequence (the device publishes one state per sequence). Unlike the
//!   host's comparison, not limited by the kept readings' room.
//! - `laps_over`: every lap the page holds is at most the elapsed time
//!   read under the same sequence (give or take one counter tick while
//!   running: the counter counts whole ticks); checked at every change of
//!   reading, with the laps read between two readings of the same
//!   sequence.
//! - `backwards`: the elapsed time never goes backwards within one run of
//!   RUNNING (same accumulated time and run start), nor across exactly one
//!   publication other than a RESET (the sequence 2 further on): START,
//!   PAUSE, LAP and timeouts keep time moving forward. The second catches
//!   a reader whose counter is read after the section: its elapsed time
//!   then runs past the PAUSE that ended the run it read. (Under TCG the
//!   counter read takes QEMU's big lock, which the device holds from its
//!   clock read to its publication, so a counter read inside the section
//!   never lands between them.)

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::arch::cpu::{self, MAX_CPUS};
use crate::arch::timer;
use crate::drivers::stopwatch::zero_exit::{ReaderVariant, TimePageError, ZeroExitReading};
use crate::drivers::stopwatch::Stopwatch;
use crate::smp::{self, Job};
use crate::{devices, println};
use stopwatch_abi::Status;
use stopwatch_test_rng::TestRng;

/// Commands CPU 0 sends, unless `commands=N` says otherwise.
const COMMANDS: usize = 900;
/// The longest pause between two commands.
const MAX_GAP_NS: u64 = 1_500_000;
/// The longest pause between two commands with `fast`.
const FAST_MAX_GAP_NS: u64 = 1_000_000;
/// How long CPU 0 waits, after a command, for the readers to see it.
const SEEN_PATIENCE_NS: u64 = 5_000_000;
/// The shortest and longest TIMEOUT_NS argument.
const TIMEOUT_RANGE_NS: (u64, u64) = (10_000, 2_000_000);
/// Readings the readers keep at most, together, shared out equally
/// (each command publishes about once). Small: the image must stay within
/// the 1 MiB that PC-relative addressing reaches from its code.
const KEPT_IN_ALL: usize = 1536;
/// Readers with a buffer (CPUs 1..=READERS_KEEPING); more read but keep nothing.
const READERS_KEEPING: usize = 3;
/// With `until-caught`: the most rounds of `commands` commands CPU 0 sends
/// while no reader has failed a check.
const UNTIL_CAUGHT_ROUNDS: usize = 8;
/// How long a reader may take to start and to stop.
const JOB_TIMEOUT_NS: u64 = 5_000_000_000;
/// The seed without `=SEED`.
pub const DEFAULT_SEED: u64 = 0x5eed_c0ff_ee15_600d;

/// What the boot argument asks for: `SEED`, `reader=NAME`, `commands=N`,
/// `fast`, `until-caught`, comma-separated, each optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The commands' random generator's seed (`SEED`).
    pub seed: u64,
    /// The readers' read (`reader=correct|no-recheck|counter-outside`).
    pub reader: ReaderVariant,
    /// How many commands CPU 0 sends (`commands=N`).
    pub commands: usize,
    /// `fast`: CPU 0 sends its commands at most [`FAST_MAX_GAP_NS`]
    /// apart and does not wait for the readers to see each publication:
    /// more publications while a reader's thread is descheduled in the
    /// middle of its read, which is when a reader without its re-check
    /// tears (the planted readers' runs).
    pub fast: bool,
    /// `until-caught`: after `commands` commands, CPU 0 sends `commands`
    /// more while no reader has counted a torn or backwards reading, up to
    /// [`UNTIL_CAUGHT_ROUNDS`] rounds in all. A planted reader's run then
    /// catches it on a loaded host too, where the readers and the writer
    /// overlap less, and ends as soon as it has on an idle one.
    pub until_caught: bool,
}

impl Options {
    /// No `=...`: the default seed, the driver's reader.
    pub const DEFAULT: Options = Options {
        seed: DEFAULT_SEED,
        reader: ReaderVariant::Correct,
        commands: COMMANDS,
        fast: false,
        until_caught: false,
    };

    /// The options in `text` (after `concurrency=`); `None` if a part is
    /// not understood.
    pub fn parse(text: &str) -> Option<Options> {
        let mut options = Options::DEFAULT;
        for part in text.split(',') {
            if let Some(name) = part.strip_prefix("reader=") {
                options.reader = ReaderVariant::from_name(name)?;
            } else if part == "fast" {
                options.fast = true;
            } else if part == "until-caught" {
                options.until_caught = true;
            } else if let Some(count) = part.strip_prefix("commands=") {
                options.commands = count.parse().ok()?;
            } else {
                options.seed = part.parse().ok()?;
            }
        }
        Some(options)
    }
}

/// Which read the readers use ([`Options::reader`]), set before they start.
static READER_VARIANT: AtomicU8 = AtomicU8::new(0);

/// [`READER_VARIANT`]'s values, by [`ReaderVariant`].
const VARIANTS: [ReaderVariant; 3] = [
    ReaderVariant::Correct,
    ReaderVariant::NoRecheck,
    ReaderVariant::CounterOutside,
];

/// Readers started and reading.
static READY: AtomicUsize = AtomicUsize::new(0);
/// Set by CPU 0 when the readers must stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// Torn and backwards readings counted so far by all readers, for
/// `until-caught` (Relaxed: CPU 0 only needs to see it grow eventually).
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// One kept reading.
struct Kept {
    /// Sequence in the high 32 bits, status code in the low.
    sequence_status: AtomicU64,
    accumulated_ns: AtomicU64,
    run_start_ns: AtomicU64,
    deadline_ns: AtomicU64,
}

/// What one reader did. Atomics only so the static needs no `unsafe`:
/// each reader writes its own, CPU 0 reads them after `wait_done`.
struct Reader {
    /// The sequence of the last reading that differed from the one before.
    seen: AtomicU32,
    /// Readings kept (at most its share of [`KEPTS`]).
    kept_count: AtomicUsize,
    /// Readings that differed from the last kept one but found no room.
    dropped: AtomicU64,
    /// Successful reads.
    readings: AtomicU64,
    /// Reads that failed (the page stayed unreadable for its patience).
    errors: AtomicU64,
    /// Times the elapsed time went backwards (see the module's comment).
    backwards: AtomicU64,
    /// The first time: (sequence, elapsed) before and after.
    first_backwards: [AtomicU64; 4],
    /// Readings that differ from the reading before under the same
    /// sequence (torn: the device publishes one state per sequence).
    torn: AtomicU64,
    /// The first: sequence << 32 | status, accumulated, run start, deadline.
    first_torn: [AtomicU64; 4],
    /// Laps checked against a reading of the same sequence.
    laps_checked: AtomicU64,
    /// Readings a lap of the same sequence exceeded.
    laps_over: AtomicU64,
    /// The first: sequence << 32 | status, elapsed, slot, lap.
    first_lap_over: [AtomicU64; 4],
}

/// The kept readings: reader R (CPU R+1) has the R-th of `readers` equal
/// shares.
static KEPTS: [Kept; KEPT_IN_ALL] = [const {
    Kept {
        sequence_status: AtomicU64::new(0),
        accumulated_ns: AtomicU64::new(0),
        run_start_ns: AtomicU64::new(0),
        deadline_ns: AtomicU64::new(0),
    }
}; KEPT_IN_ALL];

/// Reader R's share of [`KEPTS`] when `readers` keep.
fn share_of(reader: usize, readers: usize) -> &'static [Kept] {
    let size = KEPT_IN_ALL / readers;
    &KEPTS[reader * size..(reader + 1) * size]
}

/// By CPU index minus one.
static READERS: [Reader; READERS_KEEPING] = [const {
    Reader {
        kept_count: AtomicUsize::new(0),
        seen: AtomicU32::new(0),
        dropped: AtomicU64::new(0),
        readings: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        backwards: AtomicU64::new(0),
        first_backwards: [const { AtomicU64::new(0) }; 4],
        torn: AtomicU64::new(0),
        first_torn: [const { AtomicU64::new(0) }; 4],
        laps_checked: AtomicU64::new(0),
        laps_over: AtomicU64::new(0),
        first_lap_over: [const { AtomicU64::new(0) }; 4],
    }
}; READERS_KEEPING];

/// Runs the mode and prints its result.
pub fn run_and_print(stopwatch: Option<&Stopwatch>, options: Options) {
    let Options {
        seed,
        reader,
        commands,
        fast,
        until_caught,
    } = options;
    let Some(stopwatch) = stopwatch else {
        println!("CONCURRENCY {{\"error\":\"no stopwatch device\"}}");
        return;
    };
    if let Err(error) = stopwatch.read_time_page() {
        println!("CONCURRENCY {{\"error\":\"{error}\"}}");
        return;
    }
    let online = smp::online();
    if online < 2 {
        println!("CONCURRENCY {{\"error\":\"one CPU online: nobody to read\"}}");
        return;
    }
    println!(
        "concurrency: seed {seed:#x}, {} readers, reader {}",
        online - 1,
        reader.name()
    );
    let variant = VARIANTS.iter().position(|&v| v == reader).unwrap_or(0);
    READER_VARIANT.store(variant as u8, Ordering::Relaxed);
    stopwatch.reset();
    STOP.store(false, Ordering::Relaxed);
    READY.store(0, Ordering::Relaxed);
    let keeping = (online - 1).min(READERS_KEEPING);
    let mut tickets = [0u64; MAX_CPUS];
    for (cpu, ticket) in tickets.iter_mut().enumerate().take(online).skip(1) {
        match smp::post(
            cpu,
            Job {
                run: read,
                argument: keeping,
            },
        ) {
            Ok(posted) => *ticket = posted,
            Err(_) => {
                println!("CONCURRENCY {{\"error\":\"CPU {cpu} took no job\"}}");
                return;
            }
        }
    }
    let patience = timer::counter() + timer::clock().ns_to_ticks(JOB_TIMEOUT_NS);
    while READY.load(Ordering::Acquire) < online - 1 {
        if timer::counter() > patience {
            println!("CONCURRENCY {{\"error\":\"a reader did not start\"}}");
            return;
        }
        core::hint::spin_loop();
    }
    CAUGHT.store(0, Ordering::Relaxed);
    let rounds = if until_caught { UNTIL_CAUGHT_ROUNDS } else { 1 };
    let mut sent = 0;
    let mut random = TestRng::new(seed);
    for _ in 0..rounds {
        drive(stopwatch, &mut random, commands, keeping, fast);
        sent += commands;
        if CAUGHT.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    STOP.store(true, Ordering::Release);
    for (cpu, &ticket) in tickets.iter().enumerate().take(online).skip(1) {
        if !smp::wait_done(cpu, ticket, JOB_TIMEOUT_NS) {
            println!("CONCURRENCY {{\"error\":\"CPU {cpu} did not stop\"}}");
            return;
        }
    }
    stopwatch.reset();
    let (mut readings, mut kept, mut dropped, mut backwards, mut errors) = (0, 0, 0, 0, 0);
    let (mut laps_checked, mut laps_over, mut torn) = (0, 0, 0);
    for (cpu, reader) in (1..online).zip(&READERS) {
        let count = reader.kept_count.load(Ordering::Acquire);
        for entry in &share_of(cpu - 1, keeping)[..count] {
            let sequence_status = entry.sequence_status.load(Ordering::Relaxed);
            println!(
                "CONCURRENCY-READING {cpu} {:x} {} {:x} {:x} {:x}",
                sequence_status >> 32,
                sequence_status & 0xffff_ffff,
                entry.accumulated_ns.load(Ordering::Relaxed),
                entry.run_start_ns.load(Ordering::Relaxed),
                entry.deadline_ns.load(Ordering::Relaxed),
            );
        }
        let load = |values: &[AtomicU64; 4]| values.each_ref().map(|v| v.load(Ordering::Relaxed));
        if reader.backwards.load(Ordering::Relaxed) > 0 {
            let [sequence_before, elapsed_before, sequence, elapsed] =
                load(&reader.first_backwards);
            println!(
                "CONCURRENCY-BACKWARDS {cpu} {sequence_before:x} {elapsed_before:x} {sequence:x} {elapsed:x}"
            );
        }
        if reader.torn.load(Ordering::Relaxed) > 0 {
            let [sequence_status, accumulated, run_start, deadline] = load(&reader.first_torn);
            println!(
                "CONCURRENCY-TORN {cpu} {:x} {:x} {accumulated:x} {run_start:x} {deadline:x}",
                sequence_status >> 32,
                sequence_status & 0xffff_ffff,
            );
        }
        if reader.laps_over.load(Ordering::Relaxed) > 0 {
            let [sequence_status, elapsed, slot, lap] = load(&reader.first_lap_over);
            println!(
                "CONCURRENCY-LAP-OVER {cpu} {:x} {:x} {elapsed:x} {slot:x} {lap:x}",
                sequence_status >> 32,
                sequence_status & 0xffff_ffff,
            );
        }
        kept += count as u64;
        readings += reader.readings.load(Ordering::Relaxed);
        dropped += reader.dropped.load(Ordering::Relaxed);
        backwards += reader.backwards.load(Ordering::Relaxed);
        torn += reader.torn.load(Ordering::Relaxed);
        laps_checked += reader.laps_checked.load(Ordering::Relaxed);
        laps_over += reader.laps_over.load(Ordering::Relaxed);
        errors += reader.errors.load(Ordering::Relaxed);
    }
    println!(
        "CONCURRENCY {{\"seed\":{seed},\"reader\":\"{}\",\"readers\":{},\"commands\":{sent},\"fast\":{fast},\"readings\":{readings},\"kept\":{kept},\"dropped\":{dropped},\"backwards\":{backwards},\"torn\":{torn},\"laps_checked\":{laps_checked},\"laps_over\":{laps_over},\"errors\":{errors}}}",
        reader.name(),
        online - 1
    );
}

/// CPU 0's part: `commands` seeded random commands, with random gaps.
/// `keeping`: the readers that keep readings, to wait for after each
/// command unless `fast`.
fn drive(stopwatch: &Stopwatch, random: &mut TestRng, commands: usize, keeping: usize, fast: bool) {
    let max_gap_ns = if fast { FAST_MAX_GAP_NS } else { MAX_GAP_NS };
    let clock = timer::clock();
    for _ in 0..commands {
        // START and PAUSE twice as often: a PAUSE that ends a run is
        // where a counter read outside the section shows.
        match random.next_u64() % 8 {
            0 | 1 => stopwatch.start(),
            2 | 3 => stopwatch.pause(),
            4 => stopwatch.reset(),
            // With every slot taken the device refuses LAP: reset instead.
            5 if stopwatch.laps().is_ok_and(|laps| laps.is_full()) => stopwatch.reset(),
            5 => stopwatch.lap(),
            6 => stopwatch.timeout_ns(random.in_range(TIMEOUT_RANGE_NS.0..=TIMEOUT_RANGE_NS.1)),
            _ => stopwatch.ack(),
        }
        // Give the readers the chance to see what the command published
        // (on a loaded host a reader's thread may not run for a while),
        // so that most publications are checked, not only some.
        let left = if fast {
            None
        } else {
            stopwatch.read_zero_exit().ok()
        };
        if let Some(reading) = left {
            let patience = timer::counter() + clock.ns_to_ticks(SEEN_PATIENCE_NS);
            while READERS[..keeping]
                .iter()
                .any(|reader| reader.seen.load(Ordering::Relaxed) < reading.sequence)
                && timer::counter() < patience
            {
                core::hint::spin_loop();
            }
        }
        let gap_ns = random.in_range(0..=max_gap_ns);
        if fast {
            // Asleep: the readers have the host's cores and QEMU's lock.
            timer::wait_ns(gap_ns);
        } else {
            let until = timer::counter() + clock.ns_to_ticks(gap_ns);
            while timer::counter() < until {
                core::hint::spin_loop();
            }
        }
    }
}

/// The zero-exit read of `variant`: the driver's own for
/// [`ReaderVariant::Correct`], so that the test checks exactly the read the
/// kernel uses.
#[inline(always)]
fn read_as(
    stopwatch: &Stopwatch,
    variant: ReaderVariant,
) -> Result<ZeroExitReading, TimePageError> {
    match variant {
        ReaderVariant::Correct => stopwatch.read_zero_exit(),
        planted => stopwatch.read_zero_exit_with(planted),
    }
}

/// Stores `values` as a reader's first failure of a kind.
fn remember(first: &[AtomicU64; 4], values: [u64; 4]) {
    for (slot, value) in first.iter().zip(values) {
        slot.store(value, Ordering::Relaxed);
    }
}

/// A reader's job (CPUs 1..N-1): reads until told to stop, keeping every
/// reading that differs from the last one kept.
/// `keeping`: how many readers share [`KEPTS`].
fn read(keeping: usize) {
    let Some(stopwatch) = devices::stopwatch(0) else {
        return;
    };
    let variant = VARIANTS[usize::from(READER_VARIANT.load(Ordering::Relaxed)) % VARIANTS.len()];
    let slot = cpu::index().wrapping_sub(1);
    let Some(mine) = READERS.get(slot) else {
        // A reader beyond those with a buffer: only its load counts.
        READY.fetch_add(1, Ordering::AcqRel);
        while !STOP.load(Ordering::Relaxed) {
            let _ = core::hint::black_box(read_as(stopwatch, variant));
        }
        return;
    };
    READY.fetch_add(1, Ordering::AcqRel);
    // A running reading's counter counts whole ticks (and the conversion
    // rounds down): a lap recorded a moment before may exceed it by that.
    let tick_ns = timer::clock().tick_ns() + 1;
    let (mut readings, mut errors, mut backwards, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let (mut laps_checked, mut laps_over, mut torn) = (0u64, 0u64, 0u64);
    let mut kept = 0usize;
    let my_kepts = share_of(slot, keeping);
    // The last kept (sequence_status, accumulated, run start, deadline).
    let mut last = (u64::MAX, 0, 0, 0);
    // The last RUNNING reading: (accumulated, run start, sequence, elapsed).
    let mut last_running: Option<(u64, u64, u32, u64)> = None;
    // The last reading: (sequence, elapsed).
    let mut previous: Option<(u32, u64)> = None;
    let mut went_backwards = |before: (u32, u64), after: (u32, u64)| {
        if backwards == 0 {
            remember(
                &mine.first_backwards,
                [u64::from(before.0), before.1, u64::from(after.0), after.1],
            );
        }
        backwards += 1;
        CAUGHT.fetch_add(1, Ordering::Relaxed);
    };
    while !STOP.load(Ordering::Relaxed) {
        let Ok(reading) = read_as(stopwatch, variant) else {
            errors += 1;
            continue;
        };
        readings += 1;
        let snapshot = &reading.snapshot;
        let now = (reading.sequence, reading.elapsed_ns);
        if let Some((sequence, elapsed)) = previous {
            if reading.sequence == sequence.wrapping_add(2)
                && snapshot.status != Status::Reset
                && reading.elapsed_ns < elapsed
            {
                went_backwards((sequence, elapsed), now);
            }
        }
        previous = Some(now);
        if reading.counter.is_some() {
            let run = (snapshot.accumulated_ns, snapshot.run_start_ns);
            if let Some((accumulated, run_start, sequence, elapsed)) = last_running {
                if (accumulated, run_start) == run && reading.elapsed_ns < elapsed {
                    went_backwards((sequence, elapsed), now);
                }
            }
            last_running = Some((run.0, run.1, reading.sequence, reading.elapsed_ns));
        }
        let this = (
            (u64::from(reading.sequence) << 32) | snapshot.status.code(),
            snapshot.accumulated_ns,
            snapshot.run_start_ns,
            snapshot.timeout_deadline_ns,
        );
        if this != last {
            if this.0 >> 32 == last.0 >> 32 {
                if torn == 0 {
                    remember(&mine.first_torn, [this.0, this.1, this.2, this.3]);
                }
                torn += 1;
                CAUGHT.fetch_add(1, Ordering::Relaxed);
            }
            last = this;
            mine.seen.store(reading.sequence, Ordering::Relaxed);
            match my_kepts.get(kept) {
                Some(entry) => {
                    entry.sequence_status.store(this.0, Ordering::Relaxed);
                    entry.accumulated_ns.store(this.1, Ordering::Relaxed);
                    entry.run_start_ns.store(this.2, Ordering::Relaxed);
                    entry.deadline_ns.store(this.3, Ordering::Relaxed);
                    kept += 1;
                }
                None => dropped += 1,
            }
            // The laps, read between this reading and another of the same
            // sequence (it only grows), are the laps of this publication:
            // none may exceed this reading's elapsed time.
            if let (Ok(laps), Ok(again)) = (stopwatch.laps(), stopwatch.read_zero_exit()) {
                if again.sequence == reading.sequence {
                    laps_checked += 1;
                    let allowance = if reading.counter.is_some() {
                        tick_ns
                    } else {
                        0
                    };
                    let over = laps
                        .as_slice()
                        .iter()
                        .enumerate()
                        .find(|&(_, &lap)| lap > reading.elapsed_ns + allowance);
                    if let Some((lap_slot, &lap)) = over {
                        if laps_over == 0 {
                            remember(
                                &mine.first_lap_over,
                                [this.0, reading.elapsed_ns, lap_slot as u64, lap],
                            );
                        }
                        laps_over += 1;
                    }
                }
            }
        }
    }
    mine.readings.store(readings, Ordering::Relaxed);
    mine.errors.store(errors, Ordering::Relaxed);
    mine.backwards.store(backwards, Ordering::Relaxed);
    mine.torn.store(torn, Ordering::Relaxed);
    mine.laps_checked.store(laps_checked, Ordering::Relaxed);
    mine.laps_over.store(laps_over, Ordering::Relaxed);
    mine.dropped.store(dropped, Ordering::Relaxed);
    // Release: CPU 0 reads the kept readings after it sees the count.
    mine.kept_count.store(kept, Ordering::Release);
}
