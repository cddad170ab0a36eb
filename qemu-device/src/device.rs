// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU side of the stopwatch: QOM type, memory regions, interrupt,
//! timer, reset and migration, each forwarding to the state machine in
//! [`stopwatch_model`]. Guest mistakes are logged, never fatal.
//! The state machine's view of QEMU is `environment.rs`; the pass-through
//! RAM's atomic accessors are `shared_memory.rs`.
//!
//! Trace events (`trace-events` next to `src/`, `-trace 'stopwatch_*'`)
//! report each register access, command, timer and interrupt change, time
//! page write and guest mistake. Their arguments are evaluated even when
//! tracing is off (the generated "enabled" check is private to the
//! generated module), so, as PL011's and HPET's, they cost next to
//! nothing: numbers, static names, and the instance id set once at realize
//! and read without a `BqlRefCell` borrow (each borrow and release is a
//! call into C).
//!
//! A register read is the device's hot path (an MMIO exit per access):
//! it borrows the state once, reads the shared region's address cached at
//! realize, and returns without touching the interrupt or timer when the
//! access changed nothing (docs/performance.md measures it against a C
//! device's read).

use std::{
    ffi::{CStr, CString},
    pin::Pin,
    ptr::{self, NonNull},
    sync::{
        atomic::{AtomicPtr, Ordering},
        OnceLock,
    },
};

use bql::BqlRefCell;
use common::uninit_field_mut;
use hwcore::{
    DeviceImpl, DeviceState, InterruptSource, ResetType, ResettablePhasesImpl, SysBusDevice,
    SysBusDeviceClass, SysBusDeviceImpl, SysBusDeviceMethods,
};
use migration::{
    self, impl_vmstate_struct, vmstate_fields, vmstate_of, vmstate_subsections,
    VMStateDescription, VMStateDescriptionBuilder,
};
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use stopwatch_abi::{regs, shared};
use stopwatch_model::{SavedState, Stopwatch};
use system::{hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::timer::{Timer, CLOCK_VIRTUAL};

use crate::{environment::QemuEnvironment, shared_memory::SharedRam, trace};

/// The stopwatch device.
///
/// ```text
///  * sysbus MMIO region 0: pass-through memory (RAM, no exit)
///  * sysbus MMIO region 1: trapping registers
///  * sysbus IRQ 0: timeout interrupt, level-high
/// ```
#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct StopwatchState {
    parent_obj: ParentField<SysBusDevice>,
    /// Region 0, RAM shared with the guest. Created at realize, because its
    /// RAM block needs the instance's name (RAM block names are global).
    shared_memory: MemoryRegion,
    /// Region 1, the trapping registers.
    registers: MemoryRegion,
    /// Where region 0's RAM is in QEMU's address space, looked up once at
    /// realize (null before): `memory_region_get_ram_ptr` is an RCU read
    /// section, two full memory barriers in this build, on every access
    /// otherwise. See [`Self::shared_ram`] for why it stays valid.
    shared_ram_base: AtomicPtr<u8>,
    /// The timeout interrupt.
    pub timeout_irq: InterruptSource,
    /// Fires at the armed timeout's deadline, on the virtual clock.
    pub timer: BqlRefCell<Timer>,
    /// The device's behaviour and state.
    stopwatch: BqlRefCell<Stopwatch>,
    /// The state as the migration stream carries it, filled at pre-save and
    /// read back at post-load.
    migrated: BqlRefCell<MigratedState>,
    /// The laps, as the `stopwatch/laps` subsection carries them: filled
    /// at pre-save, cleared at pre-load (a stream without the subsection
    /// has no laps), read back at post-load.
    migrated_laps: BqlRefCell<MigratedLaps>,
    /// The period of a periodic timeout, as the `stopwatch/periodic`
    /// subsection carries it: like `migrated_laps`.
    migrated_period: BqlRefCell<MigratedPeriod>,
    /// The instance name that trace events and guest-error messages
    /// start with; set once at realize ([`Self::id`]: empty before).
    id: OnceLock<CString>,
    /// As in the original: at power-on, RESET then START. Spelled with
    /// underscores, unlike QEMU's usual dashes, because that is the
    /// original's name: its command lines (`-device
    /// stopwatch,start_at_boot=false`) keep working.
    #[property(rename = "start_at_boot", default = true)]
    start_at_boot: bool,
}

