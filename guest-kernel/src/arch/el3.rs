// SPDX-License-Identifier: GPL-2.0-or-later
//! What firmware at EL3 would do before starting a Non-secure kernel, for
//! when the kernel itself is started at EL3 (`-M virt,secure=on` with the
//! ELF): hand the interrupt controller to the Non-secure world.
//!
//! A GIC with two security states resets with every interrupt in Group 0,
//! which belongs to the Secure world: from Non-secure EL1 the kernel could
//! neither enable nor take them (GICv2 ignores its GICD_ISENABLER writes
//! for them, GICv3 never signals them as IRQs). Only a Secure access can
//! move them to (Non-secure) Group 1, so this runs at EL3, called by
//! `arch::boot` with the MMU off and before the kernel proper: it uses no
//! statics and the GIC through `arm-gic` (single loads and stores).
//!
//! Every CPU runs this (at EL3 entry QEMU starts them all at `_start`):
//! the boot CPU for the whole GIC, the others, once released, for their own
//! banked part of it (GICv2: GICD_IGROUPR0 and GICC_PMR; GICv3: their
//! redistributor).
//!
//! Anything missing here (no device tree, no GIC) is left alone: the kernel
//! reports it at EL1, with its exit status.

use core::ptr::NonNull;

use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicV3, Group};
use arm_gic::{IntId, UniqueMmioPointer};
use board_discovery::{BoardInfo, Gic};

use super::cpu;

/// Called by `arch::boot` at EL3 with the loader's x0, and whether only
/// this CPU's own (banked) part of the GIC is to be handed over.
#[unsafe(no_mangle)]
extern "C" fn el3_hand_over_interrupts(loader_dtb: usize, this_cpu_only: bool) {
    let Some(board) =
        super::boot::find_device_tree(loader_dtb).and_then(|dtb| BoardInfo::from_dtb(dtb).ok())
    else {
        return;
    };
    match board.gic {
        Some(Gic::V2 {
            distributor,
            cpu_interface,
        }) => {
            // SAFETY: The device tree says these are the GIC's registers;
            // with the MMU off they are accessed as Device memory, and
            // nothing else runs yet.
            let mut gic =
                unsafe { GicV2::new(distributor.base as *mut _, cpu_interface.base as *mut _) };
            // GICD_IGROUPR<n> (read-modify-write per bit): every
            // implemented interrupt to Group 1, the Non-secure group. The
            // first 32 (SGIs, PPIs: GICD_IGROUPR0) are banked per CPU.
            let implemented = if this_cpu_only {
                32
            } else {
                gic.typer().num_irqs()
            };
            for intid in 0..implemented {
                if let Ok(intid) = IntId::try_from(intid) {
                    gic.set_group(intid, arm_gic::InterruptGroup::Group1);
                }
            }
            // GICC_PMR resets to 0 (mask all), and the Non-secure view can
            // only write it once its Secure value is at least 0x80.
            gic.set_priority_mask(0xff);
        }
        Some(Gic::V3 {
            distributor,
            redistributors,
        }) => {
            // SAFETY: As for GICv2; `cpu_count` redistributor frames follow
            // each other from the base the device tree gives.
            let gic = unsafe {
                GicV3::new(
                    UniqueMmioPointer::new(NonNull::new(distributor.base as *mut _).unwrap()),
                    NonNull::new(redistributors.base as *mut _).unwrap(),
                    board.cpu_count.max(1),
                )
            };
            let Ok(mut gic) = gic else { return };
            // This CPU's redistributor: the one whose GICR_TYPER names its
            // MPIDR affinity.
            let mpidr = cpu::mpidr();
            let Some(redistributor) = (0..board.cpu_count).find(|&index| {
                gic.gicr_typer(index)
                    .is_ok_and(|typer| typer.core_mpidr() & cpu::MPIDR_AFFINITY_MASK == mpidr)
            }) else {
                return;
            };
            // It must be awake for its SGI/PPI registers.
            let _ = gic.redistributor_mark_core_awake(redistributor);
            // GICR_IGROUPR0 (this CPU's SGIs and PPIs, the virtual timer's
            // among them) and, unless only this CPU's part is asked for,
            // GICD_IGROUPR<n> (SPIs): Non-secure Group 1.
            let spis = if this_cpu_only {
                0
            } else {
                gic.typer().num_spis()
            };
            for intid in 0..32 + spis {
                if let Ok(intid) = IntId::try_from(intid) {
                    let _ = gic.set_group(intid, Some(redistributor), Group::Group1NS);
                }
            }
        }
        None => {}
    }
}
