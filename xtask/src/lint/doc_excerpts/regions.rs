// SPDX-License-Identifier: GPL-2.0-or-later
//! The sources' side of the excerpt check: the marked regions, found by
//! their `tutorial:`/`doc:` marker lines.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::util;

/// Directories whose files may hold marked regions.
pub(super) const SOURCE_DIRS: &[&str] = &[
    "qemu-device",
    "guest-kernel",
    "xtask",
    "system-tests",
    "kvm-check",
    "linker",
];

/// Marker prefixes.
pub(super) const MARKER_TAGS: &[&str] = &["tutorial:", "doc:"];

/// A marked region: where it is, and its text (dedented).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Region {
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) text: String,
}

/// Every marked region of the sources, by name; broken markers and names
/// marked twice go to `problems`.
pub(super) fn find_all_regions(
    root: &Path,
    problems: &mut Vec<String>,
) -> Result<BTreeMap<String, Region>> {
    let mut regions = BTreeMap::new();
    for dir in SOURCE_DIRS {
        let skip = |path: &Path| path.ends_with("target") || path.starts_with(".");
        for relative in util::list_files(&root.join(dir), &skip)? {
            let file = format!("{dir}/{}", relative.display());
            // Only text: the sources, build files, trace events, scripts.
            let Ok(text) = fs::read_to_string(root.join(&file)) else {
                continue;
            };
            if file == "xtask/src/lint/doc_excerpts.rs"
                || file.starts_with("xtask/src/lint/doc_excerpts/")
            {
                // This check's documentation shows the syntax, and its
                // tests plant markers: none of them is a region.
                continue;
            }
            match find_regions(&file, &text) {
                Ok(found) => {
                    for (name, region) in found {
                        if let Some(other) = regions.insert(name.clone(), region.clone()) {
                            problems.push(format!(
                                "{}:{}: region `{name}` also marked at {}:{}",
                                region.file, region.line, other.file, other.line
                            ));
                        }
                    }
                }
                Err(error) => problems.push(format!("{error:#}")),
            }
        }
    }
    Ok(regions)
}

/// A marker line: its name and whether it begins a region.
pub(super) fn marker(line: &str) -> Option<(&str, bool)> {
    let (before, rest) = MARKER_TAGS.iter().find_map(|tag| line.split_once(tag))?;
    // Only in a comment: `//` or `#` (or the like) before the tag.
    if !before.contains("//") && !before.contains('#') && !before.contains("<!--") {
        return None;
    }
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    let begins = match words.next()? {
        "begin" => true,
        "end" => false,
        _ => return None,
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid_name.then_some((name, begins))
}

/// The marked regions of one file, by name.
pub(super) fn find_regions(file: &str, text: &str) -> Result<Vec<(String, Region)>> {
    let mut found = Vec::new();
    let mut open: Option<(&str, usize, Vec<&str>)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match (marker(line), open.as_mut()) {
            (Some((name, true)), None) => open = Some((name, number, Vec::new())),
            (Some((name, true)), Some((outer, ..))) => {
                bail!("{file}:{number}: region `{name}` begins inside `{outer}`")
            }
            (Some((name, false)), Some((open_name, begin, lines))) if name == *open_name => {
                found.push((
                    name.to_string(),
                    Region {
                        file: file.to_string(),
                        line: *begin,
                        text: dedent(lines),
                    },
                ));
                open = None;
            }
            (Some((name, false)), _) => {
                bail!("{file}:{number}: region `{name}` ends without its begin")
            }
            (None, Some((.., lines))) => lines.push(line),
            (None, None) => {}
        }
    }
    if let Some((name, begin, _)) = open {
        bail!("{file}:{begin}: region `{name}` has no end");
    }
    Ok(found)
}

/// The lines with their common leading whitespace removed, each ending in
/// a newline.
pub(super) fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|line| format!("{}\n", line.get(indent..).unwrap_or("").trim_end()))
        .collect()
}
