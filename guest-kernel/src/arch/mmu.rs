// SPDX-License-Identifier: GPL-2.0-or-later
//! The MMU: an identity map built with the `aarch64-paging` crate.
//!
//! With the MMU off every data access is Device-nGnRnE: slow, uncached,
//! and faulting on any unaligned access (QEMU 10 enforces this). So the
//! kernel turns it on right after reading the device tree, with:
//! - RAM: Normal write-back cacheable, execute-never, except the kernel's
//!   text (read-only, executable) and rodata (read-only);
//! - the stopwatch's pass-through region: Normal cacheable (it is RAM the
//!   device shares; the time page is read there with plain loads);
//! - the stopwatch's register region, the UART and the GIC: Device-nGnRE
//!   (every access reaches the device, in order, none merged).
//!
//! Page tables come from a static pool, so no heap is needed (the crate's
//! `IdMap` needs `alloc`). The tables are built with the crate's
//! [`RootTable`] while the MMU is off and never changed once active, so
//! its `Mapping` (break-before-make checks and TLB maintenance for live
//! tables, and their error paths) is not needed: [`KernelMap::activate`]
//! loads TTBR0_EL1 itself.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1,
};
use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::mair::{Mair, MairAttribute, NormalMemory};
use aarch64_paging::paging::{
    Constraints, El1And0, MemoryRegion, PageTable, RootTable, Translation, VaRange,
};
use board_discovery::Region;

/// MAIR_EL1 index 0: Device-nGnRE; index 1: Normal, write-back.
const MAIR: Mair = Mair::EMPTY
    .with_attribute(0, MairAttribute::DEVICE_NGNRE)
    .with_attribute(
        1,
        MairAttribute::normal(
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
        ),
    );

const EXECUTE_NEVER: El1Attributes = El1Attributes::UXN.union(El1Attributes::PXN);
const VALID: El1Attributes = El1Attributes::VALID.union(El1Attributes::ACCESSED);

/// Device-nGnRE, read-write, never executable.
pub const DEVICE: El1Attributes = El1Attributes::ATTRIBUTE_INDEX_0
    .union(VALID)
    .union(EXECUTE_NEVER);
/// Normal cacheable, read-write, never executable.
pub const NORMAL: El1Attributes = El1Attributes::ATTRIBUTE_INDEX_1
    .union(El1Attributes::INNER_SHAREABLE)
    .union(VALID)
    .union(EXECUTE_NEVER);
/// The kernel's code: read-only, executable at EL1 only.
const TEXT: El1Attributes = El1Attributes::ATTRIBUTE_INDEX_1
    .union(El1Attributes::INNER_SHAREABLE)
    .union(VALID)
    .union(El1Attributes::READ_ONLY)
    .union(El1Attributes::UXN);
/// The kernel's constants: read-only, never executable.
const RODATA: El1Attributes = NORMAL.union(El1Attributes::READ_ONLY);

/// Root at level 1 with 4 KiB pages: 39-bit (512 GiB) virtual addresses.
const ROOT_LEVEL: usize = 1;
const VA_BITS: u64 = 39;

/// Page tables available. The identity map of `virt` needs about ten
/// (one root, level-2 tables for the device and RAM gigabytes, level-3
/// tables where regions are not 2 MiB aligned).
const POOL_TABLES: usize = 24;

/// Static memory for page tables.
struct TablePool(UnsafeCell<[PageTable<El1Attributes>; POOL_TABLES]>);

// SAFETY: Only `PoolTranslation` touches the pool, and only one exists
// (see `PoolTranslation::take`).
unsafe impl Sync for TablePool {}

static POOL: TablePool = TablePool(UnsafeCell::new([PageTable::EMPTY; POOL_TABLES]));

/// Hands out tables from [`POOL`]; physical = virtual (identity map).
struct PoolTranslation {
    next: usize,
}

impl PoolTranslation {
    /// # Safety
    ///
    /// Must be called at most once: the tables are handed out by index.
    unsafe fn take() -> Self {
        PoolTranslation { next: 0 }
    }
}

