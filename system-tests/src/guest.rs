// SPDX-License-Identifier: GPL-2.0-or-later
//! The kernel run non-interactively: the in-guest test suite on each
//! machine (`-append test`), the deliberate faults (`fault`, `overflow`),
//! the shipped kernel's checks and every start-up failure QEMU can produce.

use anyhow::{bail, ensure, Context, Result};
use std::time::Duration;

use crate::repo::Repo;
use crate::serial::{SerialConsole, PROMPT};
use crate::vm::{Kernel, VmConfig};
use stopwatch_shell::protocol::{exit_status, TestSummary};

/// Boots the guest with `-append test`, which must exit with status 0 and
/// report `N passed, 0 failed` with N > 0. `Ok` holds a one-line result,
/// `Err` why it failed.
pub fn run_guest_tests(repo: &Repo, config: &VmConfig, timeout: Duration) -> Result<String> {
    eprintln!("    {}", config.command_line(repo));
    let mut console = SerialConsole::spawn(repo, config, Some(format!("    [{config}] ")))?
        .named(&format!("guest tests {config}"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung(
            "no semihosting exit (the guest tests must end with one)",
            timeout,
        ));
    };
    let transcript = console.transcript();
    let Some(TestSummary { passed, failed, .. }) = TestSummary::find_last(&transcript) else {
        bail!("{config}: QEMU exited ({status}) without an `N passed, M failed` line");
    };
    let entered = format!("entered at EL{}", config.expected_entry_el());
    if !transcript.contains(&entered) {
        bail!("{config}: the banner does not say {entered:?}");
    }
    let exit_ok = status.code() == Some(exit_status::TESTS_PASSED);
    let summary = format!("{passed} passed, {failed} failed, {status}");
    if exit_ok && failed == 0 && passed > 0 {
        Ok(summary)
    } else {
        bail!("{config}: {summary}")
    }
}

/// Boots `-append fault`, in which the kernel loads from an unmapped
/// address on purpose: it must report the exception with its syndrome,
/// fault address and return address, and end the run with its status
/// (never hang).
pub fn run_fault_report(repo: &Repo, timeout: Duration) -> Result<String> {
    run_fatal_mode(
        repo,
        "fault",
        &[
            "data abort",
            "ESR_EL1=0x",
            "FAR_EL1=0x0000007fdead0000",
            "ELR_EL1=0x",
        ],
        timeout,
    )?;
    Ok(format!(
        "ESR/FAR/ELR reported, exit status {}",
        exit_status::FATAL
    ))
}

/// Boots `-append overflow`, in which the kernel recurses without end: the
/// stack must run into its unmapped guard page, and the fault be reported
/// as a stack overflow with its status (never silent corruption, never a
/// hang).
pub fn run_stack_overflow(repo: &Repo, timeout: Duration) -> Result<String> {
    run_fatal_mode(
        repo,
        "overflow",
        &[
            "data abort",
            "FAR_EL1=0x",
            "stack overflow: the kernel stack ran into its guard page",
        ],
        timeout,
    )?;
    Ok(format!(
        "reported as a stack overflow in the guard page, exit status {}",
        exit_status::FATAL
    ))
}

/// Boots the test kernel with `-append MODE`, which must end the run with
/// [`exit_status::FATAL`] after printing every one of `needles`.
fn run_fatal_mode(repo: &Repo, mode: &str, needles: &[&str], timeout: Duration) -> Result<()> {
    let config = VmConfig {
        append: Some(mode.to_string()),
        tests: true,
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line(repo));
    let mut console = SerialConsole::spawn(repo, &config, Some(format!("    [{mode}] ")))?
        .named(&format!("guest report of `-append {mode}`"));
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung(&format!("no exit in `-append {mode}`"), timeout));
    };
    let transcript = console.transcript();
    for needle in needles {
        if !transcript.contains(needle) {
            bail!("the report of `-append {mode}` lacks {needle:?}:\n{transcript}");
        }
    }
    if status.code() != Some(exit_status::FATAL) {
        bail!(
            "`-append {mode}` ended with {status}, not exit status {}",
            exit_status::FATAL
        );
    }
    Ok(())
}

