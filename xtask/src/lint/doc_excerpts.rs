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
//!
//! # Chapters stay true to the change they teach
//!
//! A tutorial chapter (`docs/adding-*.md`) says so on a line of its own:
//!
//! ```text
//! <!-- chapter 2: PERIODIC -->
//! <!-- chapter 1: LAP, as of 3c15c2c... -->
//! ```
//!
//! The newest chapter quotes the sources as they are. An earlier one is
//! pinned (`as of COMMIT`, a full commit id): its blocks are the regions as
//! that commit has them, read with `git show`, so later code never rewrites
//! it, `--fix` included. And its regions must still be what that commit
//! has, unless a later chapter quotes the same region (and so shows the
//! change): a later feature that lands its code inside an earlier
//! chapter's markers fails the check, which names that chapter.

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

/// A tutorial chapter: a page with a `<!-- chapter N: TITLE -->` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chapter {
    page: String,
    number: u32,
    title: String,
    /// The commit whose sources an earlier chapter quotes.
    pinned: Option<String>,
}

impl Chapter {
    /// `chapter 1 (LAP, docs/adding-a-register.md)`.
    fn name(&self) -> String {
        format!("chapter {} ({}, {})", self.number, self.title, self.page)
    }
}

const CHAPTER_START: &str = "<!-- chapter ";
const PINNED: &str = ", as of ";

/// The chapter line of a page, if it has one.
fn find_chapter(page: &str, text: &str) -> Result<Option<Chapter>> {
    let mut found = None;
    let mut in_block = false;
    for (index, line) in text.lines().enumerate() {
        // A chapter line shown in a fenced block is an example.
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        }
        if in_block {
            continue;
        }
        let Some(spec) = line
            .trim()
            .strip_prefix(CHAPTER_START)
            .and_then(|rest| rest.strip_suffix(QUOTE_END))
        else {
            continue;
        };
        let at = format!("{page}:{}", index + 1);
        if found.is_some() {
            bail!("{at}: a second chapter line");
        }
        let Some((number, rest)) = spec.split_once(": ") else {
            bail!("{at}: a chapter line is `<!-- chapter N: TITLE -->`, not `{line}`");
        };
        let number = number
            .parse()
            .with_context(|| format!("{at}: `{number}` is not a chapter number"))?;
        let (title, pinned) = match rest.split_once(PINNED) {
            Some((title, commit)) => {
                let full_id = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
                if !full_id {
                    bail!("{at}: `{commit}` is not a full commit id (40 hex digits)");
                }
                (title, Some(commit.to_string()))
            }
            None => (rest, None),
        };
        found = Some(Chapter {
            page: page.to_string(),
            number,
            title: title.to_string(),
            pinned,
        });
    }
    Ok(found)
}

/// A file's text as a commit has it.
type SourceAt<'a> = dyn FnMut(&str, &str) -> Result<String> + 'a;

/// `git show COMMIT:FILE` in the repository at `root`.
fn git_show(root: &Path, commit: &str, file: &str) -> Result<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["show", &format!("{commit}:{file}")])
        .output()
        .context("running git (a pinned chapter's excerpts come from its commit)")?;
    if !output.status.success() {
        bail!(
            "git show {commit}:{file} failed (a clone without that commit? fetch the \
             history): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The regions as a pinned chapter's commit has them, by (commit, name);
/// files read once. A file that commit cannot give goes to `problems`.
fn pinned_regions(
    chapters: &[Chapter],
    quotes: &[Quote],
    source_at: &mut SourceAt,
    problems: &mut Vec<Problem>,
) -> BTreeMap<(String, String), Region> {
    let mut regions = BTreeMap::new();
    let mut files_read = std::collections::BTreeSet::new();
    for quote in quotes {
        let Some(commit) = chapter_of(chapters, &quote.page).and_then(|c| c.pinned.as_ref()) else {
            continue;
        };
        if !files_read.insert((commit.clone(), quote.file.clone())) {
            continue;
        }
        let found =
            source_at(commit, &quote.file).and_then(|text| find_regions(&quote.file, &text));
        match found {
            Ok(found) => {
                for (name, region) in found {
                    regions.insert((commit.clone(), name), region);
                }
            }
            Err(error) => problems.push(Problem::other(format!("{}: {error:#}", quote.page))),
        }
    }
    regions
}

fn chapter_of<'a>(chapters: &'a [Chapter], page: &str) -> Option<&'a Chapter> {
    chapters.iter().find(|chapter| chapter.page == page)
}

/// A problem the check reports, and whether `--fix` mends it (a block to
/// copy in again), so that the message offers `--fix` only then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    text: String,
    fixable: bool,
}

