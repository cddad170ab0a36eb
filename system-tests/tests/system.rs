// SPDX-License-Identifier: GPL-2.0-or-later
//! The system tests as libtest trials, one per entry of
//! `system_tests::catalogue::all()`, named `stage::name`. They need the
//! QEMU and kernels of `cargo xtask build` (each trial says so if they
//! are missing).

use libtest_mimic::{Arguments, Trial};
use std::sync::Arc;
use system_tests::catalogue::{self, Context};

fn main() {
    let mut arguments = Arguments::from_args();
    // A guest mostly waits: for its serial line (one byte per round trip
    // through QEMU), for the host's sleeps of the tests that time real
    // time. Twice as many run side by side as there are cores.
    if arguments.test_threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        arguments.test_threads = Some(2 * cores);
    }
    let cx = Arc::new(Context::from_env());
    let mut tests = catalogue::all();
    // The long ones first: side by side, the short ones fill in.
    tests.sort_by_key(|test| !test.long);
    let trials = tests
        .into_iter()
        .map(|test| {
            let cx = Arc::clone(&cx);
            let ignored = test.ignored;
            Trial::test(test.full_name(), move || {
                test.run(&cx)
                    .map(drop)
                    .map_err(|error| format!("{error:#}").into())
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}