/// The shipped kernel (no in-guest tests), as ELF and as Image: each boots
/// to the shell's prompt; asked for `-append test`, it says which kernel
/// has them and exits with its status.
pub fn run_shipped_kernel_checks(repo: &Repo, timeout: Duration) -> Result<String> {
    for kernel in [Kernel::Elf, Kernel::Image] {
        let config = VmConfig {
            kernel: kernel.clone(),
            ..VmConfig::default()
        };
        eprintln!("    {}", config.command_line(repo));
        let mut console = SerialConsole::spawn(repo, &config, None)?
            .named(&format!("shipped kernel ({kernel:?})"));
        console
            .expect(PROMPT, timeout)
            .with_context(|| format!("{kernel:?}: no shell prompt"))?;
    }
    let config = VmConfig {
        append: Some("test".to_string()),
        ..VmConfig::default()
    };
    eprintln!("    {}", config.command_line(repo));
    let mut console =
        SerialConsole::spawn(repo, &config, None)?.named("shipped kernel, `-append test`");
    let Some(status) = console.wait_exit(timeout)? else {
        return Err(console.hung("no exit", timeout));
    };
    ensure!(
        status.code() == Some(exit_status::NO_TESTS),
        "the shipped kernel ended `-append test` with {status}, not {}",
        exit_status::NO_TESTS
    );
    ensure!(
        console
            .transcript()
            .contains("boot target/vm/guest-kernel-test"),
        "the shipped kernel did not say which kernel has the tests"
    );
    Ok(format!(
        "ELF and Image reach the prompt; `test` refused with status {}",
        exit_status::NO_TESTS
    ))
}

/// Every start-up failure of [`startup_failures`]: each must end with its
/// status; `Ok` holds a one-line result.
pub fn run_startup_failures(repo: &Repo, timeout: Duration) -> Result<String> {
    let failures = startup_failures(repo)?;
    let mut failed = Vec::new();
    for failure in &failures {
        match run_startup_failure(repo, failure, timeout) {
            Ok(line) => eprintln!("    ok: {line}"),
            Err(error) => {
                eprintln!("    FAILED: {error:#}");
                failed.push(failure.name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} failed: {}",
            failed.len(),
            failures.len(),
            failed.join("; ")
        );
    }
    let statuses: Vec<String> = failures.iter().map(|f| f.status.to_string()).collect();
    Ok(format!(
        "{} cases, statuses {}",
        failures.len(),
        statuses.join(", ")
    ))
}

/// A way the kernel cannot start, produced for real, and how the run must
/// end: with the kernel's exit status for it (`power.rs`), never a hang.
pub struct StartupFailure {
    pub name: &'static str,
    pub config: VmConfig,
    /// The exit status; 0 where semihosting is off and PSCI powers off.
    pub status: i32,
    /// What the kernel must print first (through semihosting: there is no
    /// console yet), if it can print at all.
    pub message: Option<&'static str>,
}

/// Builds the start-up failure cases QEMU can produce: device trees given
/// with `-dtb`, made from the one QEMU generates (`dumpdtb`) with a string
/// spoiled in place, and an Image whose header sends it 2 MiB above where
/// it is linked.
///
/// No device tree at all (12) comes from QEMU itself: it doubles a `-dtb`
/// file's size for its edits, and a tree that then does not fit below the
/// ELF (QEMU's own 1 MiB dump) is silently not loaded.
///
/// Not producible with this QEMU build (it has no generic `loader` device
/// to overwrite the tree in guest RAM, and it always writes a valid tree
/// and its own memory node): an invalid tree (13), one without memory
/// (14); nor entry at EL0 (10).
pub fn startup_failures(repo: &Repo) -> Result<Vec<StartupFailure>> {
    let base = VmConfig {
        devices: 0,
        ..VmConfig::default()
    };
    let padded_dtb = crate::inspect::dump_dtb(repo, &base)?;
    // QEMU's own dump, padded to 1 MiB: too big to be loaded.
    let oversized = repo.vm_dir().join("test-virt.dtb");
    std::fs::write(&oversized, &padded_dtb)
        .with_context(|| format!("writing {}", oversized.display()))?;
    let dtb = compact_dtb(&padded_dtb)?;
    // `-dtb` with every copy of `text` in QEMU's tree made to start with
    // 'x' (same length: the tree stays well-formed).
    let spoiled = |text: &str, file: &str| -> Result<VmConfig> {
        let needle = format!("{text}\0");
        let mut spoiled = dtb.clone();
        let offsets: Vec<usize> = dtb
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle.as_bytes())
            .map(|(offset, _)| offset)
            .collect();
        if offsets.is_empty() {
            bail!("QEMU's device tree has no {text:?}");
        }
        for offset in offsets {
            spoiled[offset] = b'x';
        }
        let path = repo.vm_dir().join(file);
        std::fs::write(&path, spoiled).with_context(|| format!("writing {}", path.display()))?;
        Ok(VmConfig {
            extra: vec![
                "-dtb".to_string(),
                repo.relative(&path).display().to_string(),
            ],
            ..base.clone()
        })
    };

    let image = std::fs::read(repo.kernel_image())
        .with_context(|| format!("reading {}", repo.kernel_image().display()))?;
    let mut misplaced = image.clone();
    // text_offset (header bytes 8..16): 4 MiB instead of 2.
    misplaced[8..16].copy_from_slice(&0x40_0000u64.to_le_bytes());
    let misplaced_path = repo.vm_dir().join("test-misplaced.bin");
    std::fs::write(&misplaced_path, misplaced)
        .with_context(|| format!("writing {}", misplaced_path.display()))?;

    // The console's path, in /chosen/stdout-path and /aliases.
    let no_uart = spoiled("/pl011@9000000", "test-no-uart.dtb")?;
    Ok(vec![
        StartupFailure {
            name: "no device tree (QEMU's 1 MiB dump does not fit below the kernel)",
            config: VmConfig {
                extra: vec![
                    "-dtb".to_string(),
                    repo.relative(&oversized).display().to_string(),
                ],
                ..base.clone()
            },
            status: exit_status::NO_DEVICE_TREE,
            message: Some("no device tree at x0"),
        },
        StartupFailure {
            name: "Image loaded 2 MiB above its link address",
            config: VmConfig {
                kernel: Kernel::Other(repo.relative(&misplaced_path).display().to_string()),
                ..base.clone()
            },
            status: exit_status::WRONG_ADDRESS,
            message: None,
        },
        StartupFailure {
            name: "device tree without the console UART",
            config: no_uart.clone(),
            status: exit_status::NO_CONSOLE,
            message: Some("no console UART"),
        },
        StartupFailure {
            name: "device tree without a GIC",
            config: spoiled("arm,cortex-a15-gic", "test-no-gic.dtb")?,
            status: exit_status::NO_GIC,
            message: Some("no GICv2 or GICv3"),
        },
        StartupFailure {
            name: "no console UART and no semihosting: PSCI SYSTEM_OFF",
            config: VmConfig {
                semihosting: false,
                ..no_uart
            },
            status: 0,
            message: None,
        },
    ])
}

