// SPDX-License-Identifier: GPL-2.0-or-later
//! Discovery against device trees dumped from QEMU's `virt` board.
//!
//! Fixtures (`tests/fixtures/`, compacted with `dtc -I dtb -O dtb`):
//! - `virt-gicv2.dtb`: `-M virt -cpu cortex-a53 -m 128M` (no stopwatch);
//! - `virt-gicv3-smp2.dtb`: `-M virt,gic-version=3 -cpu max -smp 2 -m 256M`;
//! - `virt-stopwatch.dtb`: the patched QEMU with `-M virt -cpu cortex-a53
//!   -m 128M -device stopwatch -kernel <kernel> -append test=demo`;
//! - `virt-gicv3-two-stopwatches.dtb`: `-M virt,gic-version=3 -cpu max
//!   -m 128M -device stopwatch -device stopwatch,start_at_boot=off`;
//! - `virt-secure.dtb`: `-M virt,secure=on -cpu cortex-a53 -m 128M
//!   -kernel <kernel ELF>` (TrustZone: a disabled Secure-only `secram`
//!   memory node and Secure UART, no `/psci` as QEMU starts the ELF at EL3);
//! - `synthetic-two-stopwatches.dtb`: the GICv2 tree with two stopwatch
//!   nodes added by hand (`dtc`) whose regions interleave, a layout the
//!   platform bus may produce: nothing may assume a fixed offset between a
//!   device's two regions.

use board_discovery::{BoardInfo, Gic, Interrupt, PsciConduit, Region, Trigger};

const GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2.dtb");
const GICV3_SMP2: &[u8] = include_bytes!("fixtures/virt-gicv3-smp2.dtb");
const ONE_STOPWATCH: &[u8] = include_bytes!("fixtures/virt-stopwatch.dtb");
const TWO_STOPWATCHES_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3-two-stopwatches.dtb");
const SECURE: &[u8] = include_bytes!("fixtures/virt-secure.dtb");
const TWO_STOPWATCHES_INTERLEAVED: &[u8] = include_bytes!("fixtures/synthetic-two-stopwatches.dtb");

/// Where QEMU's platform bus starts: child address 0 of `platform-bus`.
const PLATFORM_BUS_BASE: u64 = 0x0c00_0000;

fn level_spi(n: u32) -> Interrupt {
    Interrupt {
        intid: 32 + n,
        trigger: Trigger::LevelHigh,
    }
}

#[test]
fn gicv2_board_without_stopwatch() {
    let info = BoardInfo::from_dtb(GICV2).unwrap();
    assert_eq!(
        info.memory.iter().copied().collect::<Vec<_>>(),
        [Region::new(0x4000_0000, 128 << 20)]
    );
    assert_eq!(
        info.gic,
        Some(Gic::V2 {
            distributor: Region::new(0x0800_0000, 0x1_0000),
            cpu_interface: Region::new(0x0801_0000, 0x1_0000),
        })
    );
    let uart = info.uart.unwrap();
    assert_eq!(uart.node_name, "pl011@9000000");
    assert!(uart.is_pl011);
    assert_eq!(uart.region, Region::new(0x0900_0000, 0x1000));
    assert_eq!(uart.interrupt, Some(level_spi(1)));
    assert_eq!(info.psci, Some(PsciConduit::Hvc));
    assert_eq!(info.cpu_count, 1);
    assert_eq!(info.cpus.iter().copied().collect::<Vec<_>>(), [0]);
    // PPI 11, level-high: INTID 27.
    assert_eq!(
        info.virtual_timer,
        Some(Interrupt {
            intid: 27,
            trigger: Trigger::LevelHigh
        })
    );
    assert_eq!(info.bootargs, "");
    assert!(info.stopwatches.is_empty());
    assert!(info.broken_stopwatches.is_empty());
    assert!(info.first_stopwatch().is_none());
}

