// SPDX-License-Identifier: GPL-2.0-or-later
//! The tutorial's chapters: a page's chapter line, and the regions as a
//! pinned chapter's commit has them.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

use super::quotes::{Quote, QUOTE_END};
use super::regions::{find_regions, Region};
use super::Problem;

/// A tutorial chapter: a page with a `<!-- chapter N: TITLE -->` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Chapter {
    pub(super) page: String,
    pub(super) number: u32,
    pub(super) title: String,
    /// The commit whose sources an earlier chapter quotes.
    pub(super) pinned: Option<String>,
}

impl Chapter {
    /// `chapter 1 (LAP, docs/adding-a-register.md)`.
    pub(super) fn name(&self) -> String {
        format!("chapter {} ({}, {})", self.number, self.title, self.page)
    }
}

pub(super) const CHAPTER_START: &str = "<!-- chapter ";

pub(super) const PINNED: &str = ", as of ";

/// The chapter line of a page, if it has one.
pub(super) fn find_chapter(page: &str, text: &str) -> Result<Option<Chapter>> {
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
pub(super) type SourceAt<'a> = dyn FnMut(&str, &str) -> Result<String> + 'a;

/// `git show COMMIT:FILE` in the repository at `root`.
pub(super) fn git_show(root: &Path, commit: &str, file: &str) -> Result<String> {
    let git = || {
        let mut git = std::process::Command::new("git");
        git.arg("-C").arg(root);
        git
    };
    let show = || {
        git()
            .args(["show", &format!("{commit}:{file}")])
            .output()
            .context("running git (a pinned chapter's excerpts come from its commit)")
    };
    let mut output = show()?;
    // A shallow clone (a CI checkout, say) lacks the pinned commit: fetch
    // the history once, where the clone came from, and look again.
    let shallow = || {
        git()
            .args(["rev-parse", "--is-shallow-repository"])
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"true"))
    };
    if !output.status.success() && shallow() {
        eprintln!("    fetching the history of this shallow clone (chapter pinned to {commit})");
        let _ = git().args(["fetch", "--quiet", "--unshallow"]).status();
        output = show()?;
    }
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
pub(super) fn pinned_regions(
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

pub(super) fn chapter_of<'a>(chapters: &'a [Chapter], page: &str) -> Option<&'a Chapter> {
    chapters.iter().find(|chapter| chapter.page == page)
}
