// SPDX-License-Identifier: GPL-2.0-or-later
//! The time page's protocol (a seqlock) model-checked with loom, under the
//! C11 memory model: the device's writer against a statement of the
//! guest's reader, every weak-memory outcome loom can produce, over the
//! interleavings within each test's preemption bound (the tests show the
//! bound loses no outcome), for one writer and one or two readers.
//!
//! The writer is the device's own code: [`Stopwatch`] from the model,
//! publishing through [`LoomMemory`], an implementation of the model's
//! [`SharedMemory`] whose protocol words are loom atomics, stored and
//! fenced with the orderings the device uses ([`stopwatch_model::ordering`]).
//! The reader, [`read_page_section`], is the guest's assembly
//! (`read_page_section` in `guest-kernel/src/drivers/stopwatch.rs`) written
//! as C11 operations, one per instruction; `docs/interface.md` maps them.
//!
//! The promise checked ([`Scenario::check`]): every attempt of every
//! reader either retries or returns exactly a state the device published,
//! under the sequence number it was published with; a RUNNING reading's
//! counter is not older than the run it measures; and a reader never goes
//! back to an older state. The planted bugs ([`WriterPlant`],
//! [`ReaderPlant`]) are test-only switches: each must make the check fail.

use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use stopwatch_abi::{shared, time_page, Command, Status, TimeSnapshot};
use stopwatch_model::{
    ordering, Environment, GuestError, PlainMemory, SharedMemory, Simulation, Stopwatch,
};

/// The words the guest's reader loads, as offsets into the pass-through
/// region and the width both sides access them with. Only these are loom
/// atomics: the device's other stores (MAGIC and VERSION, rewritten with
/// the same values; the laps, which this reader does not load) can change
/// no reader's outcome, and as atomics they would only multiply the
/// interleavings loom explores.
fn read_words() -> [(u64, Width); 6] {
    let page = |offset| shared::TIME_PAGE + offset;
    [
        (page(time_page::SEQUENCE), Width::U32),
        (page(time_page::STATUS), Width::U32),
        (page(time_page::ACCUMULATED_NS), Width::U64),
        (page(time_page::RUN_START_NS), Width::U64),
        (page(time_page::CLOCK_OFFSET_NS), Width::U64),
        (page(time_page::TIMEOUT_DEADLINE_NS), Width::U64),
    ]
}

/// Whether the word at `offset` is one the reader loads.
fn is_read_word(offset: u64) -> bool {
    read_words().iter().any(|&(at, _)| at == offset)
}

