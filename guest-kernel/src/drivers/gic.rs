// SPDX-License-Identifier: GPL-2.0-or-later
//! The interrupt controller, GICv2 or GICv3 as the device tree says,
//! through the `arm-gic` crate.
//!
//! The kernel runs Non-secure whenever the GIC has two security states
//! (QEMU's `secure=on`; the boot code hands every interrupt to Group 1 when
//! it starts at EL3, and QEMU does that itself for a Linux Image). Six gaps
//! in `arm-gic` 0.10 are filled here:
//! - its GICv2 `setup` writes all 32 GICD_IGROUPR registers, past the 9
//!   that QEMU's GIC implements (288 interrupts), and QEMU logs each stray
//!   byte as a guest error; so the GICv2 is set up here, and only the
//!   interrupts in use get their group set;
//! - its GICv2 driver cannot set GICD_ITARGETSR, and an SPI whose target
//!   list is empty is never delivered (seen with `-smp 2`), so
//!   [`Gic::enable_interrupt`] targets SPIs at this CPU itself;
//! - its GICv3 driver takes redistributors by index, which need not be the
//!   kernel's CPU index: each CPU finds its own by its MPIDR
//!   (GICR_TYPER's affinity), once, at [`Gic::new`] or
//!   [`Gic::init_this_cpu`];
//! - its GICv2 `set_interrupt_priority` writes a whole GICD_IPRIORITYR word
//!   and so resets three neighbouring interrupts' priorities; it is not
//!   used: the reset priority (0, the highest) passes the priority mask
//!   (0xff), which is all a kernel with no nesting needs;
//! - its GICv3 `setup` leaves ICC_PMR_EL1 at 0 (everything masked);
//! - its GICv2 Group 1 acknowledge and end go through GICC_AIAR/GICC_AEOIR,
//!   which are for Secure software taking Group 1 interrupts (QEMU does not
//!   even implement them: the read returns 0 and the handler loops). The
//!   kernel's own group, whichever it is, is acknowledged through
//!   GICC_IAR and ended through GICC_EOIR, in both security states;
//! - its GICv2 `enable_group1` sets GICD_CTLR bit 1, which the Non-secure
//!   view ignores (there, bit 0 enables Group 1): bit 0 enables "our"
//!   group in both cases, so that is the one set.

use core::ptr::NonNull;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arm_gic::gicv2::{GicV2, SgiTarget, SgiTargetListFilter};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget as SgiTargetV3, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use board_discovery::{Gic as GicInfo, Interrupt, Trigger as DtTrigger};

use crate::arch::cpu::{self, PerCpu, MAX_CPUS};
use crate::arch::mmio;

/// What the GIC knows of one CPU, set by the CPU itself when it sets up
/// its interface ([`Gic::init_this_cpu`]), read by any CPU that sends it
/// an SGI or routes an SPI to it.
struct CpuInterface {
    /// On GICv2, its CPU interface's bit in GICD_ITARGETSR (what an SGI
    /// or an SPI targets); on GICv3, the index of its redistributor.
    target: AtomicUsize,
    /// Its MPIDR affinity (what GICv3 routes SPIs and SGIs by).
    mpidr: AtomicU64,
    /// Whether the CPU has set up its interface (Release, after the rest).
    ready: AtomicBool,
}

