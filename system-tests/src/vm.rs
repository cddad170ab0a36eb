// SPDX-License-Identifier: GPL-2.0-or-later
//! QEMU command lines for the guest: one place that knows the board,
//! CPU, GIC, EL2 and device options, used by the tests and by `cargo
//! xtask qemu`, `dtb`, `gdb` and `bench`.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::Command;

use crate::process::shell_quote;
use crate::repo::{Flavor, Repo};

/// Which file `-kernel` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    /// The ELF: QEMU starts it at its entry point with x0 = 0 (at EL3 with
    /// `secure=on`).
    Elf,
    /// The flat arm64 Image: QEMU boots it as Linux (never at EL3), x0 =
    /// the device tree.
    Image,
    /// Another file (a test's deliberately broken Image, say).
    Other(String),
}

/// The GIC version of the `virt` board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gic {
    #[value(name = "2")]
    V2,
    #[value(name = "3")]
    V3,
}

/// One way to boot the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub cpu: String,
    /// `None`: the board's default (GICv2).
    pub gic: Option<Gic>,
    /// Start at EL2 (`virtualization=on`).
    pub el2: bool,
    /// Give the board EL3 and TrustZone (`secure=on`): the ELF then starts
    /// at Secure EL3.
    pub secure: bool,
    /// What `-kernel` loads.
    pub kernel: Kernel,
    /// Boot the kernel built with the in-guest tests (`guest-kernel-test`,
    /// for `-append test` or `fault`) instead of the shipped one.
    pub tests: bool,
    /// Semihosting on (the guest can exit QEMU with a status).
    pub semihosting: bool,
    /// How many `-device stopwatch,id=swN` (N from 0).
    pub devices: usize,
    /// Kernel command line (`-append`).
    pub append: Option<String>,
    /// The serial line on stdio alone, passing every byte to the guest;
    /// else (`-nographic`) multiplexed with QEMU's monitor, where Ctrl-A
    /// starts a QEMU command (Ctrl-A X quits). Tests that send arbitrary
    /// bytes need it raw.
    pub raw_serial: bool,
    /// Run in virtual time ([`VIRTUAL_TIME`]): for runs that measure no
    /// wall-clock time, whose waits then take no time at all. One vCPU
    /// only (icount turns multi-threaded TCG off).
    pub virtual_time: bool,
    /// Further QEMU arguments, last on the command line.
    pub extra: Vec<String>,
}

/// QEMU's instruction counter as the guest's clock: one instruction is
/// one nanosecond (`shift=0`: a 1 GHz CPU), and when the CPU waits
/// (WFI) the virtual clock jumps to the next timer's deadline instead of
/// waiting for it in real time (`sleep=off`). A 2 s timeout fires at once,
/// and every run sees the same times.
pub const VIRTUAL_TIME: [&str; 2] = ["-icount", "shift=0,sleep=off"];

impl Default for VmConfig {
    fn default() -> VmConfig {
        VmConfig {
            cpu: "cortex-a53".to_string(),
            gic: None,
            el2: false,
            secure: false,
            kernel: Kernel::Elf,
            tests: false,
            semihosting: true,
            devices: 1,
            append: None,
            raw_serial: false,
            virtual_time: false,
            extra: Vec::new(),
        }
    }
}

impl VmConfig {
    /// The `-M` value.
    pub fn machine(&self) -> String {
        let mut machine = String::from("virt");
        match self.gic {
            Some(Gic::V2) => machine.push_str(",gic-version=2"),
            Some(Gic::V3) => machine.push_str(",gic-version=3"),
            None => {}
        }
        if self.secure {
            machine.push_str(",secure=on");
        }
        if self.el2 {
            machine.push_str(",virtualization=on");
        }
        machine
    }

