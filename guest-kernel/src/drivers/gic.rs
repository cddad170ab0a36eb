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

use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use board_discovery::{Gic as GicInfo, Interrupt, Trigger as DtTrigger};

use crate::arch::mmio;

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
    },
    /// GICv3: memory-mapped distributor and redistributors, system-register
    /// CPU interface.
    V3(GicV3<'static>),
}

// SAFETY: The drivers hold pointers to MMIO registers, which any CPU may
// access; the kernel keeps the only instance behind an `IrqMutex`.
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
                driver.set_priority_mask(0xff);
                // SAFETY: GICC_CTLR is the first register of the CPU
                // interface, mapped per the caller's promise; `arm-gic` only
                // writes it in `setup`, which is never called.
                unsafe { mmio::write_u32(cpu_interface, GICC_CTLR_ENABLE) };
                Gic::V2 {
                    driver,
                    distributor,
                }
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
                    // The device tree's `reg` does not point at them.
                    crate::power::fatal_with_status(
                        crate::power::exit_status::BAD_DEVICE_TREE,
                        format_args!("GICv3 redistributor frames not recognised"),
                    );
                };
                // The kernel runs on CPU 0 (MPIDR affinity 0.0.0.0), whose
                // redistributor is the first.
                driver.setup(0);
                // Unlike its GICv2 `setup`, `arm-gic`'s GICv3 `setup` leaves
                // the priority mask at its reset value 0, which masks
                // everything: let all priorities through.
                GicCpuInterface::set_priority_mask(0xff);
                Gic::V3(driver)
            }
        }
    }

    /// Whether the GIC implements `intid` (GICD_TYPER): enabling one it
    /// does not fails. (An INTID from the device tree is checked first.)
    pub fn implements(&self, intid: u32) -> bool {
        let count = match self {
            Gic::V2 { driver, .. } => driver.typer().num_irqs(),
            Gic::V3(driver) => 32 + driver.typer().num_spis(),
        };
        intid < count.min(1020)
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
                driver.set_trigger(intid, trigger);
                let enabled = driver.enable_interrupt(intid, true);
                assert!(
                    enabled.is_ok(),
                    "GIC refused to enable INTID {}",
                    interrupt.intid
                );
            }
            Gic::V3(driver) => {
                // SPIs are routed by GICD_IROUTER, which resets to affinity
                // 0.0.0.0: this CPU. SGIs and PPIs live in our redistributor.
                let cpu = intid.is_private().then_some(0);
                let configured = driver
                    .set_trigger(intid, cpu, trigger)
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
