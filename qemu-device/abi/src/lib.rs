// SPDX-License-Identifier: GPL-2.0-or-later
//! The stopwatch's hardware/software interface: the one source of truth.
//!
//! Both halves of the para-virtualized device build on this crate: the
//! device model inside QEMU (`qemu-device/`) and the guest kernel's driver
//! (`guest-kernel/`), as the original C project shared one header between
//! device and driver. `docs/interface.md` describes the same interface in
//! prose; every number lives here.
//!
//! The device has two memory regions and one interrupt, in this order:
//!
//! | index | what | guest access |
//! |---|---|---|
//! | `reg` 0 | [`shared`]: pass-through memory (RAM) | plain loads and stores, no exit |
//! | `reg` 1 | [`regs`]: trapping registers (MMIO) | every access calls the device |
//! | `interrupts` 0 | the timeout interrupt | level-high GIC SPI |
//!
//! Offsets and codes up to [`regs::STATUS`], [`Command::TimeoutAck`] and
//! `shared::DATA` are the original's, bit for bit. Everything after them is
//! an addition and says so.

#![no_std]
#![forbid(unsafe_code)]

use core::ffi::CStr;

/// Device-tree `compatible` of the device's node, as its binding
/// (`docs/bindings/qemu,stopwatch.yaml`) names it: the registered `qemu,`
/// vendor prefix, as QEMU's own devices have.
pub const COMPATIBLE: &str = "qemu,stopwatch";

/// The second `compatible` of the node, the original device's, which the
/// original Linux driver matches.
pub const COMPATIBLE_ORIGINAL: &str = "stopwatch";

/// QOM type name of the device (`-device stopwatch`), the original's.
pub const TYPE_NAME: &CStr = c"stopwatch";

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Longest timeout the original `TIMEOUT` command accepts, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 10;

/// Longest timeout [`Command::TimeoutNs`] accepts: the same limit, in ns.
pub const MAX_TIMEOUT_NS: u64 = MAX_TIMEOUT_SECS * NANOS_PER_SEC;

// tutorial:periodic-abi-limits begin
/// Addition: the shortest period [`Command::Periodic`] accepts, in ns
/// (100 us). A shorter one would keep QEMU's timer firing almost without
/// pause; the longest is [`MAX_TIMEOUT_NS`].
pub const MIN_PERIOD_NS: u64 = 100_000;
// tutorial:periodic-abi-limits end

/// Region 1: the trapping registers.
///
/// Every register is 64 bits wide. Aligned 8-byte accesses and aligned
/// 4-byte accesses both work; a 4-byte access reaches one half of a register
/// (little-endian: offset +0 is bits 0..32, +4 is bits 32..64). The original
/// Linux driver used 32-bit `readl`/`writel` on the low halves.
pub mod regs {
    /// Size of the register region: one 4 KiB page (the original's was
    /// 0x10), so the guest can map it apart from any other region.
    pub const SIZE: u64 = 0x1000;

    /// Write-only: a [`Command`](crate::Command) code.
    pub const COMMAND: u64 = 0x00;

    /// Read-only: a [`Status`](crate::Status) code.
    pub const STATUS: u64 = 0x08;

    /// Width of every register, in bytes.
    pub const WIDTH: u64 = 8;
}

/// Region 0: the pass-through memory, RAM shared by device and guest.
///
/// The guest reads and writes it with plain loads and stores that never
/// leave the guest; the device reads and writes the same host memory.
pub mod shared {
    /// Size of the pass-through region: one 4 KiB page (the original's was
    /// 0x88), room for the time page at [`TIME_PAGE`].
    pub const SIZE: u64 = 0x1000;

    /// `u64`. After `UPDATE`: the length of [`DATA`]'s text including its
    /// NUL. Before `TIMEOUT`: the timeout in seconds (guest writes). Before
    /// `TIMEOUT_NS` (an addition): the timeout in nanoseconds.
    pub const DATA_LEN: u64 = 0x00;

    /// `[u8; 128]`: NUL-terminated text of the elapsed time, written by
    /// `UPDATE`, e.g. `1.50 seconds` (C's `%.2f seconds`).
    pub const DATA: u64 = 0x08;

    /// Capacity of [`DATA`], in bytes, NUL included.
    pub const DATA_CAPACITY: usize = 128;

    /// End of the original's layout. `0x88..TIME_PAGE` stays zero.
    pub const ORIGINAL_END: u64 = DATA + DATA_CAPACITY as u64;

    /// Addition: offset of the [`time_page`](crate::time_page), which
    /// lets the guest read the elapsed time with no exit.
    pub const TIME_PAGE: u64 = 0x100;

