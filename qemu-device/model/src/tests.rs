// SPDX-License-Identifier: GPL-2.0-or-later
//! Host tests of every rule of the device, with a fake environment.

mod laps;
mod periodic;

use stopwatch_abi::{regs, shared, time_page, Command, Status};

use super::*;

/// The simulated machine, with memory that records how the time page is
/// written.
type FakeEnv = Simulation<FakeMemory>;

/// Plain memory that also records every write of the time page's sequence
/// counter and every barrier.
struct FakeMemory {
    bytes: Box<PlainMemory>,
    sequence_writes: Vec<u32>,
    barriers: usize,
}

impl SharedMemory for FakeMemory {
    fn read_u64(&self, offset: u64) -> u64 {
        self.bytes.read_u64(offset)
    }
    fn write_u64(&mut self, offset: u64, value: u64) {
        self.bytes.write_u64(offset, value);
    }
    fn write_u32(&mut self, offset: u64, value: u32) {
        if offset == shared::TIME_PAGE + time_page::SEQUENCE {
            self.sequence_writes.push(value);
        }
        self.bytes.write_u32(offset, value);
    }
    fn write_bytes(&mut self, offset: u64, bytes: &[u8]) {
        self.bytes.write_bytes(offset, bytes);
    }
    fn write_barrier(&mut self) {
        self.barriers += 1;
    }
}

/// A machine whose clock starts at 1 us (so that 0 means "never").
fn fake_env() -> FakeEnv {
    let mut env = Simulation::with_memory(FakeMemory {
        bytes: Box::new([0; shared::SIZE as usize]),
        sequence_writes: Vec::new(),
        barriers: 0,
    });
    env.now_ns = 1_000;
    env
}

/// What the tests read back from the simulated machine.
trait Inspect {
    fn read_u32(&self, offset: u64) -> u32;
    fn page_u32(&self, field: u64) -> u32;
    fn page_u64(&self, field: u64) -> u64;
    fn data_text(&self) -> String;
    fn set_data_len(&mut self, value: u64);
    /// No guest error so far.
    fn no_errors(&self) -> bool;
    /// Exactly these errors so far (the last one named, the count given).
    fn errors_were(&self, count: usize, last: GuestError) -> bool;
    fn clear_errors(&mut self);
}

impl Inspect for FakeEnv {
    fn read_u32(&self, offset: u64) -> u32 {
        let at = offset as usize;
        u32::from_le_bytes(self.memory.bytes[at..at + 4].try_into().unwrap())
    }

    fn page_u32(&self, field: u64) -> u32 {
        self.read_u32(shared::TIME_PAGE + field)
    }

    fn page_u64(&self, field: u64) -> u64 {
        self.memory.read_u64(shared::TIME_PAGE + field)
    }

    /// The `data` text, as the guest reads it after UPDATE.
    fn data_text(&self) -> String {
        let len = self.memory.read_u64(shared::DATA_LEN) as usize;
        let start = shared::DATA as usize;
        let with_nul = &self.memory.bytes[start..start + len];
        assert_eq!(with_nul.last(), Some(&0), "data must end with its NUL");
        String::from_utf8(with_nul[..len - 1].to_vec()).unwrap()
    }

    fn set_data_len(&mut self, value: u64) {
        self.memory.write_u64(shared::DATA_LEN, value);
    }

    fn no_errors(&self) -> bool {
        self.error_count == 0
    }

    fn errors_were(&self, count: usize, last: GuestError) -> bool {
        self.error_count == count && self.last_error == Some(last)
    }

    fn clear_errors(&mut self) {
        self.error_count = 0;
        self.last_error = None;
    }
}

fn powered_on(start_at_boot: bool) -> (Stopwatch, FakeEnv) {
    let mut env = fake_env();
    let mut stopwatch = Stopwatch::new();
    stopwatch.power_on_reset(&mut env, start_at_boot);
    (stopwatch, env)
}

fn run(stopwatch: &mut Stopwatch, env: &mut FakeEnv, command: Command) {
    stopwatch.write(env, regs::COMMAND, command.code(), 8);
}

