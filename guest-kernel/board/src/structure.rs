// SPDX-License-Identifier: GPL-2.0-or-later
//! The blob's structure, checked before the `fdt` crate reads it.
//!
//! `fdt` 0.1.5 trusts the blob: it slices and unwraps where the blob says,
//! so a corrupted one panics inside it. These are the invariants its reads
//! assume (its `lib.rs`, `node.rs` and `parsing.rs`), each checked here:
//! - the header's structure and strings blocks lie inside the blob
//!   (`structs_block`, `strings_block` slice unchecked);
//! - every token is a whole word inside the structure block, and the
//!   stream ends in `FDT_END` after exactly one root node
//!   (`peek_u32().unwrap()` in `children` and `skip_current_node`);
//! - every `FDT_BEGIN_NODE` has a matching `FDT_END_NODE`, never one too
//!   many (`all_nodes` decrements its depth unchecked and asserts in
//!   `skip_current_node`), and nodes nest at most [`MAX_NESTING`] deep
//!   (`all_nodes` keeps 64 parents; `skip_current_node` recurses);
//! - a node's properties all come before its children (`skip_current_node`
//!   asserts `FDT_END_NODE` after the children);
//! - `FDT_NOP` only among the root's children: `skip_current_node` does
//!   not skip it between properties or children (an assertion fails; it is
//!   never called on the root), `children` and `all_nodes` stop at one
//!   between properties, and `all_nodes` at one before `FDT_END_NODE`
//!   (harmless only at the root's end: every node was read). QEMU leaves
//!   exactly such NOPs in a `-dtb` tree, where the memory nodes were (it
//!   NOPs them out and adds its own);
//! - a node name is NUL-terminated inside the block and UTF-8 (`unwrap`s
//!   on `CStr::new` and `as_str`): here, ASCII;
//! - a property's length and value lie inside the block (`[..data_len]`);
//! - a property's name offset is inside the strings block, with a NUL
//!   after it, and the name is UTF-8 (`str_at_offset`'s `expect`s): here,
//!   the strings block is ASCII and ends in a NUL, so every offset inside
//!   it starts a terminated ASCII string.
//!
//! One pass over the structure block (no UTF-8 decoding): cheap enough to
//! run on every boot.

use fdt::FdtError;

use crate::DtbError;

/// Deepest node nesting accepted (QEMU's `virt` nests 4 deep).
pub const MAX_NESTING: usize = 16;

/// Big-endian magic at the start of every flattened device tree.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Bytes of the header's ten words.
const HEADER_LEN: usize = 40;
/// The newest format version whose readers can read the blob: 17.
const LAST_COMPATIBLE_VERSION: u32 = 17;

/// The big-endian word at `at`, if all four bytes are in `bytes`.
fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Whether `bytes` are ASCII (byte by byte: `<[u8]>::is_ascii` is
/// word-at-a-time code, larger than the kernel needs).
fn ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte < 0x80)
}

/// The block of `dtb` (total size `total`) at header words `offset_at`
/// (offset) and `size_at` (size), if it lies inside the blob.
fn block(dtb: &[u8], total: usize, offset_at: usize, size_at: usize) -> Option<&[u8]> {
    let start = word(dtb, offset_at)? as usize;
    let end = start.checked_add(word(dtb, size_at)? as usize)?;
    (end <= total).then_some(())?;
    dtb.get(start..end)
}

