// SPDX-License-Identifier: GPL-2.0-or-later
//! The Arm generic timer: the virtual counter as a clock, and waiting.
//!
//! On QEMU's `virt` board the virtual counter (CNTVCT_EL0) counts QEMU's
//! virtual clock, the same clock the stopwatch device uses, so guest and
//! device agree on time without any exit.
//!
//! Waiting uses the EL1 virtual timer: program a deadline, then sleep in
//! WFI until its interrupt (or any other) wakes the CPU.
//!
//! Every CPU has its own virtual timer (the same PPI, banked per CPU at
//! the GIC), so what is known about its interrupt is kept per CPU: whether
//! it is routed there, how many came, when the last one was taken.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0,
};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use stopwatch_abi::NANOS_PER_SEC;

use super::cpu::PerCpu;
use crate::sync::{IrqsMasked, SetOnce};

/// Converts counter ticks to nanoseconds as `(ticks * mult) >> SHIFT`:
/// one multiplication on the hot path, no division.
#[derive(Clone, Copy, Debug)]
pub struct CounterClock {
    /// CNTFRQ_EL0, in Hz.
    pub frequency_hz: u64,
    /// `(10^9 << SHIFT) / frequency`, rounded down.
    mult: u64,
}

impl CounterClock {
    /// 32 fractional bits: the rounding error of `mult` is below 1 ns per
    /// 4 s of ticks at 1 GHz, far under one tick.
    const SHIFT: u32 = 32;

    /// The clock for a counter of `frequency_hz` (must not be 0).
    pub const fn new(frequency_hz: u64) -> Self {
        // 10^9 << 32 is about 2^62: it fits in a u64.
        CounterClock {
            frequency_hz,
            mult: (NANOS_PER_SEC << Self::SHIFT) / frequency_hz,
        }
    }

    /// Nanoseconds in `ticks`.
    #[inline(always)]
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ((ticks as u128 * self.mult as u128) >> Self::SHIFT) as u64
    }

    /// Ticks in `ns`, rounded up (only for setting deadlines). Whole
    /// seconds and the rest apart, so nothing overflows.
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        let (seconds, rest) = (ns / NANOS_PER_SEC, ns % NANOS_PER_SEC);
        seconds * self.frequency_hz + (rest * self.frequency_hz).div_ceil(NANOS_PER_SEC)
    }

    #[cfg(feature = "selftest")]
    /// Length of one tick in nanoseconds, rounded up.
    pub fn tick_ns(&self) -> u64 {
        NANOS_PER_SEC.div_ceil(self.frequency_hz)
    }
}

static CLOCK: SetOnce<CounterClock> = SetOnce::new();

/// One CPU's virtual timer interrupt. Only atomics: written by the CPU
/// itself (its handler, its boot), read by any.
struct TimerInterrupts {
    /// Whether the interrupt is routed to this CPU, so WFI can wait for it.
    routed: AtomicBool,
    /// Interrupts handled so far.
    count: AtomicU64,
    /// Guest counter at the IRQ entry of the last one.
    last_entry_counter: AtomicU64,
}

static INTERRUPTS: PerCpu<TimerInterrupts> = PerCpu::new(
    [const {
        TimerInterrupts {
            routed: AtomicBool::new(false),
            count: AtomicU64::new(0),
            last_entry_counter: AtomicU64::new(0),
        }
    }; super::cpu::MAX_CPUS],
);

/// Reads CNTFRQ_EL0 once and prepares the conversion (boot CPU).
pub fn init() -> &'static CounterClock {
    let frequency = CNTFRQ_EL0.get();
    assert!(frequency != 0, "CNTFRQ_EL0 is 0: no counter frequency");
    init_this_cpu();
    CLOCK.set(CounterClock::new(frequency)).unwrap_or_else(|_| {
        panic!("timer initialised twice");
    })
}

/// Masks this CPU's virtual timer: it must not fire before anyone waits
/// (its control register is UNKNOWN at reset).
pub fn init_this_cpu() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::IMASK::SET);
}

/// The clock set up by [`init`].
pub fn clock() -> &'static CounterClock {
    CLOCK.get().expect("timer not initialised")
}

/// Reads the virtual counter.
#[inline(always)]
pub fn counter() -> u64 {
    // The ISB keeps the read from being done early, before the preceding
    // instructions (the architecture allows a speculative counter read).
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// Records that the virtual timer's interrupt now reaches this CPU (the
/// GIC routes it), so waiting can sleep until it.
pub fn set_interrupt_routed() {
    INTERRUPTS.this().routed.store(true, Ordering::Release);
}

/// Whether the virtual timer's interrupt reaches this CPU.
pub fn interrupt_routed() -> bool {
    INTERRUPTS.this().routed.load(Ordering::Acquire)
}

/// Starts the virtual timer: its interrupt fires once the counter reaches
/// `deadline` (in ticks), until [`handle_timer_interrupt`] masks it.
pub fn arm_interrupt(deadline: u64) {
    CNTV_CVAL_EL0.set(deadline);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET);
}

/// The virtual timer's interrupt handler: the deadline passed; mask the
/// (level) interrupt so it stops firing. The waiter sees the counter.
/// `entry_counter` (the counter at the IRQ's entry) is kept for the
/// bench's interrupt latency floor.
pub fn handle_timer_interrupt(entry_counter: u64) {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::SET);
    let this_cpu = INTERRUPTS.this();
    this_cpu
        .last_entry_counter
        .store(entry_counter, Ordering::Relaxed);
    this_cpu.count.fetch_add(1, Ordering::Release);
}

/// Virtual timer interrupts handled so far on this CPU.
pub fn interrupts() -> u64 {
    INTERRUPTS.this().count.load(Ordering::Acquire)
}

/// Guest counter at the IRQ entry of this CPU's last virtual timer
/// interrupt.
pub fn last_interrupt_counter() -> u64 {
    INTERRUPTS.this().last_entry_counter.load(Ordering::Relaxed)
}

#[cfg(feature = "selftest")]
/// Sleeps until the counter reaches `deadline` (in ticks).
pub fn wait_until(deadline: u64) {
    wait_until_or(deadline, || false);
}

/// Sleeps until the counter reaches `deadline` (in ticks) or `condition`
/// holds, whichever comes first; says whether `condition` held.
///
/// `condition` is checked with IRQs masked, so an interrupt that makes it
/// true cannot slip in between the check and the sleep: it is pending, so
/// it ends WFI, and it is taken when the mask is lifted.
pub fn wait_until_or(deadline: u64, condition: impl Fn() -> bool) -> bool {
    let use_timer_irq = interrupt_routed();
    let met = loop {
        let _masked = IrqsMasked::new();
        if condition() {
            break true;
        }
        if counter() >= deadline {
            break false;
        }
        if use_timer_irq {
            arm_interrupt(deadline);
            aarch64_cpu::asm::wfi();
        } else {
            core::hint::spin_loop();
        }
    };
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::IMASK::SET);
    met
}

#[cfg(feature = "selftest")]
/// Sleeps for `ns` nanoseconds.
pub fn wait_ns(ns: u64) {
    let deadline = counter() + clock().ns_to_ticks(ns);
    wait_until(deadline);
}

/// Sleeps until any interrupt arrives, or `condition` holds.
///
/// `condition` is checked with IRQs masked, so an interrupt that makes it
/// true cannot slip in between the check and the sleep.
pub fn wait_for_interrupt_unless(condition: impl Fn() -> bool) {
    let _masked = IrqsMasked::new();
    if !condition() {
        aarch64_cpu::asm::wfi();
    }
}
