// SPDX-License-Identifier: GPL-2.0-or-later
//! The zero-exit reads: the time page, in the shared region, read under
//! its sequence counter, and the guest counter read inside that section;
//! no exit to QEMU. This is the bench's hot path
//! (`docs/performance.md`): everything on it is always inlined.

use core::fmt;

use stopwatch_abi::{time_page, Status, TimeSnapshot};

use super::{Stopwatch, TIME_PAGE_PATIENCE_MS};
use crate::arch::timer;

/// A time read from the time page, without any exit.
#[derive(Clone, Copy, Debug)]
pub struct ZeroExitReading {
    /// Elapsed stopwatch time.
    pub elapsed_ns: u64,
    /// The consistent snapshot it was computed from.
    pub snapshot: TimeSnapshot,
    /// The guest counter value used, in ticks; `None` when the stopwatch
    /// was not running: its elapsed time is then the page's accumulated
    /// time, exact, and no counter read is needed.
    #[cfg_attr(not(feature = "selftest"), allow(dead_code))]
    pub counter: Option<u64>,
    /// The page's SEQUENCE the reading was validated under (for the
    /// concurrency test, which matches readings with publications).
    #[cfg(feature = "selftest")]
    pub sequence: u32,
}

/// The device-clock time (what the time page's fields count) at guest
/// counter value `counter`: its nanoseconds plus the page's clock offset.
pub fn device_time_ns(snapshot: &TimeSnapshot, counter: u64) -> u64 {
    timer::clock()
        .ticks_to_ns(counter)
        .saturating_add_signed(snapshot.clock_offset_ns)
}

/// Why the time page gave no snapshot.
///
/// A whole word: in a `Result` with a snapshot it then overlays a whole
/// field, which keeps the copies word-sized (the target has strict
/// alignment; a byte-sized error made the compiler split a field in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum TimePageError {
    /// The device has none (an original device): read the time with UPDATE.
    Absent,
    /// SEQUENCE stayed odd (mid-update) for [`TIME_PAGE_PATIENCE_MS`].
    SequenceStuckOdd,
    /// SEQUENCE changed during every read for [`TIME_PAGE_PATIENCE_MS`].
    SequenceUnstable,
    /// The status field held an invalid code for [`TIME_PAGE_PATIENCE_MS`].
    InvalidStatus,
}

impl fmt::Display for TimePageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimePageError::Absent => "no time page (original device)",
            TimePageError::SequenceStuckOdd => "time page unreadable (sequence stuck odd)",
            TimePageError::SequenceUnstable => {
                "time page unreadable (sequence changing on every read)"
            }
            TimePageError::InvalidStatus => "time page unreadable (invalid status code)",
        })
    }
}

/// A reader's first failed attempt at the time page: when it failed, and
/// whether an attempt has failed since the patience ran out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FirstFailure {
    /// The guest counter at the first failure.
    at: u64,
    /// An attempt has failed after the deadline already.
    deadline_seen: bool,
}

/// After a failed read of the time page: whether to give up. Not before
/// [`TIME_PAGE_PATIENCE_MS`] have passed since the first failure
/// (`first_failure`, set by the first call), and not before an attempt
/// begun after that has failed too: a reader that was not running through
/// the deadline (its vCPU descheduled by the host) has learnt nothing about
/// the writer from its one slow attempt, so it gets one more. A writer stuck
/// mid-update fails every attempt: the reader gives up one attempt after
/// the deadline.
#[cold]
#[inline(never)]
pub(super) fn patience_exhausted(first_failure: &mut Option<FirstFailure>) -> bool {
    let limit = timer::clock().frequency_hz * TIME_PAGE_PATIENCE_MS / 1000;
    patience_exhausted_at(first_failure, timer::counter(), limit)
}

/// [`patience_exhausted`] at counter value `now`, with a patience of
/// `limit` counter ticks.
pub(crate) fn patience_exhausted_at(
    first_failure: &mut Option<FirstFailure>,
    now: u64,
    limit: u64,
) -> bool {
    let first = first_failure.get_or_insert(FirstFailure {
        at: now,
        deadline_seen: false,
    });
    if now - first.at <= limit {
        return false;
    }
    core::mem::replace(&mut first.deadline_seen, true)
}

