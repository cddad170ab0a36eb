// SPDX-License-Identifier: GPL-2.0-or-later
//! Every system test: its stage, its name and its body. A new test is one
//! entry of [`all`]; a new stage, one line of [`STAGES`] too.

use anyhow::{anyhow, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::demo::Demo;
use crate::repo::Repo;
use crate::report::{self, Entry};
use crate::vm::{Gic, Kernel, VmConfig};
use crate::{
    concurrency_test, concurrent_drivers_test, debug_tests, dtb_boot_test, guest, kvm_check,
    line_editing_test, paste_test, periodic_test, serial_fuzz, shell_test, snapshot_test,
};

/// The stages of the system tests, in the order `cargo xtask test` takes
/// them, and what each covers.
pub const STAGES: &[(&str, &str)] = &[
    (
        "guest",
        "the kernel's in-guest tests on each machine, the fault report",
    ),
    (
        "serial",
        "the shell over the real serial line: pastes, hostile bytes, several \
         stopwatches, a running guest's snapshot",
    ),
    (
        "kvm",
        "every guest MMIO access KVM-emulable, under the TCG plugin",
    ),
    (
        "debug",
        "cargo xtask dtb, gdb, --kernel, the kernel's line tables",
    ),
    ("demo", "the original demo typed into the guest shell"),
];

/// The variable that sets how long a guest may take to boot or to finish
/// (seconds; `cargo xtask test --timeout`).
pub const GUEST_TIMEOUT_ENV: &str = "STOPWATCH_GUEST_TIMEOUT";

/// What a test body gets.
pub struct Context {
    pub repo: Repo,
    /// How long a guest may take before it counts as hung.
    pub guest_timeout: Duration,
}

impl Context {
    /// The repository's QEMU and kernels (or the environment's, see
    /// [`Repo::for_tests`]) and the timeout of [`GUEST_TIMEOUT_ENV`]
    /// (default 60 s).
    pub fn from_env() -> Context {
        let seconds = std::env::var(GUEST_TIMEOUT_ENV)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(60);
        Context {
            repo: Repo::for_tests(),
            guest_timeout: Duration::from_secs(seconds),
        }
    }
}

/// What a test does: `Ok` holds a one-line result, `Err` why it failed.
pub type Body = dyn Fn(&Context) -> Result<String> + Send + Sync;

/// One system test.
pub struct SystemTest {
    pub stage: &'static str,
    /// Its name within the stage.
    pub name: String,
    /// Left out unless asked for (`--ignored`, `--include-ignored`).
    pub ignored: bool,
    /// Takes many seconds: started first when trials run side by side,
    /// so the short ones fill the time beside it.
    pub long: bool,
    pub body: Box<Body>,
}

impl SystemTest {
    fn new(
        stage: &'static str,
        name: impl Into<String>,
        body: impl Fn(&Context) -> Result<String> + Send + Sync + 'static,
    ) -> SystemTest {
        SystemTest {
            stage,
            name: name.into(),
            ignored: false,
            long: false,
            body: Box::new(body),
        }
    }

    fn ignored(self) -> SystemTest {
        SystemTest {
            ignored: true,
            ..self
        }
    }

    fn long(self) -> SystemTest {
        SystemTest { long: true, ..self }
    }

    /// `stage::name`, the trial's name.
    pub fn full_name(&self) -> String {
        format!("{}::{}", self.stage, self.name)
    }

    /// Runs the body (after checking that QEMU and the kernels are
    /// built), appends its line to the report file, and returns its
    /// result; a panic counts as a failure.
    pub fn run(&self, cx: &Context) -> Result<String> {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            cx.repo.ensure_built()?;
            (self.body)(cx)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(anyhow!("panicked: {message}"))
        });
        let entry = Entry {
            name: self.full_name(),
            passed: result.is_ok(),
            duration: started.elapsed(),
            detail: match &result {
                Ok(detail) => detail.clone(),
                Err(error) => format!("{error:#}"),
            },
        };
        if let Err(error) = report::append(&entry) {
            eprintln!("    could not write the test report: {error:#}");
        }
        result
    }
}

