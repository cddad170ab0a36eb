// SPDX-License-Identifier: GPL-2.0-or-later
//! FP/SIMD state across interrupts: the vector registers, FPCR and FPSR a
//! loop holds keep their values while interrupts are taken whose handling
//! overwrites them all (the exception entry must save and restore them).

use core::arch::asm;
use core::sync::atomic::Ordering;

use stopwatch_abi::NANOS_PER_SEC;

use super::Checker;
use crate::arch::{exceptions, timer};
use crate::drivers::stopwatch::Stopwatch;
use crate::interrupts::{self, Source};
use crate::sync::IrqsMasked;

/// The vector registers [`fp_simd_survive_interrupts`] fills: some of each
/// AAPCS64 group, the caller-saved v0-v7 and v16-v31 and the callee-saved
/// (low half only) v8-v15.
const FP_SIMD_TESTED: [u8; 8] = [0, 1, 7, 8, 15, 16, 24, 31];
/// The values the test puts in those registers: the bytes within each
/// differ, and each byte differs from the same byte of every other, so a
/// value restored from the wrong slot, or with its halves swapped, shows.
const FP_SIMD_PATTERN: [u128; 8] = {
    let mut pattern = [0; 8];
    let mut index = 0;
    while index < pattern.len() {
        pattern[index] = u128::from_le_bytes(*b"0123456789abcdef")
            ^ (u128::from_le_bytes([0x10; 16]) * index as u128);
        index += 1;
    }
    pattern
};
/// FPCR for the test: AHP, DN and FZ, none of which integer code notices.
const FPCR_PATTERN: u64 = 0x0700_0000;
/// FPSR for the test: the QC, IXC and IOC flags.
const FPSR_PATTERN: u64 = 0x0800_0011;
/// How long the test waits for its interrupts at most.
const FP_SIMD_WAIT_NS: u64 = NANOS_PER_SEC;

/// FP/SIMD registers, FPCR and FPSR keep their values across interrupts
/// whose handling overwrites them all (see
/// [`exceptions::set_clobber_fp_simd_after_irq`]): a virtual timer
/// interrupt and, if there is a stopwatch, a TIMEOUT_NS interrupt, taken
/// while an assembly loop keeps the values in the registers.
pub(super) fn fp_simd_survive_interrupts(t: &Checker, stopwatch: Option<&Stopwatch>) {
    let mut kept = [0u128; 8];
    let mut kept_fpcr_fpsr = [0u64; 2];

    let timer_route =
        interrupts::route_of(Source::VirtualTimer).filter(|_| timer::interrupt_routed());
    let Some(timer_route) = timer_route else {
        fail!(t, "the virtual timer interrupt is not routed");
        return;
    };
    let stopwatch_route = interrupts::route_of(Source::Stopwatch(0));
    // The interrupts are set up with IRQs masked, so they are taken only
    // inside the loop, with the registers filled. The first source is the
    // stopwatch if there is one; without it, both are the timer.
    let masked = IrqsMasked::new();
    let (second, second_before) = (
        timer_route.counts.this(),
        timer_route.counts.this().load(Ordering::Relaxed),
    );
    timer::arm_interrupt(timer::counter() + timer::clock().ns_to_ticks(1_000_000));
    let (first, first_before) = match (stopwatch, stopwatch_route) {
        (Some(stopwatch), Some(route)) => {
            let before = route.counts.this().load(Ordering::Relaxed);
            stopwatch.timeout_ns(2_000_000);
            (route.counts.this(), before)
        }
        _ => (second, second_before),
    };
    let deadline = timer::counter() + timer::clock().ns_to_ticks(FP_SIMD_WAIT_NS);
    exceptions::set_clobber_fp_simd_after_irq(true);
    // SAFETY: The loop only reads the two counters (atomics, read with
    // plain loads) and the counter register; it writes only `kept` and
    // `kept_fpcr_fpsr`, and the registers it declares. FPCR and FPSR are
    // restored before the end; PSTATE.I is masked again, as it was.
    unsafe {
        asm!(
            "ldp q0, q1, [{pattern}]",
            "ldp q7, q8, [{pattern}, #32]",
            "ldp q15, q16, [{pattern}, #64]",
            "ldp q24, q31, [{pattern}, #96]",
            "mrs {saved_fpcr}, fpcr",
            "mrs {saved_fpsr}, fpsr",
            "msr fpcr, {fpcr}",
            "msr fpsr, {fpsr}",
            // Let the interrupts in and spin until both counts have moved
            // or the deadline has passed.
            "msr daifclr, #2",
            "1:",
            "ldr {a}, [{first}]",
            "ldr {b}, [{second}]",
            "cmp {a}, {first_before}",
            "ccmp {b}, {second_before}, #4, ne",
            "b.ne 2f",
            "isb",
            "mrs {a}, cntvct_el0",
            "cmp {a}, {deadline}",
            "b.lo 1b",
            "2:",
            "msr daifset, #2",
            "stp q0, q1, [{kept}]",
            "stp q7, q8, [{kept}, #32]",
            "stp q15, q16, [{kept}, #64]",
            "stp q24, q31, [{kept}, #96]",
            "mrs {a}, fpcr",
            "mrs {b}, fpsr",
            "stp {a}, {b}, [{kept_fpcr_fpsr}]",
            "msr fpcr, {saved_fpcr}",
            "msr fpsr, {saved_fpsr}",
            pattern = in(reg) FP_SIMD_PATTERN.as_ptr(),
            kept = in(reg) kept.as_mut_ptr(),
            kept_fpcr_fpsr = in(reg) kept_fpcr_fpsr.as_mut_ptr(),
            first = in(reg) first.as_ptr(),
            first_before = in(reg) first_before,
            second = in(reg) second.as_ptr(),
            second_before = in(reg) second_before,
            deadline = in(reg) deadline,
            fpcr = in(reg) FPCR_PATTERN,
            fpsr = in(reg) FPSR_PATTERN,
            saved_fpcr = out(reg) _,
            saved_fpsr = out(reg) _,
            a = out(reg) _,
            b = out(reg) _,
            out("v0") _, out("v1") _, out("v7") _, out("v8") _,
            out("v15") _, out("v16") _, out("v24") _, out("v31") _,
            options(nostack),
        );
    }
    exceptions::set_clobber_fp_simd_after_irq(false);
    drop(masked);

    for (which, count, before) in [
        ("first", first, first_before),
        ("second", second, second_before),
    ] {
        let arrived = count.load(Ordering::Relaxed) != before;
        check!(t, arrived, else "the {which} interrupt did not arrive within 1 s");
    }
    for ((register, expected), found) in FP_SIMD_TESTED.iter().zip(FP_SIMD_PATTERN).zip(kept) {
        check!(t, found == expected, else "q{register} is {found:#034x}, was {expected:#034x}");
    }
    let [fpcr, fpsr] = kept_fpcr_fpsr;
    let (fpcr_was, fpsr_was) = (FPCR_PATTERN, FPSR_PATTERN);
    let both_kept = fpcr & fpcr_was == fpcr_was && fpsr & fpsr_was == fpsr_was;
    check!(t, both_kept, else "FPCR {fpcr:#x}, FPSR {fpsr:#x}, were {fpcr_was:#x}, {fpsr_was:#x}");
}
