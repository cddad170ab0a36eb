// SPDX-License-Identifier: GPL-2.0-or-later
//! The commands people run, one module each (their options are in
//! `main.rs`, with the command line): booting a guest (`run`, `inspect`:
//! `qemu`, `dtb`, `gdb`, `serial`), `bench`, `fuzz device`, `fuzz dtb`, `test` (the
//! stages and their table; `demo`, `kvm-check` and `lint` are its
//! aliases), `clean`, `tarball-check` (the slow end-to-end check of
//! building from a release tarball).

pub mod bench;
pub mod clean;
pub mod dt_binding;
pub mod fuzz;
pub mod fuzz_dtb;
pub mod inspect;
pub mod qemu_tests;
pub mod run;
pub mod tarball_check;
pub mod test;