    // tutorial:lap-abi-layout begin
    /// Addition: `u64`, how many of the [`LAPS`] slots hold a lap, 0 to
    /// [`LAP_SLOTS`]. Right after the time page, and written under its
    /// sequence counter (see [`time_page`](crate::time_page)).
    pub const LAP_COUNT: u64 = 0x130;

    /// Addition: `[u64; LAP_SLOTS]`, the elapsed time in nanoseconds at
    /// each [`Command::Lap`](crate::Command::Lap), oldest first. Slots from
    /// `LAP_COUNT` on read 0.
    pub const LAPS: u64 = 0x138;

    /// Addition: how many laps the device keeps. A LAP with every slot
    /// taken is refused: logged, nothing changes.
    pub const LAP_SLOTS: usize = 8;

    /// End of the lap slots. The period of a periodic timeout follows
    /// ([`TIMEOUT_PERIOD_NS`]); the guest's own space starts at
    /// [`GUEST_FREE`].
    pub const LAPS_END: u64 = LAPS + 8 * LAP_SLOTS as u64;
    // tutorial:lap-abi-layout end

    // tutorial:periodic-abi-layout begin
    /// Addition: `u64`, the period in nanoseconds of the running periodic
    /// timeout ([`Command::Periodic`](crate::Command::Periodic)), 0 when
    /// the timeout is a one-shot or there is none. Right after the laps,
    /// written under the time page's sequence counter with the page, so a
    /// reader tells a periodic timeout from a one-shot in one consistent
    /// read.
    pub const TIMEOUT_PERIOD_NS: u64 = LAPS_END;

    /// End of what the device writes. From here to [`SIZE`] the region is
    /// the guest's own.
    pub const GUEST_FREE: u64 = TIMEOUT_PERIOD_NS + 8;
    // tutorial:periodic-abi-layout end
}

/// Addition: the time page, a pvclock-style record at
/// [`shared::TIME_PAGE`] that the device rewrites on every state change.
///
/// All fields are little-endian and naturally aligned; offsets below are
/// relative to the start of the page. The device writes under a sequence
/// counter, as Linux's seqcount or KVM's pvclock do:
///
/// 1. `SEQUENCE` += 1 (now odd), then a release barrier;
/// 2. the other fields, and the laps and the period after the page
///    ([`shared::LAP_COUNT`], [`shared::LAPS`],
///    [`shared::TIMEOUT_PERIOD_NS`]);
/// 3. a release barrier, then `SEQUENCE` += 1 (even again).
///
/// The guest reads `SEQUENCE` (retrying while odd), then the fields, then
/// `SEQUENCE` again, and retries if it changed; see [`TimeSnapshot`] for
/// the arithmetic.
pub mod time_page {
    /// `u32`: [`MAGIC`] once the device has written the page.
    pub const MAGIC_OFFSET: u64 = 0x00;
    /// `u32`: [`VERSION`] of this layout.
    pub const VERSION_OFFSET: u64 = 0x04;
    /// `u32`: the sequence counter, odd while the device writes.
    pub const SEQUENCE: u64 = 0x08;
    /// `u32`: the status code, as the `STATUS` register would read.
    pub const STATUS: u64 = 0x0c;
    /// `u64`: nanoseconds of all completed runs (up to the last PAUSE).
    pub const ACCUMULATED_NS: u64 = 0x10;
    /// `u64`: device-clock time at which the current run started; valid
    /// while the status is RUNNING.
    pub const RUN_START_NS: u64 = 0x18;
    /// `i64`: add to the guest's virtual counter, converted to nanoseconds,
    /// to get the device clock. Zero on QEMU's Arm `virt` board, whose
    /// generic timer counts QEMU's virtual clock, the device's clock.
    pub const CLOCK_OFFSET_NS: u64 = 0x20;
    /// `u64`: device-clock deadline of the armed timeout, or 0 if none is
    /// armed. Lets the guest measure its interrupt latency. For a periodic
    /// timeout: the next period's deadline (armed while it runs, whether
    /// the last period's interrupt is acknowledged or not).
    pub const TIMEOUT_DEADLINE_NS: u64 = 0x28;
    /// Size of the page's fields, in bytes.
    pub const SIZE: u64 = 0x30;

    /// `"SWTP"` in little-endian: the page is present and written.
    pub const MAGIC: u32 = u32::from_le_bytes(*b"SWTP");
    /// Layout version.
    pub const VERSION: u32 = 1;
}

