// SPDX-License-Identifier: GPL-2.0-or-later

//! Part of `cargo xtask lint` (and of the host tests): every code excerpt
//! the documentation quotes is the source, character for character, so
//! the docs cannot drift from the code.
//!
//! In a source file, a region is marked by two comment lines (any comment
//! syntax: `//`, `#`, ...):
//!
//! ```text
//! // tutorial:lap-abi-command begin
//! ...the quoted lines...
//! // tutorial:lap-abi-command end
//! ```
//!
//! (`tutorial:` for `docs/adding-a-register.md`, `doc:` for the other
//! pages.) In a Markdown page, a fenced block quotes it when the line
//! before its fence (blank lines aside) is
//!
//! ```text
//! <!-- excerpt: qemu-device/abi/src/lib.rs#lap-abi-command -->
//! ```
//!
//! The block must equal the region's lines with their common indentation
//! removed. With `as string` after the name, the region is a Rust string
//! constant and the block must equal the string's value (the `help` text,
//! for instance). Every marked region must be quoted somewhere, and every
//! quote must name a region of that file.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::util;

/// The Markdown pages checked, from the repository root.
const DOC_DIR: &str = "docs";
const README: &str = "README.md";
/// Directories whose files may hold marked regions.
const SOURCE_DIRS: &[&str] = &[
    "qemu-device",
    "guest-kernel",
    "xtask",
    "system-tests",
    "kvm-check",
    "linker",
];
/// Marker prefixes.
const MARKER_TAGS: &[&str] = &["tutorial:", "doc:"];
/// The HTML comment that introduces a quote.
const QUOTE_START: &str = "<!-- excerpt: ";
const QUOTE_END: &str = " -->";

/// A marked region: where it is, and its text (dedented).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    file: String,
    line: usize,
    text: String,
}

/// A fenced block of a page that quotes a region.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quote {
    page: String,
    line: usize,
    file: String,
    name: String,
    as_string: bool,
    text: String,
    /// The block's lines in the page: 0-based, end excluded.
    body: (usize, usize),
}

