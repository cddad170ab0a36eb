// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask`: builds the patched QEMU with the stopwatch device and
//! the guest kernel, boots them, and runs every test of the project.
//!
//! Run `cargo xtask --help` for the commands.

mod bench;
mod cache;
mod checkpatch;
mod debian_mirror;
mod debug_tests;
mod demo;
mod device_fuzz;
mod doc_excerpts;
mod dt_binding;
mod guest;
mod inspect;
mod kernel;
mod kvm_check;
mod line_editing_test;
mod lint;
mod meson_wrap;
mod mmio_lint;
mod paste_test;
mod patches;
mod pins;
mod pipeline;
mod prereqs;
mod qemu_build;
mod qemu_source;
mod qemu_tests;
mod repo;
mod run;
mod serial;
mod serial_fuzz;
mod shell_test;
mod snapshot_test;
#[cfg(test)]
mod spdx_lint;
mod test_suite;
mod util;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pipeline::{BuildOptions, Session};
use run::{MachineOptions, VmConfig};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test the stopwatch device and its guest kernel",
    after_help = "Caches live in $STOPWATCH_CACHE_DIR, else $XDG_CACHE_HOME/stopwatch, \
                  else ~/.cache/stopwatch (`cargo xtask cache-dir` prints it)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build everything: prerequisites, QEMU with the device, guest kernel
    /// (into target/vm/).
    Build {
        /// Build QEMU only, not the guest kernel.
        #[arg(long)]
        no_kernel: bool,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Build what is needed, then boot the guest into its serial shell
    /// (quit QEMU with Ctrl-A X).
    Qemu {
        #[command(flatten)]
        guest: GuestOptions,
        /// Print the device's trace events matching PATTERN on stderr
        /// (QEMU's -trace, e.g. 'stopwatch_*').
        #[arg(long, value_name = "PATTERN")]
        trace: Vec<String>,
        /// Boot the flat arm64 Image (target/vm/guest-kernel.bin) instead
        /// of the ELF.
        #[arg(long, conflicts_with = "kernel")]
        image: bool,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Print the device tree the board generates for these options
    /// (decompiled with dtc), or write it with -o FILE.dts|FILE.dtb.
    Dtb {
        /// Write to FILE instead: .dts for the source, .dtb for the blob.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        guest: GuestOptions,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Start QEMU paused with its gdbstub and debug the kernel in
    /// gdb-multiarch; the serial console is on a TCP port
    /// (`cargo xtask serial`).
    Gdb {
        /// Run this gdb command file non-interactively, then stop QEMU.
        #[arg(long, value_name = "FILE")]
        batch: Option<PathBuf>,
        /// TCP port of QEMU's gdbstub.
        #[arg(long, value_name = "PORT", default_value_t = inspect::DEFAULT_GDB_PORT)]
        gdb_port: u16,
        /// TCP port of the guest's serial console.
        #[arg(long, value_name = "PORT", default_value_t = inspect::DEFAULT_SERIAL_PORT)]
        serial_port: u16,
        #[command(flatten)]
        guest: GuestOptions,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Check that every code excerpt of docs/*.md and README.md equals
    /// the source region it quotes (`tutorial:NAME begin`/`end` markers);
    /// with --fix, copy each region into its page first.
    Excerpts {
        /// Rewrite the pages' excerpts from the sources.
        #[arg(long)]
        fix: bool,
    },
    /// Connect this terminal to the serial console of `cargo xtask gdb`
    /// (quit with Ctrl-]).
    Serial {
        #[arg(long, value_name = "PORT", default_value_t = inspect::DEFAULT_SERIAL_PORT)]
        port: u16,
    },
    /// Run the tests: all of them (the default), one STAGE, or the tests of
    /// a stage whose names contain FILTER; then a summary.
    Test {
        /// The stage to run (`--list` names them); default: all.
        stage: Option<String>,
        /// Only the stage's tests whose names contain this text.
        filter: Option<String>,
        /// List the stages and their named tests, and run nothing.
        #[arg(long)]
        list: bool,
        /// Seconds before a hung guest run is killed.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Run the stopwatch demo through the guest shell and check its answers.
    Demo {
        /// Seconds to wait for the shell's first prompt.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Measure the zero-exit read against the trapping one, interrupt
    /// latency, accuracy, start-up and kernel size (target/bench.json).
    Bench {
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Check that every MMIO access of the guest tests, the demo and the
    /// bench is one KVM could emulate (a QEMU plugin classifies each
    /// instruction that touches an I/O region), and that a planted one is
    /// caught.
    KvmCheck {
        /// Seconds before a hung guest run is killed.
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        timeout: u64,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Fuzz at length: `serial` sends bursts of hostile bytes to the guest
    /// shell, each followed by a command whose answer must come back right
    /// (`cargo xtask test` runs 2,000 bursts of a fixed seed); `device`
    /// runs random guest accesses, clock steps, resets and migrations on
    /// the real device over qtest and on its model, which must agree
    /// (`cargo xtask test` runs 100,000 operations of a fixed seed).
    Fuzz {
        /// What to fuzz.
        target: FuzzTarget,
        /// Seed (decimal or 0x hex); default: a new one, printed.
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Bursts to send (serial; default 20,000).
        #[arg(long)]
        bursts: Option<u64>,
        /// Operations to run (device; default 1,000,000).
        #[arg(long)]
        ops: Option<u64>,
        /// Replay the operations in FILE, as a failure writes them (device).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "ops"])]
        replay: Option<std::path::PathBuf>,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Check formatting and run clippy (warnings are errors) on every crate,
    /// the device glue under QEMU's own lint set.
    Lint {
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Run QEMU's own tests on the patched tree (not part of `test`: their
    /// binaries take minutes to build): `meson test --suite qtest-aarch64`,
    /// then the reproducer of the plugin fix with QEMU's mem test plugin.
    QemuTests {
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Regenerate patches/*.patch from the commits in the cached QEMU tree.
    UpdatePatches {
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Delete the cache (downloads, QEMU builds) and target/vm/.
    Clean {
        /// Only delete QEMU build directories of other cache keys.
        #[arg(long)]
        old: bool,
    },
    /// Print the cache directory.
    CacheDir,
}

/// What `cargo xtask fuzz` fuzzes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FuzzTarget {
    /// The guest shell's serial input.
    Serial,
    /// The device against its model, over qtest.
    Device,
}

impl FuzzTarget {
    fn name(self) -> &'static str {
        match self {
            FuzzTarget::Serial => "serial",
            FuzzTarget::Device => "device",
        }
    }
}

/// A seed in decimal or `0x` hex.
fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.map_err(|_| format!("'{text}' is not a seed: give a number, decimal or 0x hex"))
}

/// What to boot and how, shared by the commands that boot a guest
/// (`qemu`, `dtb`, `gdb`).
#[derive(Debug, Clone, clap::Args)]
struct GuestOptions {
    /// Kernel command line (QEMU's -append; the guest finds it in the
    /// device tree's /chosen/bootargs).
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    #[command(flatten)]
    machine: MachineOptions,
    /// Boot this kernel (ELF or arm64 Image) instead of the project's.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Further QEMU arguments, after `--`.
    #[arg(last = true, value_name = "QEMU_ARGS")]
    extra: Vec<String>,
}

impl GuestOptions {
    /// The machine to start. `-kernel` gets the given file (checked
    /// before anything is built or started), else the project's kernel as
    /// ELF or, with `image`, as flat Image.
    fn vm_config(self, image: bool) -> Result<VmConfig> {
        let kernel = match &self.kernel {
            Some(path) => {
                let kind = run::check_kernel_file(path)?;
                eprintln!("--kernel {}: {kind}", path.display());
                run::Kernel::Other(path.display().to_string())
            }
            None if image => run::Kernel::Image,
            None => run::Kernel::Elf,
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
fn build_for(session: &Session, config: &VmConfig) -> Result<()> {
    let own_kernel = !matches!(config.kernel, run::Kernel::Other(_));
    session.build_all(own_kernel, &mut Vec::new())
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("\nerror: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Build { no_kernel, options } => {
            let started = Instant::now();
            let session = Session::new(&options)?;
            let mut summary = Vec::new();
            let result = session.build_all(!no_kernel, &mut summary);
            util::print_summary("Build summary", &summary);
            result?;
            eprintln!(
                "Built in {}: {}{}",
                util::format_duration(started.elapsed()),
                session.repo.relative(&session.repo.qemu_binary()).display(),
                if no_kernel {
                    String::new()
                } else {
                    format!(
                        ", {}",
                        session
                            .repo
                            .relative(&session.repo.kernel_binary())
                            .display()
                    )
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Qemu {
            guest,
            image,
            trace,
            options,
        } => {
            let mut config = guest.vm_config(image)?;
            let trace = trace.iter().flat_map(|p| ["-trace".to_string(), p.clone()]);
            config.extra.splice(0..0, trace);
            let session = Session::new(&options)?;
            build_for(&session, &config)?;
            eprintln!("\n{}", config.command_line());
            eprintln!("(quit QEMU with Ctrl-A X)\n");
            let status = config
                .command(&session.repo)
                .status()
                .context("could not start QEMU")?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        Cmd::Dtb {
            output,
            guest,
            options,
        } => {
            if let Some(path) = &output {
                inspect::DtbFormat::of_path(path)?;
            }
            let config = guest.vm_config(false)?;
            let session = Session::new(&options)?;
            build_for(&session, &config)?;
            inspect::dtb(&session.repo, &config, output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gdb {
            batch,
            gdb_port,
            serial_port,
            guest,
            options,
        } => {
            if let Some(file) = &batch {
                if !file.is_file() {
                    anyhow::bail!(
                        "--batch {}: no such gdb command file (one command per line)",
                        file.display()
                    );
                }
            }
            let config = guest.vm_config(false)?;
            let session = Session::new(&options)?;
            build_for(&session, &config)?;
            let status = inspect::gdb(
                &session.repo,
                &config,
                batch.as_deref(),
                gdb_port,
                serial_port,
            )?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        Cmd::Serial { port } => {
            inspect::serial(port)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Excerpts { fix } => {
            let root = repo::Repo::locate().root;
            if fix {
                doc_excerpts::fix(&root)?;
            } else {
                doc_excerpts::check(&root)?;
            }
            println!("every documentation excerpt matches its source");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test {
            stage,
            filter,
            list,
            timeout,
            options,
        } => {
            if list {
                test_suite::print_list();
                return Ok(ExitCode::SUCCESS);
            }
            let selection = test_suite::Selection::new(stage.as_deref(), filter.as_deref())?;
            let session = Session::new(&options)?;
            let passed = test_suite::run(&session, &selection, Duration::from_secs(timeout));
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Demo { timeout, options } => {
            let session = Session::new(&options)?;
            session.build_all(true, &mut Vec::new())?;
            eprintln!("\n==> Demo");
            demo::Demo::run(
                &session.repo,
                &VmConfig::default(),
                Duration::from_secs(timeout),
            )?;
            eprintln!("demo: all checks passed");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { options } => {
            bench::run(&Session::new(&options)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::KvmCheck { timeout, options } => {
            let session = Session::new(&options)?;
            session.build_all(true, &mut Vec::new())?;
            eprintln!("\n==> kvm-check");
            let summary = kvm_check::run(&session.repo, Duration::from_secs(timeout))?;
            eprintln!("kvm-check: {summary}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fuzz {
            target,
            seed,
            bursts,
            ops,
            replay,
            options,
        } => {
            let wrong = match target {
                FuzzTarget::Serial if ops.is_some() => Some("--ops"),
                FuzzTarget::Serial if replay.is_some() => Some("--replay"),
                FuzzTarget::Device if bursts.is_some() => Some("--bursts"),
                _ => None,
            };
            if let Some(option) = wrong {
                anyhow::bail!(
                    "{option} does not apply to `fuzz {}`: --bursts is for serial, \
                     --ops and --replay for device",
                    target.name()
                );
            }
            let session = Session::new(&options)?;
            session.build_all(matches!(target, FuzzTarget::Serial), &mut Vec::new())?;
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |t| t.as_nanos() as u64)
            });
            let result = match target {
                FuzzTarget::Serial => serial_fuzz::run(
                    &session.repo,
                    seed,
                    bursts.unwrap_or(20_000),
                    Duration::from_secs(60),
                )?,
                FuzzTarget::Device => device_fuzz::run(
                    &session.repo,
                    seed,
                    ops.unwrap_or(1_000_000),
                    replay.as_deref(),
                )?,
            };
            eprintln!("fuzz {}: {result}", target.name());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint { options } => {
            lint::run_all(&Session::new(&options)?)?;
            eprintln!("lint: clean");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::QemuTests { options } => {
            qemu_tests::run(&Session::new(&options)?)?;
            eprintln!("QEMU's qtests and the plugin fix's reproducer: passed");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::UpdatePatches { options } => {
            let session = Session::new(&options)?;
            patches::update(&session.repo, &session.current_qemu_dirs()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean { old: true } => {
            // Which directory is current depends on every build input.
            clean_old(&Session::new(&BuildOptions::default())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean { old: false } => {
            clean(&cache::Cache::locate()?, &repo::Repo::locate())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CacheDir => {
            println!("{}", cache::Cache::locate()?.root.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Deletes what this tool created in the cache (never the cache root's
/// other contents, in case it points somewhere shared) and `target/vm/`.
fn clean(cache: &cache::Cache, repo: &repo::Repo) -> Result<()> {
    for dir in [
        cache.qemu_builds(),
        cache.downloads(),
        cache.apt(),
        cache.tools(),
        repo.vm_dir(),
    ] {
        if dir.exists() {
            eprintln!("removing {}", dir.display());
            util::remove_dir_all_if_exists(&dir)?;
        }
    }
    // Gone if it held nothing else.
    let _ = std::fs::remove_dir(&cache.root);
    Ok(())
}

/// Deletes the QEMU directories of other build inputs than the current.
fn clean_old(session: &Session) -> Result<()> {
    let current = session.current_qemu_dirs()?;
    for dir in cache::other_qemu_dirs(&session.cache, &current.root) {
        eprintln!("removing {}", dir.display());
        util::remove_dir_all_if_exists(&dir)?;
        let _ = std::fs::remove_file(cache::lock_path_of(&dir));
    }
    Ok(())
}
