// SPDX-License-Identifier: GPL-2.0-or-later
//! Several CPUs driving different stopwatches at once, checked against
//! the model: boots the test kernel's `concurrent-drivers` mode
//! (`guest-kernel/src/selftest/concurrent_drivers.rs`: CPU k drives
//! stopwatch k with its own seeded random commands, all CPUs at once) on
//! a machine with a stopwatch per CPU, and replays each CPU's commands
//! through the device's model (`stopwatch-model`): after every command the
//! device must read back as the model says (status, times, timeout, laps,
//! the STATUS register, and whether it published: a refused command leaves
//! the sequence alone), and each device must end in the state its own
//! commands imply. A command that reached another CPU's device, or a
//! device state shared between instances, fails it.
//!
//! The outcome is made exact rather than compared with a tolerance: no
//! timeout fires during the run (the guest arms none shorter than 8 s),
//! so only the commands change a device; and the time a command was
//! taken at, which the device reads from QEMU's virtual clock, is read
//! back from what it published (the run's start for START, the deadline
//! for an armed timeout, ...) and must lie between the guest counter's
//! values just before and just after the command (give or take a tick).
//! The model then runs the command at that time.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stopwatch_abi::{shared, Command, Status, NANOS_PER_SEC};
use stopwatch_model::{SharedMemory, Simulation, Stopwatch as Model};

use crate::concurrency_test::summary_number;
use crate::repo::Repo;
use crate::serial::SerialConsole;
use crate::vm::VmConfig;

/// The test's name in the suite, before the machine.
pub const NAME: &str = "concurrency::each_device_follows_its_own_commands";

/// A device as the guest read it back (`DeviceState` in the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeviceState {
    sequence: u64,
    status: u64,
    accumulated_ns: u64,
    run_start_ns: u64,
    deadline_ns: u64,
    lap_count: u64,
    last_lap_ns: u64,
    status_register: u64,
}

impl DeviceState {
    fn from_fields(fields: &[u64]) -> Result<DeviceState> {
        let &[sequence, status, accumulated_ns, run_start_ns, deadline_ns, lap_count, last_lap_ns, status_register] =
            fields
        else {
            bail!("{} fields for a device state, 8 expected", fields.len());
        };
        Ok(DeviceState {
            sequence,
            status,
            accumulated_ns,
            run_start_ns,
            deadline_ns,
            lap_count,
            last_lap_ns,
            status_register,
        })
    }

    /// What the model says the device shows, with `sequence`.
    fn of_model(model: &Model, sequence: u64) -> DeviceState {
        let snapshot = model.snapshot(0);
        DeviceState {
            sequence,
            status: snapshot.status.code(),
            accumulated_ns: snapshot.accumulated_ns,
            run_start_ns: snapshot.run_start_ns,
            deadline_ns: snapshot.timeout_deadline_ns,
            lap_count: model.laps().len() as u64,
            last_lap_ns: model.laps().last().copied().unwrap_or(0),
            status_register: model.status().code(),
        }
    }

    /// The fields that differ from `expected`, as `name got X, expected Y`.
    fn differences(&self, expected: &DeviceState) -> Vec<String> {
        let pairs = [
            ("sequence", self.sequence, expected.sequence),
            ("status", self.status, expected.status),
            (
                "accumulated_ns",
                self.accumulated_ns,
                expected.accumulated_ns,
            ),
            ("run_start_ns", self.run_start_ns, expected.run_start_ns),
            ("deadline_ns", self.deadline_ns, expected.deadline_ns),
            ("lap_count", self.lap_count, expected.lap_count),
            ("last_lap_ns", self.last_lap_ns, expected.last_lap_ns),
            (
                "STATUS register",
                self.status_register,
                expected.status_register,
            ),
        ];
        pairs
            .into_iter()
            .filter(|(_, got, want)| got != want)
            .map(|(name, got, want)| format!("{name} {got}, the model says {want}"))
            .collect()
    }
}

/// One command as its CPU recorded it.
#[derive(Debug, Clone, Copy)]
struct CommandRecord {
    index: u64,
    code: u64,
    argument: u64,
    before_ns: u64,
    after_ns: u64,
    state: DeviceState,
}

