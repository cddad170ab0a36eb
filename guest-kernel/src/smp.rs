// SPDX-License-Identifier: GPL-2.0-or-later
//! The other CPUs: starting them, and handing them work.
//!
//! The device tree lists the CPUs (`/cpus/cpu@N`, `reg` = MPIDR affinity);
//! the boot CPU is index 0, the others get 1.. in tree order. How a CPU is
//! started depends on how QEMU started the kernel:
//! - with a `/psci` node (ELF at EL1 or EL2, the Image at any
//!   `secure=`): the other CPUs are powered off, and PSCI CPU_ON (through
//!   the `smccc` crate, by the device tree's conduit, HVC or SMC) starts
//!   one at `secondary_entry` (`arch::boot`) at EL2 or EL1, with its index
//!   in x0;
//! - without one (the ELF at `secure=on`: QEMU starts it at EL3 and, with
//!   no firmware to answer PSCI, drops its own PSCI emulation and starts
//!   every CPU at `_start` at once): the others wait in `secondary_hold`
//!   until the boot CPU releases them, one by one, through
//!   [`SECONDARY_RELEASE`]; each then takes the same way down as PSCI's.
//!
//! Each CPU then runs [`secondary_main`]: its timer, its part of the GIC
//! (`interrupts::init_this_cpu`), "online", IRQs on, and an idle loop in
//! WFI that runs what another CPU posts in its mailbox (`post`, in the test
//! kernel: the hook for work on the other CPUs) and is woken by the
//! wake-up SGI. A CPU that does not come online within
//! [`START_TIMEOUT_NS`] is reported by its MPIDR; the boot goes on.
//!
//! Shared state is atomics and [`IrqMutex`]es in a [`PerCpu`]: each CPU's
//! slot is written by the boot CPU (its MPIDR, before starting it), by
//! itself (its state) and by whoever posts work (its mailbox, under the
//! lock), and read by anyone: every type in it is `Sync` by its own
//! synchronization, with no `unsafe impl`. No `static mut`; the one
//! `unsafe` is the cache maintenance of the release.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use board_discovery::{BoardInfo, PsciConduit};
use smccc::psci;
use smccc::{Hvc, Smc};

use crate::arch::boot::HOLD_TAG;
use crate::arch::cpu::{PerCpu, MAX_CPUS};
use crate::arch::{mmu, timer};
use crate::interrupts::{self, Source};
use crate::println;
use crate::sync::IrqMutex;

/// How long a started CPU has to come online, in guest time.
pub const START_TIMEOUT_NS: u64 = 1_000_000_000;

/// A CPU index's slot holds no CPU.
const ABSENT: u8 = 0;
/// Asked to start; not online yet.
const STARTING: u8 = 1;
/// Running its idle loop with IRQs on.
const ONLINE: u8 = 2;
/// Could not be asked to start (PSCI said no, or the kernel has no stack
/// for it).
const NOT_STARTED: u8 = 3;

/// Work for a CPU: `run(argument)`, on that CPU, in its idle loop with
/// IRQs on. Plain data (`Send`): a function and a number.
#[derive(Clone, Copy)]
pub struct Job {
    /// What to run.
    pub run: fn(usize),
    /// What to pass it.
    pub argument: usize,
}

/// One CPU, as every CPU sees it.
struct Cpu {
    /// Its MPIDR affinity, from the device tree.
    mpidr: AtomicU64,
    /// [`ABSENT`], [`STARTING`], [`ONLINE`] or [`NOT_STARTED`].
    state: AtomicU8,
    /// Work posted for it, and the index of the CPU that posted it (woken
    /// when the job is done), taken by itself.
    mailbox: IrqMutex<Option<(Job, usize)>>,
    /// Jobs it has finished (Release, after the job's own writes).
    done: AtomicU64,
}

static CPUS: PerCpu<Cpu> = PerCpu::new(
    [const {
        Cpu {
            mpidr: AtomicU64::new(0),
            state: AtomicU8::new(ABSENT),
            mailbox: IrqMutex::new(None),
            done: AtomicU64::new(0),
        }
    }; MAX_CPUS],
);

