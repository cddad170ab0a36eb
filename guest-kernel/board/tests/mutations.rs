// SPDX-License-Identifier: GPL-2.0-or-later
//! Corrupted device trees never make discovery panic: the real trees the
//! patched QEMU generates, corrupted one word, byte or cut at a time
//! (`board_discovery::mutations`), each either decode to what the
//! uncorrupted tree gives, or are refused with an error, or decode to a
//! board the kernel can use (every invariant below holds): a corrupted
//! value can be another valid one (a region moved to a free page).
//!
//! Fixtures: `cargo xtask dtb --devices N --gic V -o F.dtb` (N = 1 or 3,
//! V = 2 or 3), compacted with `dtc -I dtb -O dtb` (QEMU's blob has 1 MiB
//! of free space at its end, where a corruption changes nothing); the
//! three-stopwatch GICv3 tree as the kernel gets it when booted with it as
//! `-dtb` (QEMU's `dumpdtb` then, cut to its used size: QEMU NOPs out the
//! memory node and adds its own, and dtc would drop the NOPs); and
//! `virt-secure.dtb` and `virt-gicv3-smp2.dtb` (see `discovery.rs`).
//!
//! 100,000 cases of a fixed seed by default; `DTB_MUTATION_CASES` and
//! `DTB_MUTATION_SEED` change them (`cargo xtask fuzz dtb` does).

use std::panic::{catch_unwind, AssertUnwindSafe};

use board_discovery::mutations::{Mutation, Mutator};
use board_discovery::{BoardInfo, Interrupt, Region, ADDRESS_LIMIT, PAGE_SIZE};
use stopwatch_test_rng::TestRng;

const FIXTURES: [(&str, &[u8]); 7] = [
    (
        "virt-gicv2-one-stopwatch",
        include_bytes!("fixtures/virt-gicv2-one-stopwatch.dtb"),
    ),
    (
        "virt-gicv2-three-stopwatches",
        include_bytes!("fixtures/virt-gicv2-three-stopwatches.dtb"),
    ),
    (
        "virt-gicv3-one-stopwatch",
        include_bytes!("fixtures/virt-gicv3-one-stopwatch.dtb"),
    ),
    (
        "virt-gicv3-three-stopwatches",
        include_bytes!("fixtures/virt-gicv3-three-stopwatches.dtb"),
    ),
    (
        "virt-gicv3-three-stopwatches-as-booted-with-dtb",
        include_bytes!("fixtures/virt-gicv3-three-stopwatches-as-booted-with-dtb.dtb"),
    ),
    ("virt-secure", include_bytes!("fixtures/virt-secure.dtb")),
    (
        "virt-gicv3-smp2",
        include_bytes!("fixtures/virt-gicv3-smp2.dtb"),
    ),
];

const DEFAULT_CASES: u64 = 100_000;
const DEFAULT_SEED: u64 = 0xd7b0_5eed;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .unwrap_or_else(|_| panic!("{name}={text}: not a number")),
        Err(_) => default,
    }
}

/// Why a decoded board is not one the kernel can use, if it is not.
fn unusable(info: &BoardInfo<'_>) -> Option<String> {
    let mappable = |region: &Region| {
        region
            .base
            .checked_add(region.size)
            .is_some_and(|end| end <= ADDRESS_LIMIT)
            && region.base.is_multiple_of(PAGE_SIZE)
    };
    let device =
        |region: &Region, min: u64| mappable(region) && region.base != 0 && region.size >= min;
    let spi = |interrupt: &Interrupt| (32..1020).contains(&interrupt.intid);
    for region in info.memory.iter() {
        if !mappable(region) || !region.size.is_multiple_of(PAGE_SIZE) {
            return Some(format!("memory {region:x?}"));
        }
    }
    let mut devices: Vec<Region> = Vec::new();
    if let Some(uart) = info.uart {
        if !device(&uart.region, 0x1000) || uart.interrupt.is_some_and(|i| !spi(&i)) {
            return Some(format!("uart {uart:x?}"));
        }
        devices.push(uart.region);
    }
    if let Some(gic) = info.gic {
        for region in gic.regions() {
            if !device(&region, 0x1000) {
                return Some(format!("gic {gic:x?}"));
            }
            devices.push(region);
        }
    }
    if info
        .virtual_timer
        .is_some_and(|timer| !(16..32).contains(&timer.intid))
    {
        return Some(format!("timer {:?}", info.virtual_timer));
    }
    let mut intids: Vec<u32> = info
        .uart
        .and_then(|uart| uart.interrupt)
        .map(|i| i.intid)
        .into_iter()
        .collect();
    for stopwatch in info.stopwatches.iter() {
        let regions = [stopwatch.shared, stopwatch.registers];
        if !regions.iter().all(|region| device(region, 0x1000))
            || !spi(&stopwatch.timeout_interrupt)
        {
            return Some(format!("stopwatch {stopwatch:x?}"));
        }
        if intids.contains(&stopwatch.timeout_interrupt.intid) {
            return Some(format!("stopwatch {stopwatch:x?}: interrupt shared"));
        }
        intids.push(stopwatch.timeout_interrupt.intid);
        devices.extend(regions);
    }
    for (index, region) in devices.iter().enumerate() {
        let others = devices[index + 1..].iter().chain(info.memory.iter());
        for other in others {
            if region.overlaps(other) {
                return Some(format!("{region:x?} overlaps {other:x?}"));
            }
        }
    }
    None
}