/// What one pass over the time page's protected section loaded.
struct PageSection {
    sequence: u32,
    status: u32,
    accumulated_ns: u64,
    run_start_ns: u64,
    clock_offset_ns: u64,
    timeout_deadline_ns: u64,
    /// The guest counter, read inside the section; meaningful only if
    /// asked for and `status` is RUNNING.
    counter: u64,
    sequence_after: u32,
}

// The section loads the page's fields in pairs, and tests RUNNING against 0.
const _: () = {
    assert!(time_page::RUN_START_NS == time_page::ACCUMULATED_NS + 8);
    assert!(time_page::TIMEOUT_DEADLINE_NS == time_page::CLOCK_OFFSET_NS + 8);
    assert!(time_page::ACCUMULATED_NS.is_multiple_of(8));
    assert!(time_page::CLOCK_OFFSET_NS.is_multiple_of(8));
    assert!(Status::Running.code() == 0);
};

/// The time page's protected section in one piece of assembly: SEQUENCE;
/// `dmb ishld`; the fields; with `with_counter` and a RUNNING status the
/// counter (`isb`, `mrs`, and Linux's arm64 `arch_counter_enforce_ordering`:
/// a stack load whose address depends on the value, so the closing barrier
/// orders the counter read before the re-check); `dmb ishld`; SEQUENCE
/// again.
///
/// Assembly rather than Rust for two reasons: the order of the loads, the
/// barriers and the counter read is the whole correctness argument of a
/// seqlock reader, and here it is written down exactly; and LLVM's machine
/// outliner cannot split it into calls (it moved the field loads of the
/// compiled version into a shared function: a call and a return, each a
/// translation-block lookup under TCG, on the hot path).
///
/// # Safety
///
/// `page` must point to a readable, 8-byte aligned time page (RAM).
#[inline(always)]
unsafe fn read_page_section(page: *const u8, with_counter: bool) -> PageSection {
    let (sequence, status, sequence_after): (u32, u32, u32);
    let (accumulated_ns, run_start_ns, clock_offset_ns, timeout_deadline_ns): (u64, u64, u64, u64);
    let mut counter: u64 = 0;
    // Both variants are one macro so that they cannot drift apart.
    macro_rules! section {
        ($($counter_read:literal),*; $($counter_operands:tt)*) => {
            // SAFETY: The caller's promise: loads from the page, and (in
            // the counter read) from the stack pointer, always readable.
            unsafe {
                core::arch::asm!(
                    "ldr {sequence:w}, [{page}, #{SEQUENCE}]",
                    "dmb ishld",
                    "ldr {status:w}, [{page}, #{STATUS}]",
                    "ldp {accumulated}, {run_start}, [{page}, #{ACCUMULATED}]",
                    "ldp {offset}, {deadline}, [{page}, #{CLOCK_OFFSET}]",
                    $($counter_read,)*
                    "dmb ishld",
                    "ldr {after:w}, [{page}, #{SEQUENCE}]",
                    page = in(reg) page,
                    sequence = out(reg) sequence,
                    status = out(reg) status,
                    accumulated = out(reg) accumulated_ns,
                    run_start = out(reg) run_start_ns,
                    offset = out(reg) clock_offset_ns,
                    deadline = out(reg) timeout_deadline_ns,
                    after = out(reg) sequence_after,
                    $($counter_operands)*
                    SEQUENCE = const time_page::SEQUENCE,
                    STATUS = const time_page::STATUS,
                    ACCUMULATED = const time_page::ACCUMULATED_NS,
                    CLOCK_OFFSET = const time_page::CLOCK_OFFSET_NS,
                    options(nostack, readonly, preserves_flags),
                )
            }
        };
    }
    if with_counter {
        section!(
            // Not RUNNING (code 0): the page alone has the time.
            "cbnz {status:w}, 2f",
            "isb",
            "mrs {counter}, cntvct_el0",
            "eor {zero}, {counter}, {counter}",
            "add {zero}, sp, {zero}",
            "ldr xzr, [{zero}]",
            "2:";
            // Left at 0 when not running.
            counter = inout(reg) counter,
            zero = out(reg) _,
        );
    } else {
        section!(;);
    }
    PageSection {
        sequence,
        status,
        accumulated_ns,
        run_start_ns,
        clock_offset_ns,
        timeout_deadline_ns,
        counter,
        sequence_after,
    }
}