/// The release of CPUs held in `secondary_hold` (`arch::boot`): slot N
/// holds [`HOLD_TAG`] | the MPIDR affinity of the CPU that is to be CPU N.
/// Read by the held CPUs with their MMU off.
#[unsafe(no_mangle)]
static SECONDARY_RELEASE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

extern "C" {
    /// Where a started CPU enters the kernel (`arch::boot`).
    fn secondary_entry();
}

/// Starts every other CPU of `board` and waits (at most
/// [`START_TIMEOUT_NS`]) for them to come online; prints one line per CPU
/// that did not. Called by the boot CPU once interrupts are routed (the
/// others enable their share of them), with IRQs masked.
pub fn start_secondaries(board: &BoardInfo<'_>) {
    let stacks = mmu::cpu_stacks();
    for (index, &mpidr) in board.cpus.iter().enumerate() {
        let Some(slot) = CPUS.of(index) else { break };
        slot.mpidr.store(mpidr, Ordering::Relaxed);
        if index == 0 {
            slot.state.store(ONLINE, Ordering::Release);
            continue;
        }
        slot.state.store(STARTING, Ordering::Release);
        let started = if index >= stacks {
            Err(None)
        } else {
            start(index, mpidr, board.psci).map_err(Some)
        };
        if let Err(error) = started {
            slot.state.store(NOT_STARTED, Ordering::Release);
            match error {
                Some(error) => {
                    println!("cpu {index} (MPIDR {mpidr:#x}): not started: PSCI CPU_ON: {error}")
                }
                None => println!("cpu {index} (MPIDR {mpidr:#x}): not started: no stack for it"),
            }
        }
    }
    let starting = || {
        CPUS.iter()
            .any(|cpu| cpu.state.load(Ordering::Acquire) == STARTING)
    };
    // Each CPU sends the wake-up SGI to CPU 0 once online, which ends the
    // WFI in the wait.
    let deadline = timer::counter() + timer::clock().ns_to_ticks(START_TIMEOUT_NS);
    timer::wait_until_or(deadline, || !starting());
    for (index, cpu) in CPUS.iter().enumerate() {
        if cpu.state.load(Ordering::Acquire) == STARTING {
            println!(
                "cpu {index} (MPIDR {:#x}): not online after {} ms",
                cpu.mpidr.load(Ordering::Relaxed),
                START_TIMEOUT_NS / 1_000_000
            );
        }
    }
    let extra = board.cpus.dropped();
    if extra > 0 {
        println!("cpus: {extra} more in the device tree, not started (at most {MAX_CPUS})");
    }
}