/// Checks every quote of `docs/*.md` and `README.md` against the sources.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let regions = find_all_regions(root, &mut problems)?;
    let mut quotes = Vec::new();
    for page in pages(root)? {
        let text =
            fs::read_to_string(root.join(&page)).with_context(|| format!("reading {page}"))?;
        match find_quotes(&page, &text) {
            Ok(found) => quotes.extend(found),
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    problems.extend(compare(&regions, &quotes));
    if !problems.is_empty() {
        bail!(
            "the documentation's excerpts do not match the sources (`cargo xtask excerpts \
             --fix` copies each region into its page):\n{}",
            problems.join("\n")
        );
    }
    Ok(())
}

/// `cargo xtask excerpts --fix`: rewrites every quote of the pages with
/// the region it names, then checks.
pub fn fix(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let regions = find_all_regions(root, &mut problems)?;
    if !problems.is_empty() {
        bail!("the markers are broken:\n{}", problems.join("\n"));
    }
    for page in pages(root)? {
        let path = root.join(&page);
        let text = fs::read_to_string(&path).with_context(|| format!("reading {page}"))?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut changed = 0;
        // From the last, so that the earlier ones' line numbers hold.
        for quote in find_quotes(&page, &text)?.iter().rev() {
            let region = regions.get(&quote.name).filter(|r| r.file == quote.file);
            let Some(Ok(expected)) = region.map(|region| expected_text(quote, region)) else {
                continue;
            };
            if expected != quote.text {
                let (start, end) = quote.body;
                lines.splice(start..end, expected.lines().map(str::to_string));
                changed += 1;
            }
        }
        if changed > 0 {
            eprintln!("    {page}: {changed} excerpts rewritten");
            fs::write(&path, lines.join("\n") + "\n")?;
        }
    }
    check(root)
}

/// The Markdown pages: README.md and docs/*.md.
fn pages(root: &Path) -> Result<Vec<String>> {
    let mut pages = vec![README.to_string()];
    for relative in util::list_files(&root.join(DOC_DIR), &|_| false)? {
        if relative.extension().is_some_and(|e| e == "md") {
            pages.push(format!("{DOC_DIR}/{}", relative.display()));
        }
    }
    Ok(pages)
}

/// Every marked region of the sources, by name; broken markers and names
/// marked twice go to `problems`.
fn find_all_regions(root: &Path, problems: &mut Vec<String>) -> Result<BTreeMap<String, Region>> {
    let mut regions = BTreeMap::new();
    for dir in SOURCE_DIRS {
        let skip = |path: &Path| path.ends_with("target") || path.starts_with(".");
        for relative in util::list_files(&root.join(dir), &skip)? {
            let file = format!("{dir}/{}", relative.display());
            // Only text: the sources, build files, trace events, scripts.
            let Ok(text) = fs::read_to_string(root.join(&file)) else {
                continue;
            };
            if file == "xtask/src/lint/doc_excerpts.rs" {
                // Its documentation shows the syntax, and its tests plant
                // markers: none of them is a region.
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

/// What a quote's block must be: the region, or its string's value.
fn expected_text(quote: &Quote, region: &Region) -> Result<String> {
    if quote.as_string {
        rust_string_value(&region.text)
    } else {
        Ok(region.text.clone())
    }
}

/// Every quote against its region, and every region quoted.
fn compare(regions: &BTreeMap<String, Region>, quotes: &[Quote]) -> Vec<String> {
    let mut problems = Vec::new();
    for quote in quotes {
        let at = format!("{}:{}", quote.page, quote.line);
        let Some(region) = regions.get(&quote.name) else {
            problems.push(format!(
                "{at}: quotes `{}#{}`, which no source marks",
                quote.file, quote.name
            ));
            continue;
        };
        if region.file != quote.file {
            problems.push(format!(
                "{at}: quotes `{}` from {}, but it is marked in {}",
                quote.name, quote.file, region.file
            ));
            continue;
        }
        let expected = match expected_text(quote, region) {
            Ok(expected) => expected,
            Err(error) => {
                problems.push(format!("{}:{}: {error}", region.file, region.line));
                continue;
            }
        };
        if quote.text != expected {
            problems.push(format!(
                "{at}: the excerpt of `{}` differs from {}:{} at its line {}",
                quote.name,
                region.file,
                region.line,
                first_difference(&quote.text, &expected)
            ));
        }
    }
    for (name, region) in regions {
        if !quotes.iter().any(|quote| quote.name == *name) {
            problems.push(format!(
                "{}:{}: region `{name}` is quoted by no page",
                region.file, region.line
            ));
        }
    }
    problems
}

/// The 1-based line at which two texts first differ.
fn first_difference(a: &str, b: &str) -> usize {
    let mut a_lines = a.lines();
    let mut b_lines = b.lines();
    let mut line = 1;
    loop {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            (None, None) => return line,
            _ => return line,
        }
    }
}

/// A marker line: its name and whether it begins a region.
fn marker(line: &str) -> Option<(&str, bool)> {
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
fn find_regions(file: &str, text: &str) -> Result<Vec<(String, Region)>> {
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
fn dedent(lines: &[&str]) -> String {
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

/// The quotes of one page.
fn find_quotes(page: &str, text: &str) -> Result<Vec<Quote>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut quotes = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        index += 1;
        let Some(spec) = line
            .strip_prefix(QUOTE_START)
            .and_then(|rest| rest.strip_suffix(QUOTE_END))
        else {
            continue;
        };
        let number = index;
        let (reference, as_string) = match spec.strip_suffix(" as string") {
            Some(reference) => (reference, true),
            None => (spec, false),
        };
        let Some((file, name)) = reference.split_once('#') else {
            bail!("{page}:{number}: an excerpt is `PATH#NAME`, not `{spec}`");
        };
        while index < lines.len() && lines[index].trim().is_empty() {
            index += 1;
        }
        let fence = lines.get(index).copied().unwrap_or("");
        if !fence.starts_with("```") {
            bail!("{page}:{number}: the excerpt of `{name}` is not followed by a fenced block");
        }
        index += 1;
        let body_start = index;
        let mut body = String::new();
        loop {
            let Some(line) = lines.get(index) else {
                bail!("{page}:{number}: the fenced block of `{name}` never closes");
            };
            index += 1;
            if line.starts_with("```") {
                break;
            }
            body.push_str(line.trim_end());
            body.push('\n');
        }
        quotes.push(Quote {
            page: page.to_string(),
            line: number,
            file: file.to_string(),
            name: name.to_string(),
            as_string,
            text: body,
            body: (body_start, index - 1),
        });
    }
    Ok(quotes)
}

/// The value of the one Rust string literal in `code` (a `const`): the
/// text between its quotes, with `\` line continuations and the common
/// escapes resolved.
fn rust_string_value(code: &str) -> Result<String> {
    let (Some(start), Some(end)) = (code.find('"'), code.rfind('"')) else {
        bail!("no string literal in the region");
    };
    if end <= start {
        bail!("no string literal in the region");
    }
    let mut value = String::new();
    let mut chars = code[start + 1..end].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('\n') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('n') => value.push('\n'),
            Some('t') => value.push('\t'),
            Some('\\') => value.push('\\'),
            Some('"') => value.push('"'),
            Some('\'') => value.push('\''),
            other => bail!(
                "unsupported escape `\\{}` in the string",
                other.unwrap_or(' ')
            ),
        }
    }
    value.push('\n');
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions_of(file: &str, text: &str) -> BTreeMap<String, Region> {
        find_regions(file, text).unwrap().into_iter().collect()
    }

    const SOURCE: &str = "fn a() {}\n\
                          \x20   // tutorial:demo begin\n\
                          \x20   fn b() {\n\
                          \x20       c();\n\
                          \x20   }\n\
                          \x20   // tutorial:demo end\n";

    fn page(block: &str) -> String {
        format!("Text.\n\n<!-- excerpt: src/x.rs#demo -->\n\n```rust\n{block}```\n\nMore.\n")
    }

    #[test]
    fn the_documentation_matches_the_sources() -> Result<()> {
        check(&crate::repo::Repo::locate().root)
    }

    #[test]
    fn a_matching_excerpt_passes() {
        let regions = regions_of("src/x.rs", SOURCE);
        assert_eq!(regions["demo"].text, "fn b() {\n    c();\n}\n");
        let quotes = find_quotes("doc.md", &page("fn b() {\n    c();\n}\n")).unwrap();
        assert_eq!(compare(&regions, &quotes), Vec::<String>::new());
    }

    #[test]
    fn the_block_lines_are_located_for_fix() {
        let text = page("old\nlines\n");
        let quotes = find_quotes("doc.md", &text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (start, end) = quotes[0].body;
        assert_eq!(lines[start..end], ["old", "lines"]);
    }

    #[test]
    fn a_changed_excerpt_fails() {
        let regions = regions_of("src/x.rs", SOURCE);
        let quotes = find_quotes("doc.md", &page("fn b() {\n    d();\n}\n")).unwrap();
        let problems = compare(&regions, &quotes);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .contains("doc.md:3: the excerpt of `demo` differs from src/x.rs:2 at its line 2"),
            "{problems:?}"
        );
    }

    #[test]
    fn unquoted_regions_and_unknown_quotes_fail() {
        let regions = regions_of("src/x.rs", SOURCE);
        let problems = compare(&regions, &[]);
        assert!(problems[0].contains("region `demo` is quoted by no page"));
        let quotes = find_quotes("doc.md", &page("x\n").replace("#demo", "#other")).unwrap();
        let problems = compare(&regions, &quotes);
        assert!(problems[0].contains("quotes `src/x.rs#other`, which no source marks"));
        let quotes = find_quotes("doc.md", &page("x\n").replace("src/x.rs", "src/y.rs")).unwrap();
        assert!(compare(&regions, &quotes)[0].contains("but it is marked in src/x.rs"));
    }

    #[test]
    fn broken_markers_are_errors() {
        let unclosed = "// tutorial:a begin\nx\n";
        assert!(find_regions("f", unclosed)
            .unwrap_err()
            .to_string()
            .contains("no end"));
        let stray_end = "x\n// tutorial:a end\n";
        assert!(find_regions("f", stray_end).is_err());
        let nested = "// tutorial:a begin\n// doc:b begin\n";
        assert!(find_regions("f", nested).is_err());
        // Not in a comment, or not a marker: plain text.
        assert_eq!(marker("let s = \"tutorial:a begin\";"), None);
        assert_eq!(marker("# tutorial:trace-x begin"), Some(("trace-x", true)));
        assert_eq!(marker("// tutorial:A begin"), None);
    }

    #[test]
    fn a_string_constant_is_compared_by_value() {
        let code = "pub const HELP: &str = \"\\\nfirst line\n  second \\\"quoted\\\"\";\n";
        assert_eq!(
            rust_string_value(code).unwrap(),
            "first line\n  second \"quoted\"\n"
        );
        let regions = regions_of(
            "src/x.rs",
            &format!("// doc:help begin\n{code}// doc:help end\n"),
        );
        let quotes = find_quotes(
            "README.md",
            "<!-- excerpt: src/x.rs#help as string -->\n```text\nfirst line\n  second \"quoted\"\n```\n",
        )
        .unwrap();
        assert_eq!(compare(&regions, &quotes), Vec::<String>::new());
    }
}
