// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU side of the stopwatch: QOM type, memory regions, interrupt,
//! timer, reset and migration, each forwarding to the state machine in
//! [`stopwatch_model`]. Guest mistakes are logged, never fatal.
//!
//! Trace events (`trace-events` next to `src/`, `-trace 'stopwatch_*'`)
//! report each register access, command, timer and interrupt change, time
//! page write and guest mistake. Their arguments are built even when
//! tracing is off (the generated "enabled" check is private to the
//! generated module), so they are all borrowed: the instance id cached at
//! realize and static names.

use std::{
    ffi::{CStr, CString},
    pin::Pin,
    ptr::NonNull,
    sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering},
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
use stopwatch_abi::{regs, shared, Command, Status, TimeSnapshot};
use stopwatch_model::{ordering, Environment, GuestError, SavedState, SharedMemory, Stopwatch};
use system::{hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{
    log::Log,
    log_mask_ln,
    timer::{Timer, CLOCK_VIRTUAL},
};

// `mod trace`: a function per event of this directory's `trace-events`.
::trace::include_trace!("rust_hw_misc_stopwatch");

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
    /// The timeout interrupt.
    timeout_irq: InterruptSource,
    /// Fires at the armed timeout's deadline, on the virtual clock.
    timer: BqlRefCell<Timer>,
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
    /// start with; set at realize (empty before).
    id: BqlRefCell<CString>,
    /// As in the original: at power-on, RESET then START.
    #[property(rename = "start_at_boot", default = true)]
    start_at_boot: bool,
}

qom_isa!(StopwatchState: SysBusDevice, DeviceState, Object);

// SAFETY: TYPE_NAME matches the Rust type, which embeds SysBusDevice first.
unsafe impl ObjectType for StopwatchState {
    type Class = <SysBusDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = crate::TYPE_STOPWATCH;
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
        uninit_field_mut!(*this, id).write(BqlRefCell::new(CString::default()));
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
        let name = CString::new(format!("{id}.shared")).expect("QOM names contain no NUL");
        *self.id.borrow_mut() = CString::new(id).expect("QOM names contain no NUL");
        // SAFETY: `shared_memory` is a zeroed MemoryRegion owned by this
        // device; the name is copied by QEMU; the object pointer is live.
        unsafe {
            util::Error::with_errp(|errp| {
                system::bindings::memory_region_init_ram(
                    self.shared_memory.as_mut_ptr(),
                    self.as_object_mut_ptr().cast(),
                    name.as_ptr(),
                    shared::SIZE,
                    std::ptr::from_mut(errp).cast(),
                )
            })?;
        }
        // The order of these calls is the order of the `reg` entries.
        self.init_mmio(&self.shared_memory);
        self.init_mmio(&self.registers);
        Ok(())
    }

    /// The last component of the QOM path: the `id=` given to `-device`,
    /// or a name like `device[0]`. Set before realize.
    fn instance_name(&self) -> String {
        // SAFETY: the object is live; the returned string belongs to it.
        let component = unsafe {
            system::bindings::object_get_canonical_path_component(self.as_object_ptr().cast())
        };
        if component.is_null() {
            return String::from(crate::TYPE_STOPWATCH.to_string_lossy());
        }
        // SAFETY: a non-NULL result is a NUL-terminated string.
        unsafe { CStr::from_ptr(component) }
            .to_string_lossy()
            .into_owned()
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

    fn shared_ram(&self) -> SharedRam {
        // SAFETY: the region is a RAM region once realized, which every
        // caller (register access, timer, reset, migration) comes after.
        let base =
            unsafe { system::bindings::memory_region_get_ram_ptr(self.shared_memory.as_mut_ptr()) };
        SharedRam {
            base: NonNull::new(base.cast()).expect("realized stopwatch has its RAM"),
        }
    }

    fn read(&self, offset: hwaddr, size: u32) -> u64 {
        let value = self.with_stopwatch(|stopwatch, env| stopwatch.read(env, offset, size));
        trace::trace_stopwatch_read(&self.id.borrow(), offset, size, value);
        value
    }

    fn write(&self, offset: hwaddr, value: u64, size: u32) {
        // Before the effects (command, timer, page), so the trace reads in
        // order.
        trace::trace_stopwatch_write(&self.id.borrow(), offset, size, value);
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
                eprintln!(
                    "stopwatch {}: migration stream rejected: {error}",
                    self.id.borrow().to_string_lossy()
                );
                Err(migration::InvalidError)
            }
        }
    }
}

