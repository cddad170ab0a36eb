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
//!   guest's own counter: [`Stopwatch::read_zero_exit`] (in [`zero_exit`]).

pub mod zero_exit;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use board_discovery::{Interrupt, Stopwatch as StopwatchInfo};
use stopwatch_abi::{
    regs, shared, time_page, Command, Status, MAX_TIMEOUT_NS, MAX_TIMEOUT_SECS, MIN_PERIOD_NS,
};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;

use crate::arch::mmio::{self, register, ReadOnly, WriteOnly};
use crate::arch::timer::{self, CounterClock};
use zero_exit::patience_exhausted;
#[cfg(feature = "selftest")]
pub(crate) use zero_exit::patience_exhausted_at;
pub use zero_exit::{device_time_ns, TimePageError};

/// How long [`Stopwatch::read_time_page`] keeps retrying a page it cannot
/// read consistently, in milliseconds of guest counter time. The device
/// holds the sequence odd only for the few stores of one update, but its
/// thread may be descheduled on the host in between, so the limit is in
/// time rather than in attempts; a page left odd or invalid for this long
/// is not being written by this device's model.
const TIME_PAGE_PATIENCE_MS: u64 = 100;

register_structs! {
    /// Region 1: the trapping registers. Every access exits to QEMU.
    pub Registers {
        /// COMMAND: a write is a command (`stopwatch_abi::Command`).
        (regs::COMMAND as usize => command: WriteOnly<u64>),
        /// STATUS: a `stopwatch_abi::Status` code; reading it changes
        /// nothing.
        (regs::STATUS as usize => status: ReadOnly<u64>),
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
        let number = self.as_str().split_ascii_whitespace().next()?;
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

/// One stopwatch device.
pub struct Stopwatch {
    registers: mmio::Registers<Registers>,
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
// `mmio`'s registers, volatile accesses of the shared RAM region, or the loads of the
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
            // SAFETY: The caller's promise: this device's registers, mapped
            // as Device memory, driven by this instance alone.
            registers: unsafe {
                mmio::Registers::new(
                    NonNull::new(info.registers.base as *mut Registers)
                        .expect("stopwatch registers at address 0"),
                )
            },
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
        register!(self.registers, command).set(code);
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
        let code = register!(self.registers, status).get();
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