/// Checks that an access of `len` bytes at `offset`, not to a read word,
/// does not overlap one either (a store that would escape the check).
fn assert_apart_from_read_words(offset: u64, len: u64) {
    for (at, width) in read_words() {
        let size = match width {
            Width::U32 => 4,
            Width::U64 => 8,
        };
        assert!(
            offset + len <= at || at + size <= offset,
            "the device accessed {len} bytes at 0x{offset:x}, across the word at 0x{at:x}"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    U32,
    U64,
}

/// One protocol word: a loom atomic, so that loom explores which store
/// each load of it may read.
enum Word {
    U32(AtomicU32),
    U64(AtomicU64),
}

/// The words of the time page the reader loads, shared by the device
/// thread and the readers. Each is accessed with one width only, by both
/// sides, as in the real system (the device's `write_u32`/`write_u64`, the
/// guest's `ldr w`/`ldr x`/`ldp x`): C11, and loom, have no mixed-size
/// accesses.
pub struct SharedPage {
    words: Vec<(u64, Word)>,
}

impl SharedPage {
    /// The words, holding what `memory` holds (each word's
    /// creation is its first store in loom's history).
    fn from_plain(memory: &PlainMemory) -> Self {
        let words = read_words()
            .into_iter()
            .map(|(offset, width)| {
                let word = match width {
                    Width::U32 => Word::U32(AtomicU32::new(memory.read_u64(offset) as u32)),
                    Width::U64 => Word::U64(AtomicU64::new(memory.read_u64(offset))),
                };
                (offset, word)
            })
            .collect();
        SharedPage { words }
    }

    fn word(&self, offset: u64) -> &Word {
        match self.words.iter().find(|(at, _)| *at == offset) {
            Some((_, word)) => word,
            None => panic!("0x{offset:x} is not a word the reader loads"),
        }
    }

    fn u32(&self, offset: u64) -> &AtomicU32 {
        match self.word(offset) {
            Word::U32(word) => word,
            Word::U64(_) => panic!("u32 access to the u64 word at 0x{offset:x}"),
        }
    }

    fn u64(&self, offset: u64) -> &AtomicU64 {
        match self.word(offset) {
            Word::U64(word) => word,
            Word::U32(_) => panic!("u64 access to the u32 word at 0x{offset:x}"),
        }
    }

    /// A time page field's `u32`, loaded with `order`.
    fn page_u32(&self, field: u64, order: Ordering) -> u32 {
        self.u32(shared::TIME_PAGE + field).load(order)
    }

    /// A time page field's `u64`, loaded with `order`.
    fn page_u64(&self, field: u64, order: Ordering) -> u64 {
        self.u64(shared::TIME_PAGE + field).load(order)
    }
}

/// A bug planted in the writer (test only: the shipped orderings are
/// [`stopwatch_model::ordering`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterPlant {
    /// None: the device's writer as shipped.
    None,
    /// The release fence after the odd SEQUENCE is left out: the fields
    /// may become visible before the reader can see the write began.
    NoOpeningFence,
    /// The release fence before the even SEQUENCE is left out: the even
    /// value may become visible before the fields it vouches for.
    NoClosingFence,
}

/// The pass-through region as the device thread writes it: the words the
/// reader loads in a [`SharedPage`] of loom atomics, the rest in plain
/// memory: the device's stores no reader loads (which can change no
/// outcome), and `data_len` and `data`, which the guest and the device hand
/// each other across a trap, under QEMU's lock (no part of this protocol).
pub struct LoomMemory {
    page: Arc<SharedPage>,
    rest: Box<PlainMemory>,
    plant: WriterPlant,
    /// Barriers since the device last wrote an odd SEQUENCE: the first
    /// opens the write, the second closes it.
    barriers_in_write: usize,
}

impl SharedMemory for LoomMemory {
    fn read_u64(&self, offset: u64) -> u64 {
        if is_read_word(offset) {
            self.page.u64(offset).load(Ordering::Relaxed)
        } else {
            assert_apart_from_read_words(offset, 8);
            self.rest.read_u64(offset)
        }
    }

    fn write_u64(&mut self, offset: u64, value: u64) {
        if is_read_word(offset) {
            self.page.u64(offset).store(value, ordering::STORE);
        } else {
            assert_apart_from_read_words(offset, 8);
            self.rest.write_u64(offset, value);
        }
    }

    fn write_u32(&mut self, offset: u64, value: u32) {
        if is_read_word(offset) {
            if offset == shared::TIME_PAGE + time_page::SEQUENCE && value & 1 == 1 {
                self.barriers_in_write = 0;
            }
            self.page.u32(offset).store(value, ordering::STORE);
        } else {
            assert_apart_from_read_words(offset, 4);
            self.rest.write_u32(offset, value);
        }
    }

    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        assert_apart_from_read_words(offset, bytes.len() as u64);
        self.rest.write_bytes(offset, bytes);
    }

    fn write_barrier(&mut self) {
        let opening = self.barriers_in_write == 0;
        self.barriers_in_write += 1;
        let left_out = match self.plant {
            WriterPlant::None => false,
            WriterPlant::NoOpeningFence => opening,
            WriterPlant::NoClosingFence => !opening,
        };
        if !left_out {
            fence(ordering::WRITE_BARRIER);
        }
    }
}

/// What the device published: the sequence number and the state, from the
/// model's own report ([`Environment::time_page_published`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The even sequence number the state was published under.
    pub sequence: u32,
    /// The state.
    pub snapshot: TimeSnapshot,
}

/// The device's machine in the writer thread: its clock is a loom atomic
/// (the readers' counter reads the same clock), its memory [`LoomMemory`].
struct LoomDevice {
    memory: LoomMemory,
    clock: Arc<AtomicU64>,
    published: Vec<Publication>,
}

impl Environment for LoomDevice {
    fn now_ns(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }
    fn set_irq(&mut self, _level: bool) {}
    fn arm_timer(&mut self, _deadline_ns: u64) {}
    fn cancel_timer(&mut self) {}
    fn guest_error(&mut self, error: GuestError) {
        panic!("a scenario's commands are all accepted, but the device said: {error}");
    }
    fn shared_memory(&mut self) -> &mut dyn SharedMemory {
        &mut self.memory
    }
    fn time_page_published(&mut self, sequence: u32, snapshot: &TimeSnapshot) {
        self.published.push(Publication {
            sequence,
            snapshot: *snapshot,
        });
    }
}