impl Translation<El1Attributes> for PoolTranslation {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El1Attributes>>, PhysicalAddress) {
        assert!(self.next < POOL_TABLES, "page table pool exhausted");
        // SAFETY: `next` is in bounds and each table is handed out once
        // (`take` is called once), so this pointer is unique. The pool is
        // zero-initialised, i.e. every table starts empty.
        let table = unsafe {
            POOL.0
                .get()
                .cast::<PageTable<El1Attributes>>()
                .add(self.next)
        };
        self.next += 1;
        let table = NonNull::new(table).expect("pool pointer is not null");
        (table, PhysicalAddress(table.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, _table: NonNull<PageTable<El1Attributes>>) {
        // Tables are never freed: the kernel's map only grows.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El1Attributes>> {
        NonNull::new(pa.0 as *mut _).expect("page table at physical address 0")
    }
}

/// The kernel's address map, before it is turned on.
pub struct KernelMap {
    root: RootTable<El1And0, PoolTranslation>,
}

/// What the other CPUs need to turn their MMU on with the boot CPU's
/// tables (`arch::boot`, `secondary_at_el1`): MAIR_EL1, TCR_EL1, TTBR0_EL1
/// and SCTLR_EL1 as the boot CPU set them, in that order. The boot CPU
/// stores them with its MMU still off, so they are in memory, where a CPU
/// with its MMU off reads (no cache line of the boot CPU hides them); they
/// are never written again.
#[unsafe(no_mangle)]
static SECONDARY_MMU: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// The kernel's image sections, from the linker script.
struct ImageLayout {
    text: Region,
    rodata: Region,
    /// The unmapped pages below the boot CPU's kernel stack and exception
    /// stack; every other CPU's are `cpu_stacks_size` apart.
    stack_guards: [Region; 2],
    /// The distance between two CPUs' stacks.
    cpu_stacks_size: u64,
    /// How many CPUs have stacks.
    cpu_stacks: usize,
}

/// The size of a stack guard page (`linker/guest-kernel.ld`).
const GUARD_SIZE: u64 = 4096;

/// Which stack's guard page `address` is in, if any: `"kernel"` or
/// `"exception"`, and the CPU whose stack it is.
pub fn stack_guard_hit(address: u64) -> Option<(&'static str, usize)> {
    let image = image_layout();
    (0..image.cpu_stacks).find_map(|cpu| {
        let [kernel, exception] = image
            .stack_guards
            .map(|guard| Region::new(guard.base + cpu as u64 * image.cpu_stacks_size, guard.size));
        let inside = |guard: Region| (guard.base..guard.end()).contains(&address);
        if inside(kernel) {
            Some(("kernel", cpu))
        } else if inside(exception) {
            Some(("exception", cpu))
        } else {
            None
        }
    })
}

/// How many CPUs the linker script made stacks for.
pub fn cpu_stacks() -> usize {
    image_layout().cpu_stacks
}

#[cfg(feature = "selftest")]
/// CPU `cpu`'s kernel stack and the guard page below it, if it has one.
pub fn cpu_kernel_stack(cpu: usize) -> Option<(Region, Region)> {
    let image = image_layout();
    if cpu >= image.cpu_stacks {
        return None;
    }
    let [guard, exception_guard] = image.stack_guards;
    let offset = cpu as u64 * image.cpu_stacks_size;
    let guard = Region::new(guard.base + offset, guard.size);
    // The kernel stack fills the space up to the exception stack's guard.
    let stack = Region::new(guard.end(), exception_guard.base - guard.end());
    Some((guard, stack))
}

#[cfg(feature = "selftest")]
/// Whether a read of `address` at EL1 would translate (AT S1E1R).
pub fn is_mapped(address: u64) -> bool {
    let _masked = crate::sync::IrqsMasked::new();
    let par: u64;
    // SAFETY: AT only computes a translation into PAR_EL1, which is read
    // right after (IRQs masked: no handler can overwrite it in between);
    // nothing is accessed.
    unsafe {
        core::arch::asm!(
            "at s1e1r, {address}",
            "isb",
            "mrs {par}, par_el1",
            address = in(reg) address,
            par = out(reg) par,
            options(nostack, preserves_flags),
        );
    }
    // PAR_EL1.F: the translation faulted.
    par & 1 == 0
}

fn image_layout() -> ImageLayout {
    extern "C" {
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __stack_guard: u8;
        static __exception_stack_guard: u8;
        static __exception_stack_top: u8;
        static __stacks_end: u8;
    }
    // Only the symbols' addresses are used, never their contents.
    let region =
        |start: *const u8, end: *const u8| Region::new(start as u64, end as u64 - start as u64);
    let guard = |start: *const u8| Region::new(start as u64, GUARD_SIZE);
    ImageLayout {
        text: region(&raw const __text_start, &raw const __text_end),
        rodata: region(&raw const __rodata_start, &raw const __rodata_end),
        stack_guards: [
            guard(&raw const __stack_guard),
            guard(&raw const __exception_stack_guard),
        ],
        cpu_stacks_size: region(&raw const __stack_guard, &raw const __exception_stack_top).size,
        cpu_stacks: (region(&raw const __stack_guard, &raw const __stacks_end).size
            / region(&raw const __stack_guard, &raw const __exception_stack_top).size)
            as usize,
    }
}

impl KernelMap {
    /// An empty map.
    ///
    /// # Safety
    ///
    /// Must be called at most once: all maps share the one table pool.
    /// (A run-time check would need an atomic, and atomics are best avoided
    /// while the MMU is off and all memory is Device memory.)
    pub unsafe fn new() -> Self {
        // SAFETY: Our caller promises this is the only call.
        let translation = unsafe { PoolTranslation::take() };
        KernelMap {
            root: RootTable::with_va_range(translation, ROOT_LEVEL, El1And0, VaRange::Lower),
        }
    }

