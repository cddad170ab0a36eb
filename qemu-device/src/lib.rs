// SPDX-License-Identifier: GPL-2.0-or-later

//! The stopwatch: a para-virtualized device for QEMU's Arm `virt` board.
//!
//! This crate is the thin QEMU glue; the behaviour lives in
//! `stopwatch_model` and the interface in `stopwatch_abi`, both plain Rust
//! crates that the guest kernel and host tests share.

mod device;

/// QOM type name, used by `-device stopwatch` and by the board's C code.
pub const TYPE_STOPWATCH: &std::ffi::CStr = c"stopwatch";

// The QOM type and the device-tree `compatible` are the same word. (The C
// side, include/hw/misc/stopwatch.h from patch 0004, names it a third
// time: the device-tree qtest checks that one.)
const _: () = {
    let type_name = TYPE_STOPWATCH.to_bytes();
    let compatible = stopwatch_abi::COMPATIBLE.as_bytes();
    assert!(type_name.len() == compatible.len());
    let mut index = 0;
    while index < type_name.len() {
        assert!(type_name[index] == compatible[index]);
        index += 1;
    }
};