impl Problem {
    fn other(text: String) -> Self {
        Problem {
            text,
            fixable: false,
        }
    }
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

/// Checks every quote of `docs/*.md` and `README.md` against the sources
/// (a pinned chapter's against its commit's), and every pinned chapter's
/// regions against later changes.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let regions = find_all_regions(root, &mut problems)?;
    let mut problems: Vec<Problem> = problems.into_iter().map(Problem::other).collect();
    let mut quotes = Vec::new();
    let mut chapters = Vec::new();
    for page in pages(root)? {
        let text =
            fs::read_to_string(root.join(&page)).with_context(|| format!("reading {page}"))?;
        match find_quotes(&page, &text) {
            Ok(found) => quotes.extend(found),
            Err(error) => problems.push(Problem::other(format!("{error:#}"))),
        }
        match find_chapter(&page, &text) {
            Ok(chapter) => chapters.extend(chapter),
            Err(error) => problems.push(Problem::other(format!("{error:#}"))),
        }
    }
    let mut source_at = |commit: &str, file: &str| git_show(root, commit, file);
    problems.extend(compare_all(&regions, &quotes, &chapters, &mut source_at));
    report(&problems)
}

/// Fails with every problem; offers `--fix` only for what it mends.
fn report(problems: &[Problem]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let fix_hint = if problems.iter().any(|problem| problem.fixable) {
        " (`cargo xtask excerpts --fix` copies a region into the block that quotes it: the \
         sources into the newest chapter and the other pages, a pinned chapter's commit into \
         that chapter)"
    } else {
        ""
    };
    let texts: Vec<&str> = problems
        .iter()
        .map(|problem| problem.text.as_str())
        .collect();
    bail!(
        "the documentation's excerpts do not match the sources{fix_hint}:\n{}",
        texts.join("\n")
    )
}