/// `text` as one word of a trial name: lowercase, every run of other
/// characters than letters and digits made one `_`.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.trim_end_matches('_').to_string()
}

/// The machines the guest test suite runs on; every one must pass. The
/// in-guest tests measure stopwatch and counter time, never the host's:
/// they run in virtual time, in a fraction of a second instead of 9 s of
/// waiting (`-icount` runs the CPUs one after the other), except on one
/// four-CPU machine, which keeps multi-threaded TCG (the CPUs truly at
/// once) and one run of the suite in real time.
fn guest_test_configs() -> Vec<VmConfig> {
    let with = |cpu: &str, gic, el2, devices| VmConfig {
        cpu: cpu.to_string(),
        gic: Some(gic),
        el2,
        devices,
        append: Some("test".to_string()),
        tests: true,
        virtual_time: true,
        ..VmConfig::default()
    };
    // Four CPUs where the CPUs are started differently: PSCI by HVC (EL1
    // entry) and by SMC (EL2 entry), the release from the EL3 hold (the
    // ELF at secure=on), PSCI for the Image; on both GICs. The EL2 GICv2
    // machine and the one without a device keep one CPU.
    let smp4 = |config: VmConfig| VmConfig {
        extra: vec!["-smp".to_string(), "4".to_string()],
        ..config
    };
    vec![
        smp4(with("cortex-a53", Gic::V2, false, 1)),
        smp4(with("max", Gic::V3, false, 1)),
        with("cortex-a53", Gic::V2, true, 1),
        smp4(VmConfig {
            virtual_time: false,
            ..with("max", Gic::V3, true, 1)
        }),
        // Without the device the guest runs what does not need it (the
        // shell must answer "no stopwatch device") and skips the rest.
        with("cortex-a53", Gic::V2, false, 0),
        // secure=on: the ELF starts at Secure EL3 and drops to Non-secure
        // EL1 (no EL2), or to EL2 with virtualization=on; every CPU starts
        // at once, the others held until the boot CPU releases them.
        smp4(VmConfig {
            secure: true,
            ..with("cortex-a53", Gic::V2, false, 1)
        }),
        smp4(VmConfig {
            secure: true,
            ..with("max", Gic::V3, true, 1)
        }),
        // The flat Image, booted as Linux: the device tree comes in x0.
        smp4(VmConfig {
            kernel: Kernel::Image,
            ..with("cortex-a53", Gic::V2, false, 1)
        }),
    ]
}