qom_isa!(StopwatchState: SysBusDevice, DeviceState, Object);

// SAFETY: TYPE_NAME matches the Rust type, which embeds SysBusDevice first.
unsafe impl ObjectType for StopwatchState {
    type Class = <SysBusDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = stopwatch_abi::TYPE_NAME;
}

impl ObjectImpl for StopwatchState {
    type ParentType = SysBusDevice;

    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const INSTANCE_POST_INIT: Option<fn(&Self)> = Some(Self::post_init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
}

impl DeviceImpl for StopwatchState {
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_STOPWATCH);
    const REALIZE: Option<fn(&Self) -> util::Result<()>> = Some(Self::realize);
}

impl ResettablePhasesImpl for StopwatchState {
    const HOLD: Option<fn(&Self, ResetType)> = Some(Self::reset_hold);
}

impl SysBusDeviceImpl for StopwatchState {}

impl StopwatchState {
    fn class_init(klass: &mut SysBusDeviceClass) {
        klass.class_init::<Self>();
        // `-device stopwatch` on the command line: the board's platform bus
        // maps it and generates its device-tree node at machine creation.
        // There is no hotplug: the guest's device tree is already built.
        klass.parent_class.user_creatable = true;
        klass.parent_class.hotpluggable = false;
    }

    /// # Safety
    ///
    /// Called once by QOM, on a zeroed instance whose parent is initialized.
    unsafe fn init(mut this: ParentInit<Self>) {
        static REGISTER_OPS: MemoryRegionOps<StopwatchState> =
            MemoryRegionOpsBuilder::<StopwatchState>::new()
                .read(&StopwatchState::read)
                .write(&StopwatchState::write)
                .little_endian()
                // Let every size and alignment through, so that the model
                // logs a bad access instead of the memory core failing it.
                .valid_sizes(1, 8)
                .valid_unaligned()
                .impl_sizes(1, 8)
                .impl_unaligned()
                .build();

        MemoryRegion::init_io(
            &mut uninit_field_mut!(*this, registers),
            &REGISTER_OPS,
            "stopwatch-registers",
            regs::SIZE,
        );
        // SAFETY: the timer is initialized in post_init, before any use.
        uninit_field_mut!(*this, timer).write(BqlRefCell::new(unsafe { Timer::new() }));
        uninit_field_mut!(*this, stopwatch).write(BqlRefCell::new(Stopwatch::new()));
        uninit_field_mut!(*this, migrated).write(BqlRefCell::new(MigratedState::default()));
        uninit_field_mut!(*this, migrated_laps).write(BqlRefCell::new(MigratedLaps::default()));
        uninit_field_mut!(*this, migrated_period)
            .write(BqlRefCell::new(MigratedPeriod::default()));
        uninit_field_mut!(*this, shared_ram_base).write(AtomicPtr::new(ptr::null_mut()));
        uninit_field_mut!(*this, id).write(OnceLock::new());
    }

    fn post_init(&self) {
        let mut timer = self.timer.borrow_mut();
        // SAFETY: QOM objects never move once allocated, so the timer inside
        // this one is pinned; `self` outlives the timer it contains.
        let timer = unsafe { Pin::new_unchecked(&mut *timer) };
        timer.init_full(None, CLOCK_VIRTUAL, Timer::NS, 0, Self::timer_expired, self);
        self.init_irq(&self.timeout_irq);
    }