/// A bug planted in the reader (test only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderPlant {
    /// None: the guest's reader as shipped.
    None,
    /// The `dmb ishld` after the first SEQUENCE load is left out.
    NoOpeningBarrier,
    /// The `dmb ishld` before the second SEQUENCE load is left out.
    NoClosingBarrier,
    /// SEQUENCE is not loaded again and compared.
    NoRecheck,
    /// An odd SEQUENCE is not refused (only the re-check is made).
    NoOddCheck,
    /// The counter is read before the section, as the CPU may do when the
    /// `isb` is left out (`mrs` is then free to execute early).
    CounterBeforeSection,
}

/// What one pass over the protected section loaded, as in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageSection {
    /// SEQUENCE, first load.
    pub sequence: u32,
    /// The status code.
    pub status: u32,
    /// `accumulated_ns`.
    pub accumulated_ns: u64,
    /// `run_start_ns`.
    pub run_start_ns: u64,
    /// `clock_offset_ns`, as loaded (an `i64` in the page).
    pub clock_offset_ns: u64,
    /// `timeout_deadline_ns`.
    pub timeout_deadline_ns: u64,
    /// The counter, read inside the section if asked for and RUNNING.
    pub counter: u64,
    /// SEQUENCE, second load.
    pub sequence_after: u32,
}

/// The guest's `read_page_section` (`guest-kernel/src/drivers/stopwatch.rs`)
/// as C11 operations, one per instruction, in its order. Each `ldr` (and
/// each half of an `ldp`) of an aligned word is single-copy atomic and
/// orders nothing by itself: a relaxed load. `dmb ishld` orders the loads
/// before it before the loads and stores after it: an acquire fence (what
/// LLVM emits for one on AArch64). The counter (`cntvct_el0`) is the
/// device's clock, a load of the clock word. See `docs/interface.md`.
pub fn read_page_section(
    page: &SharedPage,
    clock: &AtomicU64,
    with_counter: bool,
    plant: ReaderPlant,
) -> PageSection {
    let hoisted_counter =
        (plant == ReaderPlant::CounterBeforeSection).then(|| clock.load(Ordering::Relaxed));
    // ldr {sequence:w}, [{page}, #SEQUENCE]
    let sequence = page.page_u32(time_page::SEQUENCE, Ordering::Relaxed);
    // dmb ishld
    if plant != ReaderPlant::NoOpeningBarrier {
        fence(Ordering::Acquire);
    }
    // ldr {status:w}, [{page}, #STATUS]
    let status = page.page_u32(time_page::STATUS, Ordering::Relaxed);
    // ldp {accumulated}, {run_start}, [{page}, #ACCUMULATED]
    let accumulated_ns = page.page_u64(time_page::ACCUMULATED_NS, Ordering::Relaxed);
    let run_start_ns = page.page_u64(time_page::RUN_START_NS, Ordering::Relaxed);
    // ldp {offset}, {deadline}, [{page}, #CLOCK_OFFSET]
    let clock_offset_ns = page.page_u64(time_page::CLOCK_OFFSET_NS, Ordering::Relaxed);
    let timeout_deadline_ns = page.page_u64(time_page::TIMEOUT_DEADLINE_NS, Ordering::Relaxed);
    let mut counter = 0;
    // cbnz {status:w}, 2f
    if with_counter && status == Status::Running.code() as u32 {
        counter = match hoisted_counter {
            Some(early) => early,
            // isb; mrs {counter}, cntvct_el0: the isb keeps the counter
            // read after the status load (the cbnz depends on it), so after
            // the opening barrier, as the acquire fence above orders this
            // load here.
            None => clock.load(Ordering::Relaxed),
        };
        // eor {zero}, {counter}, {counter}; add {zero}, sp, {zero};
        // ldr xzr, [{zero}]: a load that depends on the counter, so that
        // the closing barrier orders the counter read too (a barrier does
        // not order a system-register read; the fence below orders this
        // load of the clock word directly).
    }
    // 2: dmb ishld
    if plant != ReaderPlant::NoClosingBarrier {
        fence(Ordering::Acquire);
    }
    // ldr {after:w}, [{page}, #SEQUENCE]
    let sequence_after = if plant == ReaderPlant::NoRecheck {
        sequence
    } else {
        page.page_u32(time_page::SEQUENCE, Ordering::Relaxed)
    };
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

/// A state a reader accepted: the guest's `try_read_time_page` succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The sequence number it was read under.
    pub sequence: u32,
    /// The state.
    pub snapshot: TimeSnapshot,
    /// The counter, for a RUNNING state read with the counter.
    pub counter: Option<u64>,
}