/// Asks CPU `index` (MPIDR affinity `mpidr`) to start.
fn start(index: usize, mpidr: u64, conduit: Option<PsciConduit>) -> Result<(), psci::Error> {
    let entry = secondary_entry as *const () as u64;
    let context = index as u64;
    let result = match conduit {
        Some(PsciConduit::Hvc) => psci::cpu_on::<Hvc>(mpidr, entry, context),
        Some(PsciConduit::Smc) => psci::cpu_on::<Smc>(mpidr, entry, context),
        None => {
            release_from_hold(index, mpidr);
            return Ok(());
        }
    };
    match result {
        Ok(()) => Ok(()),
        // It runs already: started at `_start` with the boot CPU, it waits
        // in the hold.
        Err(psci::Error::AlreadyOn) => {
            release_from_hold(index, mpidr);
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Releases the CPU with MPIDR affinity `mpidr` from `secondary_hold` as
/// CPU `index`.
fn release_from_hold(index: usize, mpidr: u64) {
    let Some(slot) = SECONDARY_RELEASE.get(index) else {
        return;
    };
    slot.store(HOLD_TAG | mpidr, Ordering::Release);
    // SAFETY: Cache maintenance by address of a static of ours (cleaning
    // writes nothing new) and barriers. The held CPU reads the slot with
    // its MMU off, from memory: clean the line out of our cache to the
    // point of coherency (DC CVAC), wait for it (DSB), then wake the CPU
    // from its WFE (SEV).
    unsafe {
        core::arch::asm!(
            "dc cvac, {slot}",
            "dsb sy",
            "sev",
            slot = in(reg) slot.as_ptr(),
            options(nostack, preserves_flags)
        );
    }
}

/// Where every CPU but the boot CPU arrives from `arch::boot`, at EL1 with
/// its MMU, caches, stacks and vectors set up, IRQs masked, and its index
/// (also in TPIDR_EL1). Never returns.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(_index: usize) -> ! {
    timer::init_this_cpu();
    interrupts::init_this_cpu();
    if interrupts::routes()
        .iter()
        .any(|route| route.source == Source::VirtualTimer)
    {
        timer::set_interrupt_routed();
    }
    let this = CPUS.this();
    this.state.store(ONLINE, Ordering::Release);
    // Wake the boot CPU, which waits for us in `start_secondaries`.
    interrupts::send_wake(0);
    interrupts::enable_cpu_irqs();
    loop {
        // Checked with IRQs masked, so a wake-up between the check and the
        // WFI still ends the WFI.
        timer::wait_for_interrupt_unless(|| this.mailbox.lock(|job| job.is_some()));
        if let Some((job, poster)) = this.mailbox.lock(Option::take) {
            (job.run)(job.argument);
            this.done.fetch_add(1, Ordering::Release);
            // The poster may be asleep in `wait_done`.
            interrupts::send_wake(poster);
        }
    }
}

/// How many CPUs are online (the boot CPU included).
pub fn online() -> usize {
    CPUS.iter()
        .filter(|cpu| cpu.state.load(Ordering::Acquire) == ONLINE)
        .count()
}

/// CPU `index`'s MPIDR affinity and whether it is online, if the device
/// tree has such a CPU.
pub fn cpu(index: usize) -> Option<(u64, bool)> {
    let cpu = CPUS.of(index)?;
    let state = cpu.state.load(Ordering::Acquire);
    (state != ABSENT).then(|| (cpu.mpidr.load(Ordering::Relaxed), state == ONLINE))
}

#[cfg(feature = "selftest")]
/// Why work could not be posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// No such CPU, or not online.
    NotOnline,
    /// Its mailbox holds a job not taken yet.
    Busy,
}

#[cfg(feature = "selftest")]
/// Posts `job` to CPU `index` and wakes it; returns the count of its
/// finished jobs at which this one is done (see [`wait_done`]).
pub fn post(index: usize, job: Job) -> Result<u64, PostError> {
    let cpu = CPUS.of(index).ok_or(PostError::NotOnline)?;
    let poster = crate::arch::cpu::index();
    if index == poster || cpu.state.load(Ordering::Acquire) != ONLINE {
        return Err(PostError::NotOnline);
    }
    let ticket = cpu.mailbox.lock(|mailbox| {
        if mailbox.is_some() {
            return Err(PostError::Busy);
        }
        *mailbox = Some((job, poster));
        // The mailbox holds one job, so this one is the next to finish.
        Ok(cpu.done.load(Ordering::Acquire) + 1)
    })?;
    interrupts::send_wake(index);
    Ok(ticket)
}

#[cfg(feature = "selftest")]
/// Waits until CPU `index` has finished the job [`post`] gave `ticket`
/// for, at most `timeout_ns`; says whether it has (its writes are then
/// visible here). Sleeps in WFI: the CPU wakes this one when done (a
/// spinning vCPU would take host time from the one doing the job, and from
/// QEMU's main loop, which fires the timers).
pub fn wait_done(index: usize, ticket: u64, timeout_ns: u64) -> bool {
    let Some(cpu) = CPUS.of(index) else {
        return false;
    };
    let done = || cpu.done.load(Ordering::Acquire) >= ticket;
    let deadline = timer::counter() + timer::clock().ns_to_ticks(timeout_ns);
    timer::wait_until_or(deadline, done)
}