    fn realize(&self) -> util::Result<()> {
        let id = self.instance_name();
        self.shared_memory
            .init_ram(self, &format!("{id}.shared"), shared::SIZE)?;
        // Release: a vCPU thread that sees the pointer sees the block.
        self.shared_ram_base
            .store(self.shared_memory.get_ram_ptr(), Ordering::Release);
        // Realize runs once per instance: the name is not set yet.
        let _ = self
            .id
            .set(CString::new(id).expect("QOM names contain no NUL"));
        // The order of these calls is the order of the `reg` entries.
        self.init_mmio(&self.shared_memory);
        self.init_mmio(&self.registers);
        Ok(())
    }

    /// The last component of the QOM path: the `id=` given to `-device`,
    /// or a name like `device[0]`. Set before realize.
    fn instance_name(&self) -> String {
        self.canonical_path_component()
            .unwrap_or_else(|| stopwatch_abi::TYPE_NAME.to_string_lossy().into_owned())
    }

    /// Runs `f` on the state machine with this device as its environment,
    /// then applies the interrupt and timer changes it asked for, after the
    /// state's `BqlRefCell` borrow is released (as PL011 does: raising the
    /// line may call back into devices, the timer may fire, while no
    /// borrow is held).
    fn with_stopwatch<R>(&self, f: impl FnOnce(&mut Stopwatch, &mut QemuEnvironment) -> R) -> R {
        let mut env = QemuEnvironment::new(self);
        let result = f(&mut self.stopwatch.borrow_mut(), &mut env);
        env.effects.apply(self);
        result
    }

    /// The instance name (`sw0`), for trace events and messages; empty
    /// before realize.
    pub fn id(&self) -> &CStr {
        self.id.get().map_or(c"", CString::as_c_str)
    }

    /// Region 0's RAM, for the state machine. Every caller (register
    /// access, timer, reset, migration) comes after realize.
    pub fn shared_ram(&self) -> SharedRam {
        let base = NonNull::new(self.shared_ram_base.load(Ordering::Acquire))
            .expect("realized stopwatch has its RAM");
        // SAFETY: `base` is the host address of region 0's RAM block,
        // `shared::SIZE` bytes (realize). It stays valid while the device
        // lives: QEMU allocates a RAM block's memory once, never moves a
        // fixed-size block's (the region is not resizeable, and migration
        // loads into the same block), and frees it only when the region is
        // finalized, which is with this device (the region is a field of
        // it) and after every access, timer and reset of it.
        unsafe { SharedRam::new(base) }
    }

    fn read(&self, offset: hwaddr, size: u32) -> u64 {
        let value = self.with_stopwatch(|stopwatch, env| stopwatch.read(env, offset, size));
        trace::trace_stopwatch_read(self.id(), offset, size, value);
        value
    }

    fn write(&self, offset: hwaddr, value: u64, size: u32) {
        // Before the effects (command, timer, page), so the trace reads in
        // order.
        trace::trace_stopwatch_write(self.id(), offset, size, value);
        self.with_stopwatch(|stopwatch, env| stopwatch.write(env, offset, value, size));
    }

    fn timer_expired(&self) {
        self.with_stopwatch(|stopwatch, env| stopwatch.timer_expired(env));
    }

    fn reset_hold(&self, _type: ResetType) {
        let start_at_boot = self.start_at_boot;
        self.with_stopwatch(|stopwatch, env| stopwatch.power_on_reset(env, start_at_boot));
    }

    fn pre_save(&self) -> Result<(), migration::Infallible> {
        let saved = self.stopwatch.borrow().save();
        *self.migrated.borrow_mut() = saved.into();
        *self.migrated_laps.borrow_mut() = saved.into();
        *self.migrated_period.borrow_mut() = saved.into();
        Ok(())
    }

    // tutorial:lap-vmstate-callbacks begin
    /// Whether the stream needs the `stopwatch/laps` subsection: only with
    /// laps recorded, so that a device with none writes the same stream as
    /// a device without laps, which an older QEMU can load.
    fn laps_needed(&self) -> bool {
        self.migrated_laps.borrow().count != 0
    }

