//! Interrupt routing: which INTID belongs to which driver, the IRQ
//! dispatcher the exception vector calls, and per-source counts.

use core::sync::atomic::{AtomicU64, Ordering};

use board_discovery::Interrupt;

use crate::arch::timer;
use crate::drivers::gic::Gic;
use crate::sync::{IrqMutex, SetOnce};

/// The interrupt controller. (A `SetOnce` rather than an `Option`, which
/// would start non-zero and so land in `.data`: the flat Image would grow
/// by a page.)
static GIC: SetOnce<IrqMutex<Gic>> = SetOnce::new();

/// Which INTID belongs to which source; fixed once set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Routes {
    /// The console UART's receive interrupt.
    pub uart: Option<u32>,
    /// The stopwatch's timeout interrupt.
    pub stopwatch: Option<u32>,
    /// The EL1 virtual timer (used for sleeping).
    pub virtual_timer: Option<u32>,
}

static ROUTES: SetOnce<Routes> = SetOnce::new();

/// Interrupts handled so far, per source.
pub struct Counts {
    /// UART receive interrupts.
    pub uart: AtomicU64,
    /// Stopwatch timeout interrupts.
    pub stopwatch: AtomicU64,
    /// Virtual timer interrupts.
    pub virtual_timer: AtomicU64,
    /// Interrupts with an INTID no driver claims.
    pub unexpected: AtomicU64,
}

/// The counts shown by the `irqs` command.
pub static COUNTS: Counts = Counts {
    uart: AtomicU64::new(0),
    stopwatch: AtomicU64::new(0),
    virtual_timer: AtomicU64::new(0),
    unexpected: AtomicU64::new(0),
};

/// Takes over the GIC.
pub fn init(gic: Gic) {
    if GIC.set(IrqMutex::new(gic)).is_err() {
        panic!("GIC initialised twice");
    }
}

/// Enables the given interrupts at the GIC and remembers who owns them.
/// IRQs stay masked at the CPU until [`enable_cpu_irqs`].
pub fn route(
    uart: Option<Interrupt>,
    stopwatch: Option<Interrupt>,
    virtual_timer: Option<Interrupt>,
) {
    GIC.get().expect("GIC not initialised").lock(|gic| {
        for interrupt in [uart, stopwatch, virtual_timer].into_iter().flatten() {
            gic.enable_interrupt(interrupt);
        }
    });
    let routes = Routes {
        uart: uart.map(|i| i.intid),
        stopwatch: stopwatch.map(|i| i.intid),
        virtual_timer: virtual_timer.map(|i| i.intid),
    };
    ROUTES
        .set(routes)
        .unwrap_or_else(|_| panic!("interrupts routed twice"));
}

/// The routes set up by [`route`].
pub fn routes() -> Routes {
    ROUTES.get().copied().unwrap_or_default()
}

/// Unmasks IRQs at this CPU.
pub fn enable_cpu_irqs() {
    // SAFETY: Clearing PSTATE.I only lets IRQs in; the vectors and the
    // handlers they call are set up.
    unsafe {
        core::arch::asm!("msr daifclr, #2", options(nomem, nostack));
    }
}

/// Called from the IRQ vector: handles every pending interrupt.
pub fn handle_irq() {
    // Stamped first, for the latency measurements.
    let entry_counter = timer::counter();
    let routes = routes();
    let Some(gic) = GIC.get() else { return };
    while let Some(intid) = gic.lock(Gic::acknowledge) {
        let raw = u32::from(intid);
        if Some(raw) == routes.stopwatch {
            COUNTS.stopwatch.fetch_add(1, Ordering::Relaxed);
            if let Some(stopwatch) = crate::stopwatch() {
                stopwatch.handle_interrupt(entry_counter);
            }
        } else if Some(raw) == routes.uart {
            COUNTS.uart.fetch_add(1, Ordering::Relaxed);
            crate::console::handle_interrupt();
        } else if Some(raw) == routes.virtual_timer {
            COUNTS.virtual_timer.fetch_add(1, Ordering::Relaxed);
            timer::handle_timer_interrupt();
        } else {
            COUNTS.unexpected.fetch_add(1, Ordering::Relaxed);
        }
        gic.lock(|gic| gic.end_interrupt(intid));
    }
}
