// SPDX-License-Identifier: GPL-2.0-or-later
//! Every CPU: each one the device tree lists is online, and passes a check
//! run on it through its mailbox (`smp::post`): its MPIDR is the one the
//! tree gives for its index, it runs on its own stack above an unmapped
//! guard page, and its own virtual timer interrupt is taken on it (counted
//! by that CPU, for that CPU's route); and the stopwatch's
//! interrupt, routed to each CPU in turn, is handled there.

use core::sync::atomic::{AtomicU64, Ordering};

use stopwatch_abi::NANOS_PER_SEC;

use super::Checker;
use crate::arch::cpu::{self, PerCpu, MAX_CPUS};
use crate::arch::{mmu, timer};
use crate::drivers::stopwatch::Stopwatch;
use crate::interrupts::{self, Source};
use crate::smp::{self, Job};
use crate::sync::IrqsMasked;

/// What [`check_this_cpu`] found on each CPU.
struct Found {
    /// Its index (TPIDR_EL1), plus one (0: the check did not run).
    index_plus_one: AtomicU64,
    /// Its MPIDR affinity.
    mpidr: AtomicU64,
    /// Virtual timer interrupts it took during the check (its count).
    timer_interrupts: AtomicU64,
    /// Of those, counted on its route by the dispatcher.
    routed: AtomicU64,
    /// Its stack pointer while it ran the check.
    stack_pointer: AtomicU64,
}

static FOUND: PerCpu<Found> = PerCpu::new(
    [const {
        Found {
            index_plus_one: AtomicU64::new(0),
            mpidr: AtomicU64::new(0),
            timer_interrupts: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            stack_pointer: AtomicU64::new(0),
        }
    }; MAX_CPUS],
);

/// How long one CPU's check may take.
const CHECK_TIMEOUT_NS: u64 = 2 * NANOS_PER_SEC;

/// Runs on the CPU under test (IRQs on): records who it is, then arms its
/// virtual timer 0.5 ms ahead and sleeps until the interrupt (if it never
/// comes, the CPU stays here and the boot CPU's wait for the job says so).
fn check_this_cpu(_: usize) {
    let found = FOUND.this();
    found
        .index_plus_one
        .store(cpu::index() as u64 + 1, Ordering::Relaxed);
    found.mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    let stack_pointer: u64;
    // SAFETY: Reads the stack pointer into a register; nothing else.
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) stack_pointer, options(nomem, nostack, preserves_flags));
    }
    found.stack_pointer.store(stack_pointer, Ordering::Relaxed);
    let route = interrupts::routes()
        .iter()
        .find(|route| route.source == Source::VirtualTimer);
    let routed = || route.map_or(0, |route| route.counts.this().load(Ordering::Relaxed));
    let (before, routed_before) = (timer::interrupts(), routed());
    let deadline = timer::counter() + timer::clock().ns_to_ticks(500_000);
    timer::arm_interrupt(deadline);
    while timer::interrupts() == before {
        timer::wait_for_interrupt_unless(|| timer::interrupts() != before);
    }
    found
        .timer_interrupts
        .store(timer::interrupts() - before, Ordering::Relaxed);
    found
        .routed
        .store(routed() - routed_before, Ordering::Release);
}

