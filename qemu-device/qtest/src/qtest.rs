// SPDX-License-Identifier: GPL-2.0-or-later
//! A client of QEMU's qtest protocol over the child's stdin and stdout.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};

/// How long one qtest command may take before the QEMU is declared hung.
/// `-qtest stdio` never exits on its own, so every wait is bounded.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A change of an intercepted interrupt line, as qtest reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqEvent {
    /// `IRQ raise N`
    Raise(u32),
    /// `IRQ lower N`
    Lower(u32),
}

/// A QEMU process under qtest control; killed when dropped.
pub struct Qtest {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    irq_events: Vec<IrqEvent>,
    /// The virtual clock, as the last clock command answered. qtest has no
    /// command that only reads it, and nothing else moves it.
    clock_ns: u64,
}

impl Qtest {
    /// Starts `qemu` with `args` plus the qtest accelerator on stdio.
    pub fn start(qemu: &Path, args: &[String]) -> Result<Qtest> {
        let mut child = Command::new(qemu)
            .args([
                "-accel",
                "qtest",
                "-qtest",
                "stdio",
                "-qtest-log",
                "/dev/null",
            ])
            .args(["-display", "none"])
            .args(["-nodefaults", "-serial", "none", "-monitor", "none"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", qemu.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Qtest {
            child,
            stdin,
            lines,
            irq_events: Vec::new(),
            clock_ns: 0,
        })
    }

    /// Sends one command and returns its answer after `OK` (or fails on
    /// `FAIL`/`ERR`), collecting interrupt reports on the way.
    pub fn command(&mut self, command: &str) -> Result<String> {
        self.send(&format!("{command}\n"))?;
        self.answer(command)
    }

    /// Writes `commands` (whole lines) without waiting for their answers:
    /// QEMU handles them in order and [`Qtest::answer`] reads the answers
    /// in the same order. Pipelining saves a round trip per command.
    pub fn send(&mut self, commands: &str) -> Result<()> {
        self.stdin
            .write_all(commands.as_bytes())
            .and_then(|()| self.stdin.flush())
            .context("sending qtest commands: QEMU has exited")
    }

    /// The next answer, after its `OK` (fails on `FAIL`/`ERR`), collecting
    /// the interrupt reports that came before it. `command` names what it
    /// answers, for messages.
    pub fn answer(&mut self, command: &str) -> Result<String> {
        loop {
            let line = match self.lines.recv_timeout(ANSWER_TIMEOUT) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("QEMU did not answer `{command}` within {ANSWER_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("QEMU exited ({status}) while answering `{command}`")
                }
            };
            if let Some(event) = parse_irq_event(&line) {
                self.irq_events.push(event);
                continue;
            }
            return match line.strip_prefix("OK") {
                Some(rest) => Ok(rest.trim().to_owned()),
                None => Err(anyhow!("`{command}` failed: {line}")),
            };
        }
    }

    /// Records the clock a pipelined `clock_step`/`clock_set` answered.
    pub fn note_clock(&mut self, clock_ns: u64) {
        self.clock_ns = clock_ns;
    }

    /// Interrupt changes reported since the last call.
    pub fn take_irq_events(&mut self) -> Vec<IrqEvent> {
        std::mem::take(&mut self.irq_events)
    }

    /// Reports changes of the device's `sysbus-irq` outputs from now on.
    pub fn intercept_irqs(&mut self, qom_path: &str) -> Result<()> {
        self.command(&format!("irq_intercept_out {qom_path} sysbus-irq"))
            .map(drop)
    }

    /// Advances the virtual clock by exactly `ns`, running due timers;
    /// returns the new clock.
    pub fn clock_step(&mut self, ns: u64) -> Result<u64> {
        if ns == 0 {
            // qtest refuses a step of 0.
            return Ok(self.last_clock());
        }
        self.clock_ns = parse_number(&self.command(&format!("clock_step {ns}"))?)?;
        Ok(self.clock_ns)
    }

    /// Sets the virtual clock forward to `ns`; returns the new clock.
    pub fn clock_set(&mut self, ns: u64) -> Result<u64> {
        self.clock_ns = parse_number(&self.command(&format!("clock_set {ns}"))?)?;
        Ok(self.clock_ns)
    }

    /// The virtual clock as the last clock command left it (nothing else
    /// moves it under qtest).
    pub fn last_clock(&self) -> u64 {
        self.clock_ns
    }

    /// An 8-byte guest-physical read.
    pub fn readq(&mut self, address: u64) -> Result<u64> {
        parse_number(&self.command(&format!("readq {address:#x}"))?)
    }

    /// A 4-byte guest-physical read.
    pub fn readl(&mut self, address: u64) -> Result<u32> {
        let value = parse_number(&self.command(&format!("readl {address:#x}"))?)?;
        Ok(u32::try_from(value)?)
    }

    /// An 8-byte guest-physical write.
    pub fn writeq(&mut self, address: u64, value: u64) -> Result<()> {
        self.command(&format!("writeq {address:#x} {value:#x}"))
            .map(drop)
    }

    /// A 4-byte guest-physical write.
    pub fn writel(&mut self, address: u64, value: u32) -> Result<()> {
        self.command(&format!("writel {address:#x} {value:#x}"))
            .map(drop)
    }

    /// A 2-byte guest-physical write.
    pub fn writew(&mut self, address: u64, value: u16) -> Result<()> {
        self.command(&format!("writew {address:#x} {value:#x}"))
            .map(drop)
    }

    /// A 1-byte guest-physical read.
    pub fn readb(&mut self, address: u64) -> Result<u8> {
        let value = parse_number(&self.command(&format!("readb {address:#x}"))?)?;
        Ok(u8::try_from(value)?)
    }

    /// Reads `len` bytes of guest-physical memory.
    pub fn read_bytes(&mut self, address: u64, len: usize) -> Result<Vec<u8>> {
        let answer = self.command(&format!("read {address:#x} {len:#x}"))?;
        let hex = answer
            .strip_prefix("0x")
            .ok_or_else(|| anyhow!("unexpected `read` answer {answer}"))?;
        (0..hex.len())
            .step_by(2)
            .map(|at| Ok(u8::from_str_radix(&hex[at..at + 2], 16)?))
            .collect()
    }

    /// True while the QEMU process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_irq_event(line: &str) -> Option<IrqEvent> {
    let rest = line.strip_prefix("IRQ ")?;
    let (kind, number) = rest.split_once(' ')?;
    let number = number.trim().parse().ok()?;
    match kind {
        "raise" => Some(IrqEvent::Raise(number)),
        "lower" => Some(IrqEvent::Lower(number)),
        _ => None,
    }
}

/// A number as qtest prints it: decimal or `0x` hex.
pub fn parse_number(text: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.with_context(|| format!("not a number: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        assert_eq!(parse_number("0x1f").unwrap(), 31);
        assert_eq!(parse_number("1500000000").unwrap(), 1_500_000_000);
        assert!(parse_number("zz").is_err());
        assert_eq!(parse_irq_event("IRQ raise 0"), Some(IrqEvent::Raise(0)));
        assert_eq!(parse_irq_event("IRQ lower 3"), Some(IrqEvent::Lower(3)));
        assert_eq!(parse_irq_event("OK"), None);
    }
}
