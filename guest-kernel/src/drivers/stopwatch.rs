// SPDX-License-Identifier: GPL-2.0-or-later
//! Driver of the para-virtualized stopwatch device.
//!
//! Every offset and code comes from the `stopwatch-abi` crate, which the
//! device model in QEMU shares. Two ways to read the time:
//! - the original one: write UPDATE to the trapping COMMAND register (an
//!   exit to QEMU, which writes the elapsed time as text into the shared
//!   page), then read the text: [`Stopwatch::update_text`];
//! - with no exit at all: read the time page in the shared region under
//!   its sequence counter and add the time since the run started, from the
//!   guest's own counter: [`Stopwatch::read_zero_exit`].

use core::fmt;
use core::mem::offset_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use board_discovery::{Interrupt, Stopwatch as StopwatchInfo};
use stopwatch_abi::{
    regs, shared, time_page, Command, Status, TimeSnapshot, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS,
    MIN_PERIOD_NS,
};
use tock_registers::register_structs;

use crate::arch::mmio;
use crate::arch::timer::{self, CounterClock};

register_structs! {
    /// Region 1: the trapping registers. Every access exits to QEMU.
    ///
    /// The layout only, checked at compile time: the fields are plain
    /// integers, so the only way to reach a register is its address
    /// through [`mmio`] (tock-registers' own register types would read and
    /// write with `read_volatile`/`write_volatile`, whose instruction forms
    /// a hypervisor may not be able to emulate).
    pub Registers {
        /// COMMAND, write-only.
        (regs::COMMAND as usize => command: u64),
        /// STATUS, read-only.
        (regs::STATUS as usize => status: u64),
        ((regs::STATUS + regs::WIDTH) as usize => @END),
    }
}

/// The elapsed-time text of UPDATE, copied out of the shared page.
pub struct TimeText {
    bytes: [u8; shared::DATA_CAPACITY],
    len: usize,
}

impl TimeText {
    /// The text (up to its NUL); invalid UTF-8 shows as `?`.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }

    /// The number of seconds at the start of the text, in nanoseconds
    /// (the text is `%.2f seconds`), if it parses.
    pub fn to_ns(&self) -> Option<u64> {
        let number = self.as_str().split(' ').next()?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let mut ns = whole
            .parse::<u64>()
            .ok()?
            .checked_mul(stopwatch_abi::NANOS_PER_SEC)?;
        let mut scale = stopwatch_abi::NANOS_PER_SEC / 10;
        for digit in fraction.bytes().take(9) {
            if !digit.is_ascii_digit() {
                return None;
            }
            // Checked: the text is in guest-writable RAM, and a huge whole
            // part (say `18446744073.71`) must not overflow.
            ns = ns.checked_add(u64::from(digit - b'0') * scale)?;
            scale /= 10;
        }
        Some(ns)
    }
}

// tutorial:lap-driver-laps begin
/// The laps the device recorded since the last RESET, oldest first, as one
/// consistent read of the shared page.
#[derive(Clone, Copy, Debug)]
pub struct Laps {
    count: usize,
    ns: [u64; shared::LAP_SLOTS],
}

impl Laps {
    /// Each lap's elapsed time, in nanoseconds.
    pub fn as_slice(&self) -> &[u64] {
        &self.ns[..self.count]
    }

    /// Whether every slot is taken (a LAP would be refused).
    pub fn is_full(&self) -> bool {
        self.count == shared::LAP_SLOTS
    }
}
// tutorial:lap-driver-laps end

/// A time read from the time page, without any exit.
#[derive(Clone, Copy, Debug)]
pub struct ZeroExitReading {
    /// Elapsed stopwatch time.
    pub elapsed_ns: u64,
    /// The consistent snapshot it was computed from.
    pub snapshot: TimeSnapshot,
    /// The guest counter value used, in ticks; `None` when the stopwatch
    /// was not running: its elapsed time is then the page's accumulated
    /// time, exact, and no counter read is needed. (Read by the in-guest
    /// tests only.)
    #[cfg_attr(not(feature = "selftest"), allow(dead_code))]
    pub counter: Option<u64>,
}

