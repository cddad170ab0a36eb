// SPDX-License-Identifier: GPL-2.0-or-later
//! Guest mistakes: logged by the device, never fatal, never a state change.

use core::fmt;

use stopwatch_abi::{Command, Status};

/// A guest mistake. The device logs it (QEMU: `-d guest_errors`) and leaves
/// its state unchanged; the original device aborted QEMU instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// An access outside the registers.
    UnknownOffset {
        /// Offset into the register region.
        offset: u64,
    },
    /// An access that is neither 4 nor 8 bytes wide.
    BadAccessSize {
        /// Offset into the register region.
        offset: u64,
        /// Access size in bytes.
        size: u32,
    },
    /// A 4- or 8-byte access not aligned to its size.
    UnalignedAccess {
        /// Offset into the register region.
        offset: u64,
        /// Access size in bytes.
        size: u32,
    },
    /// A read of the write-only COMMAND register.
    ReadOfCommand,
    /// A write to the read-only STATUS register.
    WriteToStatus {
        /// The value written.
        value: u64,
    },
    /// A 4-byte write to COMMAND's upper half, which holds no command.
    WriteToCommandUpperHalf {
        /// The value written.
        value: u64,
    },
    /// A command code that does not exist.
    UnknownCommand {
        /// The code written.
        code: u64,
    },
    /// START while the stopwatch is already running.
    StartWhileRunning,
    /// PAUSE while the stopwatch is reset (there is nothing to pause).
    PauseWhileReset,
    /// TIMEOUT with `data_len` outside 1..=max seconds.
    TimeoutOutOfRange {
        /// The requested seconds.
        seconds: u64,
        /// The maximum.
        max: u64,
    },
    /// `TIMEOUT_NS` with `data_len` outside 1..=max nanoseconds.
    TimeoutNsOutOfRange {
        /// The requested nanoseconds.
        nanoseconds: u64,
        /// The maximum.
        max: u64,
    },
    /// TIMEOUT or `TIMEOUT_NS` while a timeout is armed or not yet
    /// acknowledged.
    TimeoutAlreadyPending {
        /// The refused command.
        command: Command,
    },
    /// `TIMEOUT_ACK` with no timeout armed or fired.
    AckWithoutTimeout,
    // tutorial:lap-error begin
    /// LAP with every lap slot taken: the laps are a record, so the
    /// device keeps the first ones rather than overwrite them unseen.
    LapsFull {
        /// How many slots there are.
        slots: usize,
    },
    // tutorial:lap-error end
    /// PERIODIC with `data_len` outside min..=max nanoseconds.
    PeriodOutOfRange {
        /// The requested period.
        nanoseconds: u64,
        /// The shortest period.
        min: u64,
        /// The longest period.
        max: u64,
    },
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestError::UnknownOffset { offset } => {
                write!(f, "access to unknown register offset {offset:#x}")
            }
            GuestError::BadAccessSize { offset, size } => write!(
                f,
                "{size}-byte access at offset {offset:#x}: registers take 4- or 8-byte accesses"
            ),
            GuestError::UnalignedAccess { offset, size } => {
                write!(f, "unaligned {size}-byte access at offset {offset:#x}")
            }
            GuestError::ReadOfCommand => write!(f, "read of the write-only COMMAND register"),
            GuestError::WriteToStatus { value } => {
                write!(f, "write of {value:#x} to the read-only STATUS register")
            }
            GuestError::WriteToCommandUpperHalf { value } => write!(
                f,
                "write of {value:#x} to the upper half of COMMAND; write commands to its lower half"
            ),
            GuestError::UnknownCommand { code } => write!(f, "unknown command code {code}"),
            GuestError::StartWhileRunning => {
                write!(f, "START while {}: ignored", Status::Running.name())
            }
            GuestError::PauseWhileReset => {
                write!(f, "PAUSE while {}: ignored", Status::Reset.name())
            }
            GuestError::TimeoutOutOfRange { seconds, max } => write!(
                f,
                "TIMEOUT of {seconds} s (data_len) is outside 1..={max} s: ignored"
            ),
            GuestError::TimeoutNsOutOfRange { nanoseconds, max } => write!(
                f,
                "TIMEOUT_NS of {nanoseconds} ns (data_len) is outside 1..={max} ns: ignored"
            ),
            GuestError::TimeoutAlreadyPending { command } => write!(
                f,
                "{} while a timeout is pending (acknowledge it first): ignored",
                command.name()
            ),
            GuestError::AckWithoutTimeout => {
                write!(f, "TIMEOUT_ACK with no timeout pending: ignored")
            }
            GuestError::LapsFull { slots } => {
                write!(
                    f,
                    "LAP with all {slots} lap slots taken (RESET clears them): ignored"
                )
            }
            GuestError::PeriodOutOfRange {
                nanoseconds,
                min,
                max,
            } => write!(
                f,
                "PERIODIC of {nanoseconds} ns (data_len) is outside {min}..={max} ns: ignored"
            ),
        }
    }
}
