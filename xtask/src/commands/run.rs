// SPDX-License-Identifier: GPL-2.0-or-later
//! What the commands that boot a guest (`qemu`, `dtb`, `gdb`) share: their
//! options, the machine they describe, and building what it boots.

use anyhow::Result;
use std::path::PathBuf;

use crate::build::pipeline::Session;
use system_tests::vm::{self, Gic, VmConfig};

/// The machine options that `qemu`, `dtb` and `gdb` share.
#[derive(Debug, Clone, clap::Args)]
pub struct MachineOptions {
    /// GIC version of the virt board (default: the board's, 2).
    #[arg(long)]
    pub gic: Option<Gic>,
    /// CPU model.
    #[arg(long, default_value = "cortex-a53")]
    pub cpu: String,
    /// Start the guest at EL2 (virtualization=on).
    #[arg(long)]
    pub el2: bool,
    /// Give the board TrustZone (secure=on): the ELF starts at EL3.
    #[arg(long)]
    pub secure: bool,
    /// How many stopwatch devices (ids sw0, sw1, ...).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub devices: usize,
    /// Boot without the stopwatch device (same as --devices 0).
    #[arg(long, conflicts_with = "devices")]
    pub no_device: bool,
}

impl MachineOptions {
    /// The machine these options describe, booting the project's kernel.
    pub fn vm_config(&self) -> VmConfig {
        VmConfig {
            cpu: self.cpu.clone(),
            gic: self.gic,
            el2: self.el2,
            secure: self.secure,
            devices: if self.no_device { 0 } else { self.devices },
            ..VmConfig::default()
        }
    }
}

/// What to boot and how, shared by the commands that boot a guest
/// (`qemu`, `dtb`, `gdb`).
#[derive(Debug, Clone, clap::Args)]
pub struct GuestOptions {
    /// Kernel command line (QEMU's -append; the guest finds it in the
    /// device tree's /chosen/bootargs).
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    #[command(flatten)]
    pub machine: MachineOptions,
    /// Boot this kernel (ELF or arm64 Image) instead of the project's.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Further QEMU arguments, after `--`.
    #[arg(last = true, value_name = "QEMU_ARGS")]
    pub extra: Vec<String>,
}

impl GuestOptions {
    /// The machine to start. `-kernel` gets the given file (checked
    /// before anything is built or started), else the project's kernel as
    /// ELF or, with `image`, as flat Image.
    pub fn vm_config(self, image: bool) -> Result<VmConfig> {
        let kernel = match &self.kernel {
            Some(path) => {
                let kind = vm::check_kernel_file(path)?;
                eprintln!("--kernel {}: {kind}", path.display());
                vm::Kernel::Other(path.display().to_string())
            }
            None if image => vm::Kernel::Image,
            None => vm::Kernel::Elf,
        };
        Ok(VmConfig {
            kernel,
            append: self.append,
            extra: self.extra,
            ..self.machine.vm_config()
        })
    }
}

/// Builds what `config` boots: QEMU, and the project's kernel unless
/// another one is given.
pub fn build_for(session: &Session, config: &VmConfig) -> Result<()> {
    let own_kernel = !matches!(config.kernel, vm::Kernel::Other(_));
    session.build_all(own_kernel, &mut Vec::new())
}