/// The device-clock time (what the time page's fields count) at guest
/// counter value `counter`: its nanoseconds plus the page's clock offset.
pub fn device_time_ns(snapshot: &TimeSnapshot, counter: u64) -> u64 {
    timer::clock()
        .ticks_to_ns(counter)
        .saturating_add_signed(snapshot.clock_offset_ns)
}

/// How long [`Stopwatch::read_time_page`] keeps retrying a page it cannot
/// read consistently, in milliseconds of guest counter time. The device
/// holds the sequence odd only for the few stores of one update, but its
/// thread may be descheduled on the host in between, so the limit is in
/// time rather than in attempts; a page left odd or invalid for this long
/// is not being written by this device's model.
const TIME_PAGE_PATIENCE_MS: u64 = 100;

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

/// After a failed read of the time page: whether [`TIME_PAGE_PATIENCE_MS`]
/// have passed since the first failure (`first_failure`, a guest counter
/// value, set by the first call).
#[cold]
#[inline(never)]
fn patience_exhausted(first_failure: &mut Option<u64>) -> bool {
    let now = timer::counter();
    let since = *first_failure.get_or_insert(now);
    now - since > timer::clock().frequency_hz * TIME_PAGE_PATIENCE_MS / 1000
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
) -> Result<(TimeSnapshot, Option<u64>), TimePageError> {
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
    ))
}

/// One stopwatch device.
pub struct Stopwatch {
    registers: NonNull<Registers>,
    shared: NonNull<u8>,
    /// The timeout interrupt, from the device tree.
    interrupt: Interrupt,
    /// The time page, if the shared region holds one (MAGIC and VERSION
    /// checked once, when the driver is created): the device writes it at
    /// power-on and keeps it for good; an original device never does. (A
    /// pointer rather than a flag: the hot read path tests and uses it in
    /// one load.)
    time_page: Option<NonNull<u8>>,
    /// Timeout interrupts handled so far.
    timeouts: AtomicU64,
    /// Guest counter at the last timeout interrupt's handler entry.
    last_interrupt_counter: AtomicU64,
    /// A copy of the counter's clock ([`timer::clock`]), so that the hot
    /// read path converts ticks inline instead of calling out to the
    /// once-initialised global (a call and a return are each an indirect
    /// jump under TCG: about as much as the page read itself).
    clock: CounterClock,
}

// SAFETY: All accesses through the pointers are register accesses through
// `mmio`, volatile accesses of the shared RAM region, or the loads of the
// time page's assembly section, which the device tolerates from anywhere;
// the counters are atomics. (Command sequences are not atomic: see each
// method.)
unsafe impl Send for Stopwatch {}
// SAFETY: As for `Send`.
unsafe impl Sync for Stopwatch {}

impl Stopwatch {
    /// Drives the device described by `info`.
    ///
    /// # Safety
    ///
    /// `info.registers` must be mapped as Device memory and `info.shared` as
    /// Normal memory, both must be this device's regions, and no other
    /// driver instance may exist.
    pub unsafe fn new(info: StopwatchInfo<'static>) -> Self {
        assert!(info.registers.size >= regs::STATUS + regs::WIDTH);
        assert!(info.shared.size >= shared::ORIGINAL_END);
        let mut stopwatch = Stopwatch {
            registers: NonNull::new(info.registers.base as *mut Registers)
                .expect("stopwatch registers at address 0"),
            shared: NonNull::new(info.shared.base as *mut u8)
                .expect("stopwatch shared region at address 0"),
            interrupt: info.timeout_interrupt,
            time_page: None,
            timeouts: AtomicU64::new(0),
            last_interrupt_counter: AtomicU64::new(0),
            clock: *timer::clock(),
        };
        let page = shared::TIME_PAGE;
        // The size is checked first: the page is only read inside the region.
        let has_time_page = info.shared.size >= page + time_page::SIZE
            && stopwatch.shared_u32(page + time_page::MAGIC_OFFSET) == time_page::MAGIC
            && stopwatch.shared_u32(page + time_page::VERSION_OFFSET) == time_page::VERSION;
        if has_time_page {
            stopwatch.time_page = NonNull::new(stopwatch.shared_ptr::<u8>(page));
        }
        stopwatch
    }