fn update_text(stopwatch: &mut Stopwatch, env: &mut FakeEnv) -> String {
    run(stopwatch, env, Command::Update);
    env.data_text()
}

const SECOND: u64 = 1_000_000_000;

#[test]
fn power_on_resets_then_starts_when_asked() {
    let (stopwatch, env) = powered_on(true);
    assert_eq!(stopwatch.status(), Status::Running);
    assert_eq!(stopwatch.read(&mut fake_env(), regs::STATUS, 8), 0);
    assert!(env.no_errors());

    let (stopwatch, _) = powered_on(false);
    assert_eq!(stopwatch.status(), Status::Reset);
}

#[test]
fn every_status_transition() {
    let (mut sw, mut env) = powered_on(false);
    let status = |sw: &Stopwatch| sw.read(&mut fake_env(), regs::STATUS, 8);

    run(&mut sw, &mut env, Command::Start);
    assert_eq!(status(&sw), Status::Running.code());
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(status(&sw), Status::Paused.code());
    // Pausing a paused stopwatch does nothing, as in the original.
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(status(&sw), Status::Paused.code());
    env.advance(&mut sw, 7 * SECOND);
    run(&mut sw, &mut env, Command::Start);
    assert_eq!(status(&sw), Status::Running.code());
    env.advance(&mut sw, SECOND / 2);
    assert_eq!(sw.elapsed_ns(env.now_ns), SECOND + SECOND / 2);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(status(&sw), Status::Reset.code());
    assert_eq!(sw.elapsed_ns(env.now_ns), 0);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(status(&sw), Status::Reset.code());
    assert!(env.no_errors(), "{:?}", env.last_error);
}

#[test]
fn update_writes_the_original_text_at_nanosecond_resolution() {
    let (mut sw, mut env) = powered_on(false);
    assert_eq!(update_text(&mut sw, &mut env), "0.00 seconds");
    assert_eq!(env.memory.read_u64(shared::DATA_LEN), 13);

    run(&mut sw, &mut env, Command::Start);
    env.advance(&mut sw, 1_500_000_000);
    assert_eq!(update_text(&mut sw, &mut env), "1.50 seconds");
    env.advance(&mut sw, 4_999_999);
    assert_eq!(update_text(&mut sw, &mut env), "1.50 seconds");
    env.advance(&mut sw, 1);
    // 1.505 s is just below 1.505 in binary: printf("%.2f") gives 1.50 too.
    assert_eq!(update_text(&mut sw, &mut env), "1.50 seconds");
    env.advance(&mut sw, 1_000_000);
    assert_eq!(update_text(&mut sw, &mut env), "1.51 seconds");
    env.advance(&mut sw, 10 * SECOND);
    assert_eq!(update_text(&mut sw, &mut env), "11.51 seconds");
}

#[test]
fn text_of_extreme_values_fits() {
    assert_eq!(format_elapsed(0).as_str(), "0.00 seconds");
    assert_eq!(format_elapsed(5_000_000).as_str(), "0.01 seconds");
    assert_eq!(format_elapsed(4_999_999).as_str(), "0.00 seconds");
    let longest = format_elapsed(u64::MAX);
    assert_eq!(longest.as_str(), "18446744073.71 seconds");
    assert_eq!(longest.len_with_nul(), 23);
}

#[test]
fn timeout_fires_exactly_at_its_deadline_and_ack_lowers_it() {
    let (mut sw, mut env) = powered_on(false);
    env.set_data_len(1);
    let armed_at = env.now_ns;
    run(&mut sw, &mut env, Command::Timeout);
    assert_eq!(env.timer, Some(armed_at + SECOND));
    assert_eq!(
        env.page_u64(time_page::TIMEOUT_DEADLINE_NS),
        armed_at + SECOND
    );

    env.advance(&mut sw, SECOND - 1);
    assert!(!env.irq, "must not fire one nanosecond early");
    // A timer callback that comes early does not fire the timeout either.
    sw.timer_expired(&mut env);
    assert!(!env.irq);
    assert_eq!(env.timer, Some(armed_at + SECOND));

    env.advance(&mut sw, 1);
    assert!(env.irq);
    assert_eq!(sw.timeout(), Timeout::Fired);
    assert_eq!(env.page_u64(time_page::TIMEOUT_DEADLINE_NS), 0);

    run(&mut sw, &mut env, Command::TimeoutAck);
    assert!(!env.irq);
    assert_eq!(sw.timeout(), Timeout::Idle);
    assert!(env.no_errors(), "{:?}", env.last_error);
}