/// The state machine's view of QEMU.
struct QemuEnvironment<'a> {
    device: &'a StopwatchState,
    memory: SharedRam,
    /// Interrupt and timer changes, applied once the state is released.
    effects: Effects,
}

impl<'a> QemuEnvironment<'a> {
    fn new(device: &'a StopwatchState) -> Self {
        QemuEnvironment {
            device,
            memory: device.shared_ram(),
            effects: Effects::default(),
        }
    }

    fn id(&self) -> impl std::ops::Deref<Target = CString> + '_ {
        self.device.id.borrow()
    }
}

/// A change the state machine asks of the machine around it.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Irq(bool),
    ArmTimer(u64),
    CancelTimer,
}

/// The changes of one call into the state machine, in order. One call
/// makes at most three (RESET: cancel the timer, lower the line; restore:
/// the line and the timer), so a small array does without allocating.
#[derive(Default)]
struct Effects {
    list: [Option<Effect>; 8],
    len: usize,
}

impl Effects {
    fn push(&mut self, effect: Effect) {
        let slot = self
            .list
            .get_mut(self.len)
            .expect("the state machine made more than 8 changes in one call");
        *slot = Some(effect);
        self.len += 1;
    }

    /// Applies the changes in order, with no borrow of the state held.
    fn apply(self, device: &StopwatchState) {
        // Most accesses (every register read) change nothing: then no
        // borrow of the id and no copy and scan of the 8 slots, which took
        // more than half of a STATUS read's callback (a host profile).
        if self.len == 0 {
            return;
        }
        let id = device.id.borrow();
        for effect in self.list.into_iter().flatten() {
            match effect {
                Effect::Irq(level) => {
                    trace::trace_stopwatch_irq(&id, level);
                    device.timeout_irq.set(level);
                }
                Effect::ArmTimer(deadline_ns) => {
                    trace::trace_stopwatch_timeout_armed(&id, deadline_ns);
                    device.timer.borrow().modify(deadline_ns);
                }
                Effect::CancelTimer => {
                    trace::trace_stopwatch_timeout_cancelled(&id);
                    device.timer.borrow().delete();
                }
            }
        }
    }
}

impl Environment for QemuEnvironment<'_> {
    fn now_ns(&self) -> u64 {
        CLOCK_VIRTUAL.get_ns()
    }

    fn set_irq(&mut self, level: bool) {
        self.effects.push(Effect::Irq(level));
    }

    fn arm_timer(&mut self, deadline_ns: u64) {
        self.effects.push(Effect::ArmTimer(deadline_ns));
    }

    fn cancel_timer(&mut self) {
        self.effects.push(Effect::CancelTimer);
    }

    fn guest_error(&mut self, error: GuestError) {
        // Formatted (allocating) only on this slow path, for both outputs.
        let id = self.id();
        let message = CString::new(error.to_string()).unwrap_or_default();
        trace::trace_stopwatch_guest_error(&id, &message);
        log_mask_ln!(
            Log::GuestError,
            "stopwatch {}: {error}",
            id.to_string_lossy()
        );
    }

    fn command_executed(&mut self, command: Option<Command>, before: Status, after: Status) {
        let name = command.map_or(c"unknown", command_name);
        trace::trace_stopwatch_command(&self.id(), name, status_name(before), status_name(after));
    }

    fn timeout_fired(&mut self, deadline_ns: u64) {
        trace::trace_stopwatch_timeout_fired(&self.id(), deadline_ns);
    }

    // tutorial:periodic-trace-glue begin
    fn periodic_armed(&mut self, period_ns: u64, first_deadline_ns: u64) {
        trace::trace_stopwatch_periodic(&self.id(), period_ns, first_deadline_ns);
    }
    // tutorial:periodic-trace-glue end

    // tutorial:lap-trace-glue begin
    fn lap_recorded(&mut self, slot: usize, elapsed_ns: u64) {
        trace::trace_stopwatch_lap(&self.id(), slot as u32, elapsed_ns);
    }
    // tutorial:lap-trace-glue end

    fn time_page_published(&mut self, sequence: u32, snapshot: &TimeSnapshot) {
        trace::trace_stopwatch_time_page(
            &self.id(),
            sequence,
            status_name(snapshot.status),
            snapshot.accumulated_ns,
            snapshot.run_start_ns,
            snapshot.timeout_deadline_ns,
        );
    }

    fn shared_memory(&mut self) -> &mut dyn SharedMemory {
        &mut self.memory
    }
}