// The layout's invariants, checked when anything using it compiles.
const _: () = {
    assert!(shared::TIME_PAGE >= shared::ORIGINAL_END);
    assert!(shared::TIME_PAGE + time_page::SIZE <= shared::LAP_COUNT);
    assert!(shared::LAPS == shared::LAP_COUNT + 8 && shared::LAPS_END <= shared::SIZE);
    assert!(shared::TIMEOUT_PERIOD_NS >= shared::LAPS_END);
    assert!(shared::TIMEOUT_PERIOD_NS % 8 == 0 && shared::GUEST_FREE <= shared::SIZE);
    assert!(MIN_PERIOD_NS >= 1 && MIN_PERIOD_NS <= MAX_TIMEOUT_NS);
    assert!(regs::STATUS + regs::WIDTH <= regs::SIZE);
    assert!(shared::SIZE % 4096 == 0 && regs::SIZE % 4096 == 0);
};

/// A command code, written to [`regs::COMMAND`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Command {
    /// Stop and clear the elapsed time; also cancels any timeout and lowers
    /// the interrupt (cancelling is an improvement on the original).
    Reset = 0,
    /// Start counting, from RESET or PAUSED.
    Start = 1,
    /// Stop counting and keep the elapsed time, from RUNNING.
    Pause = 2,
    /// Write the elapsed time as text into `DATA`, its length in `DATA_LEN`.
    Update = 3,
    /// Arm a timeout of `DATA_LEN` seconds (1 to [`MAX_TIMEOUT_SECS`]).
    Timeout = 4,
    /// Lower the interrupt and end the timeout.
    TimeoutAck = 5,
    /// Addition: arm a timeout of `DATA_LEN` nanoseconds (1 to
    /// [`MAX_TIMEOUT_NS`]), for sub-second latency measurements.
    TimeoutNs = 6,
    // tutorial:lap-abi-command begin
    /// Addition: record the elapsed time into the next lap slot
    /// ([`shared::LAPS`]), in any status. With all [`shared::LAP_SLOTS`]
    /// taken it is refused (logged, nothing changes); RESET clears them.
    Lap = 7,
    // tutorial:lap-abi-command end
    // tutorial:periodic-abi-command begin
    /// Addition: arm a periodic timeout of period `DATA_LEN` nanoseconds
    /// ([`MIN_PERIOD_NS`] to [`MAX_TIMEOUT_NS`]): the interrupt line rises
    /// at 1, 2, 3... periods after the command, each rise acknowledged with
    /// `TIMEOUT_ACK` as a one-shot's. RESET and PAUSE end it; TIMEOUT,
    /// `TIMEOUT_NS` and PERIODIC replace it while its line is low.
    Periodic = 8,
    // tutorial:periodic-abi-command end
}

impl Command {
    /// Every command, in code order.
    pub const ALL: [Command; 9] = [
        Command::Reset,
        Command::Start,
        Command::Pause,
        Command::Update,
        Command::Timeout,
        Command::TimeoutAck,
        Command::TimeoutNs,
        Command::Lap,
        Command::Periodic,
    ];

    /// The command with this code, if there is one.
    pub const fn from_code(code: u64) -> Option<Command> {
        Some(match code {
            0 => Command::Reset,
            1 => Command::Start,
            2 => Command::Pause,
            3 => Command::Update,
            4 => Command::Timeout,
            5 => Command::TimeoutAck,
            6 => Command::TimeoutNs,
            7 => Command::Lap,
            8 => Command::Periodic,
            _ => return None,
        })
    }

    /// The code written to [`regs::COMMAND`].
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// Upper-case name, as in the interface document.
    pub const fn name(self) -> &'static str {
        text_of(self.c_name())
    }

    /// [`name`](Self::name) as a C string, as QEMU's trace events take it.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Command::Reset => c"RESET",
            Command::Start => c"START",
            Command::Pause => c"PAUSE",
            Command::Update => c"UPDATE",
            Command::Timeout => c"TIMEOUT",
            Command::TimeoutAck => c"TIMEOUT_ACK",
            Command::TimeoutNs => c"TIMEOUT_NS",
            Command::Lap => c"LAP",
            Command::Periodic => c"PERIODIC",
        }
    }
}

/// A status code, read from [`regs::STATUS`] (and the time page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Status {
    /// Counting.
    Running = 0,
    /// Stopped at zero.
    Reset = 1,
    /// Stopped, keeping the elapsed time.
    Paused = 2,
}

impl Status {
    /// The status with this code, if there is one.
    pub const fn from_code(code: u64) -> Option<Status> {
        Some(match code {
            0 => Status::Running,
            1 => Status::Reset,
            2 => Status::Paused,
            _ => return None,
        })
    }

    /// The code read from [`regs::STATUS`].
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// Upper-case name, as in the interface document.
    pub const fn name(self) -> &'static str {
        text_of(self.c_name())
    }

    /// [`name`](Self::name) as a C string, as QEMU's trace events take it.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Status::Running => c"RUNNING",
            Status::Reset => c"RESET",
            Status::Paused => c"PAUSED",
        }
    }
}

