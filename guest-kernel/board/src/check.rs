// SPDX-License-Identifier: GPL-2.0-or-later
//! Checks of the values the kernel uses: one region at a time (as the walk
//! decodes it), then the regions and interrupts against each other once
//! the whole tree is read.

use crate::walk::GICV3_REDISTRIBUTOR_SIZE;
use crate::{
    BoardInfo, BrokenStopwatch, DtbError, FixedList, Gic, PropertyError, Region, ADDRESS_LIMIT,
    MAX_MEMORY_REGIONS, PAGE_SIZE,
};

/// The region, if the kernel's identity map can map it: it ends below
/// [`ADDRESS_LIMIT`] and does not wrap.
fn mappable(region: Region) -> Result<Region, PropertyError> {
    match region.base.checked_add(region.size) {
        Some(end) if end <= ADDRESS_LIMIT => Ok(region),
        _ => Err(PropertyError::new("reg", "beyond the 39-bit address space")),
    }
}

/// A RAM region: whole pages, mappable.
pub(crate) fn memory_region(region: Region) -> Result<Region, PropertyError> {
    if !region.base.is_multiple_of(PAGE_SIZE) || !region.size.is_multiple_of(PAGE_SIZE) {
        return Err(PropertyError::new("reg", "not whole 4 KiB pages"));
    }
    mappable(region)
}

/// A device's register region: page-aligned (each device has its pages
/// and their attributes to itself), not at address 0 (the drivers hold
/// non-null pointers), at least `min_size` bytes (what its driver reaches),
/// mappable. (Not inlined: the walk checks five regions, and the kernel
/// has a size budget.)
#[inline(never)]
pub(crate) fn device_region(region: Region, min_size: u64) -> Result<Region, PropertyError> {
    if region.base == 0 || !region.base.is_multiple_of(PAGE_SIZE) {
        return Err(PropertyError::new("reg", "not page-aligned, or 0"));
    }
    if region.size < min_size {
        return Err(PropertyError::new("reg", "too small"));
    }
    mappable(region)
}

/// Checks the decoded board as a whole: no device region overlaps RAM or
/// another device (the kernel maps each with its own attributes), a GICv3
/// has a redistributor frame pair per CPU, and no two of the interrupts
/// the kernel routes are one. A stopwatch that fails is set apart as
/// broken; anything else is an error. `gic_node` names the GIC's node.
pub(crate) fn board<'a>(info: &mut BoardInfo<'a>, gic_node: &'a str) -> Result<(), DtbError<'a>> {
    let overlap = PropertyError::new("reg", "overlaps RAM or another device");
    let gic = info.gic.map(|gic| gic.regions());
    let devices = [
        info.uart.map(|uart| uart.region),
        gic.map(|[first, _]| first),
        gic.map(|[_, second]| second),
    ];
    for (index, device) in devices.iter().enumerate() {
        if device.is_some_and(|device| clashes(&device, &info.memory, &devices[index + 1..])) {
            let node = match (index, info.uart) {
                (0, Some(uart)) => uart.node_name,
                _ => gic_node,
            };
            return Err(DtbError::Property {
                node,
                error: overlap,
            });
        }
    }
    // The RTC only the bench reads: left out rather than refused.
    #[cfg(feature = "pl031")]
    {
        info.rtc = info.rtc.filter(|rtc| !clashes(rtc, &info.memory, &devices));
    }
    if let Some(Gic::V3 { redistributors, .. }) = info.gic {
        if redistributors.size / GICV3_REDISTRIBUTOR_SIZE < info.cpu_count.max(1) as u64 {
            return Err(DtbError::Property {
                node: gic_node,
                error: PropertyError::new("reg", "too small for the CPUs"),
            });
        }
    }

    let uart_intid = info.uart.and_then(|uart| uart.interrupt).map(|i| i.intid);
    let found = info.stopwatches.take_entries();
    for stopwatch in found.iter() {
        let own = [stopwatch.shared, stopwatch.registers];
        let intid = stopwatch.timeout_interrupt.intid;
        let mut error = None;
        if uart_intid == Some(intid) {
            error = Some(PropertyError::new("interrupts", "already another device's"));
        }
        for other in info.stopwatches.iter() {
            if other.timeout_interrupt.intid == intid {
                error = Some(PropertyError::new("interrupts", "already another device's"));
            }
            if own
                .iter()
                .any(|region| region.overlaps(&other.shared) || region.overlaps(&other.registers))
            {
                error = Some(overlap);
            }
        }
        if own[0].overlaps(&own[1])
            || own
                .iter()
                .any(|region| clashes(region, &info.memory, &devices))
        {
            error = Some(overlap);
        }
        match error {
            None => info.stopwatches.push(*stopwatch),
            Some(error) => info.broken_stopwatches.push(BrokenStopwatch {
                node_name: stopwatch.node_name,
                error,
            }),
        }
    }
    Ok(())
}

/// Whether `region` overlaps RAM or one of `devices`.
fn clashes(
    region: &Region,
    memory: &FixedList<Region, MAX_MEMORY_REGIONS>,
    devices: &[Option<Region>],
) -> bool {
    memory
        .iter()
        .chain(devices.iter().flatten())
        .any(|other| region.overlaps(other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_overlap() {
        let a = Region::new(0x1000, 0x1000);
        assert!(a.overlaps(&Region::new(0x1fff, 1)));
        assert!(!a.overlaps(&Region::new(0x2000, 1)));
        assert_eq!(a.end(), 0x2000);
    }

    #[test]
    fn regions_the_kernel_cannot_map_are_refused() {
        assert!(device_region(Region::new(0x1000, 0x1000), 0x1000).is_ok());
        assert!(device_region(Region::new(0, 0x1000), 0x1000).is_err());
        assert!(device_region(Region::new(0x1800, 0x1000), 0x1000).is_err());
        assert!(device_region(Region::new(0x1000, 0x10), 0x1000).is_err());
        assert!(device_region(Region::new(ADDRESS_LIMIT, 0x1000), 0x1000).is_err());
        assert!(device_region(Region::new(!0xfff, 0x2000), 0x1000).is_err());
        assert!(memory_region(Region::new(0x4000_0000, 0x800)).is_err());
    }
}
