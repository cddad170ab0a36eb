// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask`: builds the patched QEMU with the stopwatch device and
//! the guest kernel, boots them, and runs every test of the project.
//!
//! Run `cargo xtask --help` for the commands. The code, by role:
//! - [`build`]: the build pipeline (prerequisites, QEMU's source and
//!   build, the cache, the kernel); `build::debian` is the adapter for
//!   Debian's source package;
//! - [`commands`]: what people run (`qemu`, `gdb`, `bench`, `fuzz`,
//!   `test`, `clean`), each a module;
//! - [`lint`]: the lints of `cargo xtask test lint`;
//! - the system tests and what they share with the commands (the QEMU
//!   command line, the serial console) are the `system-tests` crate.

mod build;
mod commands;
mod lint;
mod util;

// Shared with the system tests: the repository's paths (also as
// `crate::repo` for the build modules), the guest's QEMU command line,
// the device tree dump, the serial fuzz.
use system_tests::{inspect as guest_inspect, repo, serial_fuzz};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use build::pipeline::{BuildOptions, Session};
use build::{cache, patches};
use commands::run::{build_for, GuestOptions};
use commands::{bench, clean, fuzz, fuzz_dtb, inspect, qemu_tests, tarball_check, test};
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
    /// Check the prerequisites (Rust toolchain, system packages, Python,
    /// bindgen) and install what is missing where allowed (as root or with
    /// password-less sudo), else print the command to run; then stop. The
    /// first step of `build`.
    Prereqs {
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
    /// Run the stopwatch demo through the guest shell and check its answers
    /// (the same as `cargo xtask test demo`).
    Demo {
        /// Seconds before a hung guest run is killed.
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
    /// caught (the same as `cargo xtask test kvm`).
    KvmCheck {
        /// Seconds before a hung guest run is killed (twice that for each
        /// run under the plugin).
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Fuzz at length: `serial` sends bursts of hostile bytes to the guest
    /// shell, each followed by a command whose answer must come back right
    /// (`cargo xtask test` runs 2,000 bursts: 4 guests of 500, fixed
    /// seeds); `device` runs random guest accesses, clock steps, resets and migrations on
    /// the real device over qtest and on its model, which must agree
    /// (`cargo xtask test` runs 100,000 operations of a fixed seed); `dtb`
    /// decodes corrupted device trees, which must never panic (`cargo
    /// xtask test` runs 100,000 of a fixed seed).
    Fuzz {
        /// What to fuzz.
        target: FuzzTarget,
        /// Seed (decimal or 0x hex); default: a new one, printed.
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Bursts to send (serial; default 20,000).
        #[arg(long)]
        bursts: Option<u64>,
        /// Operations to run (device; default 1,000,000), or corrupted
        /// trees to decode (dtb; default 1,000,000).
        #[arg(long)]
        ops: Option<u64>,
        /// Replay the operations in FILE, as a failure writes them (device).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "ops"])]
        replay: Option<std::path::PathBuf>,
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Check formatting and run clippy (warnings are errors) on every crate,
    /// the device glue under QEMU's own lint set (the same as `cargo xtask
    /// test lint`).
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
    /// Regenerate patches/*.patch from the commits in this checkout's cached
    /// QEMU tree (`cargo xtask cache-dir --checkout`, then src/).
    UpdatePatches {
        #[command(flatten)]
        options: BuildOptions,
    },
    /// Assemble a qemu-10.2.2.tar.xz laid out as QEMU's scripts/make-release
    /// lays out a release, from Debian's source package and what its repack
    /// strips (for testing the upstream-tarball path; see
    /// docs/building.md).
    ReleaseTarball {
        /// Where to write it [default: target/release-tarball/qemu-10.2.2.tar.xz].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// The slow end-to-end check of a host without a Debian archive (not
    /// part of `test`): assemble the release-shaped tarball, serve it on
    /// 127.0.0.1, and run `cargo xtask test` in a fresh clone of HEAD with
    /// apt's archive hidden, the download pointed at the server and a
    /// cache of its own (docs/testing.md).
    TarballCheck {
        /// Serve this tarball instead of assembling one.
        #[arg(long, value_name = "PATH")]
        tarball: Option<PathBuf>,
        /// Run `build` and `test guest` in the clone, not the whole `test`.
        #[arg(long)]
        quick: bool,
        /// Pass the tarball as a file (STOPWATCH_QEMU_TARBALL) instead of
        /// serving it.
        #[arg(long)]
        as_file: bool,
        /// Keep the scratch directory (clone, cache, log) after success.
        #[arg(long)]
        keep: bool,
    },
    /// Delete the cache (downloads, QEMU builds of every checkout) and
    /// target/vm/.
    Clean {
        /// Only delete the QEMU directories of other cache keys and of
        /// checkouts that no longer exist.
        #[arg(long)]
        old: bool,
    },
    /// Print the cache directory.
    CacheDir {
        /// Print this checkout's QEMU directory instead (its source tree
        /// `src/` and build directory `build/`).
        #[arg(long)]
        checkout: bool,
    },
}

/// What `cargo xtask fuzz` fuzzes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FuzzTarget {
    /// The guest shell's serial input.
    Serial,
    /// The device against its model, over qtest.
    Device,
    /// The kernel's device-tree discovery against corrupted trees.
    Dtb,
}

impl FuzzTarget {
    fn name(self) -> &'static str {
        match self {
            FuzzTarget::Serial => "serial",
            FuzzTarget::Device => "device",
            FuzzTarget::Dtb => "dtb",
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

fn main() -> ExitCode {
    forget_cargo_run_environment();
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("\nerror: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Removes the variables `cargo run` (the `cargo xtask` alias) sets for
/// this program alone: the package's name, version and manifest path. The
/// cargo commands xtask runs would inherit them, and a build script that
/// watches one (ring's watches `CARGO_MANIFEST_DIR`) would then be rebuilt
/// at every switch between `cargo xtask ...` and a plain `cargo test`.
fn forget_cargo_run_environment() {
    let names: Vec<_> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&name.as_str())
        })
        .collect();
    for name in names {
        // Edition 2021: safe to call; nothing else runs yet (no threads).
        std::env::remove_var(name);
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
        Cmd::Prereqs { options } => {
            let session = Session::new(&options)?;
            let mut summary = Vec::new();
            let result = session.prerequisites(&mut summary);
            util::print_summary("Prerequisites", &summary);
            result?;
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
            eprintln!("\n{}", config.command_line(&session.repo));
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
                guest_inspect::DtbFormat::of_path(path)?;
            }
            let config = guest.vm_config(false)?;
            let session = Session::new(&options)?;
            build_for(&session, &config)?;
            guest_inspect::dtb(&session.repo, &config, output.as_deref())?;
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
                lint::doc_excerpts::fix(&root)?;
            } else {
                lint::doc_excerpts::check(&root)?;
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
                test::print_list();
                return Ok(ExitCode::SUCCESS);
            }
            run_tests(stage.as_deref(), filter.as_deref(), timeout, &options)
        }
        Cmd::Demo { timeout, options } => run_tests(Some("demo"), None, timeout, &options),
        Cmd::Bench { options } => {
            bench::run(&Session::new(&options)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::KvmCheck { timeout, options } => run_tests(Some("kvm"), None, timeout, &options),
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
                FuzzTarget::Device | FuzzTarget::Dtb if bursts.is_some() => Some("--bursts"),
                FuzzTarget::Dtb if replay.is_some() => Some("--replay"),
                _ => None,
            };
            if let Some(option) = wrong {
                anyhow::bail!(
                    "{option} does not apply to `fuzz {}`: --bursts is for serial, \
                     --ops for device and dtb, --replay for device",
                    target.name()
                );
            }
            let session = Session::new(&options)?;
            if !matches!(target, FuzzTarget::Dtb) {
                session.build_all(matches!(target, FuzzTarget::Serial), &mut Vec::new())?;
            }
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |t| t.as_nanos() as u64)
            });
            let result = match target {
                FuzzTarget::Serial => serial_fuzz::run(
                    &session.repo,
                    seed,
                    bursts.unwrap_or(serial_fuzz::LONG_BURSTS),
                    Duration::from_secs(60),
                )?,
                FuzzTarget::Device => fuzz::run(
                    &session.repo,
                    seed,
                    ops.unwrap_or(1_000_000),
                    replay.as_deref(),
                )?,
                FuzzTarget::Dtb => fuzz_dtb::run(&session.repo, seed, ops.unwrap_or(1_000_000))?,
            };
            eprintln!("fuzz {}: {result}", target.name());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint { options } => run_tests(Some("lint"), None, 60, &options),
        Cmd::QemuTests { options } => {
            qemu_tests::run(&Session::new(&options)?)?;
            eprintln!("QEMU's qtests and the plugin fix's reproducer: passed");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::UpdatePatches { options } => {
            let session = Session::new(&options)?;
            patches::update(&session.repo, &session.current_checkout_dirs()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ReleaseTarball { out } => {
            let started = Instant::now();
            let repo = repo::Repo::locate();
            let out = out.unwrap_or_else(|| build::release_tarball::default_path(&repo));
            let assembled =
                build::release_tarball::assemble(&repo, &cache::Cache::locate()?, &out)?;
            eprintln!(
                "Assembled in {}. Differences from QEMU's release tarball:",
                util::format_duration(started.elapsed())
            );
            for difference in &assembled.differences {
                eprintln!("  - {difference}");
            }
            eprintln!(
                "Build from it with --qemu-tarball {0} (or {1}={0}).",
                assembled.path.display(),
                build::qemu_source::TARBALL_ENV
            );
            println!(
                "{}  {} ({} bytes)",
                assembled.sha256,
                assembled.path.display(),
                assembled.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TarballCheck {
            tarball,
            quick,
            as_file,
            keep,
        } => {
            let options = tarball_check::Options {
                tarball,
                quick,
                keep,
                delivery: if as_file {
                    tarball_check::Delivery::File
                } else {
                    tarball_check::Delivery::Download
                },
            };
            tarball_check::run(&repo::Repo::locate(), &cache::Cache::locate()?, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean { old: true } => {
            // Which directory is current depends on every build input.
            clean::clean_old(&Session::new(&BuildOptions::default())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean { old: false } => {
            clean::clean(&cache::Cache::locate()?, &repo::Repo::locate())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CacheDir { checkout: false } => {
            println!("{}", cache::Cache::locate()?.root.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CacheDir { checkout: true } => {
            let session = Session::new(&BuildOptions::default())?;
            println!("{}", session.current_checkout_dirs()?.root.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `cargo xtask test [STAGE [FILTER]]`, and the commands that are one of
/// its stages.
fn run_tests(
    stage: Option<&str>,
    filter: Option<&str>,
    timeout: u64,
    options: &BuildOptions,
) -> Result<ExitCode> {
    let selection = test::Selection::new(stage, filter)?;
    let session = Session::new(options)?;
    let passed = test::run(&session, &selection, Duration::from_secs(timeout));
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
