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

mod chapters;
mod quotes;
mod regions;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chapters::{chapter_of, find_chapter, git_show, pinned_regions, Chapter, SourceAt};
use quotes::{expected_text, find_quotes, pages, Quote};
use regions::{find_all_regions, Region};

/// A problem the check reports, and whether `--fix` mends it (a block to
/// copy in again), so that the message offers `--fix` only then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub(super) text: String,
    pub(super) fixable: bool,
}

impl Problem {
    pub(super) fn other(text: String) -> Self {
        Problem {
            text,
            fixable: false,
        }
    }
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

#[cfg(test)]
mod tests;
