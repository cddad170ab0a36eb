// SPDX-License-Identifier: GPL-2.0-or-later
//! What the tests and the bench read in the kernel's ELF file: the bytes
//! QEMU loads, and the sections.

use anyhow::{ensure, Context, Result};
use std::path::Path;

/// The ELF's sections: `(name, flags, size)`.
pub fn sections(elf: &Path) -> Result<Vec<(String, u64, u64)>> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    ensure!(
        bytes.len() > 64 && bytes.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a little-endian ELF64 file",
        elf.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let table = u64_at(0x28) as usize;
    let entry_size = usize::from(u16_at(0x3a));
    let count = usize::from(u16_at(0x3c));
    let names_index = usize::from(u16_at(0x3e));
    ensure!(
        table + count * entry_size <= bytes.len() && names_index < count,
        "truncated section header table in {}",
        elf.display()
    );
    let header = |index: usize| table + index * entry_size;
    let names = u64_at(header(names_index) + 0x18) as usize;
    (0..count)
        .map(|index| {
            let at = header(index);
            let name_at = names + u32_at(at) as usize;
            let name = bytes
                .get(name_at..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .context("section name outside the file")?;
            Ok((
                String::from_utf8_lossy(name).into_owned(),
                u64_at(at + 0x08),
                u64_at(at + 0x20),
            ))
        })
        .collect()
}

/// The bytes QEMU loads from the kernel ELF: the sum of its `PT_LOAD`
/// segments' file sizes.
pub fn loadable_size(elf: &Path) -> Result<u64> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    ensure!(
        bytes.len() > 64 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1,
        "{} is not a little-endian ELF64 file",
        elf.display()
    );
    let table = u64_at(0x20) as usize;
    let entry_size = usize::from(u16_at(0x36));
    let entries = usize::from(u16_at(0x38));
    ensure!(
        table + entries * entry_size <= bytes.len(),
        "truncated program header table"
    );
    const PT_LOAD: u32 = 1;
    Ok((0..entries)
        .map(|index| table + index * entry_size)
        .filter(|&header| u32_at(header) == PT_LOAD)
        .map(|header| u64_at(header + 0x20))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadable_size_of_a_minimal_elf() {
        // ELF64 header + two program headers: one PT_LOAD of 0x1234 bytes
        // and one PT_NOTE that does not count.
        let mut elf = vec![0u8; 64 + 2 * 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf[64 + 0x20..64 + 0x28].copy_from_slice(&0x1234u64.to_le_bytes());
        elf[120..124].copy_from_slice(&4u32.to_le_bytes());
        elf[120 + 0x20..120 + 0x28].copy_from_slice(&0x99u64.to_le_bytes());
        let path = std::env::temp_dir().join(format!("xtask-elf-{}", std::process::id()));
        std::fs::write(&path, &elf).unwrap();
        assert_eq!(loadable_size(&path).unwrap(), 0x1234);
        std::fs::remove_file(path).unwrap();
    }
}