    /// Before loading: no laps, unless the stream has the subsection.
    fn pre_load(&self) -> Result<(), migration::Infallible> {
        *self.migrated_laps.borrow_mut() = MigratedLaps::default();
        Ok(())
    }
    // tutorial:lap-vmstate-callbacks end

    // tutorial:periodic-vmstate-callbacks begin
    /// Whether the stream needs the `stopwatch/periodic` subsection: only
    /// while a periodic timeout runs, so that every other state writes
    /// the stream of a device without PERIODIC.
    fn period_needed(&self) -> bool {
        self.migrated_period.borrow().period_ns != 0
    }

    /// Before loading: the stream's main section and subsections, and
    /// nothing left from this device's own state.
    fn pre_load_all(&self) -> Result<(), migration::Infallible> {
        *self.migrated_period.borrow_mut() = MigratedPeriod::default();
        self.pre_load()
    }
    // tutorial:periodic-vmstate-callbacks end

    fn post_load(&self, _version_id: u8) -> Result<(), migration::InvalidError> {
        let mut saved = SavedState::from(&*self.migrated.borrow());
        self.migrated_laps.borrow().restore_into(&mut saved);
        saved.timeout_period_ns = self.migrated_period.borrow().period_ns;
        let mut env = QemuEnvironment::new(self);
        match Stopwatch::restore(&mut env, &saved) {
            Ok(restored) => {
                *self.stopwatch.borrow_mut() = restored;
                env.effects.apply(self);
                Ok(())
            }
            Err(error) => {
                // Refuse the stream rather than run with an impossible state.
                // Not a guest error: say it always, next to QEMU's own
                // "error while loading state" line.
                util::Error::msg(format!(
                    "stopwatch {}: migration stream rejected: {error}",
                    self.id().to_string_lossy()
                ))
                .report();
                Err(migration::InvalidError)
            }
        }
    }
}

/// [`SavedState`] as a `#[repr(C)]` struct the migration stream describes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MigratedState {
    status: u64,
    accumulated_ns: u64,
    run_start_ns: u64,
    timeout_deadline_ns: u64,
    sequence: u32,
    timeout_state: u8,
}

impl From<SavedState> for MigratedState {
    fn from(saved: SavedState) -> Self {
        MigratedState {
            status: saved.status,
            accumulated_ns: saved.accumulated_ns,
            run_start_ns: saved.run_start_ns,
            timeout_deadline_ns: saved.timeout_deadline_ns,
            sequence: saved.sequence,
            timeout_state: saved.timeout_state,
        }
    }
}

impl From<&MigratedState> for SavedState {
    fn from(migrated: &MigratedState) -> Self {
        SavedState {
            status: migrated.status,
            accumulated_ns: migrated.accumulated_ns,
            run_start_ns: migrated.run_start_ns,
            timeout_state: migrated.timeout_state,
            timeout_deadline_ns: migrated.timeout_deadline_ns,
            sequence: migrated.sequence,
            // The laps come from their own subsection: see `MigratedLaps`.
            lap_count: 0,
            laps: [0; shared::LAP_SLOTS],
            // And the period from its own: see `MigratedPeriod`.
            timeout_period_ns: 0,
        }
    }
}

impl_vmstate_struct!(
    MigratedState,
    VMStateDescriptionBuilder::<MigratedState>::new()
        .name(c"stopwatch/state")
        .version_id(1)
        .minimum_version_id(1)
        .fields(vmstate_fields! {
            vmstate_of!(MigratedState, status),
            vmstate_of!(MigratedState, accumulated_ns),
            vmstate_of!(MigratedState, run_start_ns),
            vmstate_of!(MigratedState, timeout_deadline_ns),
            vmstate_of!(MigratedState, sequence),
            vmstate_of!(MigratedState, timeout_state),
        })
        .build()
);

// tutorial:lap-vmstate-struct begin
/// The laps of [`SavedState`], as the `stopwatch/laps` subsection carries
/// them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MigratedLaps {
    count: u64,
    laps: [u64; shared::LAP_SLOTS],
}