/// `status = "disabled"` nodes are not used: the Secure-only RAM and UART
/// of a `secure=on` board are not the Non-secure kernel's.
#[test]
fn secure_board_disabled_nodes_are_skipped() {
    let info = BoardInfo::from_dtb(SECURE).unwrap();
    assert_eq!(
        info.memory.iter().copied().collect::<Vec<_>>(),
        [Region::new(0x4000_0000, 128 << 20)]
    );
    let uart = info.uart.unwrap();
    assert_eq!(uart.node_name, "pl011@9000000");
    assert_eq!(uart.region, Region::new(0x0900_0000, 0x1000));
    assert_eq!(info.psci, None);
    assert!(info.gic.is_some());
}

#[test]
fn gicv3_board_with_two_cpus() {
    let info = BoardInfo::from_dtb(GICV3_SMP2).unwrap();
    assert_eq!(
        info.gic,
        Some(Gic::V3 {
            distributor: Region::new(0x0800_0000, 0x1_0000),
            redistributors: Region::new(0x080a_0000, 0xf6_0000),
        })
    );
    assert_eq!(info.gic.unwrap().version(), 3);
    assert_eq!(info.cpu_count, 2);
    assert_eq!(info.cpus.iter().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        info.memory.get(0),
        Some(&Region::new(0x4000_0000, 256 << 20))
    );
    assert_eq!(info.uart.unwrap().interrupt, Some(level_spi(1)));
}

#[test]
fn stopwatch_regions_are_translated_through_the_platform_bus() {
    let info = BoardInfo::from_dtb(ONE_STOPWATCH).unwrap();
    assert_eq!(info.stopwatches.len(), 1);
    let stopwatch = info.first_stopwatch().unwrap();
    assert_eq!(stopwatch.node_name, "stopwatch@0");
    assert_eq!(
        stopwatch.shared,
        Region::new(PLATFORM_BUS_BASE, stopwatch_abi::shared::SIZE)
    );
    assert_eq!(
        stopwatch.registers,
        Region::new(PLATFORM_BUS_BASE + 0x1000, stopwatch_abi::regs::SIZE)
    );
    assert_eq!(stopwatch.timeout_interrupt, level_spi(112));
    assert_eq!(info.bootargs, "test=demo");
    assert!(info.broken_stopwatches.is_empty());
}

#[test]
fn two_real_stopwatches_on_gicv3() {
    let info = BoardInfo::from_dtb(TWO_STOPWATCHES_GICV3).unwrap();
    assert_eq!(info.gic.unwrap().version(), 3);
    let found: Vec<_> = info.stopwatches.iter().collect();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].timeout_interrupt, level_spi(112));
    assert_eq!(found[1].timeout_interrupt, level_spi(113));
    let bus = Region::new(PLATFORM_BUS_BASE, 0x200_0000);
    let regions = [
        found[0].shared,
        found[0].registers,
        found[1].shared,
        found[1].registers,
    ];
    for (index, region) in regions.iter().enumerate() {
        assert!(region.overlaps(&bus), "{region:?} outside the platform bus");
        for other in &regions[index + 1..] {
            assert!(!region.overlaps(other), "{region:?} overlaps {other:?}");
        }
    }
}

#[test]
fn two_stopwatches_keep_their_own_interleaved_regions() {
    let info = BoardInfo::from_dtb(TWO_STOPWATCHES_INTERLEAVED).unwrap();
    let found: Vec<_> = info.stopwatches.iter().collect();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].shared.base, PLATFORM_BUS_BASE);
    assert_eq!(found[0].registers.base, PLATFORM_BUS_BASE + 0x2000);
    assert_eq!(found[1].shared.base, PLATFORM_BUS_BASE + 0x1000);
    assert_eq!(found[1].registers.base, PLATFORM_BUS_BASE + 0x3000);
    assert_eq!(found[1].timeout_interrupt, level_spi(113));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(BoardInfo::from_dtb(&[]).is_err());
    assert!(BoardInfo::from_dtb(&[0u8; 64]).is_err());
    let mut truncated = GICV2.to_vec();
    truncated.truncate(100);
    assert!(BoardInfo::from_dtb(&truncated).is_err());
}