/// Every system test, in stage order.
pub fn all() -> Vec<SystemTest> {
    let mut tests = Vec::new();
    for config in guest_test_configs() {
        let real_time = !config.virtual_time;
        let test = SystemTest::new(
            "guest",
            format!("in_guest_tests::{}", slug(&config.to_string())),
            move |cx| guest::run_guest_tests(&cx.repo, &config, cx.guest_timeout),
        );
        tests.push(if real_time { test.long() } else { test });
    }
    tests.push(SystemTest::new(
        "guest",
        "shipped_kernel_boots_elf_and_image_without_tests",
        |cx| guest::run_shipped_kernel_checks(&cx.repo, cx.guest_timeout),
    ));
    // The time page read by every other CPU while CPU 0 drives the device:
    // multi-threaded TCG (no -icount), so reader and writer truly overlap.
    let machines = [("max", Gic::V3), ("cortex-a53", Gic::V2)];
    for (cpus, (cpu, gic)) in ["2", "4"]
        .into_iter()
        .flat_map(|n| machines.map(|m| (n, m)))
    {
        let config = VmConfig {
            cpu: cpu.to_string(),
            gic: Some(gic),
            extra: vec!["-smp".to_string(), cpus.to_string()],
            ..VmConfig::default()
        };
        let name = format!("{}::{}", concurrency_test::NAME, slug(&config.to_string()));
        tests.push(SystemTest::new("guest", name, move |cx| {
            concurrency_test::run(&cx.repo, &config, cx.guest_timeout)
        }));
    }
    // Every CPU driving a stopwatch of its own, at once: each device as
    // the model says its own commands leave it.
    for (cpus, (cpu, gic)) in ["2", "4"]
        .into_iter()
        .flat_map(|n| machines.map(|m| (n, m)))
    {
        let config = VmConfig {
            cpu: cpu.to_string(),
            gic: Some(gic),
            devices: cpus.parse().expect("a number"),
            extra: vec!["-smp".to_string(), cpus.to_string()],
            ..VmConfig::default()
        };
        let name = format!(
            "{}::{}",
            concurrent_drivers_test::NAME,
            slug(&config.to_string())
        );
        tests.push(SystemTest::new("guest", name, move |cx| {
            concurrent_drivers_test::run(&cx.repo, &config, cx.guest_timeout)
        }));
    }
    // The same checks must fail on each planted reader bug (test kernel
    // only: `reader=` of the boot argument).
    for (reader, what, (cpu, gic)) in [
        (
            concurrency_test::Reader::NoRecheck,
            "planted_reader_without_recheck_is_caught",
            ("max", Gic::V3),
        ),
        (
            concurrency_test::Reader::CounterOutside,
            "planted_counter_read_outside_section_is_caught",
            ("cortex-a53", Gic::V2),
        ),
    ] {
        let config = VmConfig {
            cpu: cpu.to_string(),
            gic: Some(gic),
            extra: vec!["-smp".to_string(), "2".to_string()],
            ..VmConfig::default()
        };
        let name = format!("concurrency::{what}::{}", slug(&config.to_string()));
        tests.push(SystemTest::new("guest", name, move |cx| {
            concurrency_test::run_planted(&cx.repo, &config, reader, cx.guest_timeout)
        }));
    }
    tests.push(SystemTest::new("guest", "fatal_exception_report", |cx| {
        guest::run_fault_report(&cx.repo, cx.guest_timeout)
    }));
    tests.push(SystemTest::new(
        "guest",
        "stack_overflow_caught_by_the_guard_page",
        |cx| guest::run_stack_overflow(&cx.repo, cx.guest_timeout),
    ));
    tests.push(SystemTest::new(
        "guest",
        "startup_failures_end_with_their_status",
        |cx| guest::run_startup_failures(&cx.repo, cx.guest_timeout),
    ));
    tests.push(SystemTest::new(
        "guest",
        "corrupted_device_trees_end_with_status_13_or_a_prompt",
        |cx| dtb_boot_test::run(&cx.repo, cx.guest_timeout),
    ));

    for gic in [Gic::V2, Gic::V3] {
        let config = VmConfig {
            gic: Some(gic),
            ..VmConfig::default()
        };
        let name = format!(
            "paste::{}_commands_in_one_write::{}",
            paste_test::PASTED_COMMANDS,
            slug(&config.to_string())
        );
        tests.push(SystemTest::new("serial", name, move |cx| {
            paste_test::run_paste(&cx.repo, &config, cx.guest_timeout)
        }));
    }
    tests.push(SystemTest::new(
        "serial",
        "paste::the_demo_pasted_equals_the_demo_typed",
        |cx| paste_test::run_demo_paste(&cx.repo, &VmConfig::default(), cx.guest_timeout),
    ));
    for session in 0..serial_fuzz::TEST_SESSIONS {
        let name = format!(
            "fuzz::hostile_bytes::{}_bursts_of_seed_{:#x}",
            serial_fuzz::TEST_BURSTS_PER_SESSION,
            serial_fuzz::test_seed(session)
        );
        tests.push(
            SystemTest::new("serial", name, move |cx| {
                serial_fuzz::run(
                    &cx.repo,
                    serial_fuzz::test_seed(session),
                    serial_fuzz::TEST_BURSTS_PER_SESSION,
                    cx.guest_timeout,
                )
            })
            .long(),
        );
    }
    tests.push(
        SystemTest::new(
            "serial",
            format!(
                "fuzz::hostile_bytes::{}_bursts_at_length",
                serial_fuzz::LONG_BURSTS
            ),
            |cx| {
                serial_fuzz::run(
                    &cx.repo,
                    serial_fuzz::TEST_SEED,
                    serial_fuzz::LONG_BURSTS,
                    cx.guest_timeout,
                )
            },
        )
        .ignored(),
    );
    tests.push(SystemTest::new(
        "serial",
        "shell::three_stopwatches_notices_watch_laps",
        |cx| shell_test::run(&cx.repo, cx.guest_timeout),
    ));
    tests.push(SystemTest::new("serial", periodic_test::NAME, |cx| {
        periodic_test::run(&cx.repo, cx.guest_timeout)
    }));
    tests.push(SystemTest::new(
        "serial",
        "snapshot::of_a_running_guest",
        |cx| snapshot_test::run(&cx.repo, cx.guest_timeout),
    ));
    tests.push(SystemTest::new(
        "serial",
        "snapshot::with_the_interrupt_raised_not_acknowledged",
        |cx| snapshot_test::run_with_interrupt_pending(&cx.repo, cx.guest_timeout),
    ));
    // The editing keys include Ctrl-A, which QEMU's multiplexed console
    // would take for itself.
    let editing = VmConfig {
        raw_serial: true,
        ..VmConfig::default()
    };
    let history_config = editing.clone();
    tests.push(SystemTest::new(
        "serial",
        "line_editing::history_recalls_and_runs",
        move |cx| line_editing_test::run_history(&cx.repo, &history_config, cx.guest_timeout),
    ));
    tests.push(SystemTest::new(
        "serial",
        "line_editing::an_edited_line_runs_as_edited",
        move |cx| line_editing_test::run_editing(&cx.repo, &editing, cx.guest_timeout),
    ));

    tests.push(
        SystemTest::new("kvm", "every_mmio_access_kvm_emulable", |cx| {
            kvm_check::run(&cx.repo, cx.guest_timeout * 2)
        })
        .long(),
    );

    tests.push(SystemTest::new(
        "debug",
        "dtb_shows_the_stopwatch_nodes",
        |cx| debug_tests::dtb_has_the_stopwatch_nodes(&cx.repo),
    ));
    tests.push(SystemTest::new(
        "debug",
        "kernel_line_tables_outside_the_loadable_image",
        |cx| debug_tests::kernel_has_line_tables(&cx.repo.kernel_binary()),
    ));
    tests.push(SystemTest::new(
        "debug",
        "gdb_breaks_in_the_stopwatch_interrupt_handler",
        |cx| debug_tests::gdb_breaks_in_the_handler(&cx.repo, Duration::from_secs(60)),
    ));
    tests.push(SystemTest::new(
        "debug",
        "qemu_another_kernel_two_devices",
        |cx| debug_tests::another_kernel_with_two_devices(&cx.repo, cx.guest_timeout),
    ));
    tests.push(SystemTest::new(
        "debug",
        "boot_floor_kernel_prints_the_prompt_only",
        |cx| debug_tests::boot_floor_kernel_prints_the_prompt(&cx.repo, cx.guest_timeout),
    ));

    tests.push(
        SystemTest::new("demo", "original_demo", |cx| {
            Demo::run(&cx.repo, &VmConfig::default(), cx.guest_timeout)?;
            Ok("all checks passed".into())
        })
        .long(),
    );
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_belongs_to_a_listed_stage_in_order_and_has_a_unique_plain_name() {
        let tests = all();
        let mut seen = std::collections::HashSet::new();
        let mut last_stage = 0;
        for test in &tests {
            let name = test.full_name();
            let stage = STAGES.iter().position(|(stage, _)| *stage == test.stage);
            let stage = stage.unwrap_or_else(|| panic!("{name}: no such stage"));
            assert!(stage >= last_stage, "{name} is out of stage order");
            last_stage = stage;
            assert!(seen.insert(name.clone()), "{name} twice");
            // Names a shell and nextest take as they are.
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:".contains(c)),
                "{name}"
            );
        }
        for (stage, _) in STAGES {
            assert!(
                tests.iter().any(|t| t.stage == *stage),
                "empty stage {stage}"
            );
        }
    }

    #[test]
    fn names_of_machines() {
        assert_eq!(slug("max+gicv3+el2 -smp 2"), "max_gicv3_el2_smp_2");
        assert_eq!(slug("cortex-a53+gicv2 (Image)"), "cortex_a53_gicv2_image");
    }
}
