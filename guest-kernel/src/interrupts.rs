// SPDX-License-Identifier: GPL-2.0-or-later
//! Interrupt routing: one table of the interrupt sources, with each one's
//! INTID and count, and the IRQ dispatcher the exception vector calls.
//!
//! Adding an interrupt source means adding a [`Source`] variant: what it
//! is called ([`fmt::Display`]) and what handles it ([`Source::handle`]).
//! The table, the GIC setup, the counts and the `irqs` listing follow.
//!
//! The boot CPU sets up the GIC and the table ([`init`], [`route`]); every
//! other CPU then enables the private interrupts (PPIs, SGIs) of the table
//! on itself ([`init_this_cpu`]). Counts are kept per CPU.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arm_gic::IntId;
use board_discovery::{Interrupt, Trigger, MAX_STOPWATCHES};

use crate::arch::cpu::{self, PerCpu, MAX_CPUS};
use crate::arch::timer;
use crate::drivers::gic::Gic;
use crate::sync::{IrqMutex, SetOnce};

/// The interrupt controller. (A `SetOnce` rather than an `Option`, which
/// would start non-zero and so land in `.data`: the flat Image would grow
/// by a page.)
static GIC: SetOnce<IrqMutex<Gic>> = SetOnce::new();

/// Something that raises interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The console UART's receive interrupt.
    ConsoleUart,
    /// The EL1 virtual timer (used for sleeping).
    VirtualTimer,
    /// Stopwatch number N's timeout interrupt.
    Stopwatch(usize),
    /// The SGI another CPU sends to wake this one from WFI (work in its
    /// mailbox, see `smp`); routed only when there are several CPUs.
    Wake,
}

/// The wake-up SGI's INTID.
pub const WAKE_SGI: u32 = 0;

impl Source {
    /// Runs the source's handler; `entry_counter` is the guest counter at
    /// the IRQ's entry (for latency measurements).
    fn handle(self, entry_counter: u64) {
        match self {
            Source::ConsoleUart => crate::console::handle_interrupt(),
            Source::VirtualTimer => timer::handle_timer_interrupt(entry_counter),
            Source::Stopwatch(index) => {
                if let Some(stopwatch) = crate::devices::stopwatch(index) {
                    stopwatch.handle_interrupt(entry_counter);
                }
            }
            // Taking it was the point: the CPU left WFI.
            Source::Wake => {}
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ConsoleUart => f.write_str("uart receive"),
            Source::VirtualTimer => f.write_str("virtual timer"),
            Source::Stopwatch(index) => write!(f, "stopwatch[{index}]"),
            Source::Wake => f.write_str("cpu wake-up"),
        }
    }
}

/// One routed interrupt: its INTID, who handles it, how often it came.
pub struct Route {
    /// The GIC's interrupt ID.
    pub intid: u32,
    /// Its trigger, as the device tree says (for the other CPUs' PPIs).
    pub trigger: Trigger,
    /// What raises it.
    pub source: Source,
    /// Interrupts handled so far, per CPU that handled them.
    pub counts: PerCpu<AtomicU64>,
    /// The CPU an SPI goes to (0 until [`route_to_cpu`]); private
    /// interrupts go to every CPU that enabled them.
    pub target: AtomicUsize,
}

impl Route {
    /// Interrupts handled so far, on all CPUs.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

/// At most the console, the timer, the wake-up SGI and every stopwatch.
const MAX_ROUTES: usize = 3 + MAX_STOPWATCHES;

/// The routed interrupts, in the order they were set up.
pub type RouteTable = heapless::Vec<Route, MAX_ROUTES>;

static ROUTES: SetOnce<RouteTable> = SetOnce::new();

/// Interrupts with an INTID no route claims.
pub static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Takes over the GIC.
pub fn init(gic: Gic) {
    if GIC.set(IrqMutex::new(gic)).is_err() {
        panic!("GIC initialised twice");
    }
}

/// Enables `sources`' interrupts at the GIC and remembers who owns them.
/// IRQs stay masked at the CPU until [`enable_cpu_irqs`].
pub fn route(sources: impl IntoIterator<Item = (Interrupt, Source)>) {
    let mut table = RouteTable::new();
    GIC.get().expect("GIC not initialised").lock(|gic| {
        for (interrupt, source) in sources {
            gic.enable_interrupt(interrupt);
            let route = Route {
                intid: interrupt.intid,
                trigger: interrupt.trigger,
                source,
                counts: PerCpu::new([const { AtomicU64::new(0) }; MAX_CPUS]),
                target: AtomicUsize::new(0),
            };
            if table.push(route).is_err() {
                panic!("more interrupt sources than {MAX_ROUTES} routes");
            }
        }
    });
    ROUTES
        .set(table)
        .unwrap_or_else(|_| panic!("interrupts routed twice"));
}

/// The routes set up by [`route`] (none before).
pub fn routes() -> &'static RouteTable {
    static NONE: RouteTable = RouteTable::new();
    ROUTES.get().unwrap_or(&NONE)
}