/// Everything one CPU printed.
#[derive(Debug, Default)]
struct CpuRun {
    /// Its device after its RESET, before its first command:
    /// (sequence, status, accumulated, run start, deadline, lap count).
    start: Option<[u64; 6]>,
    commands: Vec<CommandRecord>,
}

/// The hexadecimal fields after `prefix` in `line`.
fn hex_fields(line: &str, prefix: &str) -> Result<Vec<u64>> {
    line[prefix.len()..]
        .split_whitespace()
        .map(|word| u64::from_str_radix(word, 16).with_context(|| format!("{word:?} in {line:?}")))
        .collect()
}

/// The CPUs' runs and the devices' final states, from the transcript.
fn parse(transcript: &str) -> Result<(BTreeMap<u64, CpuRun>, BTreeMap<u64, DeviceState>)> {
    let mut runs: BTreeMap<u64, CpuRun> = BTreeMap::new();
    let mut finals = BTreeMap::new();
    for line in transcript.lines().map(str::trim) {
        if let Some(prefix) = ["DRIVERS-START ", "DRIVERS-COMMAND ", "DRIVERS-FINAL "]
            .into_iter()
            .find(|prefix| line.starts_with(prefix))
        {
            let fields = hex_fields(line, prefix)?;
            ensure!(!fields.is_empty(), "malformed line {line:?}");
            let (owner, rest) = (fields[0], &fields[1..]);
            match prefix {
                "DRIVERS-START " => {
                    let start: [u64; 6] = rest
                        .try_into()
                        .with_context(|| format!("malformed line {line:?}"))?;
                    runs.entry(owner).or_default().start = Some(start);
                }
                "DRIVERS-COMMAND " => {
                    ensure!(rest.len() == 13, "malformed line {line:?}");
                    runs.entry(owner).or_default().commands.push(CommandRecord {
                        index: rest[0],
                        code: rest[1],
                        argument: rest[2],
                        before_ns: rest[3],
                        after_ns: rest[4],
                        state: DeviceState::from_fields(&rest[5..])?,
                    });
                }
                _ => {
                    finals.insert(owner, DeviceState::from_fields(rest)?);
                }
            }
        }
    }
    Ok((runs, finals))
}

/// The device-clock time the device took `record`'s command at, read back
/// from what it published, for the commands whose result depends on it
/// (`before`: the model's state before the command, which it accepted).
fn taken_at(command: Command, before: &Model, record: &CommandRecord) -> Option<u64> {
    let snapshot = before.snapshot(0);
    let running = snapshot.status == Status::Running;
    let state = &record.state;
    match command {
        Command::Start => Some(state.run_start_ns),
        // The run's time added to the accumulated time.
        Command::Pause if running => (state.accumulated_ns.checked_sub(snapshot.accumulated_ns))
            .and_then(|run| snapshot.run_start_ns.checked_add(run)),
        Command::Lap if running => (state.last_lap_ns.checked_sub(snapshot.accumulated_ns))
            .and_then(|run| snapshot.run_start_ns.checked_add(run)),
        Command::Timeout => state
            .deadline_ns
            .checked_sub(record.argument.checked_mul(NANOS_PER_SEC)?),
        Command::TimeoutNs | Command::Periodic => state.deadline_ns.checked_sub(record.argument),
        _ => None,
    }
}

/// What replaying one CPU's commands showed.
#[derive(Debug)]
struct Replayed {
    accepted: usize,
    refused: usize,
    /// The model's state after the last command.
    last: DeviceState,
}