#[test]
fn header_blocks_outside_the_blob_are_an_error_not_a_panic() {
    // The `fdt` crate slices the structure and strings blocks where the
    // header says, unchecked: a corrupted offset or size panicked there.
    let header_fields = [
        (8, "off_dt_struct"),
        (12, "off_dt_strings"),
        (32, "size_dt_strings"),
        (36, "size_dt_struct"),
    ];
    for (offset, field) in header_fields {
        for value in [GICV2.len() as u32, u32::MAX] {
            let mut dtb = GICV2.to_vec();
            dtb[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
            let decoded = std::panic::catch_unwind(|| BoardInfo::from_dtb(&dtb).is_err());
            assert!(
                matches!(decoded, Ok(true)),
                "{field} = {value:#x}: {}",
                if decoded.is_err() {
                    "panicked"
                } else {
                    "accepted"
                }
            );
        }
    }
}

/// With `-dtb`, QEMU replaces the tree's memory nodes with FDT_NOPs and
/// adds its own: the kernel reads that tree as the one QEMU generated.
#[test]
fn a_tree_given_with_dtb_reads_as_generated() {
    let generated = include_bytes!("fixtures/virt-gicv3-three-stopwatches.dtb");
    let as_booted = include_bytes!("fixtures/virt-gicv3-three-stopwatches-as-booted-with-dtb.dtb");
    assert!(as_booted.windows(4).any(|word| word == [0, 0, 0, 4]));
    let generated = BoardInfo::from_dtb(generated).unwrap();
    let as_booted = BoardInfo::from_dtb(as_booted).unwrap();
    assert_eq!(as_booted, generated);
    assert_eq!(as_booted.stopwatches.len(), 3);
}

/// The PL031 RTC (the bench's C-device floor) is found by its
/// `compatible`, at the address its node says, and left out, never an
/// error, when its node is unusable.
#[test]
fn the_pl031_rtc_is_found_by_its_compatible() {
    /// `virt`'s RTC `reg` as the tree has it: two address cells, two size
    /// cells (0x0901_0000, 0x1000).
    const RTC_REG: [u8; 16] = [0, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0];
    let rtc = Some(Region::new(0x0901_0000, 0x1000));
    assert_eq!(BoardInfo::from_dtb(GICV2).unwrap().rtc, rtc);
    assert_eq!(BoardInfo::from_dtb(GICV3_SMP2).unwrap().rtc, rtc);
    assert_eq!(BoardInfo::from_dtb(ONE_STOPWATCH).unwrap().rtc, rtc);

    // One edit of the blob: `replace` by `with`, found exactly once.
    let edited = |replace: &[u8], with: &[u8]| {
        let mut dtb = GICV2.to_vec();
        let found: Vec<_> = dtb
            .windows(replace.len())
            .enumerate()
            .filter(|(_, window)| *window == replace)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(found.len(), 1, "{replace:?} not found exactly once");
        dtb[found[0]..found[0] + with.len()].copy_from_slice(with);
        dtb
    };
    // Elsewhere: the node's address, not a fixed one.
    let mut moved_reg = RTC_REG;
    moved_reg[5] = 0x11;
    let moved = edited(&RTC_REG, &moved_reg);
    assert_eq!(
        BoardInfo::from_dtb(&moved).unwrap().rtc,
        Some(Region::new(0x0911_0000, 0x1000))
    );
    // Another compatible: no RTC.
    let other = edited(b"arm,pl031\0", b"arm,pl032\0");
    assert_eq!(BoardInfo::from_dtb(&other).unwrap().rtc, None);
    // In RAM, or not page-aligned: left out, the tree still accepted.
    let mut in_ram = RTC_REG;
    in_ram[4..8].copy_from_slice(&0x4000_0000u32.to_be_bytes());
    let in_ram = edited(&RTC_REG, &in_ram);
    let info = BoardInfo::from_dtb(&in_ram).unwrap();
    assert_eq!(info.rtc, None);
    assert!(info.uart.is_some());
    let mut unaligned = RTC_REG;
    unaligned[7] = 0x10;
    assert_eq!(
        BoardInfo::from_dtb(&edited(&RTC_REG, &unaligned))
            .unwrap()
            .rtc,
        None
    );
}