/// `dtb` cut to its used size (QEMU's dump is padded to 1 MiB), its
/// `totalsize` header field set to match.
fn compact_dtb(dtb: &[u8]) -> Result<Vec<u8>> {
    let be32 = |at: usize| -> Result<usize> {
        let bytes = dtb
            .get(at..at + 4)
            .context("device tree header truncated")?;
        Ok(u32::from_be_bytes(bytes.try_into().unwrap()) as usize)
    };
    if be32(0)? != 0xd00d_feed {
        bail!("not a flattened device tree");
    }
    // off_dt_struct + size_dt_struct, off_dt_strings + size_dt_strings.
    let used = (be32(8)? + be32(36)?).max(be32(12)? + be32(32)?);
    if used > dtb.len() {
        bail!("device tree blocks past its end");
    }
    let mut compact = dtb[..used].to_vec();
    compact[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    Ok(compact)
}

/// Runs one start-up failure: QEMU must exit (not hang) with its status,
/// after the message.
pub fn run_startup_failure(
    repo: &Repo,
    failure: &StartupFailure,
    timeout: Duration,
) -> Result<String> {
    let config = &failure.config;
    eprintln!("    {}", config.command_line(repo));
    let mut console = SerialConsole::spawn(repo, config, Some("    [start-up] ".to_string()))?
        .named(failure.name);
    let Some(status) = console.wait_exit(timeout)? else {
        let what = format!("no exit with status {}", failure.status);
        return Err(console.hung(&what, timeout));
    };
    if status.code() != Some(failure.status) {
        bail!(
            "{}: QEMU ended with {status}, not exit status {}",
            failure.name,
            failure.status
        );
    }
    if let Some(message) = failure.message {
        if !console.transcript().contains(message) {
            bail!("{}: the kernel did not print {message:?}", failure.name);
        }
    }
    Ok(format!("{}: status {}", failure.name, failure.status))
}
