// SPDX-License-Identifier: GPL-2.0-or-later
//! A bare-metal kernel for QEMU's aarch64 `virt` board that drives the
//! para-virtualized stopwatch device.
//!
//! Boot (`arch::boot`) drops to EL1 and calls [`kernel_main`], which:
//! 1. finds and decodes the device tree (MMU still off);
//! 2. turns the MMU on with a map of exactly what the tree describes;
//! 3. sets up the console UART, the GIC and the stopwatch;
//! 4. runs what the boot arguments (`-append`) ask for: `test[=NAME]` runs
//!    the in-guest tests and exits QEMU with 0 or 1, `fault` makes a data
//!    abort on purpose (the fatal report, then exit status 3), `bench`
//!    measures and exits, `kvm-negative-control` does one MMIO access that
//!    KVM could not emulate (for `cargo xtask kvm-check`), anything else
//!    starts the interactive shell.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod arch;
mod bench;
mod console;
mod drivers;
mod interrupts;
mod power;
#[cfg(feature = "selftest")]
mod selftest;
mod shell;
mod sync;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use arch::mmu::{KernelMap, DEVICE, NORMAL};
use board_discovery::{BoardInfo, PropertyError, Region, MAX_MEMORY_REGIONS, MAX_STOPWATCHES};
use drivers::gic::Gic;
use drivers::stopwatch::Stopwatch;
use interrupts::Source;
use sync::SetOnce;

/// Start of RAM on `virt`: where QEMU puts the device tree when it loads
/// an ELF kernel (x0 is then 0), provided the DTB fits below the image.
/// (With the flat Image, QEMU's boot stub is there and x0 has the DTB.)
const VIRT_RAM_BASE: usize = 0x4000_0000;
/// Big-endian magic at the start of every flattened device tree.
const FDT_MAGIC: u32 = 0xd00d_feed;

/// What the device tree said; lives as long as the (never overwritten)
/// device tree in RAM.
static BOARD: SetOnce<BoardInfo<'static>> = SetOnce::new();
/// Every usable stopwatch in the device tree, in its order.
static STOPWATCHES: SetOnce<Stopwatches> = SetOnce::new();
/// The index of the stopwatch the shell's device commands act on.
static SELECTED: AtomicUsize = AtomicUsize::new(0);

/// The stopwatch drivers; stopwatch N is the Nth usable node. (The
/// kernel's fixed-capacity list, `heapless::Vec`: an empty one is all zero
/// bytes, so a `static` one lands in `.bss`, not in the Image.)
pub type Stopwatches = heapless::Vec<Stopwatch, MAX_STOPWATCHES>;
/// The exception level QEMU started the kernel at.
static ENTRY_EL: SetOnce<u64> = SetOnce::new();

/// The decoded device tree.
pub fn board() -> &'static BoardInfo<'static> {
    BOARD.get().expect("board not discovered yet")
}

/// Every stopwatch (none before they are set up).
pub fn stopwatches() -> &'static Stopwatches {
    static NONE: Stopwatches = Stopwatches::new();
    STOPWATCHES.get().unwrap_or(&NONE)
}

/// The selected stopwatch, if there is one: stopwatch 0 until
/// [`select_stopwatch`].
pub fn stopwatch() -> Option<&'static Stopwatch> {
    stopwatches().get(selected_stopwatch())
}

/// The index of the selected stopwatch.
pub fn selected_stopwatch() -> usize {
    SELECTED.load(Ordering::Relaxed)
}

/// Selects stopwatch `index`; `Err` holds how many there are.
pub fn select_stopwatch(index: usize) -> Result<(), usize> {
    let count = stopwatches().len();
    if index >= count {
        return Err(count);
    }
    SELECTED.store(index, Ordering::Relaxed);
    Ok(())
}

/// The exception level the kernel was entered at (1, 2 or 3).
pub fn entry_el() -> u64 {
    ENTRY_EL.get().copied().unwrap_or(0)
}