    /// The address of the register at `offset` (from `offset_of!` on
    /// [`Registers`]).
    fn register(&self, offset: usize) -> *mut u64 {
        // SAFETY: Every offset comes from `offset_of!` on `Registers`,
        // whose size `new` checked against the region's.
        unsafe { self.registers.byte_add(offset).cast::<u64>().as_ptr() }
    }

    /// The timeout interrupt.
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt
    }

    /// Whether the device has a time page (checked when the driver was
    /// created), i.e. whether the zero-exit reads work.
    pub fn has_time_page(&self) -> bool {
        self.time_page.is_some()
    }

    /// Writes a command.
    pub fn command(&self, command: Command) {
        self.write_command_code(command.code());
    }

    /// Writes any value to COMMAND, valid or not: the tests use it to check
    /// that the device survives guest mistakes.
    pub fn write_command_code(&self, code: u64) {
        // SAFETY: COMMAND is an aligned 64-bit register of the region
        // `new`'s caller promised is this device's, mapped as Device memory.
        unsafe { mmio::write_u64(self.register(offset_of!(Registers, command)), code) }
    }

    /// Writes DATA_LEN (the argument of TIMEOUT and TIMEOUT_NS) without any
    /// check (the tests of guest mistakes use it directly).
    pub fn write_data_len(&self, value: u64) {
        self.write_shared_u64(shared::DATA_LEN, value);
        // The device must see DATA_LEN before the command that reads it.
        barrier::dsb(barrier::SY);
    }

    /// RESET: stop, clear the elapsed time, cancel any timeout.
    pub fn reset(&self) {
        self.command(Command::Reset);
    }

    /// START (from RESET or PAUSED; ignored while RUNNING).
    pub fn start(&self) {
        self.command(Command::Start);
    }

    /// PAUSE (from RUNNING).
    pub fn pause(&self) {
        self.command(Command::Pause);
    }

    // tutorial:lap-driver-lap begin
    /// LAP (an addition): record the elapsed time into the next lap slot.
    /// With every slot taken the device refuses it (and logs a guest
    /// error): check [`Laps::is_full`] first.
    pub fn lap(&self) {
        self.command(Command::Lap);
    }
    // tutorial:lap-driver-lap end

    /// TIMEOUT_ACK: lower the interrupt, end the timeout.
    pub fn ack(&self) {
        self.command(Command::TimeoutAck);
    }

    /// The STATUS register: a status, or the unknown raw code.
    pub fn status(&self) -> Result<Status, u64> {
        // SAFETY: As in `write_command_code`, for the 64-bit STATUS, whose
        // read has no side effect.
        let code = unsafe { mmio::read_u64(self.register(offset_of!(Registers, status))) };
        Status::from_code(code).ok_or(code)
    }

    /// The original read: UPDATE, then the NUL-terminated text.
    pub fn update_text(&self) -> TimeText {
        self.command(Command::Update);
        // The device writes the text while handling the trapping store (it
        // is para-virtual: the access exits to QEMU and returns when done);
        // the barrier keeps our reads of the shared page after the store.
        barrier::dsb(barrier::SY);
        let mut text = TimeText {
            bytes: [0; shared::DATA_CAPACITY],
            len: 0,
        };
        let reported_len = self.shared_u64(shared::DATA_LEN) as usize;
        let len = reported_len.min(shared::DATA_CAPACITY);
        for (index, byte) in text.bytes[..len].iter_mut().enumerate() {
            *byte = self.shared_u8(shared::DATA + index as u64);
        }
        text.len = text.bytes[..len]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(len);
        text
    }

    /// TIMEOUT: interrupt after `seconds`, which must be in
    /// 1..=MAX_TIMEOUT_SECS: the callers check it (the shell's parser, with
    /// its error message), and the device ignores and logs anything else.
    pub fn timeout_secs(&self, seconds: u64) {
        debug_assert!((1..=MAX_TIMEOUT_SECS).contains(&seconds));
        self.arm_timeout(Command::Timeout, seconds);
    }

    /// TIMEOUT_NS (an addition): interrupt after `ns` nanoseconds, in
    /// 1..=MAX_TIMEOUT_NS (the callers pass constants; the device ignores
    /// and logs anything else).
    pub fn timeout_ns(&self, ns: u64) {
        debug_assert!((1..=MAX_TIMEOUT_NS).contains(&ns));
        self.arm_timeout(Command::TimeoutNs, ns);
    }

    /// Writes the argument into DATA_LEN, then the command. Not atomic
    /// against another caller arming a timeout at the same time; the
    /// interrupt handler only ever sends TIMEOUT_ACK, which leaves DATA_LEN
    /// alone.
    fn arm_timeout(&self, command: Command, argument: u64) {
        self.write_data_len(argument);
        self.command(command);
    }

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
        let (snapshot, counter) = self.read_consistently(true)?;
        let elapsed_ns = match counter {
            Some(counter) => snapshot.elapsed_ns_at_counter(self.clock.ticks_to_ns(counter)),
            None => snapshot.accumulated_ns,
        };
        Ok(ZeroExitReading {
            elapsed_ns,
            snapshot,
            counter,
        })
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
        self.read_consistently(false).map(|(snapshot, _)| snapshot)
    }

    /// Attempts [`try_read_time_page`] until one succeeds or
    /// [`TIME_PAGE_PATIENCE_MS`] have passed since the first failure. Only
    /// a failed attempt calls out, to [`patience_exhausted`]. (No closures
    /// on this path: they are not inlined as reliably.)
    #[inline(always)]
    fn read_consistently(
        &self,
        with_counter: bool,
    ) -> Result<(TimeSnapshot, Option<u64>), TimePageError> {
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

    // tutorial:lap-driver-read begin
    /// The laps, read under the time page's sequence counter like the page
    /// itself, retrying for at most [`TIME_PAGE_PATIENCE_MS`].
    pub fn laps(&self) -> Result<Laps, TimePageError> {
        if self.time_page.is_none() {
            return Err(TimePageError::Absent);
        }
        let mut first_failure = None;
        loop {
            match self.try_read_laps() {
                Ok(laps) => return Ok(laps),
                Err(error) if patience_exhausted(&mut first_failure) => return Err(error),
                Err(_) => core::hint::spin_loop(),
            }
        }
    }

    fn try_read_laps(&self) -> Result<Laps, TimePageError> {
        let sequence_at = shared::TIME_PAGE + time_page::SEQUENCE;
        let sequence = self.shared_u32(sequence_at);
        if sequence & 1 != 0 {
            return Err(TimePageError::SequenceStuckOdd);
        }
        barrier::dmb(barrier::ISHLD);
        // Bounded: the count is in guest-writable RAM.
        let count = (self.shared_u64(shared::LAP_COUNT) as usize).min(shared::LAP_SLOTS);
        let mut laps = Laps {
            count,
            ns: [0; shared::LAP_SLOTS],
        };
        for (slot, lap) in laps.ns[..count].iter_mut().enumerate() {
            *lap = self.shared_u64(shared::LAPS + 8 * slot as u64);
        }
        barrier::dmb(barrier::ISHLD);
        if self.shared_u32(sequence_at) != sequence {
            return Err(TimePageError::SequenceUnstable);
        }
        Ok(laps)
    }
    // tutorial:lap-driver-read end

    // tutorial:periodic-driver begin
    /// PERIODIC (an addition): an interrupt every `period_ns`, in
    /// [`MIN_PERIOD_NS`]..=[`MAX_TIMEOUT_NS`] (the shell's parser checks
    /// it; the device ignores and logs anything else). It replaces a
    /// periodic timeout; the device refuses it while a one-shot is pending
    /// (see [`PendingTimeout::one_shot_armed`]).
    pub fn periodic(&self, period_ns: u64) {
        debug_assert!((MIN_PERIOD_NS..=MAX_TIMEOUT_NS).contains(&period_ns));
        self.arm_timeout(Command::Periodic, period_ns);
    }

    /// The armed timeout as the shared page shows it: its next deadline
    /// and its period, read together under the time page's sequence
    /// counter (as [`Stopwatch::laps`]), with the same patience.
    pub fn pending_timeout(&self) -> Result<PendingTimeout, TimePageError> {
        if self.time_page.is_none() {
            return Err(TimePageError::Absent);
        }
        let mut first_failure = None;
        loop {
            match self.try_read_pending_timeout() {
                Ok(pending) => return Ok(pending),
                Err(error) if patience_exhausted(&mut first_failure) => return Err(error),
                Err(_) => core::hint::spin_loop(),
            }
        }
    }

    fn try_read_pending_timeout(&self) -> Result<PendingTimeout, TimePageError> {
        let sequence_at = shared::TIME_PAGE + time_page::SEQUENCE;
        let sequence = self.shared_u32(sequence_at);
        if sequence & 1 != 0 {
            return Err(TimePageError::SequenceStuckOdd);
        }
        barrier::dmb(barrier::ISHLD);
        let pending = PendingTimeout {
            deadline_ns: self.shared_u64(shared::TIME_PAGE + time_page::TIMEOUT_DEADLINE_NS),
            period_ns: self.shared_u64(shared::TIMEOUT_PERIOD_NS),
        };
        barrier::dmb(barrier::ISHLD);
        if self.shared_u32(sequence_at) != sequence {
            return Err(TimePageError::SequenceUnstable);
        }
        Ok(pending)
    }
    // tutorial:periodic-driver end

    /// The timeout interrupt handler: count, remember when, acknowledge.
    /// Never inlined, so that a debugger can break on it by name
    /// (`cargo xtask gdb`); the call costs a few nanoseconds.
    #[inline(never)]
    pub fn handle_interrupt(&self, entry_counter: u64) {
        self.last_interrupt_counter
            .store(entry_counter, Ordering::Relaxed);
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        self.ack();
    }

    /// Timeout interrupts handled so far.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Guest counter at the entry of the last timeout interrupt handler.
    pub fn last_interrupt_counter(&self) -> u64 {
        self.last_interrupt_counter.load(Ordering::Relaxed)
    }

    fn shared_ptr<T>(&self, offset: u64) -> *mut T {
        debug_assert!(offset as usize + size_of::<T>() <= shared::SIZE as usize);
        debug_assert!((offset as usize).is_multiple_of(align_of::<T>()));
        // SAFETY: Every offset used is a constant from `stopwatch_abi`
        // inside the shared region, which `new`'s caller promised is
        // mapped and at least `ORIGINAL_END` long (the time page is only
        // read once `new` has checked the region is long enough for it).
        unsafe { self.shared.as_ptr().add(offset as usize).cast() }
    }

    fn shared_u8(&self, offset: u64) -> u8 {
        // SAFETY: See `shared_ptr`; volatile because the device writes it.
        // The pass-through region is Normal memory (RAM, not MMIO): no exit.
        unsafe { self.shared_ptr::<u8>(offset).read_volatile() }
    }

    fn shared_u32(&self, offset: u64) -> u32 {
        // SAFETY: See `shared_ptr`; aligned, volatile (the device writes),
        // in the pass-through region (RAM, not MMIO).
        unsafe { self.shared_ptr::<u32>(offset).read_volatile() }
    }

    fn shared_u64(&self, offset: u64) -> u64 {
        // SAFETY: See `shared_ptr`; aligned, volatile (the device writes),
        // in the pass-through region (RAM, not MMIO).
        unsafe { self.shared_ptr::<u64>(offset).read_volatile() }
    }

    fn write_shared_u64(&self, offset: u64, value: u64) {
        // SAFETY: See `shared_ptr`; aligned, volatile (the device reads),
        // in the pass-through region (RAM, not MMIO).
        unsafe { self.shared_ptr::<u64>(offset).write_volatile(value) }
    }
}

// tutorial:periodic-driver-pending begin
/// The timeout the device has armed, as one consistent read of the shared
/// page ([`Stopwatch::pending_timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingTimeout {
    /// The next deadline on the device clock, 0 if none is armed.
    pub deadline_ns: u64,
    /// The period of a periodic timeout, 0 for a one-shot or none.
    pub period_ns: u64,
}

impl PendingTimeout {
    /// A one-shot timeout is armed: the device would refuse TIMEOUT,
    /// `TIMEOUT_NS` and PERIODIC (a periodic one they replace).
    pub fn one_shot_armed(&self) -> bool {
        self.deadline_ns != 0 && self.period_ns == 0
    }

    /// The period of the periodic timeout that runs, if one does.
    pub fn period(&self) -> Option<u64> {
        (self.period_ns != 0).then_some(self.period_ns)
    }
}
// tutorial:periodic-driver-pending end