#[test]
fn timeout_in_nanoseconds() {
    let (mut sw, mut env) = powered_on(false);
    env.set_data_len(250_000);
    let armed_at = env.now_ns;
    run(&mut sw, &mut env, Command::TimeoutNs);
    assert_eq!(env.timer, Some(armed_at + 250_000));
    env.advance(&mut sw, 250_000);
    assert!(env.irq);
}

#[test]
fn ack_of_an_armed_timeout_cancels_it() {
    let (mut sw, mut env) = powered_on(false);
    env.set_data_len(2);
    run(&mut sw, &mut env, Command::Timeout);
    run(&mut sw, &mut env, Command::TimeoutAck);
    assert_eq!(env.timer, None);
    env.advance(&mut sw, 3 * SECOND);
    assert!(!env.irq);
    assert!(env.no_errors());
}

#[test]
fn reset_cancels_a_pending_timeout_and_lowers_the_interrupt() {
    let (mut sw, mut env) = powered_on(true);
    env.set_data_len(1);
    run(&mut sw, &mut env, Command::Timeout);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(env.timer, None);
    env.advance(&mut sw, 2 * SECOND);
    assert!(!env.irq);

    run(&mut sw, &mut env, Command::Timeout);
    env.advance(&mut sw, SECOND);
    assert!(env.irq);
    run(&mut sw, &mut env, Command::Reset);
    assert!(!env.irq);
    assert_eq!(sw.timeout(), Timeout::Idle);
}

#[test]
fn system_reset_returns_to_power_on_state() {
    let (mut sw, mut env) = powered_on(false);
    run(&mut sw, &mut env, Command::Start);
    env.set_data_len(1);
    run(&mut sw, &mut env, Command::Timeout);
    env.advance(&mut sw, 2 * SECOND);
    assert!(env.irq);
    sw.power_on_reset(&mut env, false);
    assert_eq!(sw.status(), Status::Reset);
    assert_eq!(sw.elapsed_ns(env.now_ns), 0);
    assert!(!env.irq);
    assert_eq!(env.timer, None);
    assert_eq!(sw.timeout(), Timeout::Idle);
}

#[test]
fn the_original_demo() {
    // reset, start, 1 s, pause: 1 s; start, timeout 1, 2 s, timeout 1, 2 s:
    // 5 s and two interrupts; reset: 0 s.
    let (mut sw, mut env) = powered_on(true);
    let mut interrupts = 0;
    run(&mut sw, &mut env, Command::Reset);
    run(&mut sw, &mut env, Command::Start);
    env.advance(&mut sw, SECOND);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(update_text(&mut sw, &mut env), "1.00 seconds");
    run(&mut sw, &mut env, Command::Start);
    for _ in 0..2 {
        env.set_data_len(1);
        run(&mut sw, &mut env, Command::Timeout);
        for _ in 0..2 {
            env.advance(&mut sw, SECOND);
            if env.irq {
                // The driver's interrupt handler.
                interrupts += 1;
                run(&mut sw, &mut env, Command::TimeoutAck);
            }
        }
    }
    assert_eq!(update_text(&mut sw, &mut env), "5.00 seconds");
    assert_eq!(interrupts, 2);
    run(&mut sw, &mut env, Command::Reset);
    assert_eq!(update_text(&mut sw, &mut env), "0.00 seconds");
    assert!(env.no_errors(), "{:?}", env.last_error);
}

#[test]
fn thirty_two_bit_accesses() {
    let (mut sw, mut env) = powered_on(false);
    // writel(START, regs + COMMAND), as the original driver did.
    sw.write(&mut env, regs::COMMAND, Command::Start.code(), 4);
    assert_eq!(sw.status(), Status::Running);
    assert_eq!(sw.read(&mut env, regs::STATUS, 4), Status::Running.code());
    assert_eq!(sw.read(&mut env, regs::STATUS + 4, 4), 0);
    sw.write(&mut env, regs::COMMAND, Command::Pause.code(), 4);
    assert_eq!(sw.read(&mut env, regs::STATUS, 4), Status::Paused.code());
    assert!(env.no_errors(), "{:?}", env.last_error);
}

