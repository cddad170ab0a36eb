// SPDX-License-Identifier: GPL-2.0-or-later

//! Part of `cargo xtask lint` (and of the host tests): the guest kernel
//! reaches device memory only through `arch::mmio` (and `arm-gic`,
//! through its `safe-mmio`), whose instruction forms KVM can emulate.
//!
//! Rejected in `guest-kernel/src`:
//! - `read_volatile`/`write_volatile` (and the volatile intrinsics): the
//!   compiler picks their instructions, writeback forms included. Allowed
//!   only on RAM, with a comment saying `RAM, not MMIO` on the line or in
//!   the [`MARKER_WINDOW`] lines above it (the stopwatch's pass-through
//!   region, the device tree, the bench's baseline word);
//! - tock-registers' register types (`tock_registers::registers`): their
//!   `get`/`set` are volatile accesses. tock-registers stays for layouts
//!   (`register_structs!` of `arch::mmio`'s slots), bitfields, and the
//!   `Readable`/`Writeable` traits, which `arch::mmio::Register` implements
//!   with its own loads and stores.
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
/// The tock-registers module whose types access registers with volatile
/// loads and stores.
const TOCK_ACCESS: &str = "tock_registers::registers";

/// Whether `code` names the path segment `registers::` (not
/// `mmio::Registers` nor `foo_registers::`): inside a grouped
/// `use tock_registers::{...}`, tock-registers' [`TOCK_ACCESS`].
fn names_registers_segment(code: &str) -> bool {
    code.match_indices("registers::").any(|(at, _)| {
        !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

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
    // Brace depth inside a grouped `use tock_registers::{...}`, which may
    // span lines; 0 outside one.
    let mut tock_group_depth = 0usize;
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
        let in_group = tock_group_depth > 0 || code.contains("tock_registers::{");
        if code.contains(TOCK_ACCESS) || (in_group && names_registers_segment(code)) {
            findings.push(format!(
                "{name}:{}: `{TOCK_ACCESS}`: its register types access registers with \
                 volatile loads and stores; lay registers out with arch::mmio's ReadOnly, \
                 WriteOnly and ReadWrite slots and reach them with arch::mmio::register!",
                index + 1
            ));
        }
        if in_group {
            let opened = code.matches('{').count() + tock_group_depth;
            tock_group_depth = opened.saturating_sub(code.matches('}').count());
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
    fn tock_register_types_are_rejected() {
        // The traits and the macros are how the kernel uses tock-registers.
        let kept = "use tock_registers::interfaces::{Readable, Writeable};\nuse tock_registers::{register_bitfields, register_structs};\nuse crate::arch::mmio::{register, ReadOnly, Registers};\n";
        assert_eq!(check_source("uart.rs", kept), Vec::<String>::new());
        for types in [
            "use tock_registers::registers::ReadOnly;\n",
            "use tock_registers::{interfaces::Readable, registers::ReadWrite};\n",
            "use tock_registers::registers::{InMemoryRegister, WriteOnly};\n",
            "    (0x0 => dr: tock_registers::registers::ReadWrite<u32>),\n",
        ] {
            let findings = check_source("s.rs", types);
            assert_eq!(findings.len(), 1, "{types}: {findings:?}");
            assert!(findings[0].starts_with("s.rs:1:"), "{findings:?}");
        }
        let grouped = "use tock_registers::{\n    interfaces::{Readable, Writeable},\n    registers::ReadOnly,\n};\nuse aarch64_cpu::registers::ELR_EL1;\n";
        let findings = check_source("g.rs", grouped);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with("g.rs:3:"), "{findings:?}");
        // aarch64-cpu's system registers are not MMIO.
        let system = "use aarch64_cpu::registers::{Readable, ESR_EL1};\n";
        assert_eq!(check_source("e.rs", system), Vec::<String>::new());
    }
}
