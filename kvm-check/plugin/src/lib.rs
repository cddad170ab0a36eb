// SPDX-License-Identifier: GPL-2.0-or-later

//! `mmio-audit`: a QEMU TCG plugin that records every guest access to an
//! I/O region and the instruction that made it, and tells which of those
//! instructions KVM could not emulate (see the `a64-access-class` crate).
//!
//! At translation, each instruction's bytes are captured and classified,
//! and a memory callback is registered on it. At execution, the callback
//! asks QEMU whether the access hit an I/O region (needs the
//! `tlb_plugin_lookup()` fix of patches/0007); if so it counts the access
//! and, for a non-emulable instruction, records its PC, symbol, word and
//! class. At exit the plugin writes a report to the file given as
//! `out=PATH` (else to QEMU's log) for `cargo xtask kvm-check` to judge:
//!
//! ```text
//! io_accesses 1793
//! io_region pl011 1201
//! violation pc=0x40201234 word=0xb8430f48 class=writeback/pre-index count=1 device=pl011 symbol=kernel_main
//! ```
//!
//! Usage: `qemu-system-aarch64 -plugin libmmio_audit.so,out=report.txt ...`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use a64_access_class::{classify, Class};
use qemu_plugin::install::{Args, Info, Value};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::{
    qemu_plugin_outs, qemu_plugin_register_atexit_cb, register, MemRW, MemoryInfo, PluginId,
    TranslationBlock, VCPUIndex,
};

/// One instruction that accessed an I/O region although KVM could not
/// emulate it.
#[derive(Debug)]
struct Violation {
    word: u32,
    class: Class,
    symbol: String,
    device: String,
    count: u64,
}

/// What the callbacks collect.
#[derive(Debug, Default)]
struct Findings {
    /// Guest accesses that hit an I/O region.
    io_accesses: u64,
    /// The same, by the region's name.
    by_region: BTreeMap<String, u64>,
    /// Non-emulable instructions that hit an I/O region, by PC.
    violations: BTreeMap<u64, Violation>,
}

impl Findings {
    /// The report `cargo xtask kvm-check` parses.
    fn report(&self) -> String {
        let mut text = format!("io_accesses {}\n", self.io_accesses);
        for (region, count) in &self.by_region {
            let _ = writeln!(text, "io_region {} {count}", one_word(region));
        }
        for (pc, v) in &self.violations {
            let _ = writeln!(
                text,
                "violation pc={pc:#x} word={:#010x} class={} count={} device={} symbol={}",
                v.word,
                v.class.key(),
                v.count,
                one_word(&v.device),
                one_word(&v.symbol)
            );
        }
        text
    }
}

/// `name` with whitespace replaced, so a report field stays one word.
fn one_word(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join("_")
}

/// The plugin: shared findings, and where to write them.
#[derive(Default)]
struct MmioAudit {
    findings: Arc<Mutex<Findings>>,
}

impl Register for MmioAudit {
    fn register(&mut self, id: PluginId, args: &Args, _info: &Info) -> qemu_plugin::Result<()> {
        let out = match args.parsed.get("out") {
            Some(Value::String(path)) => Some(path.clone()),
            Some(other) => {
                eprintln!("mmio-audit: out= must be a path, got {other:?}");
                std::process::exit(1);
            }
            None => None,
        };
        let findings = Arc::clone(&self.findings);
        qemu_plugin_register_atexit_cb(id, move |_| {
            let report = match findings.lock() {
                Ok(findings) => findings.report(),
                Err(poisoned) => poisoned.into_inner().report(),
            };
            match &out {
                Some(path) => {
                    if let Err(error) = std::fs::write(path, &report) {
                        eprintln!("mmio-audit: could not write {path}: {error}");
                    }
                }
                None => {
                    let _ = qemu_plugin_outs(report);
                }
            }
        })
    }
}

impl HasCallbacks for MmioAudit {
    fn on_translation_block_translate(
        &mut self,
        _id: PluginId,
        tb: TranslationBlock,
    ) -> qemu_plugin::Result<()> {
        for insn in tb.instructions() {
            let bytes = insn.data();
            // A64 instructions are 4 bytes, little-endian.
            let Ok(word) = <[u8; 4]>::try_from(bytes.as_slice()).map(u32::from_le_bytes) else {
                continue;
            };
            let class = classify(word);
            let pc = insn.vaddr();
            let symbol: Arc<str> = insn
                .symbol()
                .ok()
                .flatten()
                .unwrap_or_else(|| "?".to_string())
                .into();
            let findings = Arc::clone(&self.findings);
            insn.register_memory_access_callback(
                move |_vcpu: VCPUIndex, info: MemoryInfo, vaddr: u64| {
                    let Some(hwaddr) = info.hwaddr(vaddr) else {
                        return;
                    };
                    if !hwaddr.is_io() {
                        return;
                    }
                    let device = hwaddr
                        .device_name()
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "?".to_string());
                    let Ok(mut findings) = findings.lock() else {
                        return;
                    };
                    findings.io_accesses += 1;
                    *findings.by_region.entry(device.clone()).or_default() += 1;
                    if !class.is_emulable() {
                        findings
                            .violations
                            .entry(pc)
                            .or_insert_with(|| Violation {
                                word,
                                class,
                                symbol: symbol.to_string(),
                                device,
                                count: 0,
                            })
                            .count += 1;
                    }
                },
                MemRW::QEMU_PLUGIN_MEM_RW,
            );
        }
        Ok(())
    }
}

register!(MmioAudit::default());
