// SPDX-License-Identifier: GPL-2.0-or-later
//! Links the boot-floor kernel with `linker/boot-floor.ld` (at the guest
//! kernel's own address), for the bare-metal target only.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest_dir.join("../../linker/boot-floor.ld");
    let script = script.canonicalize().unwrap_or(script);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