#[cfg(feature = "selftest")]
/// The route of `source`, if it has one.
pub fn route_of(source: Source) -> Option<&'static Route> {
    routes().iter().find(|route| route.source == source)
}

#[cfg(feature = "selftest")]
/// Interrupts handled so far from `source` (0 if it has no route).
pub fn count(source: Source) -> u64 {
    route_of(source).map_or(0, Route::count)
}

/// The wake-up SGI, as a route: SGIs are edge-triggered.
pub const WAKE: Interrupt = Interrupt {
    intid: WAKE_SGI,
    trigger: Trigger::EdgeRising,
};

/// On a CPU other than the boot CPU, once [`route`] is done: sets up its
/// part of the GIC and enables the private interrupts of the table (the
/// virtual timer, the wake-up SGI) on it. IRQs stay masked.
pub fn init_this_cpu() {
    GIC.get().expect("GIC not initialised").lock(|gic| {
        gic.init_this_cpu();
        for route in routes().iter().filter(|route| route.intid < 32) {
            gic.enable_interrupt(Interrupt {
                intid: route.intid,
                trigger: route.trigger,
            });
        }
    });
}

/// Sends the wake-up SGI to the CPU with index `cpu` (nothing if it has
/// not set up its part of the GIC yet).
pub fn send_wake(cpu: usize) {
    if let (Some(gic), Ok(intid)) = (GIC.get(), IntId::try_from(WAKE_SGI)) {
        gic.lock(|gic| gic.send_sgi(intid, cpu));
    }
}

/// Why an interrupt could not be moved to another CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The source has no route.
    NoRoute,
    /// Its interrupt is private to each CPU (not an SPI).
    NotShared,
    /// That CPU has not set up its part of the GIC (not online).
    CpuNotReady,
}

/// Routes `source`'s interrupt (an SPI) to the CPU with index `cpu`: its
/// handler runs there from now on.
pub fn route_to_cpu(source: Source, cpu: usize) -> Result<(), RouteError> {
    let route = routes()
        .iter()
        .find(|route| route.source == source)
        .ok_or(RouteError::NoRoute)?;
    let intid = IntId::try_from(route.intid).map_err(|_| RouteError::NotShared)?;
    if !intid.is_spi() {
        return Err(RouteError::NotShared);
    }
    let gic = GIC.get().ok_or(RouteError::CpuNotReady)?;
    if !gic.lock(|gic| gic.route_spi(intid, cpu)) {
        return Err(RouteError::CpuNotReady);
    }
    route.target.store(cpu, Ordering::Relaxed);
    Ok(())
}

/// Unmasks IRQs at this CPU.
pub fn enable_cpu_irqs() {
    // SAFETY: Clearing PSTATE.I only lets IRQs in; the vectors and the
    // handlers they call are set up.
    unsafe {
        core::arch::asm!("msr daifclr, #2", options(nomem, nostack));
    }
}

/// The INTID field of an acknowledged interrupt.
const GICC_IAR_INTID_MASK: u32 = 0x3ff;

/// Called from the IRQ vector: handles every pending interrupt.
pub fn handle_irq() {
    // Stamped first, for the latency measurements.
    let entry_counter = timer::counter();
    let routes = routes();
    let Some(gic) = GIC.get() else { return };
    while let Some(intid) = gic.lock(Gic::acknowledge) {
        // GICv2 puts an SGI's source CPU in bits 10..12 of what it
        // acknowledges (and wants them back at the end): the INTID is
        // bits 0..9.
        let id = u32::from(intid) & GICC_IAR_INTID_MASK;
        match routes.iter().find(|route| route.intid == id) {
            Some(route) => {
                route.counts.this().fetch_add(1, Ordering::Relaxed);
                route.source.handle(entry_counter);
                // A device interrupt handled on another CPU: wake CPU 0,
                // whose waits (the shell's, the tests') check what the
                // handlers count only when something wakes them.
                if route.intid >= 32 && cpu::index() != 0 {
                    send_wake(0);
                }
            }
            None => {
                UNEXPECTED.fetch_add(1, Ordering::Relaxed);
            }
        }
        gic.lock(|gic| gic.end_interrupt(intid));
    }
}