/// One attempt at reading the page, as the interface describes it;
/// with `with_counter`, and if the page says RUNNING, also the guest
/// counter, read inside the protected section (before the closing
/// re-check of SEQUENCE, which validates the status it depends on).
///
/// # Safety
///
/// As [`read_page_section`].
#[inline(always)]
unsafe fn try_read_time_page(
    page: *const u8,
    with_counter: bool,
) -> Result<(TimeSnapshot, Option<u64>, u32), TimePageError> {
    // SAFETY: The caller's promise.
    let fields = unsafe { read_page_section(page, with_counter) };
    if fields.sequence & 1 != 0 {
        // The device was writing the page.
        return Err(TimePageError::SequenceStuckOdd);
    }
    if fields.sequence_after != fields.sequence {
        return Err(TimePageError::SequenceUnstable);
    }
    // The device only ever publishes valid status codes.
    let status = Status::from_code(u64::from(fields.status)).ok_or(TimePageError::InvalidStatus)?;
    let counter = (with_counter && status == Status::Running).then_some(fields.counter);
    Ok((
        TimeSnapshot {
            status,
            accumulated_ns: fields.accumulated_ns,
            run_start_ns: fields.run_start_ns,
            clock_offset_ns: fields.clock_offset_ns as i64,
            timeout_deadline_ns: fields.timeout_deadline_ns,
        },
        counter,
        fields.sequence,
    ))
}

impl Stopwatch {
    /// Reads the time page under its sequence counter and computes the
    /// elapsed time from the guest counter: no exit to QEMU. The counter is
    /// read inside the sequence's protected section (as Linux's arm64
    /// vDSO does): a snapshot is only ever paired with a counter value read
    /// while it was current. A stopwatch that is not running needs no
    /// counter read at all.
    ///
    /// Always inlined, as are the helpers it uses: under TCG every call and
    /// return is a translation-block lookup, and out of line this read cost
    /// twice its floor (the page read plus one counter read).
    #[inline(always)]
    pub fn read_zero_exit(&self) -> Result<ZeroExitReading, TimePageError> {
        let (snapshot, counter, sequence) = self.read_consistently(true)?;
        Ok(self.reading(snapshot, counter, sequence))
    }

    /// The reading a consistent section gave: the elapsed time at its
    /// counter value while running, the accumulated time otherwise.
    #[inline(always)]
    fn reading(
        &self,
        snapshot: TimeSnapshot,
        counter: Option<u64>,
        _sequence: u32,
    ) -> ZeroExitReading {
        let elapsed_ns = match counter {
            Some(counter) => snapshot.elapsed_ns_at_counter(self.clock.ticks_to_ns(counter)),
            None => snapshot.accumulated_ns,
        };
        ZeroExitReading {
            elapsed_ns,
            snapshot,
            counter,
            #[cfg(feature = "selftest")]
            sequence: _sequence,
        }
    }

    /// One consistent snapshot of the time page, retrying while the device
    /// writes it, for at most [`TIME_PAGE_PATIENCE_MS`]; then the last
    /// attempt's reason. The page is guest-writable RAM: the device model
    /// always completes its updates, but whatever else wrote there (a stray
    /// store, another device at that address) may not have.
    ///
    /// Always inlined: where it is used in a loop (the bench), a call and
    /// the snapshot's return through memory cost as much as the page read.
    #[inline(always)]
    pub fn read_time_page(&self) -> Result<TimeSnapshot, TimePageError> {
        self.read_consistently(false)
            .map(|(snapshot, _, _)| snapshot)
    }

    /// Attempts [`try_read_time_page`] until one succeeds or
    /// [`TIME_PAGE_PATIENCE_MS`] have passed since the first failure. Only
    /// a failed attempt calls out, to [`patience_exhausted`]. (No closures
    /// on this path: they are not inlined as reliably.)
    #[inline(always)]
    fn read_consistently(
        &self,
        with_counter: bool,
    ) -> Result<(TimeSnapshot, Option<u64>, u32), TimePageError> {
        let Some(page) = self.time_page else {
            return Err(TimePageError::Absent);
        };
        let mut first_failure = None;
        loop {
            // SAFETY: `page` is the time page `new` found, in the
            // pass-through region (RAM, not MMIO): mapped, as long as the
            // page, 8-byte aligned.
            match unsafe { try_read_time_page(page.as_ptr(), with_counter) } {
                Ok(value) => return Ok(value),
                Err(error) if patience_exhausted(&mut first_failure) => return Err(error),
                Err(_) => core::hint::spin_loop(),
            }
        }
    }
}