/// [`Command::name`] as a static C string, for the trace events.
const fn command_name(command: Command) -> &'static CStr {
    match command {
        Command::Reset => c"RESET",
        Command::Start => c"START",
        Command::Pause => c"PAUSE",
        Command::Update => c"UPDATE",
        Command::Timeout => c"TIMEOUT",
        Command::TimeoutAck => c"TIMEOUT_ACK",
        Command::TimeoutNs => c"TIMEOUT_NS",
        Command::Lap => c"LAP",
        Command::Periodic => c"PERIODIC",
    }
}

/// [`Status::name`] as a static C string, for the trace events.
const fn status_name(status: Status) -> &'static CStr {
    match status {
        Status::Running => c"RUNNING",
        Status::Reset => c"RESET",
        Status::Paused => c"PAUSED",
    }
}

const fn same_name(c_name: &CStr, name: &str) -> bool {
    let (a, b) = (c_name.to_bytes(), name.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

// The traced names are the interface's names, checked at compile time.
const _: () = {
    assert!(same_name(command_name(Command::Reset), Command::Reset.name()));
    assert!(same_name(command_name(Command::Start), Command::Start.name()));
    assert!(same_name(command_name(Command::Pause), Command::Pause.name()));
    assert!(same_name(command_name(Command::Update), Command::Update.name()));
    assert!(same_name(command_name(Command::Timeout), Command::Timeout.name()));
    assert!(same_name(command_name(Command::TimeoutAck), Command::TimeoutAck.name()));
    assert!(same_name(command_name(Command::TimeoutNs), Command::TimeoutNs.name()));
    assert!(same_name(command_name(Command::Lap), Command::Lap.name()));
    assert!(same_name(command_name(Command::Periodic), Command::Periodic.name()));
    assert!(same_name(status_name(Status::Running), Status::Running.name()));
    assert!(same_name(status_name(Status::Reset), Status::Reset.name()));
    assert!(same_name(status_name(Status::Paused), Status::Paused.name()));
};

/// The pass-through RAM, written with atomic accesses: the guest's vCPU
/// threads may read and write it at the same time as the device.
///
/// Those threads run translated guest code, outside Rust's memory model,
/// with accesses of any width; what the device needs is that each of its
/// own accesses is single-copy atomic and ordered as the time page's
/// protocol says, which aligned atomics and the release fences give (their
/// orderings are [`stopwatch_model::ordering`], the ones the protocol's
/// model check explores). The guest can only ever make the page's contents
/// wrong, never the device unsound.
struct SharedRam {
    base: NonNull<u8>,
}

impl SharedRam {
    /// A pointer to the `T` at `offset`; panics on an offset outside the
    /// region or misaligned for `T` (the model uses the ABI's constants, so
    /// this is a bug in the device, never the guest's doing).
    fn at<T>(&self, offset: u64) -> *mut T {
        let size = std::mem::size_of::<T>() as u64;
        assert!(offset
            .checked_add(size)
            .is_some_and(|end| end <= shared::SIZE));
        assert!(offset % std::mem::align_of::<T>() as u64 == 0);
        // SAFETY: in bounds of the region's RAM block, checked above.
        unsafe { self.base.as_ptr().add(offset as usize).cast() }
    }
}

impl SharedMemory for SharedRam {
    fn read_u64(&self, offset: u64) -> u64 {
        // SAFETY: `at` checked the u64 is aligned and inside the RAM block,
        // which lives as long as the device; see `SharedRam` on sharing.
        let word = unsafe { AtomicU64::from_ptr(self.at(offset)) };
        u64::from_le(word.load(Ordering::Relaxed))
    }

    fn write_u64(&mut self, offset: u64, value: u64) {
        // SAFETY: as in `read_u64`.
        let word = unsafe { AtomicU64::from_ptr(self.at(offset)) };
        word.store(value.to_le(), ordering::STORE);
    }

    fn write_u32(&mut self, offset: u64, value: u32) {
        // SAFETY: as in `read_u64`, for a u32.
        let word = unsafe { AtomicU32::from_ptr(self.at(offset)) };
        word.store(value.to_le(), ordering::STORE);
    }

    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        for (index, &byte) in bytes.iter().enumerate() {
            // SAFETY: as in `read_u64`, for one byte.
            let cell = unsafe { AtomicU8::from_ptr(self.at(offset + index as u64)) };
            cell.store(byte, ordering::STORE);
        }
    }

    fn write_barrier(&mut self) {
        fence(ordering::WRITE_BARRIER);
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
