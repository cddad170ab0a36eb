// SPDX-License-Identifier: GPL-2.0-or-later
//! The end-to-end tests of the project: the patched QEMU (built by `cargo
//! xtask build` into `target/vm/`) booting the guest kernel, driven over
//! its serial console, gdbstub, QMP socket and TCG plugin.
//!
//! Each test is one entry of [`catalogue::all`], run as a named trial by
//! the `system` test binary (`tests/system.rs`, on libtest-mimic):
//!
//! ```text
//! cargo test -p system-tests -- --list          # every trial
//! cargo test -p system-tests -- guest::         # a stage
//! cargo test -p system-tests -- paste           # names containing `paste`
//! cargo test -p system-tests -- --ignored       # the long ones
//! cargo nextest run -p system-tests
//! ```
//!
//! `cargo xtask test` builds QEMU and the kernels first, runs these with
//! the host tests, qtests and lints, and prints one table. The modules
//! other than the tests' own (`vm`, `serial`, `inspect`, `repo`, `elf`,
//! `process`) are what `cargo xtask` shares with them: one QEMU command
//! line, one serial console driver.

pub mod catalogue;
pub mod concurrency_test;
pub mod concurrent_drivers_test;
pub mod debug_tests;
pub mod demo;
pub mod dtb_boot_test;
pub mod elf;
pub mod guest;
pub mod inspect;
pub mod kvm_check;
pub mod line_editing_test;
pub mod paste_test;
pub mod periodic_test;
pub mod process;
pub mod repo;
pub mod report;
pub mod serial;
pub mod serial_fuzz;
pub mod shell_test;
pub mod snapshot_test;
pub mod vm;