/// One attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The guest would retry: SEQUENCE odd, SEQUENCE changed, or a status
    /// code no device writes.
    Retry,
    /// The guest would use this state.
    Accepted(Reading),
}

/// The checks of the guest's `try_read_time_page` on what the section
/// loaded.
pub fn judge_section(fields: &PageSection, with_counter: bool, plant: ReaderPlant) -> Attempt {
    if fields.sequence & 1 != 0 && plant != ReaderPlant::NoOddCheck {
        return Attempt::Retry;
    }
    if fields.sequence_after != fields.sequence {
        return Attempt::Retry;
    }
    let Some(status) = Status::from_code(u64::from(fields.status)) else {
        return Attempt::Retry;
    };
    Attempt::Accepted(Reading {
        sequence: fields.sequence,
        snapshot: TimeSnapshot {
            status,
            accumulated_ns: fields.accumulated_ns,
            run_start_ns: fields.run_start_ns,
            clock_offset_ns: fields.clock_offset_ns as i64,
            timeout_deadline_ns: fields.timeout_deadline_ns,
        },
        counter: (with_counter && status == Status::Running).then_some(fields.counter),
    })
}

/// A command the device runs at a device-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The device clock when the command runs.
    pub at_ns: u64,
    /// The command.
    pub command: Command,
    /// `data_len` for the command (TIMEOUT_NS's duration).
    pub data_len: u64,
}

impl Step {
    /// `command` at `at_ns`.
    pub const fn new(at_ns: u64, command: Command) -> Self {
        Step {
            at_ns,
            command,
            data_len: 0,
        }
    }

    /// TIMEOUT_NS of `duration_ns` at `at_ns`.
    pub const fn timeout_ns(at_ns: u64, duration_ns: u64) -> Self {
        Step {
            at_ns,
            command: Command::TimeoutNs,
            data_len: duration_ns,
        }
    }
}

/// One reader thread.
#[derive(Clone, Copy, Debug)]
pub struct Reader {
    /// Whether it reads the counter in the section (the guest's two
    /// variants of the section).
    pub with_counter: bool,
    /// How many attempts it makes, one after the other.
    pub attempts: usize,
}

/// One model check: the state before the threads start, the writer's
/// commands, the readers, the plants and loom's bound.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Commands run before the threads start (outside the exploration):
    /// the state the page holds when they do.
    pub setup: Vec<Step>,
    /// The writer thread's commands: one publication each.
    pub writes: Vec<Step>,
    /// The reader threads.
    pub readers: Vec<Reader>,
    /// A bug planted in the writer.
    pub writer_plant: WriterPlant,
    /// A bug planted in every reader.
    pub reader_plant: ReaderPlant,
    /// Loom's bound on preemptions per execution (`None`: unbounded).
    pub preemption_bound: Option<usize>,
}

/// What an exploration saw: evidence that it covered both outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exploration {
    /// Executions loom explored.
    pub executions: usize,
    /// Attempts that retried.
    pub retries: usize,
    /// Attempts that accepted a state, by the sequence number accepted.
    pub accepted: Vec<(u32, usize)>,
    /// Every distinct combination of values a section loaded, over all
    /// executions and readers: the reader's whole view of the protocol.
    pub sections: BTreeSet<PageSection>,
}

impl Exploration {
    /// Attempts that accepted the state published under `sequence`.
    pub fn accepted_under(&self, sequence: u32) -> usize {
        self.accepted
            .iter()
            .find(|(at, _)| *at == sequence)
            .map_or(0, |(_, count)| *count)
    }
}

