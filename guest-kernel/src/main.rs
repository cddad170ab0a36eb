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
mod devices;
mod drivers;
mod interrupts;
mod power;
#[cfg(feature = "selftest")]
mod selftest;
mod shell;
mod smp;
mod sync;

use core::ptr::NonNull;

use arch::mmu::{KernelMap, DEVICE, NORMAL};
use board_discovery::{BoardInfo, PropertyError, Region, MAX_MEMORY_REGIONS, MAX_STOPWATCHES};
use drivers::gic::Gic;
use interrupts::Source;

/// The Rust entry point, called by `arch::boot` at EL1 with the MMU off.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(loader_dtb: usize, entry_el: u64) -> ! {
    // --- MMU off: every access is Device memory. Only decode the tree
    // (the target is built with strict alignment, so no unaligned access
    // is generated) and build the page tables: no atomics, no console.
    // A failure here ends the run with its own exit status (see `power`),
    // its message going to semihosting as there is no console yet.
    let Some(dtb) = arch::boot::find_device_tree(loader_dtb) else {
        power::fatal_with_status(
            power::exit_status::NO_DEVICE_TREE,
            format_args!(
                "no device tree at x0 ({loader_dtb:#x}) nor at {:#x}",
                arch::boot::VIRT_RAM_BASE
            ),
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
                format_args!("bad device tree: memory misses {what}"),
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
            format_args!("bad device tree: too many regions"),
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
        PropertyError::new("reg", "too many regions"),
    );
    // The bench's C-device floor reads the device tree's PL031 RTC (test
    // kernel only): mapped in that mode, and forgotten in the others, so
    // that nothing reads it unmapped.
    #[cfg(feature = "selftest")]
    {
        let wanted = BootMode::from_bootargs(board.bootargs) == BootMode::BenchScaling;
        board.rtc = board.rtc.filter(|&rtc| wanted && map.can_map([rtc]));
        if let Some(rtc) = board.rtc {
            map.map(rtc, DEVICE);
        }
    }
    // SAFETY: The map covers RAM (image, stack, device tree) and every
    // device used from here on.
    unsafe { map.activate() };

    // --- MMU on.
    arch::boot::set_entry_el(entry_el);
    arch::timer::init();
    let uart_base = NonNull::new(uart.region.base as *mut _).expect("UART at address 0");
    // SAFETY: The UART region is mapped as Device memory above and only
    // the console uses it.
    unsafe { console::init(uart_base) };
    print_banner(&board);

    // SAFETY: Every stopwatch's registers are mapped as Device memory and
    // its shared region as Normal memory above; nothing else drives them.
    let machine = unsafe { devices::init(board) };
    let board = &machine.board;
    let stopwatches = &machine.stopwatches;
    let Some(uart_interrupt) = uart.interrupt else {
        power::fatal_with_status(
            power::exit_status::NO_CONSOLE,
            format_args!("the console UART has no usable interrupt"),
        );
    };
    let mode = BootMode::from_bootargs(board.bootargs);
    let set_up_interrupts = || {
        // SAFETY: The GIC's regions are mapped as Device memory above, and
        // this is the only driver instance.
        let gic = unsafe { Gic::new(&gic, board.cpu_count) };
        if !gic.implements(uart_interrupt.intid) {
            power::fatal_with_status(
                power::exit_status::BAD_DEVICE_TREE,
                format_args!(
                    "bad device tree: node {}: interrupts: INTID not in the GIC",
                    uart.node_name
                ),
            );
        }
        // A stopwatch whose INTID the GIC does not implement stays without
        // its interrupt (enabling it would fail), and says so.
        let mut unrouted = 0u64;
        for (index, driver) in stopwatches.iter().enumerate() {
            if !gic.implements(driver.interrupt().intid) {
                println!("stopwatch[{index}]: INTID not in the GIC: not routed");
                unrouted |= 1 << index;
            }
        }
        interrupts::init(gic);
        let stopwatch_routes = stopwatches
            .iter()
            .enumerate()
            .filter(|(index, _)| unrouted & (1 << index) == 0)
            .map(|(index, driver)| (driver.interrupt(), Source::Stopwatch(index)));
        let timer_route = board
            .virtual_timer
            .map(|interrupt| (interrupt, Source::VirtualTimer));
        // The other CPUs' wake-up, if there are others.
        let wake_route = (board.cpus.len() > 1).then_some((interrupts::WAKE, Source::Wake));
        interrupts::route(
            [(uart_interrupt, Source::ConsoleUart)]
                .into_iter()
                .chain(timer_route)
                .chain(stopwatch_routes)
                .chain(wake_route),
        );
        if board.virtual_timer.is_some() {
            arch::timer::set_interrupt_routed();
        }
    };
    // With one CPU the prompt goes out before the interrupts are set up: it
    // needs the stopwatches (it names the selection among several), not the
    // interrupts, and input typed meanwhile waits in the UART. The other
    // CPUs need the interrupts set up to start, and the prompt follows the
    // line saying how many are online.
    let several_cpus = board.cpus.len() > 1;
    if several_cpus {
        set_up_interrupts();
    }
    smp::start_secondaries(board);
    print_cpus_online(board);
    let shell = shell::Shell::new(machine);
    if mode == BootMode::Shell {
        shell.greet();
    }
    if !several_cpus {
        set_up_interrupts();
    }
    console::enable_receive_interrupt();
    interrupts::enable_cpu_irqs();

    match mode {
        #[cfg(feature = "selftest")]
        BootMode::Test(filter) => power::exit(selftest::run(filter, machine)),
        #[cfg(feature = "selftest")]
        BootMode::Fault => selftest::provoke_data_abort(),
        #[cfg(feature = "selftest")]
        BootMode::Overflow => selftest::overflow_the_stack(),
        #[cfg(feature = "selftest")]
        BootMode::HoldTimeout => selftest::hold_timeout(stopwatches.first()),
        #[cfg(feature = "selftest")]
        BootMode::BenchScaling => {
            // SAFETY: `board.rtc` is kept above only where it was mapped
            // as Device memory.
            unsafe { selftest::scaling::run_and_print(stopwatches.first(), board.rtc) };
            power::exit(0)
        }
        #[cfg(feature = "selftest")]
        BootMode::Concurrency(options) => {
            selftest::concurrency::run_and_print(stopwatches.first(), options);
            power::exit(0)
        }
        #[cfg(feature = "selftest")]
        BootMode::ConcurrentDrivers(seed) => {
            selftest::concurrent_drivers::run_and_print(stopwatches.len(), seed);
            power::exit(0)
        }
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
            match stopwatches.first() {
                Some(stopwatch) => bench::run_and_print(stopwatch),
                None => println!("BENCH {{\"error\":\"no stopwatch device\"}}"),
            }
            power::exit(0)
        }
        BootMode::Shell => shell.run(),
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
    /// `bench-scaling`: read throughput with several CPUs reading at once
    /// (test kernel only; `selftest::scaling`).
    #[cfg(feature = "selftest")]
    BenchScaling,
    /// `concurrency` or `concurrency=OPTIONS` (a seed, `reader=NAME`,
    /// `commands=N`, `fast`): readers on every other CPU while CPU 0
    /// drives the device (test kernel only; `selftest::concurrency`).
    #[cfg(feature = "selftest")]
    Concurrency(selftest::concurrency::Options),
    /// `concurrent-drivers` or `concurrent-drivers=SEED`: CPU k drives
    /// stopwatch k, all at once (test kernel only;
    /// `selftest::concurrent_drivers`).
    #[cfg(feature = "selftest")]
    ConcurrentDrivers(u64),
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
                #[cfg(feature = "selftest")]
                None if word == "bench-scaling" => return BootMode::BenchScaling,
                #[cfg(feature = "selftest")]
                None if word == "concurrency" => {
                    return BootMode::Concurrency(selftest::concurrency::Options::DEFAULT)
                }
                #[cfg(feature = "selftest")]
                Some(("concurrency", options)) => {
                    if let Some(options) = selftest::concurrency::Options::parse(options) {
                        return BootMode::Concurrency(options);
                    }
                }
                #[cfg(feature = "selftest")]
                None if word == "concurrent-drivers" => {
                    return BootMode::ConcurrentDrivers(selftest::concurrent_drivers::DEFAULT_SEED)
                }
                #[cfg(feature = "selftest")]
                Some(("concurrent-drivers", seed)) => {
                    if let Ok(seed) = seed.parse() {
                        return BootMode::ConcurrentDrivers(seed);
                    }
                }
                None if word == "kvm-negative-control" => return BootMode::KvmNegativeControl,
                _ => {}
            }
        }
        BootMode::Shell
    }
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
        Decimal(arch::boot::entry_el()),
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

/// `CPUs: N online of M`, without `core::fmt` (on the way to the prompt).
fn print_cpus_online(board: &BoardInfo<'_>) {
    use console::Piece::{Decimal, Text};
    console::print_pieces(&[
        Text("CPUs: "),
        Decimal(smp::online() as u64),
        Text(" online of "),
        Decimal(board.cpu_count as u64),
        Text("\n"),
    ]);
}