/// The Rust entry point, called by `arch::boot` at EL1 with the MMU off.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(loader_dtb: usize, entry_el: u64) -> ! {
    // --- MMU off: every access is Device memory. Only decode the tree
    // (the target is built with strict alignment, so no unaligned access
    // is generated) and build the page tables: no atomics, no console.
    // A failure here ends the run with its own exit status (see `power`),
    // its message going to semihosting as there is no console yet.
    let Some(dtb) = find_device_tree(loader_dtb) else {
        power::fatal_with_status(
            power::exit_status::NO_DEVICE_TREE,
            format_args!("no device tree at x0 ({loader_dtb:#x}) nor at {VIRT_RAM_BASE:#x}"),
        );
    };
    let mut board = BoardInfo::from_dtb(dtb).unwrap_or_else(|error| {
        power::fatal_with_status(
            power::exit_status::BAD_DEVICE_TREE,
            format_args!("bad device tree: {error}"),
        )
    });
    // From here on a failure can power off through PSCI if semihosting is
    // not there.
    power::init(board.psci);
    if board.memory.is_empty() {
        power::fatal_with_status(
            power::exit_status::NO_MEMORY,
            format_args!("no memory node in the device tree"),
        );
    }
    let Some(uart) = board.uart else {
        power::fatal_with_status(
            power::exit_status::NO_CONSOLE,
            format_args!("no console UART in /chosen/stdout-path"),
        );
    };
    if !uart.is_pl011 {
        power::fatal_with_status(
            power::exit_status::NO_CONSOLE,
            format_args!("console {} is not a PL011", uart.node_name),
        );
    }
    let Some(gic) = board.gic else {
        power::fatal_with_status(
            power::exit_status::NO_GIC,
            format_args!("no GICv2 or GICv3 in the device tree"),
        );
    };

    // The map below must hold the kernel (image, stacks) and the tree.
    for (what, held) in [
        ("the kernel", kernel_region()),
        ("the device tree", region_of(dtb)),
    ] {
        if !board
            .memory
            .iter()
            .any(|ram| ram.base <= held.base && held.end() <= ram.end())
        {
            power::fatal_with_status(
                power::exit_status::BAD_DEVICE_TREE,
                format_args!("bad device tree: no memory node's reg holds {what}"),
            );
        }
    }

    // SAFETY: Called once, here.
    let mut map = unsafe { KernelMap::new() };
    // A tree whose regions would take more page tables than the pool has is
    // refused; a stopwatch that would is set apart.
    let needed = (board.memory.iter().copied())
        .chain(arch::mmu::kernel_image_regions())
        .chain([uart.region])
        .chain(gic.regions());
    if !map.can_map(needed) {
        power::fatal_with_status(
            power::exit_status::BAD_DEVICE_TREE,
            format_args!("bad device tree: its regions need too many page tables"),
        );
    }
    for ram in board.memory.iter() {
        map.map(*ram, NORMAL);
    }
    map.map_kernel_image();
    map.map(uart.region, DEVICE);
    for region in gic.regions() {
        map.map(region, DEVICE);
    }
    board.set_apart_stopwatches(
        |stopwatch| {
            let mappable = map.can_map([stopwatch.shared, stopwatch.registers]);
            if mappable {
                map.map(stopwatch.shared, NORMAL);
                map.map(stopwatch.registers, DEVICE);
            }
            mappable
        },
        PropertyError::new("reg", "no page table left to map it"),
    );
    // SAFETY: The map covers RAM (image, stack, device tree) and every
    // device used from here on.
    unsafe { map.activate() };

    // --- MMU on.
    // SAFETY: The GIC's regions are mapped as Device memory above, and this
    // is the only driver instance.
    let gic = unsafe { Gic::new(&gic, board.cpu_count) };
    board.set_apart_stopwatches(
        |stopwatch| gic.implements(stopwatch.timeout_interrupt.intid),
        PropertyError::new("interrupts", "an INTID the GIC does not implement"),
    );
    let _ = ENTRY_EL.set(entry_el);
    let board = BOARD.set(board).unwrap_or_else(|_| unreachable!());
    arch::timer::init();
    let uart_base = NonNull::new(uart.region.base as *mut _).expect("UART at address 0");
    // SAFETY: The UART region is mapped as Device memory above and only
    // the console uses it.
    unsafe { console::init(uart_base) };
    print_banner(board);

    let mut drivers = Stopwatches::new();
    for info in board.stopwatches.iter() {
        // SAFETY: Its registers are mapped as Device memory and its shared
        // region as Normal memory above; this is the only driver instance.
        let driver = unsafe { Stopwatch::new(*info) };
        // Both lists hold MAX_STOPWATCHES.
        let _ = drivers.push(driver);
    }
    let stopwatches = STOPWATCHES.set(drivers).unwrap_or_else(|_| unreachable!());
    let Some(uart_interrupt) = uart.interrupt else {
        power::fatal_with_status(
            power::exit_status::NO_CONSOLE,
            format_args!("the console UART has no usable interrupt"),
        );
    };
    if !gic.implements(uart_interrupt.intid) {
        power::fatal_with_status(
            power::exit_status::BAD_DEVICE_TREE,
            format_args!(
                "bad device tree: node {}: interrupts: an INTID the GIC does not implement",
                uart.node_name
            ),
        );
    }
    let mode = BootMode::from_bootargs(board.bootargs);
    // The prompt needs the stopwatches (it names the selection among
    // several), not the interrupts: it goes out first, input typed
    // meanwhile waits in the UART.
    if mode == BootMode::Shell {
        shell::greet();
    }

    interrupts::init(gic);
    let stopwatch_routes = stopwatches
        .iter()
        .enumerate()
        .map(|(index, driver)| (driver.interrupt(), Source::Stopwatch(index)));
    let timer_route = board
        .virtual_timer
        .map(|interrupt| (interrupt, Source::VirtualTimer));
    interrupts::route(
        [(uart_interrupt, Source::ConsoleUart)]
            .into_iter()
            .chain(timer_route)
            .chain(stopwatch_routes),
    );
    if board.virtual_timer.is_some() {
        arch::timer::set_interrupt_routed();
    }
    console::enable_receive_interrupt();
    interrupts::enable_cpu_irqs();

    match mode {
        #[cfg(feature = "selftest")]
        BootMode::Test(filter) => power::exit(selftest::run(filter)),
        #[cfg(feature = "selftest")]
        BootMode::Fault => selftest::provoke_data_abort(),
        #[cfg(feature = "selftest")]
        BootMode::Overflow => selftest::overflow_the_stack(),
        #[cfg(feature = "selftest")]
        BootMode::HoldTimeout => selftest::hold_timeout(),
        #[cfg(feature = "selftest")]
        BootMode::KvmNegativeControl => {
            // UARTFR: a read-only register whose read changes nothing.
            let fr = core::mem::offset_of!(drivers::uart::Pl011Registers, fr) as u64;
            let flags = (uart.region.base + fr) as *const u32;
            // SAFETY: The UART is mapped as Device memory above; UARTFR is
            // an aligned 32-bit register, and reading it has no effect
            // (the console's driver polls it too).
            let value = unsafe { arch::mmio::writeback_negative_control(flags) };
            println!("kvm-negative-control: one writeback load of UARTFR = {value:#x}");
            power::exit(0)
        }
        #[cfg(not(feature = "selftest"))]
        BootMode::Test(_)
        | BootMode::Fault
        | BootMode::Overflow
        | BootMode::HoldTimeout
        | BootMode::KvmNegativeControl => power::fatal_with_status(
            power::exit_status::NO_TESTS,
            format_args!(
                "this kernel has no in-guest tests: boot target/vm/guest-kernel-test for them"
            ),
        ),
        BootMode::Bench => {
            bench::run_and_print();
            power::exit(0)
        }
        BootMode::Shell => shell::run(),
    }
}

