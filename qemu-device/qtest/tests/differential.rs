//! Differential test: the real device inside QEMU against its pure model.
//!
//! A seeded random stream of guest accesses (valid and invalid, all sizes)
//! and clock steps goes to both; after every step their registers, `data`
//! text, time page and interrupt line must agree. The seed is printed on
//! failure; `STOPWATCH_DIFF_SEED` and `STOPWATCH_DIFF_STEPS` replay or
//! lengthen a run. This is the seed of the coverage-guided fuzzer to come.

use anyhow::Result;
use stopwatch_abi::{regs, shared, time_page, Command};
use stopwatch_model::{SharedMemory, Simulation, Stopwatch};
use stopwatch_qtest::{qemu_binary, scratch_dir, IrqEvent, Layout, Qtest, Stopwatch as Device};

use stopwatch_test_rng::TestRng as Random;

#[test]
#[ignore = "needs the patched QEMU: run `cargo xtask test`"]
fn device_and_model_agree_on_random_traffic() -> Result<()> {
    let seed = setting("STOPWATCH_DIFF_SEED", 0x5eed_2026)?;
    let steps = usize::try_from(setting("STOPWATCH_DIFF_STEPS", 3_000)?)?;
    let result = run(seed, steps);
    if let Err(error) = &result {
        eprintln!("differential run failed with STOPWATCH_DIFF_SEED={seed}: {error:#}");
    }
    result
}

/// A decimal number from the environment, or `default` if unset.
fn setting(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a decimal number")),
        Err(_) => Ok(default),
    }
}

fn run(seed: u64, steps: usize) -> Result<()> {
    let qemu = qemu_binary()?;
    let scratch = scratch_dir("differential")?;
    let device_args = ["-device", "stopwatch,id=sw0"].map(String::from);
    let layout = Layout::dump(&qemu, &scratch, "virt", &device_args)?;
    let device = Device::at(&layout.devices[0]);
    let mut args = vec!["-M".to_owned(), "virt".to_owned()];
    args.extend(device_args);
    let mut qtest = Qtest::start(&qemu, &args)?;
    qtest.intercept_irqs("/machine/peripheral/sw0")?;

    // The model runs in a simulated machine that mirrors the real one.
    let mut env = Simulation::new();
    let mut model = Stopwatch::new();
    model.power_on_reset(&mut env, true);
    let mut device_irq = false;
    let mut random = Random::new(seed);

    for step in 0..steps {
        let what = random.below(100);
        let description;
        if what < 45 {
            // A register write: mostly valid commands, sometimes not.
            let value = if random.below(10) < 8 {
                random.below(Command::ALL.len() as u64)
            } else {
                random.next_u64() % 64
            };
            let (offset, size) = pick_access(&mut random);
            description = format!("write {value:#x} at {offset:#x} size {size}");
            write(&mut qtest, device.register(offset), value, size)?;
            model.write(&mut env, offset, value, size);
        } else if what < 60 {
            let (offset, size) = pick_access(&mut random);
            description = format!("read at {offset:#x} size {size}");
            let from_device = read(&mut qtest, device.register(offset), size)?;
            let from_model = model.read(&mut env, offset, size);
            anyhow::ensure!(
                from_device == from_model,
                "step {step}: {description}: device {from_device:#x}, model {from_model:#x}"
            );
        } else if what < 75 {
            // data_len for the next TIMEOUT / TIMEOUT_NS: around the limits.
            let value = match random.below(4) {
                0 => random.below(12),
                1 => random.below(3_000_000_000),
                2 => 10_000_000_000 + random.below(3) - 1,
                _ => random.next_u64(),
            };
            description = format!("data_len = {value}");
            qtest.writeq(device.shared(shared::DATA_LEN), value)?;
            env.memory.write_u64(shared::DATA_LEN, value);
        } else {
            let ns = match random.below(3) {
                0 => random.below(1_000),
                1 => random.below(50_000_000),
                _ => random.below(3_000_000_000),
            };
            description = format!("clock_step {ns}");
            if ns > 0 {
                qtest.clock_step(ns)?;
            }
            env.advance(&mut model, ns);
        }

        for event in qtest.take_irq_events() {
            device_irq = matches!(event, IrqEvent::Raise(0));
        }
        anyhow::ensure!(
            device_irq == env.irq,
            "step {step}: {description}: interrupt device {device_irq}, model {}",
            env.irq
        );
        anyhow::ensure!(
            device.status(&mut qtest)?.code() == model.status().code(),
            "step {step}: {description}: status differs"
        );
        let device_page =
            qtest.read_bytes(device.shared(shared::TIME_PAGE), time_page::SIZE as usize)?;
        let start = shared::TIME_PAGE as usize;
        let model_page = &env.memory[start..start + time_page::SIZE as usize];
        anyhow::ensure!(
            device_page == model_page,
            "step {step}: {description}: time page differs:\n device {device_page:02x?}\n model  {model_page:02x?}"
        );
        let text_range = shared::DATA as usize..(shared::DATA as usize + 32);
        let device_text = qtest.read_bytes(device.shared(shared::DATA), 32)?;
        anyhow::ensure!(
            device_text == env.memory[text_range],
            "step {step}: {description}: data text differs"
        );
    }
    Ok(())
}

/// An access to the register region: mostly the registers' valid forms,
/// sometimes a wrong size, alignment or offset.
fn pick_access(random: &mut Random) -> (u64, u32) {
    let offset = [regs::COMMAND, regs::STATUS, 4, 12, 2, 0x10, 0xff8][random.below(7) as usize];
    let size = [8, 8, 4, 4, 2, 1][random.below(6) as usize];
    (offset, size)
}

fn write(qtest: &mut Qtest, address: u64, value: u64, size: u32) -> Result<()> {
    let verb = match size {
        1 => "writeb",
        2 => "writew",
        4 => "writel",
        _ => "writeq",
    };
    let mask = if size == 8 {
        u64::MAX
    } else {
        (1 << (size * 8)) - 1
    };
    qtest
        .command(&format!("{verb} {address:#x} {:#x}", value & mask))
        .map(drop)
}

fn read(qtest: &mut Qtest, address: u64, size: u32) -> Result<u64> {
    let verb = match size {
        1 => "readb",
        2 => "readw",
        4 => "readl",
        _ => "readq",
    };
    let answer = qtest.command(&format!("{verb} {address:#x}"))?;
    Ok(u64::from_str_radix(answer.trim_start_matches("0x"), 16)?)
}