    /// QEMU's arguments: the serial console on stdio, semihosting so the
    /// guest can exit QEMU with a status. Paths inside the repository are
    /// relative to it: QEMU runs there, so printed lines can be pasted.
    pub fn args(&self, repo: &Repo) -> Vec<String> {
        let mut args: Vec<String> = ["-M", &self.machine(), "-cpu", &self.cpu, "-m", "128M"]
            .map(str::to_string)
            .into();
        if self.virtual_time {
            args.extend(VIRTUAL_TIME.map(str::to_string));
        }
        let serial: &[&str] = if self.raw_serial {
            &["-display", "none", "-serial", "stdio", "-monitor", "none"]
        } else {
            &["-nographic"]
        };
        args.extend(serial.iter().map(|arg| arg.to_string()));
        // The board would add a network card the build does not have.
        args.extend(["-nic", "none"].map(str::to_string));
        if self.semihosting {
            args.extend(["-semihosting-config", "enable=on,target=native"].map(str::to_string));
        }
        let flavor = if self.tests {
            Flavor::WithTests
        } else {
            Flavor::Shipped
        };
        let kernel = match &self.kernel {
            Kernel::Elf => repo
                .relative(&repo.kernel_elf(flavor))
                .display()
                .to_string(),
            Kernel::Image => repo
                .relative(&repo.kernel_image_of(flavor))
                .display()
                .to_string(),
            Kernel::Other(path) => path.clone(),
        };
        args.extend(["-kernel".to_string(), kernel]);
        if let Some(append) = &self.append {
            args.extend(["-append".to_string(), append.clone()]);
        }
        for index in 0..self.devices {
            // An id names the instance in trace events and guest errors.
            args.extend(["-device".to_string(), format!("stopwatch,id=sw{index}")]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The EL the kernel must say it was entered at: QEMU starts an ELF at
    /// EL3 on a `secure=on` board (an Image never: QEMU boots it as Linux,
    /// Non-secure), else at EL2 with `virtualization=on`, else at EL1.
    pub fn expected_entry_el(&self) -> u8 {
        match (self.secure, &self.kernel, self.el2) {
            (true, Kernel::Elf, _) => 3,
            (_, _, true) => 2,
            _ => 1,
        }
    }

    /// The command, to be run in the repository root.
    pub fn command(&self, repo: &Repo) -> Command {
        let mut cmd = Command::new(repo.qemu_binary());
        cmd.args(self.args(repo)).current_dir(&repo.root);
        cmd
    }

    /// The command line as printed before running it.
    pub fn command_line(&self, repo: &Repo) -> String {
        let qemu = repo.qemu_binary();
        std::iter::once(repo.relative(&qemu).display().to_string())
            .chain(self.args(repo))
            .map(|word| shell_quote(OsStr::new(&word)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A short name, e.g. `max+gicv3+el2 -smp 2 (no device)`, for messages.
impl fmt::Display for VmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gic = match self.gic {
            Some(Gic::V3) => "gicv3",
            _ => "gicv2",
        };
        write!(f, "{}+{gic}", self.cpu)?;
        if self.secure {
            write!(f, "+secure")?;
        }
        if self.el2 {
            write!(f, "+el2")?;
        }
        match &self.kernel {
            Kernel::Elf => {}
            Kernel::Image => write!(f, " (Image)")?,
            Kernel::Other(path) => write!(f, " (-kernel {path})")?,
        }
        if !self.semihosting {
            write!(f, " (no semihosting)")?;
        }
        if !self.extra.is_empty() {
            write!(f, " {}", self.extra.join(" "))?;
        }
        match self.devices {
            0 => write!(f, " (no device)")?,
            1 => {}
            n => write!(f, " ({n} devices)")?,
        }
        Ok(())
    }
}

/// Which kind of kernel file `path` is, as QEMU's `-kernel` will see it;
/// an error that says what is wrong for anything QEMU would not boot.
pub fn check_kernel_file(path: &Path) -> Result<&'static str> {
    let metadata = std::fs::metadata(path).with_context(|| {
        format!(
            "--kernel {}: no such file (give the path of an ELF or arm64 Image kernel)",
            path.display()
        )
    })?;
    if !metadata.is_file() {
        bail!(
            "--kernel {}: not a regular file (give the path of an ELF or arm64 Image kernel)",
            path.display()
        );
    }
    let mut header = [0u8; 64];
    let read = std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut header))
        .with_context(|| format!("--kernel {}: cannot read it", path.display()))?;
    kernel_kind(&header[..read]).with_context(|| format!("--kernel {}", path.display()))
}

/// ELF, or the Linux arm64 `Image` header (magic `ARM\x64` at offset 56).
fn kernel_kind(header: &[u8]) -> Result<&'static str> {
    if header.starts_with(b"\x7fELF") {
        if header.get(4) != Some(&2) || header.get(18..20) != Some(&183u16.to_le_bytes()[..]) {
            bail!("an ELF file, but not a 64-bit aarch64 one (EM_AARCH64)");
        }
        return Ok("ELF");
    }
    if header.get(56..60) == Some(b"ARM\x64") {
        return Ok("arm64 Image");
    }
    bail!(
        "neither an ELF file nor an arm64 Image (no \"ARM\\x64\" magic at offset 56); \
         QEMU would load it as raw bytes and the CPU would not start in it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_documented_command() {
        assert_eq!(
            VmConfig::default().command_line(&Repo::locate()),
            "target/vm/qemu-system-aarch64 -M virt -cpu cortex-a53 -m 128M -nographic -nic none \
             -semihosting-config enable=on,target=native -kernel target/vm/guest-kernel \
             -device stopwatch,id=sw0"
        );
    }

    #[test]
    fn options_land_in_the_machine_and_after_the_kernel() {
        let config = VmConfig {
            cpu: "max".into(),
            gic: Some(Gic::V3),
            el2: true,
            devices: 0,
            append: Some("test verbose".into()),
            extra: vec!["-d".into(), "int".into()],
            ..VmConfig::default()
        };
        assert_eq!(config.machine(), "virt,gic-version=3,virtualization=on");
        let line = config.command_line(&Repo::locate());
        assert!(line.contains("-M virt,gic-version=3,virtualization=on -cpu max"));
        assert!(line.ends_with("-append 'test verbose' -d int"), "{line}");
        assert!(!line.contains("stopwatch"));
        assert_eq!(config.to_string(), "max+gicv3+el2 -d int (no device)");
    }

    #[test]
    fn virtual_time_is_the_instruction_counter_without_sleeping() {
        let config = VmConfig {
            virtual_time: true,
            ..VmConfig::default()
        };
        let line = config.command_line(&Repo::locate());
        assert!(
            line.contains(" -m 128M -icount shift=0,sleep=off "),
            "{line}"
        );
        assert!(!VmConfig::default()
            .command_line(&Repo::locate())
            .contains("-icount"));
    }

    #[test]
    fn secure_board_and_the_image() {
        let config = VmConfig {
            secure: true,
            el2: true,
            kernel: Kernel::Image,
            semihosting: false,
            ..VmConfig::default()
        };
        assert_eq!(config.machine(), "virt,secure=on,virtualization=on");
        let line = config.command_line(&Repo::locate());
        assert!(
            line.contains("-kernel target/vm/guest-kernel.bin"),
            "{line}"
        );
        assert!(!line.contains("semihosting"), "{line}");
        assert_eq!(
            config.to_string(),
            "cortex-a53+gicv2+secure+el2 (Image) (no semihosting)"
        );
    }

    #[test]
    fn several_devices_and_another_kernel() {
        let config = VmConfig {
            devices: 3,
            kernel: Kernel::Other("/tmp/Image".into()),
            ..VmConfig::default()
        };
        let line = config.command_line(&Repo::locate());
        assert!(line.contains("-kernel /tmp/Image "), "{line}");
        assert!(
            line.ends_with(
                "-device stopwatch,id=sw0 -device stopwatch,id=sw1 -device stopwatch,id=sw2"
            ),
            "{line}"
        );
        assert_eq!(
            config.to_string(),
            "cortex-a53+gicv2 (-kernel /tmp/Image) (3 devices)"
        );
    }

    #[test]
    fn kernel_files_are_recognised_or_refused() {
        let mut elf = vec![0u8; 64];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(kernel_kind(&elf).unwrap(), "ELF");
        elf[18] = 62; // x86-64
        assert!(kernel_kind(&elf)
            .unwrap_err()
            .to_string()
            .contains("aarch64"));
        let mut image = vec![0u8; 64];
        image[56..60].copy_from_slice(b"ARM\x64");
        assert_eq!(kernel_kind(&image).unwrap(), "arm64 Image");
        let error = kernel_kind(b"#!/bin/sh\n").unwrap_err().to_string();
        assert!(
            error.contains("neither an ELF file nor an arm64 Image"),
            "{error}"
        );
        let missing = check_kernel_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(
            format!("{missing:#}").contains("no such file"),
            "{missing:#}"
        );
        let directory = check_kernel_file(Path::new("/")).unwrap_err();
        assert!(
            format!("{directory:#}").contains("not a regular file"),
            "{directory:#}"
        );
    }
}