/// The kernel's image in memory, with its .bss and stacks.
fn kernel_region() -> Region {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    // Only the symbols' addresses are used, never their contents.
    let (start, end) = (&raw const __image_start, &raw const __image_end);
    Region::new(start as u64, end as u64 - start as u64)
}

/// Where `bytes` are in memory.
fn region_of(bytes: &[u8]) -> Region {
    Region::new(bytes.as_ptr() as u64, bytes.len() as u64)
}

/// What the boot arguments ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BootMode<'a> {
    /// `test` (all tests) or `test=NAME` (tests whose name contains NAME).
    Test(Option<&'a str>),
    /// `fault`: a data abort on purpose, to test the fatal report.
    Fault,
    /// `overflow`: unbounded recursion on purpose, to test the stack guard.
    Overflow,
    /// `hold-timeout`: a timeout interrupt held pending, for a snapshot.
    HoldTimeout,
    /// `bench`.
    Bench,
    /// `kvm-negative-control`: one MMIO load that KVM could not emulate,
    /// which `cargo xtask kvm-check` must catch (test kernel only).
    KvmNegativeControl,
    /// Anything else: the interactive shell.
    Shell,
}

impl<'a> BootMode<'a> {
    fn from_bootargs(bootargs: &'a str) -> Self {
        for word in bootargs.split_ascii_whitespace() {
            // By byte, not `split_once('=')`: this runs before the prompt,
            // and the char searcher is more code to translate.
            let equals = word.bytes().position(|byte| byte == b'=');
            // `get`, not slicing: no panic path (the image has a budget).
            let split = equals.and_then(|at| Some((word.get(..at)?, word.get(at + 1..)?)));
            match split {
                None if word == "test" => return BootMode::Test(None),
                Some(("test", filter)) => return BootMode::Test(Some(filter)),
                None if word == "fault" => return BootMode::Fault,
                None if word == "overflow" => return BootMode::Overflow,
                None if word == "hold-timeout" => return BootMode::HoldTimeout,
                None if word == "bench" => return BootMode::Bench,
                None if word == "kvm-negative-control" => return BootMode::KvmNegativeControl,
                _ => {}
            }
        }
        BootMode::Shell
    }
}