impl Scenario {
    /// Explores every execution loom generates; panics (with the failing
    /// execution's readings) at the first that breaks the promise.
    pub fn check(&self) -> Exploration {
        // The state the threads start from, made by the model on plain
        // memory: the page's words are then created holding it, one store
        // each (loom keeps only the last few stores of each word).
        let mut setup = Simulation::new();
        let mut stopwatch = Stopwatch::new();
        stopwatch.power_on_reset(&mut setup, false);
        for step in &self.setup {
            setup.now_ns = step.at_ns;
            setup.memory.write_u64(shared::DATA_LEN, step.data_len);
            stopwatch.command(&mut setup, step.command.code());
            assert_eq!(
                setup.error_count, 0,
                "setup refused: {:?}",
                setup.last_error
            );
        }
        let initial = Publication {
            sequence: stopwatch.save().sequence,
            snapshot: stopwatch.snapshot(0),
        };
        let (memory, start_ns) = (setup.memory, setup.now_ns);

        let scenario = self.clone();
        // Bookkeeping across executions: std's, outside loom's model.
        let executions = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = std::sync::Arc::new(Mutex::new(Exploration::default()));
        let (executions_in, seen_in) = (executions.clone(), seen.clone());
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = self.preemption_bound;
        builder.check(move || {
            executions_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let page = Arc::new(SharedPage::from_plain(&memory));
            let clock = Arc::new(AtomicU64::new(start_ns));

            let mut device = LoomDevice {
                memory: LoomMemory {
                    page: page.clone(),
                    rest: Box::new(memory),
                    plant: scenario.writer_plant,
                    barriers_in_write: 0,
                },
                clock: clock.clone(),
                published: vec![initial],
            };
            let mut writer_stopwatch = stopwatch.clone();
            let writes = scenario.writes.clone();
            let writer = loom::thread::spawn(move || {
                for step in writes {
                    // Time passes, then the device runs the command.
                    device.clock.store(step.at_ns, Ordering::Relaxed);
                    device
                        .memory
                        .rest
                        .write_u64(shared::DATA_LEN, step.data_len);
                    writer_stopwatch.command(&mut device, step.command.code());
                }
                device.published
            });
            let readers: Vec<_> = scenario
                .readers
                .iter()
                .map(|&reader| {
                    let (page, clock) = (page.clone(), clock.clone());
                    let plant = scenario.reader_plant;
                    loom::thread::spawn(move || {
                        (0..reader.attempts)
                            .map(|_| {
                                let fields =
                                    read_page_section(&page, &clock, reader.with_counter, plant);
                                (fields, judge_section(&fields, reader.with_counter, plant))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();

            let published = writer.join().unwrap();
            let mut seen = seen_in.lock().unwrap();
            for (index, reader) in readers.into_iter().enumerate() {
                let attempts = reader.join().unwrap();
                check_reader(
                    index,
                    attempts.iter().map(|(_, attempt)| attempt),
                    &published,
                );
                for (fields, attempt) in attempts {
                    seen.count(attempt);
                    seen.sections.insert(fields);
                }
            }
        });
        let mut exploration = seen.lock().unwrap().clone();
        exploration.executions = executions.load(std::sync::atomic::Ordering::Relaxed);
        exploration.accepted.sort();
        exploration
    }
}

impl Exploration {
    fn count(&mut self, attempt: Attempt) {
        match attempt {
            Attempt::Retry => self.retries += 1,
            Attempt::Accepted(reading) => {
                match self
                    .accepted
                    .iter_mut()
                    .find(|(at, _)| *at == reading.sequence)
                {
                    Some((_, count)) => *count += 1,
                    None => self.accepted.push((reading.sequence, 1)),
                }
            }
        }
    }
}

/// The promise, for one reader's attempts in one execution.
fn check_reader<'a>(
    index: usize,
    attempts: impl Iterator<Item = &'a Attempt>,
    published: &[Publication],
) {
    let mut last_sequence = None;
    for attempt in attempts {
        let Attempt::Accepted(reading) = attempt else {
            continue;
        };
        let Some(publication) = published.iter().find(|p| p.sequence == reading.sequence) else {
            panic!(
                "torn reading: reader {index} accepted {reading:?}, but the device published \
                 nothing under sequence {} (published: {published:?})",
                reading.sequence
            );
        };
        assert!(
            publication.snapshot == reading.snapshot,
            "torn reading: reader {index} accepted {reading:?}, but the device published \
             {publication:?} under that sequence (a mix of states)"
        );
        if let Some(counter) = reading.counter {
            assert!(
                counter >= reading.snapshot.run_start_ns,
                "counter before the run: reader {index} accepted {reading:?}, whose counter \
                 was read before the run it measures started"
            );
        }
        if let Some(last) = last_sequence {
            assert!(
                reading.sequence >= last,
                "went back: reader {index} accepted sequence {} after {last}",
                reading.sequence
            );
        }
        last_sequence = Some(reading.sequence);
    }
}
