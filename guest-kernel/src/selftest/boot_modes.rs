// SPDX-License-Identifier: GPL-2.0-or-later
//! The test kernel's boot modes besides `test`, each checked by the host
//! from what the guest prints and how it exits: `fault` and `overflow`
//! provoke the fatal exception report (an unmapped load, a stack overflow
//! into the guard page), `hold-timeout` holds a raised timeout interrupt
//! for the snapshot test.

use core::arch::asm;

use stopwatch_abi::NANOS_PER_SEC;

use crate::arch::timer;
use crate::drivers::stopwatch::Stopwatch;
use crate::sync::IrqsMasked;
use crate::{power, println};

/// An address no page table maps: inside the 39-bit address space, above
/// the most RAM `virt` places below its high MMIO (256 GiB).
const UNMAPPED_ADDRESS: u64 = 0x7f_dead_0000;

/// Boot mode `fault`: a load from an unmapped address, to test the fatal
/// exception report (ESR, FAR, ELR), which ends the run with
/// [`power::exit_status::FATAL`]. Exits with 1 if the load does not fault.
pub fn provoke_data_abort() -> ! {
    println!("fault: loading from unmapped address {UNMAPPED_ADDRESS:#x}");
    // SAFETY: A load from an address that no page table entry maps: it can
    // only fault, and the exception ends the run. Should the address be
    // mapped after all, it is RAM or a device that reads without effect,
    // and the value is dropped.
    unsafe {
        asm!(
            "ldr {value}, [{address}]",
            address = in(reg) UNMAPPED_ADDRESS,
            value = out(reg) _,
            options(nostack, readonly, preserves_flags),
        );
    }
    println!("fault: no exception: {UNMAPPED_ADDRESS:#x} is mapped");
    power::exit(1)
}

/// How long boot mode `hold-timeout` keeps IRQs masked.
const HOLD_NS: u64 = 3 * NANOS_PER_SEC;

/// Boot mode `hold-timeout`, for the snapshot of a machine whose device
/// interrupt is raised and not yet acknowledged: arms a 100 ms timeout on
/// the stopwatch, then keeps IRQs masked for 3 s of guest time (the line
/// stays high, pending at the GIC) while the host takes its snapshot; then
/// lets the interrupt in. Exits with 0 if exactly one timeout interrupt
/// arrived, else 1.
pub fn hold_timeout(stopwatch: Option<&Stopwatch>) -> ! {
    let Some(stopwatch) = stopwatch else {
        println!("hold-timeout: no stopwatch device");
        power::exit(1)
    };
    stopwatch.reset();
    let before = stopwatch.timeouts();
    {
        let _masked = IrqsMasked::new();
        stopwatch.timeout_ns(100_000_000);
        println!("hold-timeout: timeout armed, IRQs masked for 3 s");
        let deadline = timer::counter() + timer::clock().ns_to_ticks(HOLD_NS);
        while timer::counter() < deadline {
            core::hint::spin_loop();
        }
    }
    // Unmasked: the pending interrupt is taken at once; give it time.
    timer::wait_ns(100_000_000);
    let arrived = stopwatch.timeouts() - before;
    println!("hold-timeout: {arrived} timeout interrupt(s) after unmasking");
    power::exit(if arrived == 1 { 0 } else { 1 })
}

/// Boot mode `overflow`: recursion without end, to test that a kernel stack
/// overflow faults in the guard page below the stack and is reported as
/// such (with [`power::exit_status::FATAL`]) instead of silently overwriting what
/// lies below. Exits with 1 if it ever returns.
pub fn overflow_the_stack() -> ! {
    println!("overflow: recursing until the stack runs out");
    let depth = recurse(0);
    println!("overflow: no fault after {depth} frames");
    power::exit(1)
}

/// One 512-byte frame more per call; `black_box` keeps the frame and the
/// addition after the call keeps it from being a tail call.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}