/// The device tree: at the loader's x0 if that holds one, else at the
/// start of RAM. (Also called at EL3, before .bss and the MMU: no statics.)
pub(crate) fn find_device_tree(loader_dtb: usize) -> Option<&'static [u8]> {
    [loader_dtb, VIRT_RAM_BASE]
        .into_iter()
        .filter(|&address| address != 0 && address.is_multiple_of(8))
        .find_map(|address| {
            let header = address as *const u32;
            // SAFETY: Both candidates are RAM addresses on `virt` (the
            // loader's x0, or RAM's base), readable with the MMU off; the
            // header is 8-byte aligned. (RAM, not MMIO.)
            let (magic, total_size) = unsafe {
                (
                    u32::from_be(header.read_volatile()),
                    u32::from_be(header.add(1).read_volatile()),
                )
            };
            // SAFETY: A valid magic means QEMU wrote a device tree of
            // `total_size` bytes there, which nothing overwrites.
            (magic == FDT_MAGIC).then(|| unsafe {
                core::slice::from_raw_parts(address as *const u8, total_size as usize)
            })
        })
}

/// The banner, printed without `core::fmt` (see [`console::print_pieces`]):
/// it is on the way to the prompt. The rare lines (nodes ignored) use
/// `println!`.
fn print_banner(board: &BoardInfo<'_>) {
    use console::Piece::{Decimal, Hex, Text};
    let ram_bytes: u64 = board.memory.iter().map(|region| region.size).sum();
    console::print_pieces(&[
        Text(concat!(
            "\nguest-kernel ",
            env!("CARGO_PKG_VERSION"),
            ": stopwatch driver for QEMU virt\nentered at EL"
        )),
        Decimal(entry_el()),
        Text(", running at EL"),
        Decimal(arch::current_el()),
        Text("; counter "),
        Decimal(arch::timer::clock().frequency_hz),
        Text(" Hz\nRAM: "),
        Decimal(ram_bytes >> 20),
        Text(" MiB; boot arguments: \""),
        Text(board.bootargs),
        Text("\"\n"),
    ]);
    for (index, stopwatch) in board.stopwatches.iter().enumerate() {
        console::print_pieces(&[
            Text("stopwatch["),
            Decimal(index as u64),
            Text("]: "),
            Text(stopwatch.node_name),
            Text(" registers "),
            Hex(stopwatch.registers.base),
            Text(" shared "),
            Hex(stopwatch.shared.base),
            Text(" INTID "),
            Decimal(u64::from(stopwatch.timeout_interrupt.intid)),
            Text("\n"),
        ]);
    }
    if board.stopwatches.is_empty() {
        println!(
            "stopwatch: NONE in the device tree (start QEMU with -device stopwatch); the shell works, stopwatch commands will say so"
        );
    }
    for broken in board.broken_stopwatches.iter() {
        println!("stopwatch: {} ignored: {}", broken.node_name, broken.error);
    }
    // What did not fit the fixed lists (neither is mapped or used).
    let stopwatches_dropped = board.stopwatches.dropped() + board.broken_stopwatches.dropped();
    for (dropped, what, kept) in [
        (board.memory.dropped(), "memory regions", MAX_MEMORY_REGIONS),
        (stopwatches_dropped, "stopwatch nodes", MAX_STOPWATCHES),
    ] {
        if dropped > 0 {
            println!("warning: {dropped} more {what} ignored (at most {kept} kept)");
        }
    }
}
