// SPDX-License-Identifier: GPL-2.0-or-later
//! The pages' side of the excerpt check: the Markdown pages, their quotes
//! of regions, and what a quote's block must be.

use anyhow::{bail, Result};
use std::path::Path;

use super::regions::Region;
use crate::util;

/// The Markdown pages checked, from the repository root.
pub(super) const DOC_DIR: &str = "docs";

pub(super) const README: &str = "README.md";

/// The HTML comment that introduces a quote.
pub(super) const QUOTE_START: &str = "<!-- excerpt: ";

pub(super) const QUOTE_END: &str = " -->";

/// A fenced block of a page that quotes a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Quote {
    pub(super) page: String,
    pub(super) line: usize,
    pub(super) file: String,
    pub(super) name: String,
    pub(super) as_string: bool,
    pub(super) text: String,
    /// The block's lines in the page: 0-based, end excluded.
    pub(super) body: (usize, usize),
}

/// The Markdown pages: README.md and docs/*.md.
pub(super) fn pages(root: &Path) -> Result<Vec<String>> {
    let mut pages = vec![README.to_string()];
    for relative in util::list_files(&root.join(DOC_DIR), &|_| false)? {
        if relative.extension().is_some_and(|e| e == "md") {
            pages.push(format!("{DOC_DIR}/{}", relative.display()));
        }
    }
    Ok(pages)
}

/// The quotes of one page.
pub(super) fn find_quotes(page: &str, text: &str) -> Result<Vec<Quote>> {
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

/// What a quote's block must be: the region, or its string's value.
pub(super) fn expected_text(quote: &Quote, region: &Region) -> Result<String> {
    if quote.as_string {
        rust_string_value(&region.text)
    } else {
        Ok(region.text.clone())
    }
}

/// The value of the one Rust string literal in `code` (a `const`): the
/// text between its quotes, with `\` line continuations and the common
/// escapes resolved.
pub(super) fn rust_string_value(code: &str) -> Result<String> {
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
