// SPDX-License-Identifier: GPL-2.0-or-later
//! Links the kernel with `linker/guest-kernel.ld` (absolute path, so the
//! build works from any directory), folding identical functions
//! (`--icf=all`: the image has a size budget, and nothing compares
//! function addresses).

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest_dir.join("../linker/guest-kernel.ld");
    let script = script.canonicalize().unwrap_or(script);
    // The kernel is only meaningful for the bare-metal target; host builds
    // (e.g. `cargo check --workspace`) must not get a bare-metal script.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--icf=all");
    }
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