impl From<SavedState> for MigratedLaps {
    fn from(saved: SavedState) -> Self {
        MigratedLaps {
            count: saved.lap_count,
            laps: saved.laps,
        }
    }
}

impl MigratedLaps {
    /// Puts the laps into the state loaded from the main section.
    fn restore_into(&self, saved: &mut SavedState) {
        saved.lap_count = self.count;
        saved.laps = self.laps;
    }
}

impl_vmstate_struct!(
    MigratedLaps,
    VMStateDescriptionBuilder::<MigratedLaps>::new()
        .name(c"stopwatch/laps-state")
        .version_id(1)
        .minimum_version_id(1)
        .fields(vmstate_fields! {
            vmstate_of!(MigratedLaps, count),
            vmstate_of!(MigratedLaps, laps),
        })
        .build()
);
// tutorial:lap-vmstate-struct end

// tutorial:lap-vmstate-subsection begin
/// The laps, an addition: a subsection, sent only when
/// [`StopwatchState::laps_needed`], so that streams without it (from a
/// device without laps, or with none recorded) still load, with no laps.
static VMSTATE_STOPWATCH_LAPS: VMStateDescription<StopwatchState> =
    VMStateDescriptionBuilder::<StopwatchState>::new()
        .name(c"stopwatch/laps")
        .version_id(1)
        .minimum_version_id(1)
        .needed(&StopwatchState::laps_needed)
        .fields(vmstate_fields! {
            vmstate_of!(StopwatchState, migrated_laps),
        })
        .build();
// tutorial:lap-vmstate-subsection end

// tutorial:periodic-vmstate begin
/// The period of [`SavedState`], as the `stopwatch/periodic` subsection
/// carries it. The rest of a periodic timeout fits the main section's
/// fields: its state (1 between periods, 2 with the line high) and its
/// next deadline.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MigratedPeriod {
    period_ns: u64,
}

impl From<SavedState> for MigratedPeriod {
    fn from(saved: SavedState) -> Self {
        MigratedPeriod {
            period_ns: saved.timeout_period_ns,
        }
    }
}

impl_vmstate_struct!(
    MigratedPeriod,
    VMStateDescriptionBuilder::<MigratedPeriod>::new()
        .name(c"stopwatch/periodic-state")
        .version_id(1)
        .minimum_version_id(1)
        .fields(vmstate_fields! {
            vmstate_of!(MigratedPeriod, period_ns),
        })
        .build()
);

/// The period, an addition: a subsection sent only while a periodic
/// timeout runs ([`StopwatchState::period_needed`]). A stream without it
/// (from a device without PERIODIC, or with a one-shot or no timeout)
/// loads with no period.
static VMSTATE_STOPWATCH_PERIODIC: VMStateDescription<StopwatchState> =
    VMStateDescriptionBuilder::<StopwatchState>::new()
        .name(c"stopwatch/periodic")
        .version_id(1)
        .minimum_version_id(1)
        .needed(&StopwatchState::period_needed)
        .fields(vmstate_fields! {
            vmstate_of!(StopwatchState, migrated_period),
        })
        .build();
// tutorial:periodic-vmstate end

/// The device's migration section. The pass-through RAM travels on its
/// own, as every RAM block does; the interrupt line's level follows from
/// the timeout state.
const VMSTATE_STOPWATCH: VMStateDescription<StopwatchState> =
    VMStateDescriptionBuilder::<StopwatchState>::new()
        .name(c"stopwatch")
        .version_id(1)
        .minimum_version_id(1)
        .pre_save(&StopwatchState::pre_save)
        // tutorial:lap-vmstate-section begin
        .pre_load(&StopwatchState::pre_load_all)
        .post_load(&StopwatchState::post_load)
        .fields(vmstate_fields! {
            vmstate_of!(StopwatchState, migrated),
        })
        .subsections(vmstate_subsections!(
            VMSTATE_STOPWATCH_LAPS,
            VMSTATE_STOPWATCH_PERIODIC
        ))
        // tutorial:lap-vmstate-section end
        .build();