/// Which zero-exit reader the concurrency test runs (test kernel only):
/// the driver's own, or one of two planted bugs that the test must catch
/// (`-append concurrency=SEED,reader=NAME`). The planted ones load the same
/// page with the same single-register loads; only their order or their
/// check is wrong.
#[cfg(feature = "selftest")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderVariant {
    /// [`Stopwatch::read_zero_exit`].
    Correct,
    /// Planted: reads SEQUENCE (retrying while odd) and the fields, but
    /// never compares SEQUENCE again after them, so it accepts a page the
    /// device rewrote meanwhile (a torn reading, under the old sequence).
    NoRecheck,
    /// Planted: reads the counter after the section's closing re-check, so
    /// a snapshot that was current may be paired with a counter value read
    /// after the device replaced it (a PAUSE: elapsed time beyond the time
    /// the run ended at).
    CounterOutside,
}

#[cfg(feature = "selftest")]
impl ReaderVariant {
    /// The name in the boot argument (`reader=NAME`) and the summary line.
    pub const fn name(self) -> &'static str {
        match self {
            ReaderVariant::Correct => "correct",
            ReaderVariant::NoRecheck => "no-recheck",
            ReaderVariant::CounterOutside => "counter-outside",
        }
    }

    /// The variant with that name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ReaderVariant::Correct,
            ReaderVariant::NoRecheck,
            ReaderVariant::CounterOutside,
        ]
        .into_iter()
        .find(|variant| variant.name() == name)
    }
}

/// One attempt of a planted reader (see [`ReaderVariant`]).
///
/// # Safety
///
/// As [`read_page_section`].
#[cfg(feature = "selftest")]
#[inline(always)]
unsafe fn try_read_planted(
    page: *const u8,
    reader: ReaderVariant,
) -> Result<(TimeSnapshot, Option<u64>, u32), TimePageError> {
    match reader {
        // SAFETY: The caller's promise.
        ReaderVariant::Correct => unsafe { try_read_time_page(page, true) },
        ReaderVariant::NoRecheck => {
            // SAFETY: The caller's promise.
            let fields = unsafe { read_page_section(page, true) };
            if fields.sequence & 1 != 0 {
                return Err(TimePageError::SequenceStuckOdd);
            }
            // The bug: `fields.sequence_after` loaded, never compared.
            let status =
                Status::from_code(u64::from(fields.status)).ok_or(TimePageError::InvalidStatus)?;
            Ok((
                TimeSnapshot {
                    status,
                    accumulated_ns: fields.accumulated_ns,
                    run_start_ns: fields.run_start_ns,
                    clock_offset_ns: fields.clock_offset_ns as i64,
                    timeout_deadline_ns: fields.timeout_deadline_ns,
                },
                (status == Status::Running).then_some(fields.counter),
                fields.sequence,
            ))
        }
        ReaderVariant::CounterOutside => {
            // SAFETY: The caller's promise.
            let (snapshot, _, sequence) = unsafe { try_read_time_page(page, false) }?;
            // The bug: the counter read after the section closed.
            let counter = (snapshot.status == Status::Running).then(timer::counter);
            Ok((snapshot, counter, sequence))
        }
    }
}

#[cfg(feature = "selftest")]
impl Stopwatch {
    /// [`Stopwatch::read_zero_exit`] with the reader `reader` (the
    /// concurrency test's planted bugs): the same retries and arithmetic.
    #[inline(always)]
    pub fn read_zero_exit_with(
        &self,
        reader: ReaderVariant,
    ) -> Result<ZeroExitReading, TimePageError> {
        let Some(page) = self.time_page else {
            return Err(TimePageError::Absent);
        };
        let mut first_failure = None;
        let (snapshot, counter, sequence) = loop {
            // SAFETY: As in `read_consistently`: the time page `new` found,
            // RAM, mapped, 8-byte aligned.
            match unsafe { try_read_planted(page.as_ptr(), reader) } {
                Ok(value) => break value,
                Err(error) if patience_exhausted(&mut first_failure) => return Err(error),
                Err(_) => core::hint::spin_loop(),
            }
        };
        Ok(self.reading(snapshot, counter, sequence))
    }
}