/// `cargo xtask excerpts --fix`: rewrites every quote of the pages with
/// the region it names, then checks.
pub fn fix(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let regions = find_all_regions(root, &mut problems)?;
    if !problems.is_empty() {
        bail!("the markers are broken:\n{}", problems.join("\n"));
    }
    let mut source_at = |commit: &str, file: &str| git_show(root, commit, file);
    for page in pages(root)? {
        let path = root.join(&page);
        let text = fs::read_to_string(&path).with_context(|| format!("reading {page}"))?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut changed = 0;
        let quotes = find_quotes(&page, &text)?;
        // A pinned chapter is copied from its commit, never from the
        // sources as they are now: later code does not rewrite it.
        let chapters: Vec<Chapter> = find_chapter(&page, &text)?.into_iter().collect();
        let mut ignored = Vec::new();
        let pinned = pinned_regions(&chapters, &quotes, &mut source_at, &mut ignored);
        // From the last, so that the earlier ones' line numbers hold.
        for quote in quotes.iter().rev() {
            let region = match chapter_of(&chapters, &page).and_then(|c| c.pinned.as_ref()) {
                Some(commit) => pinned.get(&(commit.clone(), quote.name.clone())),
                None => regions.get(&quote.name),
            }
            .filter(|r| r.file == quote.file);
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

/// Every quote against its region (a pinned chapter's against its
/// commit's), every region quoted, and no pinned chapter's region changed
/// unless a later chapter shows it.
fn compare_all(
    regions: &BTreeMap<String, Region>,
    quotes: &[Quote],
    chapters: &[Chapter],
    source_at: &mut SourceAt,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let pinned = pinned_regions(chapters, quotes, source_at, &mut problems);
    let (of_pinned, current): (Vec<Quote>, Vec<Quote>) = quotes
        .iter()
        .cloned()
        .partition(|quote| chapter_of(chapters, &quote.page).is_some_and(|c| c.pinned.is_some()));
    problems.extend(compare(regions, &current, quotes));
    for quote in &of_pinned {
        let chapter = chapter_of(chapters, &quote.page).expect("partitioned on it");
        let commit = chapter.pinned.as_deref().expect("partitioned on it");
        let at = format!("{}:{}", quote.page, quote.line);
        let Some(then) = pinned.get(&(commit.to_string(), quote.name.clone())) else {
            problems.push(Problem::other(format!(
                "{at}: {} quotes `{}#{}`, which commit {commit} does not mark",
                chapter.name(),
                quote.file,
                quote.name
            )));
            continue;
        };
        // The block: the region as the chapter's commit has it.
        match expected_text(quote, then) {
            Ok(expected) if expected != quote.text => problems.push(Problem {
                text: format!(
                    "{at}: the excerpt of `{}` differs from {}:{} as of commit {} at its line {}",
                    quote.name,
                    then.file,
                    then.line,
                    short(commit),
                    first_difference(&quote.text, &expected)
                ),
                fixable: true,
            }),
            Ok(_) => {}
            Err(error) => problems.push(Problem::other(format!("{at}: {error}"))),
        }
        // The region now: as then, or shown by a later chapter.
        let shown_later = quotes.iter().any(|later| {
            later.name == quote.name
                && chapters
                    .iter()
                    .any(|c| c.page == later.page && c.number > chapter.number)
        });
        match regions.get(&quote.name) {
            _ if shown_later => {}
            Some(now) if now.text == then.text => {}
            Some(now) => problems.push(Problem::other(format!(
                "{}:{}: region `{}` of {} has changed since commit {}, at its line {}, and no \
                 later chapter shows the change. A chapter shows the code of the change it \
                 teaches: put the new code outside the `{}` markers, in a region of the \
                 chapter that teaches it (or quote this region there, to show the change); \
                 if {}'s own code was corrected, pin it to the commit of the correction. \
                 The chapter is not rewritten with the new code.",
                now.file,
                now.line,
                quote.name,
                chapter.name(),
                short(commit),
                first_difference(&then.text, &now.text),
                quote.name,
                format_args!("chapter {}", chapter.number),
            ))),
            None => problems.push(Problem::other(format!(
                "{at}: {} quotes `{}`, which the sources no longer mark: keep its markers \
                 around the code it became (or show its removal in a later chapter)",
                chapter.name(),
                quote.name
            ))),
        }
    }
    problems
}

/// A commit id's first 12 digits, for messages.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Every quote against its region, and every region quoted (by any of
/// `all_quotes`, a pinned chapter's included).
fn compare(
    regions: &BTreeMap<String, Region>,
    quotes: &[Quote],
    all_quotes: &[Quote],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for quote in quotes {
        let at = format!("{}:{}", quote.page, quote.line);
        let Some(region) = regions.get(&quote.name) else {
            problems.push(Problem::other(format!(
                "{at}: quotes `{}#{}`, which no source marks",
                quote.file, quote.name
            )));
            continue;
        };
        if region.file != quote.file {
            problems.push(Problem::other(format!(
                "{at}: quotes `{}` from {}, but it is marked in {}",
                quote.name, quote.file, region.file
            )));
            continue;
        }
        let expected = match expected_text(quote, region) {
            Ok(expected) => expected,
            Err(error) => {
                problems.push(Problem::other(format!(
                    "{}:{}: {error}",
                    region.file, region.line
                )));
                continue;
            }
        };
        if quote.text != expected {
            problems.push(Problem {
                text: format!(
                    "{at}: the excerpt of `{}` differs from {}:{} at its line {}",
                    quote.name,
                    region.file,
                    region.line,
                    first_difference(&quote.text, &expected)
                ),
                fixable: true,
            });
        }
    }
    for (name, region) in regions {
        if !all_quotes.iter().any(|quote| quote.name == *name) {
            problems.push(Problem::other(format!(
                "{}:{}: region `{name}` is quoted by no page",
                region.file, region.line
            )));
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

    /// The problems of pages that are no chapters.
    fn texts(regions: &BTreeMap<String, Region>, quotes: &[Quote]) -> Vec<String> {
        let mut no_git = |_: &str, _: &str| -> Result<String> { bail!("no chapter is pinned") };
        compare_all(regions, quotes, &[], &mut no_git)
            .into_iter()
            .map(|problem| problem.text)
            .collect()
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
        assert_eq!(texts(&regions, &quotes), Vec::<String>::new());
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
        let problems = texts(&regions, &quotes);
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
        let problems = texts(&regions, &[]);
        assert!(problems[0].contains("region `demo` is quoted by no page"));
        let quotes = find_quotes("doc.md", &page("x\n").replace("#demo", "#other")).unwrap();
        let problems = texts(&regions, &quotes);
        assert!(problems[0].contains("quotes `src/x.rs#other`, which no source marks"));
        let quotes = find_quotes("doc.md", &page("x\n").replace("src/x.rs", "src/y.rs")).unwrap();
        assert!(texts(&regions, &quotes)[0].contains("but it is marked in src/x.rs"));
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
        assert_eq!(texts(&regions, &quotes), Vec::<String>::new());
    }

    /// Chapter 1 (LAP) pinned to commit `c1`, chapter 2 (PERIODIC) the
    /// newest; `lap-execute` is chapter 1's region.
    const COMMIT: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
    const LAP_SOURCE: &str = "match command {\n\
                              \x20   // tutorial:lap-execute begin\n\
                              \x20   Command::Lap => self.lap(env),\n\
                              \x20   // tutorial:lap-execute end\n\
                              }\n";
    const LAP_BLOCK: &str = "Command::Lap => self.lap(env),\n";
    const PERIODIC_LINE: &str = "Command::Periodic => self.arm_periodic(env),";

    fn chapters_check(source_now: &str, chapter_2_quotes_it: bool) -> Vec<Problem> {
        let chapter_1 = format!(
            "<!-- chapter 1: LAP, as of {COMMIT} -->\n\
             <!-- excerpt: src/lib.rs#lap-execute -->\n```rust\n{LAP_BLOCK}```\n"
        );
        let now = find_regions("src/lib.rs", source_now).unwrap();
        let mut chapter_2 = String::from("<!-- chapter 2: PERIODIC -->\n");
        if chapter_2_quotes_it {
            let region = &now
                .iter()
                .find(|(name, _)| name == "lap-execute")
                .unwrap()
                .1;
            chapter_2 += &format!(
                "<!-- excerpt: src/lib.rs#lap-execute -->\n```rust\n{}```\n",
                region.text
            );
        }
        let mut quotes = find_quotes("docs/one.md", &chapter_1).unwrap();
        quotes.extend(find_quotes("docs/two.md", &chapter_2).unwrap());
        let chapters: Vec<Chapter> = [("docs/one.md", &chapter_1), ("docs/two.md", &chapter_2)]
            .into_iter()
            .filter_map(|(page, text)| find_chapter(page, text).unwrap())
            .collect();
        assert_eq!(chapters.len(), 2);
        let mut at_commit = |commit: &str, file: &str| -> Result<String> {
            assert_eq!((commit, file), (COMMIT, "src/lib.rs"));
            Ok(LAP_SOURCE.to_string())
        };
        compare_all(
            &now.into_iter().collect(),
            &quotes,
            &chapters,
            &mut at_commit,
        )
    }

    #[test]
    fn a_later_edit_inside_an_earlier_chapters_region_names_that_chapter() {
        assert_eq!(chapters_check(LAP_SOURCE, false), []);
        // PERIODIC's arm landed inside LAP's markers.
        let planted = LAP_SOURCE.replace(
            "    // tutorial:lap-execute end",
            &format!("    {PERIODIC_LINE}\n    // tutorial:lap-execute end"),
        );
        let problems = chapters_check(&planted, false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert!(
            problem.text.contains(
                "src/lib.rs:2: region `lap-execute` of chapter 1 (LAP, docs/one.md) has \
                 changed since commit c1c1c1c1c1c1, at its line 2, and no later chapter shows \
                 the change"
            ),
            "{problem:?}"
        );
        // Nothing offers to copy chapter 2's code into chapter 1.
        assert!(!problem.fixable);
        assert!(!report(&problems).unwrap_err().to_string().contains("--fix"));
    }

    #[test]
    fn a_later_chapter_may_show_the_change_of_an_earlier_region() {
        let changed = LAP_SOURCE.replace(
            "    // tutorial:lap-execute end",
            &format!("    {PERIODIC_LINE}\n    // tutorial:lap-execute end"),
        );
        assert_eq!(chapters_check(&changed, true), []);
    }

    #[test]
    fn a_pinned_chapter_is_checked_against_its_commit() {
        // Chapter 1's block edited by hand: wrong against its commit,
        // which `--fix` copies in again.
        let chapter = format!(
            "<!-- chapter 1: LAP, as of {COMMIT} -->\n\
             <!-- excerpt: src/lib.rs#lap-execute -->\n```rust\n{PERIODIC_LINE}\n```\n"
        );
        let quotes = find_quotes("docs/one.md", &chapter).unwrap();
        let chapters: Vec<Chapter> = find_chapter("docs/one.md", &chapter)
            .unwrap()
            .into_iter()
            .collect();
        let now = regions_of("src/lib.rs", LAP_SOURCE);
        let mut at_commit = |_: &str, _: &str| -> Result<String> { Ok(LAP_SOURCE.to_string()) };
        let problems = compare_all(&now, &quotes, &chapters, &mut at_commit);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].fixable);
        assert!(problems[0].text.contains(
            "docs/one.md:2: the excerpt of `lap-execute` differs from src/lib.rs:2 as of commit \
             c1c1c1c1c1c1 at its line 1"
        ));
    }

    #[test]
    fn chapter_lines() {
        let pinned = format!("x\n<!-- chapter 1: LAP, as of {COMMIT} -->\n");
        let chapter = find_chapter("a.md", &pinned).unwrap().unwrap();
        assert_eq!((chapter.number, chapter.title.as_str()), (1, "LAP"));
        assert_eq!(chapter.pinned.as_deref(), Some(COMMIT));
        assert_eq!(find_chapter("a.md", "no chapter\n").unwrap(), None);
        let short_id = find_chapter("a.md", "<!-- chapter 1: LAP, as of 3c15c2c -->\n");
        assert!(short_id
            .unwrap_err()
            .to_string()
            .contains("not a full commit id"));
        assert!(find_chapter("a.md", "<!-- chapter one: LAP -->\n").is_err());
        let example = "<!-- chapter 2: B -->\n```text\n<!-- chapter 1: A -->\n```\n";
        assert_eq!(find_chapter("a.md", example).unwrap().unwrap().number, 2);
    }
}
