// SPDX-License-Identifier: GPL-2.0-or-later

//! Part of `cargo xtask lint` (and of the host tests): the guest kernel
//! reaches device memory only through `arch::mmio` (and the `safe-mmio`
//! based crates), whose instruction forms KVM can emulate.
//!
//! Rejected in `guest-kernel/src`:
//! - `read_volatile`/`write_volatile` (and the volatile intrinsics): the
//!   compiler picks their instructions, writeback forms included. Allowed
//!   only on RAM, with a comment saying `RAM, not MMIO` on the line or in
//!   the [`MARKER_WINDOW`] lines above it (the stopwatch's pass-through
//!   region, the device tree, the bench's baseline word);
//! - tock-registers' register types and their accessor traits
//!   (`tock_registers::registers`, `tock_registers::interfaces`): their
//!   `get`/`set` are volatile accesses. tock-registers stays for layouts
//!   (`register_structs!` with plain integer fields) and bitfields.
//!
//! `cargo xtask kvm-check` checks the compiled result; this keeps the
//! source honest before it runs.

use anyhow::{bail, Result};
use std::fs;
use std::path::Path;

use crate::util;

/// Where the kernel's sources are, from the repository root.
const KERNEL_SOURCES: &str = "guest-kernel/src";
/// What makes a volatile access acceptable.
const RAM_MARKER: &str = "RAM, not MMIO";
/// How many lines above a volatile access its marker may be.
pub const MARKER_WINDOW: usize = 6;

/// Volatile accesses whose instruction the compiler chooses.
const VOLATILE: &[&str] = &[
    "read_volatile",
    "write_volatile",
    "volatile_load",
    "volatile_store",
];
/// tock-registers paths whose types or traits access registers.
const TOCK_ACCESS: &[&str] = &["tock_registers::registers", "tock_registers::interfaces"];

/// Checks every `.rs` file under `guest-kernel/src`.
pub fn check(root: &Path) -> Result<()> {
    let sources = root.join(KERNEL_SOURCES);
    let mut findings = Vec::new();
    for relative in util::list_files(&sources, &|_| false)? {
        if relative.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(sources.join(&relative))?;
        let name = format!("{KERNEL_SOURCES}/{}", relative.display());
        findings.extend(check_source(&name, &text));
    }
    if !findings.is_empty() {
        bail!(
            "device memory accessed outside guest-kernel/src/arch/mmio.rs:\n{}",
            findings.join("\n")
        );
    }
    Ok(())
}

/// The findings in one file's text, as `file:line: what`.
pub fn check_source(name: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut findings = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if let Some(word) = VOLATILE.iter().find(|w| code.contains(*w)) {
            let window = &lines[index.saturating_sub(MARKER_WINDOW)..=index];
            if !window.iter().any(|l| l.contains(RAM_MARKER)) {
                findings.push(format!(
                    "{name}:{}: `{word}` may compile to a form KVM cannot emulate on MMIO; use \
                     arch::mmio, or if this is RAM say `{RAM_MARKER}` in a comment just above",
                    index + 1
                ));
            }
        }
        if let Some(path) = TOCK_ACCESS.iter().find(|p| code.contains(*p)) {
            findings.push(format!(
                "{name}:{}: `{path}` accesses registers with volatile loads and stores; keep \
                 tock-registers to layouts and bitfields, move values with arch::mmio",
                index + 1
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_sources_pass() -> Result<()> {
        check(&crate::repo::Repo::locate().root)
    }

    #[test]
    fn a_volatile_access_needs_the_ram_marker() {
        let mmio = "fn f(p: *const u32) -> u32 {\n    // SAFETY: UARTCR.\n    unsafe { p.read_volatile() }\n}\n";
        let findings = check_source("uart.rs", mmio);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with("uart.rs:3: `read_volatile`"),
            "{findings:?}"
        );

        let ram =
            "    // SAFETY: the time page (RAM, not MMIO).\n    unsafe { p.read_volatile() }\n";
        assert!(check_source("stopwatch.rs", ram).is_empty());
        let far = format!(
            "// {RAM_MARKER}\n{}unsafe {{ p.write_volatile(1) }}\n",
            "\n".repeat(MARKER_WINDOW)
        );
        assert_eq!(check_source("far.rs", &far).len(), 1);
        // Mentions in comments are not accesses.
        assert!(check_source("doc.rs", "// never read_volatile here\n").is_empty());
        let intrinsic = "core::intrinsics::volatile_store(p, 1);\n";
        assert_eq!(check_source("i.rs", intrinsic).len(), 1);
    }

    #[test]
    fn tock_register_accessors_are_rejected() {
        let text = "use tock_registers::interfaces::{Readable, Writeable};\nuse tock_registers::register_structs;\n";
        let findings = check_source("stopwatch.rs", text);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with("stopwatch.rs:1:"));
        assert_eq!(
            check_source("s.rs", "use tock_registers::registers::ReadOnly;\n").len(),
            1
        );
    }
}