/// Every guest mistake: the error it reports, and no change at all.
#[test]
fn every_guest_mistake_is_reported_and_changes_nothing() {
    type Mistake = (&'static str, fn(&mut Stopwatch, &mut FakeEnv), GuestError);
    let mistakes: [Mistake; 20] = [
        (
            "unknown offset",
            |sw, env| sw.write(env, 0x10, 1, 8),
            GuestError::UnknownOffset { offset: 0x10 },
        ),
        (
            "unknown offset, read",
            |sw, env| {
                assert_eq!(sw.read(env, 0xff8, 8), 0);
            },
            GuestError::UnknownOffset { offset: 0xff8 },
        ),
        (
            "read of command",
            |sw, env| {
                assert_eq!(sw.read(env, regs::COMMAND, 8), 0);
            },
            GuestError::ReadOfCommand,
        ),
        (
            "write of status",
            |sw, env| sw.write(env, regs::STATUS, 1, 8),
            GuestError::WriteToStatus { value: 1 },
        ),
        (
            "1-byte access",
            |sw, env| sw.write(env, regs::COMMAND, 1, 1),
            GuestError::BadAccessSize { offset: 0, size: 1 },
        ),
        (
            "2-byte read",
            |sw, env| {
                assert_eq!(sw.read(env, regs::STATUS, 2), 0);
            },
            GuestError::BadAccessSize { offset: 8, size: 2 },
        ),
        (
            "unaligned 8-byte access",
            |sw, env| sw.write(env, 4, 1, 8),
            GuestError::UnalignedAccess { offset: 4, size: 8 },
        ),
        (
            "unaligned 4-byte access",
            |sw, env| sw.write(env, 2, 1, 4),
            GuestError::UnalignedAccess { offset: 2, size: 4 },
        ),
        (
            "upper half of command",
            |sw, env| sw.write(env, regs::COMMAND + 4, 1, 4),
            GuestError::WriteToCommandUpperHalf { value: 1 },
        ),
        (
            "unknown command",
            |sw, env| run_code(sw, env, 9),
            GuestError::UnknownCommand { code: 9 },
        ),
        (
            "huge command",
            |sw, env| run_code(sw, env, u64::MAX),
            GuestError::UnknownCommand { code: u64::MAX },
        ),
        (
            "start while running",
            |sw, env| run(sw, env, Command::Start),
            GuestError::StartWhileRunning,
        ),
        (
            "timeout of 0",
            |sw, env| {
                env.set_data_len(0);
                run(sw, env, Command::Timeout)
            },
            GuestError::TimeoutOutOfRange {
                seconds: 0,
                max: 10,
            },
        ),
        (
            "timeout over the maximum",
            |sw, env| {
                env.set_data_len(11);
                run(sw, env, Command::Timeout)
            },
            GuestError::TimeoutOutOfRange {
                seconds: 11,
                max: 10,
            },
        ),
        (
            "timeout_ns of 0",
            |sw, env| {
                env.set_data_len(0);
                run(sw, env, Command::TimeoutNs)
            },
            GuestError::TimeoutNsOutOfRange {
                nanoseconds: 0,
                max: 10 * SECOND,
            },
        ),
        (
            "timeout_ns over the maximum",
            |sw, env| {
                env.set_data_len(10 * SECOND + 1);
                run(sw, env, Command::TimeoutNs)
            },
            GuestError::TimeoutNsOutOfRange {
                nanoseconds: 10 * SECOND + 1,
                max: 10 * SECOND,
            },
        ),
        (
            "periodic under the minimum",
            |sw, env| {
                env.set_data_len(99_999);
                run(sw, env, Command::Periodic)
            },
            GuestError::PeriodOutOfRange {
                nanoseconds: 99_999,
                min: 100_000,
                max: 10 * SECOND,
            },
        ),
        (
            "periodic over the maximum",
            |sw, env| {
                env.set_data_len(10 * SECOND + 1);
                run(sw, env, Command::Periodic)
            },
            GuestError::PeriodOutOfRange {
                nanoseconds: 10 * SECOND + 1,
                min: 100_000,
                max: 10 * SECOND,
            },
        ),
        (
            "ack with nothing pending",
            |sw, env| run(sw, env, Command::TimeoutAck),
            GuestError::AckWithoutTimeout,
        ),
        (
            "write of status, 4 bytes",
            |sw, env| sw.write(env, regs::STATUS, 2, 4),
            GuestError::WriteToStatus { value: 2 },
        ),
    ];
    for (name, mistake, expected) in mistakes {
        let (mut sw, mut env) = powered_on(true);
        let before = sw.clone();
        let memory_before = env.memory.bytes.clone();
        mistake(&mut sw, &mut env);
        assert!(env.errors_were(1, expected), "{name}: {:?}", env.last_error);
        assert_eq!(sw, before, "{name}: state changed");
        // The mistake's own data_len write aside, memory is untouched.
        assert_eq!(
            env.memory.bytes[shared::DATA as usize..],
            memory_before[shared::DATA as usize..],
            "{name}: memory changed"
        );
    }
}

/// The messages, word for word as `docs/interface.md` lists them.
#[test]
fn every_mistake_message_is_the_documented_one() {
    let documented = [
        (
            GuestError::UnknownOffset { offset: 0x10 },
            "access to unknown register offset 0x10",
        ),
        (
            GuestError::BadAccessSize { offset: 0, size: 2 },
            "2-byte access at offset 0x0: registers take 4- or 8-byte accesses",
        ),
        (
            GuestError::UnalignedAccess { offset: 2, size: 4 },
            "unaligned 4-byte access at offset 0x2",
        ),
        (
            GuestError::ReadOfCommand,
            "read of the write-only COMMAND register",
        ),
        (
            GuestError::WriteToStatus { value: 2 },
            "write of 0x2 to the read-only STATUS register",
        ),
        (
            GuestError::WriteToCommandUpperHalf { value: 1 },
            "write of 0x1 to the upper half of COMMAND; write commands to its lower half",
        ),
        (
            GuestError::UnknownCommand { code: 9 },
            "unknown command code 9",
        ),
        (
            GuestError::StartWhileRunning,
            "START while RUNNING: ignored",
        ),
        (GuestError::PauseWhileReset, "PAUSE while RESET: ignored"),
        (
            GuestError::TimeoutOutOfRange {
                seconds: 11,
                max: 10,
            },
            "TIMEOUT of 11 s (data_len) is outside 1..=10 s: ignored",
        ),
        (
            GuestError::TimeoutNsOutOfRange {
                nanoseconds: 0,
                max: 10 * SECOND,
            },
            "TIMEOUT_NS of 0 ns (data_len) is outside 1..=10000000000 ns: ignored",
        ),
        (
            GuestError::TimeoutAlreadyPending {
                command: Command::Timeout,
            },
            "TIMEOUT while a timeout is pending (acknowledge it first): ignored",
        ),
        (
            GuestError::TimeoutAlreadyPending {
                command: Command::TimeoutNs,
            },
            "TIMEOUT_NS while a timeout is pending (acknowledge it first): ignored",
        ),
        (
            GuestError::AckWithoutTimeout,
            "TIMEOUT_ACK with no timeout pending: ignored",
        ),
        (
            GuestError::LapsFull { slots: 8 },
            "LAP with all 8 lap slots taken (RESET clears them): ignored",
        ),
        (
            GuestError::PeriodOutOfRange {
                nanoseconds: 99_999,
                min: 100_000,
                max: 10 * SECOND,
            },
            "PERIODIC of 99999 ns (data_len) is outside 100000..=10000000000 ns: ignored",
        ),
        (
            GuestError::TimeoutAlreadyPending {
                command: Command::Periodic,
            },
            "PERIODIC while a timeout is pending (acknowledge it first): ignored",
        ),
    ];
    for (error, message) in documented {
        assert_eq!(error.to_string(), message);
    }
}

fn run_code(sw: &mut Stopwatch, env: &mut FakeEnv, code: u64) {
    sw.write(env, regs::COMMAND, code, 8);
}

#[test]
fn mistakes_that_depend_on_state() {
    let (mut sw, mut env) = powered_on(false);
    run(&mut sw, &mut env, Command::Pause);
    assert!(env.errors_were(1, GuestError::PauseWhileReset));
    assert_eq!(sw.status(), Status::Reset);

    env.clear_errors();
    env.set_data_len(1);
    run(&mut sw, &mut env, Command::Timeout);
    let armed = sw.clone();
    run(&mut sw, &mut env, Command::Timeout);
    run(&mut sw, &mut env, Command::TimeoutNs);
    assert!(env.errors_were(
        2,
        GuestError::TimeoutAlreadyPending {
            command: Command::TimeoutNs
        }
    ));
    assert_eq!(sw, armed);

    // Fired but not acknowledged still counts as pending.
    env.clear_errors();
    env.advance(&mut sw, SECOND);
    let fired = sw.clone();
    run(&mut sw, &mut env, Command::Timeout);
    assert!(env.errors_were(
        1,
        GuestError::TimeoutAlreadyPending {
            command: Command::Timeout
        }
    ));
    assert_eq!(sw, fired);
    assert!(env.irq);
}

#[test]
fn time_page_is_written_under_an_even_sequence() {
    let (mut sw, mut env) = powered_on(false);
    assert_eq!(env.page_u32(time_page::MAGIC_OFFSET), time_page::MAGIC);
    assert_eq!(env.page_u32(time_page::VERSION_OFFSET), time_page::VERSION);
    assert_eq!(env.memory.sequence_writes, [1, 2]);
    assert_eq!(env.memory.barriers, 2);

    run(&mut sw, &mut env, Command::Start);
    let started_at = env.now_ns;
    assert_eq!(env.page_u32(time_page::SEQUENCE), 4);
    assert_eq!(
        env.page_u32(time_page::STATUS),
        Status::Running.code() as u32
    );
    assert_eq!(env.page_u64(time_page::RUN_START_NS), started_at);
    env.advance(&mut sw, 3 * SECOND);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(env.page_u64(time_page::ACCUMULATED_NS), 3 * SECOND);
    assert_eq!(
        env.page_u32(time_page::STATUS),
        Status::Paused.code() as u32
    );
    // Odd while writing, even after: every write is a pair.
    for pair in env.memory.sequence_writes.chunks(2) {
        assert_eq!(pair[0] % 2, 1);
        assert_eq!(pair[1], pair[0] + 1);
    }
    // A mistake publishes nothing; an accepted command, even one that
    // changes nothing (PAUSE while PAUSED), rewrites the page once.
    let writes = env.memory.sequence_writes.len();
    run_code(&mut sw, &mut env, 99);
    assert_eq!(env.memory.sequence_writes.len(), writes);
    run(&mut sw, &mut env, Command::Pause);
    assert_eq!(env.memory.sequence_writes.len(), writes + 2);
}

#[test]
fn time_page_agrees_with_update() {
    let (mut sw, mut env) = powered_on(true);
    let read_page = |env: &FakeEnv| TimeSnapshot {
        status: Status::from_code(u64::from(env.page_u32(time_page::STATUS))).unwrap(),
        accumulated_ns: env.page_u64(time_page::ACCUMULATED_NS),
        run_start_ns: env.page_u64(time_page::RUN_START_NS),
        clock_offset_ns: env.page_u64(time_page::CLOCK_OFFSET_NS) as i64,
        timeout_deadline_ns: env.page_u64(time_page::TIMEOUT_DEADLINE_NS),
    };
    let steps = [
        (123_456_789, None),
        (SECOND, Some(Command::Pause)),
        (SECOND, None),
        (7, Some(Command::Start)),
        (2_500_000_000, None),
        (1, Some(Command::Reset)),
        (SECOND, Some(Command::Start)),
        (999_999_999, None),
    ];
    for (step_ns, command) in steps {
        env.advance(&mut sw, step_ns);
        if let Some(command) = command {
            run(&mut sw, &mut env, command);
        }
        let from_page = read_page(&env).elapsed_ns_at_counter(env.now_ns);
        assert_eq!(from_page, sw.elapsed_ns(env.now_ns));
        assert_eq!(
            format_elapsed(from_page).as_str(),
            update_text(&mut sw, &mut env)
        );
    }
}

#[test]
fn migration_round_trip_keeps_everything() {
    let (mut sw, mut env) = powered_on(true);
    env.advance(&mut sw, 2 * SECOND);
    run(&mut sw, &mut env, Command::Pause);
    run(&mut sw, &mut env, Command::Start);
    env.set_data_len(3);
    run(&mut sw, &mut env, Command::Timeout);
    let saved = sw.save();

    // A new machine at the same virtual time.
    let mut target = fake_env();
    target.now_ns = env.now_ns;
    let mut restored = Stopwatch::restore(&mut target, &saved).unwrap();
    // Everything but the sequence, which the rewrite of the page advanced.
    let expected = SavedState {
        sequence: saved.sequence + 2,
        ..saved
    };
    assert_eq!(restored.save(), expected);
    assert_eq!(target.timer, env.timer);
    assert!(!target.irq);
    assert_eq!(target.page_u32(time_page::SEQUENCE), saved.sequence + 2);
    assert_eq!(
        target.page_u64(time_page::RUN_START_NS),
        env.page_u64(time_page::RUN_START_NS)
    );
    // The pending timeout fires at its original deadline.
    target.advance(&mut restored, 3 * SECOND - 1);
    assert!(!target.irq);
    target.advance(&mut restored, 1);
    assert!(target.irq);

    // A fired timeout comes back with its interrupt line high.
    let mut again = fake_env();
    let back = Stopwatch::restore(&mut again, &restored.save()).unwrap();
    assert!(again.irq);
    assert_eq!(back.timeout(), Timeout::Fired);
}

#[test]
fn restore_rejects_impossible_states() {
    let good = Stopwatch::new().save();
    let mut env = fake_env();
    let bad_status = SavedState { status: 3, ..good };
    assert_eq!(
        Stopwatch::restore(&mut env, &bad_status),
        Err(RestoreError::BadStatus(3))
    );
    let bad_timeout = SavedState {
        timeout_state: 9,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &bad_timeout),
        Err(RestoreError::BadTimeoutState(9))
    );
    let odd = SavedState {
        sequence: 5,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &odd),
        Err(RestoreError::OddSequence(5))
    );
    let reset_with_time = SavedState {
        accumulated_ns: 5,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &reset_with_time),
        Err(RestoreError::TimeWhileReset)
    );
    let armed_at_zero = SavedState {
        timeout_state: 1,
        timeout_deadline_ns: 0,
        ..good
    };
    assert_eq!(
        Stopwatch::restore(&mut env, &armed_at_zero),
        Err(RestoreError::ArmedWithoutDeadline)
    );
    // A rejected stream touches nothing.
    assert_eq!((env.irq, env.timer), (false, None));
}