/// What a corrupted tree gave: the index in the tally.
const SAME: usize = 0;
const REFUSED: usize = 1;
const OTHER_USABLE: usize = 2;

#[test]
fn corrupted_device_trees_never_panic() {
    let cases = env_number("DTB_MUTATION_CASES", DEFAULT_CASES);
    let seed = env_number("DTB_MUTATION_SEED", DEFAULT_SEED);
    println!("dtb mutations: seed {seed:#x}, {cases} cases");
    let mutators: Vec<_> = FIXTURES
        .iter()
        .map(|&(name, blob)| {
            let info = BoardInfo::from_dtb(blob).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(unusable(&info), None, "{name}");
            (name, blob, info, Mutator::new(blob))
        })
        .collect();
    // The panics this test provokes on purpose would print a message each.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = TestRng::new(seed);
    let mut tally = [0u64; 3];
    let mut failure = None;
    for case in 0..cases {
        let (name, blob, original, mutator) = rng.pick(&mutators);
        let mutation = mutator.mutation(&mut rng);
        let mutated = mutation.apply(blob);
        let outcome = catch_unwind(AssertUnwindSafe(|| match BoardInfo::from_dtb(&mutated) {
            Err(_) => Ok(REFUSED),
            Ok(info) if info == *original => Ok(SAME),
            Ok(info) => match unusable(&info) {
                None => Ok(OTHER_USABLE),
                Some(problem) => Err(problem),
            },
        }));
        match outcome {
            Ok(Ok(kind)) => tally[kind] += 1,
            Ok(Err(problem)) => {
                failure = Some((
                    case,
                    *name,
                    mutation,
                    mutated,
                    format!("unusable board: {problem}"),
                ));
                break;
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                    .unwrap_or_default();
                failure = Some((
                    case,
                    *name,
                    mutation,
                    mutated,
                    format!("panicked: {message}"),
                ));
                break;
            }
        }
    }
    std::panic::set_hook(default_hook);
    println!(
        "dtb mutations: {} same board, {} refused, {} another usable board",
        tally[SAME], tally[REFUSED], tally[OTHER_USABLE]
    );
    if let Some((case, name, mutation, mutated, problem)) = failure {
        let saved = save(name, case, &mutated);
        panic!(
            "case {case} (seed {seed:#x}): {name} with {mutation}: {problem}\n\
             the corrupted tree: {saved}"
        );
    }
}

/// Keeps a failing tree for `dtc -I dtb` or a boot with `-dtb`.
fn save(name: &str, case: u64, blob: &[u8]) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("dtb-mutation-{name}-case-{case}.dtb"));
    match std::fs::write(&path, blob) {
        Ok(()) => path.display().to_string(),
        Err(error) => format!("(not saved: {error})"),
    }
}

/// Each kind of corruption the generator makes is one it can apply.
#[test]
fn the_generator_makes_every_kind_of_corruption() {
    let (_, blob) = FIXTURES[0];
    let mutator = Mutator::new(blob);
    let mut rng = TestRng::new(1);
    let mut aims = std::collections::BTreeSet::new();
    for _ in 0..2_000 {
        let mutation = mutator.mutation(&mut rng);
        let kind = match mutation {
            Mutation::Word { aim, .. } => aim,
            Mutation::Byte { .. } => "byte",
            Mutation::Truncate { .. } => "truncate",
        };
        aims.insert(kind);
        assert!(mutation.apply(blob).len() <= blob.len());
    }
    assert_eq!(aims.len(), 8, "{aims:?}");
}