/// Checks everything `fdt` 0.1.5 assumes of `dtb` (see the module's
/// comment); an error says where the blob breaks the format.
pub fn check(dtb: &[u8]) -> Result<(), DtbError<'static>> {
    let structure_error = |offset: usize, problem| Err(DtbError::Structure { offset, problem });
    if dtb.len() < HEADER_LEN {
        return Err(DtbError::Header(FdtError::BufferTooSmall));
    }
    if word(dtb, 0) != Some(FDT_MAGIC) {
        return Err(DtbError::Header(FdtError::BadMagic));
    }
    let total = word(dtb, 4).unwrap_or(0) as usize;
    if total > dtb.len() || total < HEADER_LEN {
        return Err(DtbError::Header(FdtError::BufferTooSmall));
    }
    if word(dtb, 24).is_none_or(|version| version > LAST_COMPATIBLE_VERSION) {
        return structure_error(24, "version newer than 17");
    }
    // off_dt_struct / size_dt_struct, off_dt_strings / size_dt_strings.
    let Some(structure) = block(dtb, total, 8, 36) else {
        return structure_error(8, "structure past the blob");
    };
    let Some(strings) = block(dtb, total, 12, 32) else {
        return structure_error(12, "strings past the blob");
    };
    let structure_start = word(dtb, 8).unwrap_or(0) as usize;
    if !structure_start.is_multiple_of(4) {
        return structure_error(8, "structure misaligned");
    }
    if strings.last().is_some_and(|&last| last != 0) || !ascii(strings) {
        return structure_error(12, "strings not NUL-ended ASCII");
    }

    let mut at = 0;
    let mut depth = 0;
    let mut seen_root = false;
    // Whether the current node has had a child (its properties are over).
    let mut in_children = false;
    loop {
        let offset = structure_start + at;
        let Some(token) = word(structure, at) else {
            return structure_error(offset, "no FDT_END");
        };
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return structure_error(offset, "a second root node");
                }
                let name = structure.get(at..).unwrap_or_default();
                let Some(name_len) = name.iter().position(|&byte| byte == 0) else {
                    return structure_error(offset, "node name not terminated");
                };
                if !ascii(&name[..name_len]) {
                    return structure_error(offset, "node name not ASCII");
                }
                at += (name_len + 1).next_multiple_of(4);
                depth += 1;
                if depth > MAX_NESTING {
                    return structure_error(offset, "nodes nested deeper than 16");
                }
                seen_root = true;
                in_children = false;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return structure_error(offset, "stray FDT_END_NODE");
                }
                depth -= 1;
                in_children = true;
            }
            FDT_PROP => {
                if depth == 0 {
                    return structure_error(offset, "property outside any node");
                }
                if in_children {
                    return structure_error(offset, "property after a child or NOP");
                }
                let (Some(len), Some(name_offset)) = (word(structure, at), word(structure, at + 4))
                else {
                    return structure_error(offset, "property header cut off");
                };
                let value_end = (at + 8).checked_add(len as usize);
                if value_end.is_none_or(|end| end > structure.len()) {
                    return structure_error(offset, "property value past the block");
                }
                if name_offset as usize >= strings.len() {
                    return structure_error(offset, "name offset past the strings");
                }
                at += 8 + (len as usize).next_multiple_of(4);
            }
            FDT_NOP if depth == 1 => in_children = true,
            FDT_END => {
                return if depth == 0 && seen_root {
                    Ok(())
                } else {
                    structure_error(offset, "misplaced FDT_END")
                };
            }
            _ => return structure_error(offset, "bad token (or NOP below root)"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    /// A blob: the header, an empty reservation map, `structure` and
    /// `strings`.
    fn blob(structure: &[u8], strings: &[u8]) -> Vec<u8> {
        let structure_at = HEADER_LEN + 16;
        let strings_at = structure_at + structure.len();
        let total = strings_at + strings.len();
        let header = [
            FDT_MAGIC,
            total as u32,
            structure_at as u32,
            strings_at as u32,
            HEADER_LEN as u32,
            17,
            16,
            0,
            strings.len() as u32,
            structure.len() as u32,
        ];
        let mut blob: Vec<u8> = header.iter().flat_map(|word| word.to_be_bytes()).collect();
        blob.extend([0; 16]);
        blob.extend(structure);
        blob.extend(strings);
        blob
    }

    /// A structure block from tokens: `B` begins a node named `n`, `P` a
    /// property named by strings offset 0 with a 4-byte value, `E` ends a
    /// node, `N` is a NOP, `.` is FDT_END.
    fn structure(tokens: &str) -> Vec<u8> {
        let mut block = Vec::new();
        for token in tokens.bytes() {
            let words: &[u32] = match token {
                b'B' => &[FDT_BEGIN_NODE, u32::from_be_bytes(*b"n\0\0\0")],
                b'P' => &[FDT_PROP, 4, 0, 7],
                b'E' => &[FDT_END_NODE],
                b'N' => &[4],
                _ => &[FDT_END],
            };
            block.extend(words.iter().flat_map(|word| word.to_be_bytes()));
        }
        block
    }

    fn problem(tokens: &str) -> Option<&'static str> {
        match check(&blob(&structure(tokens), b"reg\0")) {
            Ok(()) => None,
            Err(DtbError::Structure { problem, .. }) => Some(problem),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_well_formed_tree_passes() {
        assert_eq!(problem("BPBPEBEE."), None);
        // QEMU's NOPs where the memory node was, among the root's children.
        assert_eq!(problem("BPNNBPENBENE."), None);
        let mut deep = "B".repeat(MAX_NESTING);
        deep.push_str(&"E".repeat(MAX_NESTING));
        deep.push('.');
        assert_eq!(problem(&deep), None);
    }

    /// What `fdt` 0.1.5 would panic on, or misread, refused.
    #[test]
    fn what_fdt_cannot_read_is_refused() {
        let after_child = Some("property after a child or NOP");
        assert_eq!(problem("BPBEPE."), after_child);
        assert_eq!(problem("BNPE."), after_child);
        let nop_below_root = Some("bad token (or NOP below root)");
        assert_eq!(problem("BBPNBEEE."), nop_below_root);
        assert_eq!(problem("BBNEE."), nop_below_root);
        assert_eq!(problem("BPEE."), Some("stray FDT_END_NODE"));
        assert_eq!(problem("BPE"), Some("no FDT_END"));
        assert_eq!(problem("BPBE."), Some("misplaced FDT_END"));
        assert_eq!(problem("BEBE."), Some("a second root node"));
        assert_eq!(problem("P."), Some("property outside any node"));
        let mut deep = "B".repeat(MAX_NESTING + 1);
        deep.push_str(&"E".repeat(MAX_NESTING + 1));
        deep.push('.');
        assert_eq!(problem(&deep), Some("nodes nested deeper than 16"));

        let tree = structure("BPE.");
        // The name offset (word 4 of the block) past the strings.
        let mut bad_name = tree.clone();
        bad_name[16..20].copy_from_slice(&4u32.to_be_bytes());
        let refused = check(&blob(&bad_name, b"reg\0"));
        assert!(matches!(refused, Err(DtbError::Structure { problem, .. })
            if problem == "name offset past the strings"));
        // The length (word 3) past the block's end.
        let mut long_value = tree.clone();
        long_value[12..16].copy_from_slice(&100u32.to_be_bytes());
        let refused = check(&blob(&long_value, b"reg\0"));
        assert!(matches!(refused, Err(DtbError::Structure { problem, .. })
            if problem == "property value past the block"));
        // Strings not terminated, or not ASCII.
        assert!(check(&blob(&tree, b"reg")).is_err());
        assert!(check(&blob(&tree, b"r\xffg\0")).is_err());
    }
}