/// The text of a name written once, as a C string (the names are ASCII).
const fn text_of(name: &'static CStr) -> &'static str {
    match core::str::from_utf8(name.to_bytes()) {
        Ok(text) => text,
        Err(_) => panic!("the interface's names are ASCII"),
    }
}

/// The fields of the time page that the elapsed time is computed from, as
/// one consistent snapshot (read under the sequence counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSnapshot {
    /// Stopwatch status.
    pub status: Status,
    /// Nanoseconds of all completed runs.
    pub accumulated_ns: u64,
    /// Device-clock start of the current run (meaningful while running).
    pub run_start_ns: u64,
    /// Device clock minus the guest counter's nanoseconds.
    pub clock_offset_ns: i64,
    /// Deadline of the armed timeout, 0 if none.
    pub timeout_deadline_ns: u64,
}

impl TimeSnapshot {
    /// Elapsed nanoseconds at device-clock time `now_ns`.
    ///
    /// A `now_ns` before the run's start (a counter read that raced the
    /// START) counts as the start itself: elapsed time never goes negative.
    ///
    /// Always inlined: it is on the guest's zero-exit read path, where a
    /// call and its return cost more than the arithmetic (under TCG each
    /// is a translation-block lookup).
    #[inline(always)]
    pub const fn elapsed_ns(&self, now_ns: u64) -> u64 {
        match self.status {
            // Saturating: a page the guest scribbled on must not overflow.
            Status::Running => self
                .accumulated_ns
                .saturating_add(now_ns.saturating_sub(self.run_start_ns)),
            Status::Reset | Status::Paused => self.accumulated_ns,
        }
    }

    /// Elapsed nanoseconds given the guest's own counter, already converted
    /// to nanoseconds. Always inlined, as [`elapsed_ns`](Self::elapsed_ns).
    #[inline(always)]
    pub const fn elapsed_ns_at_counter(&self, counter_ns: u64) -> u64 {
        self.elapsed_ns(counter_ns.saturating_add_signed(self.clock_offset_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_offsets_and_codes_are_kept() {
        assert_eq!((regs::COMMAND, regs::STATUS), (0x00, 0x08));
        assert_eq!((shared::DATA_LEN, shared::DATA), (0x00, 0x08));
        assert_eq!(shared::ORIGINAL_END, 0x88);
        let codes: [u64; 6] = [0, 1, 2, 3, 4, 5];
        let names = [
            "RESET",
            "START",
            "PAUSE",
            "UPDATE",
            "TIMEOUT",
            "TIMEOUT_ACK",
        ];
        for (code, name) in codes.iter().zip(names) {
            assert_eq!(Command::from_code(*code).unwrap().name(), name);
        }
        assert_eq!(Status::Running.code(), 0);
        assert_eq!(Status::Reset.code(), 1);
        assert_eq!(Status::Paused.code(), 2);
        assert_eq!(MAX_TIMEOUT_SECS, 10);
    }

    #[test]
    fn additions_come_after_the_original_space() {
        assert_eq!(Command::TimeoutNs.code(), 6);
        assert_eq!(Command::Lap.code(), 7);
        assert_eq!(Command::Periodic.code(), 8);
        assert_eq!(Command::from_code(9), None);
        assert_eq!(
            (shared::LAP_COUNT, shared::LAPS, shared::LAPS_END),
            (0x130, 0x138, 0x178)
        );
        assert_eq!(
            (shared::TIMEOUT_PERIOD_NS, shared::GUEST_FREE),
            (0x178, 0x180)
        );
    }

    #[test]
    fn codes_round_trip() {
        for command in Command::ALL {
            assert_eq!(Command::from_code(command.code()), Some(command));
        }
        for code in 0..3 {
            assert_eq!(Status::from_code(code).unwrap().code(), code);
        }
        assert_eq!(Status::from_code(3), None);
    }

    #[test]
    fn elapsed_time_from_a_snapshot() {
        let running = TimeSnapshot {
            status: Status::Running,
            accumulated_ns: 1_000,
            run_start_ns: 5_000,
            clock_offset_ns: -100,
            timeout_deadline_ns: 0,
        };
        assert_eq!(running.elapsed_ns(7_000), 3_000);
        // A read racing the START never goes below the accumulated time.
        assert_eq!(running.elapsed_ns(4_000), 1_000);
        assert_eq!(running.elapsed_ns_at_counter(7_100), 3_000);
        let paused = TimeSnapshot {
            status: Status::Paused,
            ..running
        };
        assert_eq!(paused.elapsed_ns(1_000_000), 1_000);
    }
}