/// Random register traffic: no panic, and the invariants always hold.
#[test]
fn random_accesses_keep_the_invariants() {
    let mut rng = stopwatch_test_rng::TestRng::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_u64();
    let (mut sw, mut env) = powered_on(true);
    for _ in 0..200_000 {
        let choice = next();
        let offset = [0, 4, 8, 12, 2, 16, 0xff8][(choice % 7) as usize];
        let size = [1, 2, 4, 8, 8, 8][((choice >> 8) % 6) as usize];
        let value = next() % 10;
        match (choice >> 16) % 4 {
            0 => {
                let _ = sw.read(&mut env, offset, size);
            }
            // Seconds for TIMEOUT, or a period for PERIODIC.
            1 if next() % 2 == 0 => env.set_data_len(next() % 12),
            1 => env.set_data_len(90_000 + next() % SECOND),
            2 => env.advance(&mut sw, next() % (2 * SECOND)),
            _ => sw.write(&mut env, offset, value, size),
        }
        assert_eq!(env.irq, sw.irq_level());
        assert_eq!(env.page_u32(time_page::SEQUENCE) % 2, 0);
        assert_eq!(env.timer, sw.timeout().deadline_ns());
        if let Some(deadline_ns) = env.timer {
            assert!(deadline_ns > env.now_ns, "a due timer left unrun");
        }
        assert_eq!(
            env.memory.read_u64(shared::TIMEOUT_PERIOD_NS),
            sw.timeout().period_ns()
        );
        assert!(sw.elapsed_ns(env.now_ns) <= env.now_ns);
    }
}

