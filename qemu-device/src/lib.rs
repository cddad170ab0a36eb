// SPDX-License-Identifier: GPL-2.0-or-later

//! The stopwatch: a para-virtualized device for QEMU's Arm `virt` board.
//!
//! This crate is the thin QEMU glue; the behaviour lives in
//! `stopwatch_model` and the interface in `stopwatch_abi`, both plain Rust
//! crates that the guest kernel and host tests share.

mod device;
mod environment;
mod shared_memory;

// `mod trace`: a function per event of this directory's `trace-events`.
::trace::include_trace!("rust_hw_misc_stopwatch");