/// Replays CPU `cpu`'s commands through the model; the first command
/// whose result differs fails it. `tick_ns`: the guest counter's tick.
fn replay(cpu: u64, run: &CpuRun, tick_ns: u64) -> Result<Replayed> {
    let start = run
        .start
        .with_context(|| format!("CPU {cpu} printed no DRIVERS-START line"))?;
    let mut model = Model::new();
    let mut sequence = start[0];
    let reset = DeviceState::of_model(&model, sequence);
    let start_state = [
        reset.sequence,
        reset.status,
        reset.accumulated_ns,
        reset.run_start_ns,
        reset.deadline_ns,
        reset.lap_count,
    ];
    ensure!(
        start == start_state,
        "CPU {cpu}'s device after its RESET: {start:?}, the model's reset state: {start_state:?}"
    );
    let mut simulation = Simulation::new();
    simulation.now_ns = run.commands.first().map_or(0, |first| first.before_ns);
    // The counter counts whole ticks, and the conversion rounds down.
    let tolerance = tick_ns + 1;
    let (mut accepted, mut refused) = (0, 0);
    for record in &run.commands {
        let code = record.code;
        let command = Command::from_code(code)
            .with_context(|| format!("CPU {cpu} command {}: unknown code {code}", record.index))?;
        let what = format!("CPU {cpu} command {} ({command:?})", record.index);
        let with_argument = |simulation: &mut Simulation| {
            if record.argument != 0 {
                simulation
                    .memory
                    .write_u64(shared::DATA_LEN, record.argument);
            }
        };
        // Whether the model takes it: no timer fires, so time plays no part.
        let takes_it = {
            let mut trial = model.clone();
            let mut trial_simulation = Simulation::new();
            trial_simulation.now_ns = simulation.now_ns;
            with_argument(&mut trial_simulation);
            trial.command(&mut trial_simulation, code);
            trial_simulation.error_count == 0
        };
        let at = match takes_it
            .then(|| taken_at(command, &model, record))
            .flatten()
        {
            Some(at) => {
                ensure!(
                    record.before_ns <= at + tolerance && at <= record.after_ns + tolerance,
                    "{what}: the device took it at {at} ns (from what it published: {:?}), outside the guest's bracket {}..={} ns",
                    record.state,
                    record.before_ns,
                    record.after_ns
                );
                ensure!(
                    at >= simulation.now_ns,
                    "{what}: the device took it at {at} ns, before the previous command ({} ns)",
                    simulation.now_ns
                );
                at
            }
            None => record.before_ns.max(simulation.now_ns),
        };
        if let Some(deadline) = simulation.timer.filter(|&deadline| deadline <= at) {
            bail!(
                "{what}: a timeout was due at {deadline} ns, before this command: the run outlasted the shortest timeout, so a timeout fired and the outcome is not the commands' alone (the host was too slow for this test)"
            );
        }
        simulation.advance(&mut model, at - simulation.now_ns);
        with_argument(&mut simulation);
        let errors = simulation.error_count;
        model.command(&mut simulation, code);
        if simulation.error_count == errors {
            accepted += 1;
            sequence += 2;
        } else {
            refused += 1;
        }
        let expected = DeviceState::of_model(&model, sequence);
        let differences = record.state.differences(&expected);
        ensure!(
            differences.is_empty(),
            "{what}, {}: the device reads back {}",
            if simulation.error_count == errors {
                "taken by the model"
            } else {
                "refused by the model"
            },
            differences.join(", ")
        );
    }
    Ok(Replayed {
        accepted,
        refused,
        last: DeviceState::of_model(&model, sequence),
    })
}

