// SPDX-License-Identifier: GPL-2.0-or-later
//! The build steps every command shares: prerequisites, QEMU, guest
//! kernel. Each appends a row to a summary.

use anyhow::Result;
use std::path::PathBuf;

use crate::build::cache::{Cache, CheckoutDirs, QemuDirs};
use crate::build::kernel;
use crate::build::pins;
use crate::build::prereqs::{self, HostTools};
use crate::build::qemu_build;
use crate::build::qemu_source::QemuTarball;
use crate::repo::Repo;
use crate::util::{Step, SummaryRow};

/// Options of every command that builds.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildOptions {
    /// Build from this qemu-10.2.2.tar.xz instead of downloading QEMU's
    /// source (Debian's package, or QEMU's release) (also: env
    /// STOPWATCH_QEMU_TARBALL).
    #[arg(long, value_name = "PATH")]
    pub qemu_tarball: Option<PathBuf>,
}

/// What a build needs to know, found once.
pub struct Session {
    pub repo: Repo,
    pub cache: Cache,
    pub tarball: QemuTarball,
}

impl Session {
    pub fn new(options: &BuildOptions) -> Result<Session> {
        Ok(Session {
            repo: Repo::locate(),
            cache: Cache::locate()?,
            tarball: QemuTarball::choose(options.qemu_tarball.clone())?,
        })
    }

    /// Checks and installs the prerequisites.
    pub fn prerequisites(&self, summary: &mut Vec<SummaryRow>) -> Result<HostTools> {
        let step = Step::start("Prerequisites");
        let pins = prereqs::ensure_rust_toolchain(&self.repo.root)?;
        let tools = prereqs::ensure_host_tools(&self.cache, self.debian_source())?;
        eprintln!(
            "    Rust {} with {}, system packages, python3 venv, {}",
            pins.channel,
            pins.targets.join(", "),
            tools.bindgen_version
        );
        summary.push(step.finish("ok"));
        Ok(tools)
    }

    /// Whether QEMU's source will come from Debian's source package
    /// (`apt-get source`, needing dpkg-dev and Debian's keyring): no
    /// tarball given, no release download asked for, and a Debian archive
    /// in apt's configuration ([`QemuTarball::choose`] decides).
    pub fn debian_source(&self) -> bool {
        matches!(self.tarball, QemuTarball::Debian)
    }

    pub fn qemu(&self, tools: &HostTools, summary: &mut Vec<SummaryRow>) -> Result<PathBuf> {
        qemu_build::build(&self.repo, &self.cache, &self.tarball, tools, summary)
    }

    pub fn kernel(&self, summary: &mut Vec<SummaryRow>) -> Result<PathBuf> {
        let step = Step::start("Guest kernel");
        let built = kernel::build(&self.repo);
        summary.push(step.finish(if built.is_ok() { "ok" } else { "FAILED" }));
        built
    }

    /// Everything `cargo xtask qemu` needs.
    pub fn build_all(&self, with_kernel: bool, summary: &mut Vec<SummaryRow>) -> Result<()> {
        let tools = self.prerequisites(summary)?;
        self.qemu(&tools, summary)?;
        if with_kernel {
            self.kernel(summary)?;
        }
        Ok(())
    }

    /// The keyed QEMU directory for the current inputs (installs nothing).
    pub fn current_qemu_dirs(&self) -> Result<QemuDirs> {
        let tools = prereqs::detect_host_tools(&self.cache)?;
        let key = qemu_build::cache_key(&self.repo, &self.tarball, &tools)?;
        Ok(QemuDirs::new(&self.cache, pins::QEMU_VERSION, &key))
    }

    /// This checkout's directory under the current keyed QEMU directory.
    pub fn current_checkout_dirs(&self) -> Result<CheckoutDirs> {
        Ok(self.current_qemu_dirs()?.checkout(&self.repo.root))
    }
}
