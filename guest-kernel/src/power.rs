//! Ending the run: semihosting exit with a status (what tests use), PSCI
//! SYSTEM_OFF (what a real machine does), and the fatal-error path.
//!
//! Semihosting needs QEMU's `-semihosting-config enable=on,target=native`;
//! without it the `HLT #0xf000` it uses is an undefined instruction, which
//! comes back here through the exception vectors: the run then powers off
//! with PSCI instead (and the status is lost, but never silently: the
//! reason is printed first).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use board_discovery::PsciConduit;
use smccc::{Hvc, Smc};

use crate::sync::SetOnce;

/// Exit status of a kernel panic.
pub const EXIT_PANIC: i32 = 101;
/// Exit status of an unexpected exception or other fatal error.
pub const EXIT_FATAL: i32 = 3;

/// How to reach PSCI, from the device tree.
static PSCI: SetOnce<PsciConduit> = SetOnce::new();
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

/// Records the PSCI conduit found in the device tree.
pub fn init(psci: Option<PsciConduit>) {
    if let Some(conduit) = psci {
        let _ = PSCI.set(conduit);
    }
}

/// Ends the run with `code` as QEMU's exit status (semihosting).
pub fn exit(code: i32) -> ! {
    if EXITING.load(Ordering::Acquire) {
        // A fatal error while exiting: do not try semihosting again.
        semihosting_unavailable();
    }
    // Not atomic with the load, and need not be: there is one CPU, and an
    // exception taken from here on sees the store (program order).
    EXITING.store(true, Ordering::Release);
    EXIT_STATUS.store(code, Ordering::Relaxed);
    crate::console::flush();
    semihosting::process::exit(code)
}

/// Whether [`exit`] has started: an exception now most likely comes from
/// its semihosting call.
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// The semihosting call faulted (QEMU runs without semihosting): say so
/// and power off instead.
pub fn semihosting_unavailable() -> ! {
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
    let _ = match PSCI.get() {
        Some(PsciConduit::Hvc) => smccc::psci::system_off::<Hvc>(),
        Some(PsciConduit::Smc) => smccc::psci::system_off::<Smc>(),
        None => Ok(()),
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

/// Reports a fatal error and ends the run with [`EXIT_FATAL`]; a second
/// fatal error while doing so parks the CPU.
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    if FATAL_REPORTED.load(Ordering::Relaxed) {
        park();
    }
    FATAL_REPORTED.store(true, Ordering::Relaxed);
    crate::console::emergency_print(format_args!("\nFATAL: {message}\n"));
    exit(EXIT_FATAL)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::emergency_print(format_args!("\nPANIC: {info}\n"));
    exit(EXIT_PANIC)
}