/// Every CPU of the device tree is online and passes [`check_this_cpu`]
/// on itself.
pub(super) fn every_cpu_online(t: &Checker, _: Option<&Stopwatch>) {
    let board = &t.machine.board;
    let (online, listed) = (smp::online(), board.cpu_count);
    check!(t, online == listed, else "{online} CPUs online, the device tree lists {listed}");
    for (index, &mpidr) in board.cpus.iter().enumerate() {
        if smp::cpu(index) != Some((mpidr, true)) {
            fail!(t, "CPU {index} (MPIDR {mpidr:#x}) is not online");
            continue;
        }
        let job = Job {
            run: check_this_cpu,
            argument: 0,
        };
        if index == cpu::index() {
            check_this_cpu(0);
        } else {
            match smp::post(index, job) {
                Ok(ticket) if smp::wait_done(index, ticket, CHECK_TIMEOUT_NS) => {}
                Ok(_) => {
                    fail!(
                        t,
                        "CPU {index} (MPIDR {mpidr:#x}): its check did not finish within 2 s"
                    );
                    continue;
                }
                Err(error) => {
                    fail!(
                        t,
                        "CPU {index} (MPIDR {mpidr:#x}): cannot post its check: {error:?}"
                    );
                    continue;
                }
            }
        }
        let Some(found) = FOUND.of(index) else {
            continue;
        };
        let ran_on = found.index_plus_one.load(Ordering::Relaxed).wrapping_sub(1);
        check!(t, ran_on == index as u64, else "CPU {index} (MPIDR {mpidr:#x}): its check ran on CPU {ran_on}");
        let seen = found.mpidr.load(Ordering::Relaxed);
        check!(t, seen == mpidr, else "CPU {index}: MPIDR {seen:#x}, the device tree says {mpidr:#x}");
        let taken = found.timer_interrupts.load(Ordering::Relaxed);
        let routed = found.routed.load(Ordering::Acquire);
        check!(t, taken == 1 && routed == 1, else "CPU {index} (MPIDR {mpidr:#x}): {taken} virtual timer interrupts taken on it ({routed} on its route), expected 1");
        // Its own stack, above a guard page the MMU leaves unmapped.
        let sp = found.stack_pointer.load(Ordering::Relaxed);
        match mmu::cpu_kernel_stack(index) {
            Some((guard, stack)) => {
                let inside = (stack.base..stack.end()).contains(&sp);
                check!(t, inside, else "CPU {index}: SP {sp:#x} outside its stack {:#x}..{:#x}", stack.base, stack.end());
                let guarded = !mmu::is_mapped(guard.base) && mmu::is_mapped(stack.base);
                check!(t, guarded, else "CPU {index}: its guard page {:#x} is mapped, or its stack is not", guard.base);
            }
            None => fail!(t, "CPU {index} has no stack"),
        }
    }
    // The wake-up SGIs of the bring-up and of the checks were all known
    // (on GICv2 an SGI is acknowledged with its source CPU in bits 10..12).
    let unexpected = interrupts::UNEXPECTED.load(Ordering::Relaxed);
    check!(t, unexpected == 0, else "{unexpected} interrupts with an INTID no route claims");
}

/// The stopwatch's interrupt (an SPI), routed to each online CPU in turn
/// (`interrupts::route_to_cpu`: GICD_ITARGETSR or GICD_IROUTER), is taken
/// and acknowledged there: a short TIMEOUT_NS arrives once, counted on
/// that CPU's share of its route and on no other. Back to CPU 0 at the end.
pub(super) fn stopwatch_interrupt_on_every_cpu(t: &Checker, stopwatch: &Stopwatch) {
    let Some(route) = interrupts::route_of(Source::Stopwatch(0)) else {
        fail!(t, "the stopwatch interrupt is not routed");
        return;
    };
    let counts = || {
        route
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
    };
    for index in 0..MAX_CPUS {
        let Some((mpidr, online)) = smp::cpu(index) else {
            continue;
        };
        if !online {
            continue; // `every_cpu_online_and_working` says so
        }
        if let Err(error) = interrupts::route_to_cpu(Source::Stopwatch(0), index) {
            fail!(
                t,
                "CPU {index} (MPIDR {mpidr:#x}): the interrupt cannot go there: {error:?}"
            );
            continue;
        }
        let mut before = [0u64; MAX_CPUS];
        let timeouts_before = {
            let _masked = IrqsMasked::new();
            for (slot, count) in before.iter_mut().zip(counts()) {
                *slot = count;
            }
            stopwatch.timeouts()
        };
        stopwatch.timeout_ns(1_000_000);
        // Asleep: the handler's CPU wakes CPU 0 (`interrupts::handle_irq`).
        let limit = timer::counter() + timer::clock().ns_to_ticks(2 * NANOS_PER_SEC);
        timer::wait_until_or(limit, || stopwatch.timeouts() != timeouts_before);
        let arrived = stopwatch.timeouts() - timeouts_before;
        check!(t, arrived == 1, else "CPU {index} (MPIDR {mpidr:#x}): {arrived} timeout interrupts arrived, expected 1");
        for (cpu, (now, was)) in counts().zip(before).enumerate() {
            let taken = now - was;
            let expected = u64::from(cpu == index);
            check!(t, taken == expected, else "interrupt routed to CPU {index}: CPU {cpu} took {taken}, expected {expected}");
        }
        stopwatch.reset();
    }
    if let Err(error) = interrupts::route_to_cpu(Source::Stopwatch(0), 0) {
        fail!(t, "the interrupt cannot go back to CPU 0: {error:?}");
    }
}
