// SPDX-License-Identifier: GPL-2.0-or-later
//! Ending the run: semihosting exit with a status (what tests use), PSCI
//! SYSTEM_OFF (what a real machine does), and the fatal-error paths.
//!
//! Semihosting needs QEMU's `-semihosting-config enable=on,target=native`;
//! without it the `HLT #0xf000` it uses is an undefined instruction, which
//! the exception handler skips (`arch::exceptions`): [`exit`] then powers
//! off with PSCI instead (the status is lost, but never silently: the
//! reason is printed first once there is a console), and parks the CPU in
//! a WFI loop if there is no PSCI either.
//!
//! Exit statuses (also in docs/booting.md): 0 and 1 are the in-guest tests'
//! verdict; the rest are below. The start-up failures each have their own
//! status so that a test (or a user) can tell them apart without a
//! console; `arch::boot` uses the first two before any Rust code runs.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

use board_discovery::PsciConduit;
use semihosting::sys::arm_compat::{sys_exit_extended, ExitReason};
use smccc::{Hvc, Smc};

// The exit statuses are part of the guest-host protocol, defined once in
// `stopwatch_shell::protocol::exit_status` for the kernel and xtask.
pub use stopwatch_shell::protocol::exit_status;

/// How to reach PSCI, from the device tree: [`PSCI_NONE`], [`PSCI_HVC`]
/// or [`PSCI_SMC`]. Only loaded and stored: it is set with the MMU off.
static PSCI: AtomicU8 = AtomicU8::new(PSCI_NONE);
const PSCI_NONE: u8 = 0;
const PSCI_HVC: u8 = 1;
const PSCI_SMC: u8 = 2;
/// Set once the run is ending, to catch a failing exit path. Only loaded
/// and stored, never swapped, like [`FATAL_REPORTED`]: [`exit`] can run
/// with the MMU off (a fatal error before it is on).
static EXITING: AtomicBool = AtomicBool::new(false);
/// The status [`exit`] was asked for.
static EXIT_STATUS: AtomicI32 = AtomicI32::new(0);
/// Set by the first [`fatal`]: a fatal error while reporting one (say, the
/// semihosting output faulting before the console exists) must not recurse.
/// Only loaded and stored, never swapped: this can run with the MMU off,
/// where exclusive accesses are best avoided.
static FATAL_REPORTED: AtomicBool = AtomicBool::new(false);

/// Records the PSCI conduit found in the device tree; callable with the
/// MMU off, so that a start-up failure can power off.
pub fn init(psci: Option<PsciConduit>) {
    let conduit = match psci {
        None => PSCI_NONE,
        Some(PsciConduit::Hvc) => PSCI_HVC,
        Some(PsciConduit::Smc) => PSCI_SMC,
    };
    PSCI.store(conduit, Ordering::Relaxed);
}

/// Ends the run with `code` as QEMU's exit status (semihosting).
pub fn exit(code: i32) -> ! {
    if EXITING.load(Ordering::Acquire) {
        // A fatal error while exiting: do not try semihosting again.
        system_off();
    }
    // Not atomic with the load, and need not be: an exception taken from
    // here on, on this CPU, sees the store (program order); two CPUs
    // exiting at once both try semihosting, and either ends the run.
    EXITING.store(true, Ordering::Release);
    EXIT_STATUS.store(code, Ordering::Relaxed);
    crate::console::flush();
    // Returns only if semihosting is not there (see the module's comment).
    sys_exit_extended(ExitReason::ADP_Stopped_ApplicationExit, code as usize);
    semihosting_unavailable()
}

/// Semihosting is not there (QEMU runs without it): say so and power off
/// instead.
fn semihosting_unavailable() -> ! {
    crate::console::emergency_print(format_args!(
        "\nsemihosting is not enabled (-semihosting-config enable=on,target=native): powering off instead of exiting with status {}\n",
        EXIT_STATUS.load(Ordering::Relaxed) as u32
    ));
    system_off()
}

/// Powers the machine off through PSCI SYSTEM_OFF; parks the CPU if that
/// is impossible.
pub fn system_off() -> ! {
    crate::console::flush();
    // SYSTEM_OFF does not return when it works.
    let _ = match PSCI.load(Ordering::Relaxed) {
        PSCI_HVC => smccc::psci::system_off::<Hvc>(),
        PSCI_SMC => smccc::psci::system_off::<Smc>(),
        _ => Ok(()),
    };
    crate::console::emergency_print(format_args!(
        "\nPSCI SYSTEM_OFF is not available or failed; halting\n"
    ));
    park()
}

/// Stops this CPU for good.
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// Reports a fatal error and ends the run with [`exit_status::FATAL`]; a second
/// fatal error while doing so parks the CPU.
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    fatal_with_status(exit_status::FATAL, message)
}

/// Reports a fatal error (on the console, or before it exists through
/// semihosting) and ends the run with `status`.
pub fn fatal_with_status(status: i32, message: fmt::Arguments<'_>) -> ! {
    if FATAL_REPORTED.load(Ordering::Relaxed) {
        park();
    }
    FATAL_REPORTED.store(true, Ordering::Relaxed);
    crate::console::emergency_print(format_args!("\nFATAL: {message}\n"));
    exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::emergency_print(format_args!("\nPANIC: {info}\n"));
    exit(exit_status::PANIC)
}