/// What the observation hooks reported, in order, for the trace events.
#[derive(Debug, PartialEq, Eq)]
enum Observed {
    Executed(Option<Command>, Status, Status),
    Fired(u64),
    Published(u32, Status),
    Lap(usize, u64),
    Periodic(u64, u64),
}

/// The simulated machine, recording the observation hooks.
struct Observer {
    machine: Simulation,
    seen: Vec<Observed>,
}

impl Environment for Observer {
    fn now_ns(&self) -> u64 {
        self.machine.now_ns()
    }
    fn set_irq(&mut self, level: bool) {
        self.machine.set_irq(level);
    }
    fn arm_timer(&mut self, deadline_ns: u64) {
        self.machine.arm_timer(deadline_ns);
    }
    fn cancel_timer(&mut self) {
        self.machine.cancel_timer();
    }
    fn guest_error(&mut self, error: GuestError) {
        self.machine.guest_error(error);
    }
    fn shared_memory(&mut self) -> &mut dyn SharedMemory {
        self.machine.shared_memory()
    }
    fn command_executed(&mut self, command: Option<Command>, before: Status, after: Status) {
        self.seen.push(Observed::Executed(command, before, after));
    }
    fn timeout_fired(&mut self, deadline_ns: u64) {
        self.seen.push(Observed::Fired(deadline_ns));
    }
    fn time_page_published(&mut self, sequence: u32, snapshot: &TimeSnapshot) {
        self.seen
            .push(Observed::Published(sequence, snapshot.status));
    }
    fn lap_recorded(&mut self, slot: usize, elapsed_ns: u64) {
        self.seen.push(Observed::Lap(slot, elapsed_ns));
    }
    fn periodic_armed(&mut self, period_ns: u64, first_deadline_ns: u64) {
        self.seen
            .push(Observed::Periodic(period_ns, first_deadline_ns));
    }
}