    /// Maps `region` to itself with `attributes`.
    pub fn map(&mut self, region: Region, attributes: El1Attributes) {
        let start = region.base as usize;
        let end = region.end() as usize;
        self.root
            .map_range(
                &MemoryRegion::new(start, end),
                PhysicalAddress(start),
                attributes,
                Constraints::empty(),
            )
            .unwrap_or_else(|_| panic!("cannot map {start:#x}..{end:#x}"));
    }

    /// Makes the kernel's text read-only and executable and its rodata
    /// read-only, inside RAM already mapped by [`map`](Self::map), and
    /// unmaps the guard page below each stack of every CPU.
    pub fn map_kernel_image(&mut self) {
        let image = image_layout();
        self.map(image.text, TEXT);
        self.map(image.rodata, RODATA);
        for cpu in 0..image.cpu_stacks as u64 {
            for guard in image.stack_guards {
                let guard = Region::new(guard.base + cpu * image.cpu_stacks_size, guard.size);
                // Attributes without VALID: the entries are made invalid.
                self.map(guard, El1Attributes::empty());
            }
        }
    }

    /// Turns the MMU (and the caches) on with this map; it stays active for
    /// the rest of the run.
    ///
    /// # Safety
    ///
    /// The map must cover everything the kernel uses from now on: its image
    /// and stack, the device tree, and every device it touches.
    ///
    /// The sequence is the one the Arm ARM requires (enabling stage 1
    /// translation; data accessed with the caches off must not meet stale
    /// cache lines once they are on) and that Linux (`arch/arm64/kernel/head.S`, `__cpu_setup`,
    /// `__enable_mmu`) and `aarch64-rt` follow. TCG models no caches, so
    /// QEMU runs the kernel correctly without any of it; KVM and hardware
    /// do not.
    pub unsafe fn activate(self) {
        // 1. Data written with the MMU off. Until SCTLR_EL1.M is set, every
        //    data access is Device-nGnRnE: the page tables just built (in
        //    .bss), the zeroed .bss, the stack and any static written so
        //    far went straight to memory, past the caches. The caches may
        //    still hold older lines of those addresses: the loader (or the
        //    hypervisor that wrote the image through its cacheable
        //    mapping) cleans the image to the point of coherency, but a
        //    clean line stays valid. Once the caches are on, such a line
        //    would hide our writes, from our loads and from the table
        //    walker (TCR_EL1 below makes walks cacheable). So: order the
        //    writes before the maintenance (DMB SY), invalidate those
        //    lines to the point of coherency (DC IVAC), and wait for it
        //    (DSB SY). Linux does the same to its early page tables
        //    (`dcache_inval_poc` after `create_init_idmap`). The rest of
        //    the image (text, rodata, data as loaded) is the loader's to
        //    clean, as the arm64 boot protocol requires; the device tree
        //    is only read.
        barrier::dmb(barrier::SY);
        invalidate_data_cache_to_poc(written_with_mmu_off());
        barrier::dsb(barrier::SY);

        // 2. Translation controls: attributes, granule, cacheable walks.
        MAIR_EL1.set(MAIR.0);
        let physical_address_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
        TCR_EL1.write(
            TCR_EL1::T0SZ.val(64 - VA_BITS)
                + TCR_EL1::TG0::KiB_4
                + TCR_EL1::SH0::Inner
                + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::EPD1::DisableTTBR1Walks
                + TCR_EL1::IPS.val(physical_address_range),
        );
        // ASID 0 (bits 48..): the only address space.
        TTBR0_EL1.set(self.root.to_physical().0 as u64);
        // The system register writes take effect before what follows.
        barrier::isb(barrier::SY);
        // The same settings for the other CPUs, stored while the MMU is
        // off (see SECONDARY_MMU): plain stores, no exclusives.
        let enabled = SCTLR_EL1.get() | SCTLR_M_C_I;
        for (slot, value) in
            SECONDARY_MMU
                .iter()
                .zip([MAIR_EL1.get(), TCR_EL1.get(), TTBR0_EL1.get(), enabled])
        {
            slot.store(value, Ordering::Relaxed);
        }

        // 3. Stale translations and instructions. TLB entries may survive
        //    from the firmware or a run before a reset (their contents
        //    are UNKNOWN at reset), so invalidate this CPU's EL1&0 TLB
        //    (TLBI VMALLE1, as Linux's `__cpu_setup`). The instruction
        //    cache may hold lines from before the image was loaded; with
        //    SCTLR_EL1.I set they could be fetched instead of the image
        //    in memory, so invalidate it to the point of unification (IC
        //    IALLU; Linux does it in `set_sctlr_el1`, aarch64-rt here).
        //    DSB NSH waits for both (local, non-shareable maintenance);
        //    ISB makes the instruction stream see the result.
        // SAFETY: TLB and instruction-cache invalidation only drop cached
        // copies; memory and the translation tables are unchanged.
        unsafe {
            core::arch::asm!(
                "tlbi vmalle1",
                "ic iallu",
                options(nostack, preserves_flags)
            );
        }
        barrier::dsb(barrier::NSH);
        barrier::isb(barrier::SY);

        // 4. Translation and both caches on, and an ISB so that the next
        //    instruction is fetched and executed with them on.
        SCTLR_EL1.set(enabled);
        barrier::isb(barrier::SY);
        // The page tables must outlive the run (dropping the root would
        // hand its tables back), and they are never changed again.
        core::mem::forget(self);
    }
}

/// SCTLR_EL1's M (stage 1 translation), C (data cache) and I (instruction
/// cache) bits.
const SCTLR_M_C_I: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// The part of the image the boot CPU may write before the MMU is on:
/// everything after `.rodata` up to the end of the stack (`.data`, if
/// any, `.bss` with the page-table pool, `.stack`; see
/// `linker/guest-kernel.ld`, where `.data` has no symbol of its own).
fn written_with_mmu_off() -> core::ops::Range<usize> {
    extern "C" {
        static __rodata_end: u8;
        static __exception_stack_top: u8;
    }
    // Only the symbols' addresses are used, never their contents.
    (&raw const __rodata_end) as usize..(&raw const __exception_stack_top) as usize
}

/// Invalidates the data and unified caches for `range` to the point of
/// coherency, by virtual address (DC IVAC, one line at a time), without
/// waiting for completion (the caller's DSB does).
///
/// Only for memory written with the data cache off: a dirty line in the
/// range would be discarded. Here nothing can be dirty from this kernel,
/// which has not turned its caches on yet.
fn invalidate_data_cache_to_poc(range: core::ops::Range<usize>) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line, in words.
    let ctr: u64;
    // SAFETY: Reading CTR_EL0 has no side effect.
    unsafe {
        core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags));
    }
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut address = range.start & !(line - 1);
    while address < range.end {
        // SAFETY: Invalidation by VA of memory this kernel owns (its image,
        // identity-mapped); with the data cache off there is no dirty data
        // of ours to lose, only stale lines to drop.
        unsafe {
            core::arch::asm!("dc ivac, {}", in(reg) address, options(nostack, preserves_flags));
        }
        address += line;
    }
}