/// Boots `config` (CPUs from its `-smp`, a stopwatch per CPU in its
/// `devices`) in the `concurrent-drivers` mode and checks every CPU's
/// commands and every device's final state against the model.
pub fn run(repo: &Repo, config: &VmConfig, timeout: Duration) -> Result<String> {
    let mut config = config.clone();
    config.tests = true;
    config.append = Some("concurrent-drivers".to_string());
    eprintln!("    {}", config.command_line(repo));
    let began = Instant::now();
    let mut console =
        SerialConsole::spawn(repo, &config, None)?.named(&format!("concurrent-drivers {config}"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung("no exit after the concurrent-drivers run", timeout));
    };
    let seconds = began.elapsed().as_secs_f64();
    let transcript = console.transcript();
    let summary = transcript
        .lines()
        .find(|line| line.starts_with("DRIVERS {"))
        .with_context(|| format!("QEMU exited ({status}) without a DRIVERS line"))?
        .trim();
    ensure!(!summary.contains("\"error\""), "the guest said {summary}");
    ensure!(status.success(), "QEMU exited with {status}: {summary}");
    ensure!(
        summary_number(summary, "errors")? == 0,
        "a device could not be read back: {summary}"
    );
    let cpus = summary_number(summary, "cpus")?;
    let commands = summary_number(summary, "commands")? as usize;
    let tick_ns = summary_number(summary, "tick_ns")?;
    ensure!(
        cpus as usize == config.devices,
        "{cpus} CPUs drove, {} stopwatches wanted: {summary}",
        config.devices
    );
    let (runs, finals) = parse(&transcript)?;
    ensure!(
        runs.len() == cpus as usize && finals.len() == cpus as usize,
        "{} CPUs' runs and {} devices' final states printed, {cpus} expected",
        runs.len(),
        finals.len()
    );
    // Every command of every CPU first, then every device's final state:
    // a command's mismatch says more than the end state's.
    let (mut accepted, mut refused) = (0, 0);
    let mut lasts = BTreeMap::new();
    for (&cpu, run) in &runs {
        ensure!(
            run.commands.len() == commands,
            "CPU {cpu} printed {} commands, {commands} expected",
            run.commands.len()
        );
        let replayed = replay(cpu, run, tick_ns)?;
        accepted += replayed.accepted;
        refused += replayed.refused;
        lasts.insert(cpu, replayed.last);
    }
    for (cpu, last) in &lasts {
        let device_final = finals
            .get(cpu)
            .with_context(|| format!("no DRIVERS-FINAL line for device {cpu}"))?;
        let differences = device_final.differences(last);
        ensure!(
            differences.is_empty(),
            "device {cpu} did not end in the state CPU {cpu}'s commands imply: {}",
            differences.join(", ")
        );
    }
    // Whether the CPUs really drove at once: every command in the order
    // the guest sent them (by the counter just before), and how often the
    // next one is another CPU's. The guest keeps each CPU within 8
    // commands of the slowest, so one CPU sends at most 17 in a row.
    let mut timeline: Vec<(u64, u64)> = runs
        .iter()
        .flat_map(|(&cpu, run)| run.commands.iter().map(move |c| (c.before_ns, cpu)))
        .collect();
    timeline.sort_unstable();
    let switches = timeline
        .windows(2)
        .filter(|pair| pair[0].1 != pair[1].1)
        .count();
    ensure!(
        switches * 20 >= timeline.len(),
        "the CPUs took turns only {switches} times in {} commands: they did not drive at once",
        timeline.len()
    );
    Ok(format!(
        "{cpus} CPUs x {commands} commands at once (the next command another CPU's {switches} times), each device as the model says after every command ({accepted} taken, {refused} refused) and at the end; {seconds:.1} s"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RESET state line, then START at 1000 ns and PAUSE at 3000 ns, as
    /// the guest prints them.
    fn transcript(pause_accumulated: u64) -> String {
        format!(
            "DRIVERS-START 1 a 1 0 0 0 0\n\
             DRIVERS-COMMAND 1 0 1 0 3e0 3f0 c 0 0 3e8 0 0 0 0\n\
             DRIVERS-COMMAND 1 1 2 0 bb0 bc0 e 2 {pause_accumulated:x} 3e8 0 0 0 2\n\
             DRIVERS-FINAL 1 e 2 7d0 3e8 0 0 0 2\n"
        )
    }

    #[test]
    fn replays_a_run_and_catches_a_wrong_time() {
        let (runs, finals) = parse(&transcript(2000)).unwrap();
        let replayed = replay(1, &runs[&1], 16).unwrap();
        assert_eq!((replayed.accepted, replayed.refused), (2, 0));
        assert!(finals[&1].differences(&replayed.last).is_empty());
        // A PAUSE whose accumulated time puts it outside its bracket.
        let (runs, _) = parse(&transcript(5000)).unwrap();
        let error = replay(1, &runs[&1], 16).unwrap_err().to_string();
        assert!(error.contains("outside the guest's bracket"), "{error}");
    }
}