#[test]
fn hooks_report_every_command_timeout_and_page_write() {
    let mut env = Observer {
        machine: Simulation::new(),
        seen: Vec::new(),
    };
    env.machine.now_ns = 1_000;
    let mut sw = Stopwatch::new();
    sw.power_on_reset(&mut env, false);
    sw.command(&mut env, Command::Start as u64);
    // Refused: the status does not change and the page is not rewritten.
    sw.command(&mut env, Command::Start as u64);
    sw.command(&mut env, 99);
    env.machine
        .memory
        .write_u64(shared::DATA_LEN, 1_000_000 /* ns */);
    sw.command(&mut env, Command::TimeoutNs as u64);
    let deadline_ns = 1_000 + 1_000_000;
    env.machine.now_ns = deadline_ns;
    sw.timer_expired(&mut env);
    sw.command(&mut env, Command::Lap as u64);
    sw.command(&mut env, Command::TimeoutAck as u64);
    env.machine.memory.write_u64(shared::DATA_LEN, 200_000);
    sw.command(&mut env, Command::Periodic as u64);
    use Observed::*;
    use Status::*;
    assert_eq!(
        env.seen,
        [
            Published(2, Reset),
            Published(4, Running),
            Executed(Some(Command::Start), Reset, Running),
            Executed(Some(Command::Start), Running, Running),
            Executed(None, Running, Running),
            Published(6, Running),
            Executed(Some(Command::TimeoutNs), Running, Running),
            Fired(deadline_ns),
            Published(8, Running),
            Lap(0, 1_000_000),
            Published(10, Running),
            Executed(Some(Command::Lap), Running, Running),
            Published(12, Running),
            Executed(Some(Command::TimeoutAck), Running, Running),
            Periodic(200_000, deadline_ns + 200_000),
            Published(14, Running),
            Executed(Some(Command::Periodic), Running, Running),
        ]
    );
}