static CPU_INTERFACE: PerCpu<CpuInterface> = PerCpu::new(
    [const {
        CpuInterface {
            target: AtomicUsize::new(0),
            mpidr: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }; MAX_CPUS],
);

/// CPU `cpu`'s interface: its target and MPIDR, if it has set it up.
fn cpu_interface(cpu: usize) -> Option<(usize, u64)> {
    let interface = CPU_INTERFACE.of(cpu)?;
    interface.ready.load(Ordering::Acquire).then(|| {
        (
            interface.target.load(Ordering::Relaxed),
            interface.mpidr.load(Ordering::Relaxed),
        )
    })
}

/// `GICD_ITARGETSR<n>`: one byte per interrupt, CPU target bit mask.
const GICD_ITARGETSR: usize = 0x800;
/// GICC_CTLR, at the start of the GICv2 CPU interface; bit 0 enables the
/// signalling of our group's interrupts to this CPU.
const GICC_CTLR_ENABLE: u32 = 1;

/// The interrupt controller of this CPU.
pub enum Gic {
    /// GICv2: memory-mapped distributor and CPU interface.
    V2 {
        /// The `arm-gic` driver.
        driver: GicV2<'static>,
        /// Distributor base, for GICD_ITARGETSR.
        distributor: NonNull<u8>,
        /// CPU interface base (banked per CPU), for GICC_CTLR.
        cpu_interface: *mut u32,
    },
    /// GICv3: memory-mapped distributor and redistributors, system-register
    /// CPU interface.
    V3(GicV3<'static>),
}

// SAFETY: The drivers hold pointers to MMIO registers, which any CPU may
// access (GICv2's CPU interface is banked: each CPU reaching it through the
// same pointer gets its own); the kernel keeps the only instance behind an
// `IrqMutex`.
unsafe impl Send for Gic {}

impl Gic {
    /// Takes over the GIC that the device tree describes and enables it.
    ///
    /// # Safety
    ///
    /// The regions in `info` must be mapped as Device memory, be the GIC's
    /// registers, and not be accessed by anything else. `cpu_count` must
    /// be the number of CPUs (one redistributor each, on GICv3).
    pub unsafe fn new(info: &GicInfo, cpu_count: usize) -> Self {
        match *info {
            GicInfo::V2 {
                distributor,
                cpu_interface,
            } => {
                let distributor = NonNull::new(distributor.base as *mut u8)
                    .expect("GIC distributor at address 0");
                let cpu_interface = cpu_interface.base as *mut u32;
                // SAFETY: The caller promises both regions are the GIC's,
                // mapped and unaliased.
                let mut driver =
                    unsafe { GicV2::new(distributor.as_ptr().cast(), cpu_interface.cast()) };
                // What `driver.setup()` does, minus its stray IGROUPR writes
                // (interrupts keep their reset group: Group 0 without
                // Security Extensions; with them, Group 1, which the
                // Non-secure view cannot change anyway). GICD_CTLR bit 0
                // enables that group in either case (see the module's
                // comment; `enable_group0` sets bit 0).
                driver.enable_group0(true);
                let mut gic = Gic::V2 {
                    driver,
                    distributor,
                    cpu_interface,
                };
                gic.init_this_cpu();
                gic
            }
            GicInfo::V3 {
                distributor,
                redistributors,
            } => {
                // SAFETY: The caller promises both regions are the GIC's,
                // mapped and unaliased, and gives the CPU count.
                let driver = unsafe {
                    let distributor = UniqueMmioPointer::new(
                        NonNull::new(distributor.base as *mut _)
                            .expect("GIC distributor at address 0"),
                    );
                    let redistributors = NonNull::new(redistributors.base as *mut _)
                        .expect("GIC redistributors at address 0");
                    GicV3::new(distributor, redistributors, cpu_count.max(1))
                };
                let Ok(mut driver) = driver else {
                    panic!("GICv3 redistributor frames not recognised");
                };
                // Every redistributor and the distributor to their defaults
                // (all interrupts Non-secure Group 1, disabled), this CPU's
                // interface on. Then what `init_this_cpu` does on the others.
                let redistributor = this_cpu_redistributor(&mut driver);
                driver.setup(redistributor);
                let mut gic = Gic::V3(driver);
                gic.init_this_cpu();
                gic
            }
        }
    }

    /// Sets up this CPU's own part of the GIC: its CPU interface (GICv2) or
    /// its redistributor and system-register interface (GICv3), taking all
    /// priorities and signalling our group's interrupts. Every CPU calls
    /// this once ([`new`](Self::new) for the boot CPU), before enabling
    /// its private interrupts.
    pub fn init_this_cpu(&mut self) {
        match self {
            Gic::V2 {
                driver,
                distributor,
                cpu_interface,
            } => {
                driver.set_priority_mask(0xff);
                // SAFETY: GICC_CTLR is the first register of the CPU
                // interface, banked per CPU and mapped per `new`'s caller's
                // promise; `arm-gic` only writes it in `setup`, which is
                // never called. GICD_ITARGETSR0 is byte-accessible, inside
                // the distributor, and `arm-gic` never touches it; its
                // bytes (SGI targets) read as this CPU's own bit mask.
                let this_cpu_mask = unsafe {
                    mmio::write_u32(*cpu_interface, GICC_CTLR_ENABLE);
                    mmio::read_u8(distributor.as_ptr().add(GICD_ITARGETSR))
                };
                let this = CPU_INTERFACE.this();
                this.target
                    .store(usize::from(this_cpu_mask), Ordering::Relaxed);
            }
            Gic::V3(driver) => {
                let redistributor = this_cpu_redistributor(driver);
                let this = CPU_INTERFACE.this();
                this.target.store(redistributor, Ordering::Relaxed);
                // System registers on, redistributor awake (ICC_SRE_EL1,
                // GICR_WAKER), EOI also deactivates.
                driver.init_cpu(redistributor);
                // Its priority mask resets to 0, which masks everything:
                // let all priorities through.
                GicCpuInterface::set_priority_mask(0xff);
                GicCpuInterface::enable_group1(true);
            }
        }
        let this = CPU_INTERFACE.this();
        this.mpidr.store(cpu::mpidr(), Ordering::Relaxed);
        this.ready.store(true, Ordering::Release);
    }

    /// Sends SGI `intid` to the CPU with index `cpu`; nothing if it has not
    /// set up its interface.
    pub fn send_sgi(&mut self, intid: IntId, cpu: usize) {
        let Some((target, mpidr)) = cpu_interface(cpu) else {
            return;
        };
        match self {
            Gic::V2 { driver, .. } => {
                let mask = target;
                driver.send_sgi(
                    intid,
                    SgiTarget::List {
                        target_list_filter: SgiTargetListFilter::CPUTargetList,
                        target_list: mask as u16,
                    },
                );
            }
            Gic::V3(_) => {
                let [aff0, aff1, aff2, _, aff3, ..] = mpidr.to_le_bytes();
                let _ = GicCpuInterface::send_sgi(
                    intid,
                    SgiTargetV3::List {
                        affinity3: aff3,
                        affinity2: aff2,
                        affinity1: aff1,
                        target_list: 1 << (aff0 & 0xf),
                    },
                    SgiTargetGroup::CurrentGroup1,
                );
            }
        }
    }

    /// Routes SPI `intid` to the CPU with index `cpu` (GICD_ITARGETSR on
    /// GICv2, GICD_IROUTER on GICv3); `false` if that CPU has not set up
    /// its interface, or `intid` is not an SPI.
    pub fn route_spi(&mut self, intid: IntId, cpu: usize) -> bool {
        let Some((target, mpidr)) = cpu_interface(cpu).filter(|_| intid.is_spi()) else {
            return false;
        };
        match self {
            Gic::V2 { distributor, .. } => {
                // SAFETY: As in `enable_interrupt`: GICD_ITARGETSR is
                // byte-accessible, inside the distributor, and `arm-gic`
                // never touches it. One target bit: this CPU's interface.
                unsafe {
                    let targets = distributor.as_ptr().add(GICD_ITARGETSR);
                    mmio::write_u8(targets.add(u32::from(intid) as usize), target as u8);
                }
                true
            }
            Gic::V3(driver) => driver.distributor().set_routing(intid, Some(mpidr)).is_ok(),
        }
    }

    /// Configures `interrupt`'s trigger, routes it to this CPU and enables
    /// it.
    pub fn enable_interrupt(&mut self, interrupt: Interrupt) {
        let Ok(intid) = IntId::try_from(interrupt.intid) else {
            panic!("invalid INTID {} in the device tree", interrupt.intid);
        };
        let trigger = match interrupt.trigger {
            DtTrigger::LevelHigh | DtTrigger::LevelLow => Trigger::Level,
            DtTrigger::EdgeRising | DtTrigger::EdgeFalling => Trigger::Edge,
        };
        match self {
            Gic::V2 {
                driver,
                distributor,
                ..
            } => {
                if intid.is_spi() {
                    let index = interrupt.intid as usize;
                    // SAFETY: GICD_ITARGETSR is byte-accessible; offsets
                    // 0x800..0xC00 are inside the distributor's 64 KiB frame
                    // and `arm-gic` never touches them, so this does not
                    // conflict with the driver. Bytes 0..7 (SGI/PPI targets)
                    // read as this CPU's own bit mask, whatever it is.
                    unsafe {
                        let targets = distributor.as_ptr().add(GICD_ITARGETSR);
                        let this_cpu = mmio::read_u8(targets);
                        mmio::write_u8(targets.add(index), this_cpu);
                    }
                }
                // An SGI's configuration is fixed (GICD_ICFGR0 is
                // read-only): do not write it.
                if !intid.is_sgi() {
                    driver.set_trigger(intid, trigger);
                }
                let enabled = driver.enable_interrupt(intid, true);
                assert!(
                    enabled.is_ok(),
                    "GIC refused to enable INTID {}",
                    interrupt.intid
                );
            }
            Gic::V3(driver) => {
                // SPIs are routed by GICD_IROUTER, which resets to affinity
                // 0.0.0.0: the boot CPU. SGIs and PPIs live in this CPU's
                // redistributor.
                let redistributor = CPU_INTERFACE.this().target.load(Ordering::Relaxed);
                let cpu = intid.is_private().then_some(redistributor);
                let configured = if intid.is_sgi() {
                    // GICR_ICFGR0 (SGIs) is read-only.
                    Ok(())
                } else {
                    driver.set_trigger(intid, cpu, trigger)
                }
                .and_then(|()| driver.enable_interrupt(intid, cpu, true));
                assert!(
                    configured.is_ok(),
                    "GICv3 refused INTID {}",
                    interrupt.intid
                );
            }
        }
    }

    /// Takes the highest-priority pending interrupt, if any.
    pub fn acknowledge(&mut self) -> Option<IntId> {
        match self {
            // GICC_IAR (see the module's comment: never GICC_AIAR).
            Gic::V2 { driver, .. } => driver.get_and_acknowledge_interrupt(InterruptGroup::Group0),
            Gic::V3(_) => GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1),
        }
    }

    /// Ends the handling of `intid` (priority drop and deactivation).
    pub fn end_interrupt(&mut self, intid: IntId) {
        match self {
            // GICC_EOIR (never GICC_AEOIR).
            Gic::V2 { driver, .. } => driver.end_interrupt(intid, InterruptGroup::Group0),
            Gic::V3(_) => GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1),
        }
    }
}

/// The index of this CPU's redistributor: the one whose GICR_TYPER names
/// this CPU's MPIDR affinity.
fn this_cpu_redistributor(driver: &mut GicV3<'static>) -> usize {
    let mpidr = cpu::mpidr();
    // Every redistributor the driver knows (one per CPU in the tree).
    (0..)
        .map_while(|index| Some((index, driver.gicr_typer(index).ok()?)))
        .find(|(_, typer)| typer.core_mpidr() & cpu::MPIDR_AFFINITY_MASK == mpidr)
        .map(|(index, _)| index)
        .unwrap_or_else(|| panic!("no GICv3 redistributor for MPIDR {mpidr:#x}"))
}
