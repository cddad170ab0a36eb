// SPDX-License-Identifier: GPL-2.0-or-later
//! Part of `cargo xtask lint` (and of the host tests): every relative link
//! in `README.md` and `docs/**/*.md` leads somewhere, so moving a file or
//! renaming a heading cannot leave a dead link behind.
//!
//! A link (`[text](target)`, `![alt](target)` or a `[label]: target`
//! definition) outside code blocks and code spans is checked unless its
//! target has a scheme (`https:`, `mailto:`): the path, relative to the
//! page (or to the repository with a leading `/`), must be a file or
//! directory of the repository, and a `#fragment` must be a heading of the
//! Markdown page it points into, as GitHub spells heading anchors
//! ([`slug`]).

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The pages checked, from the repository root: this file and every
/// Markdown file under the directory.
const README: &str = "README.md";
const DOC_DIR: &str = "docs";

/// A link found on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

/// Checks every page's links; fails naming each dead one.
pub fn check(root: &Path) -> Result<()> {
    let problems = problems(root)?;
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "{} dead link(s) in the documentation:\n{}",
        problems.len(),
        problems.join("\n")
    )
}

/// One line per dead link: `page:line: target: why`.
fn problems(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for page in pages(root)? {
        let text =
            fs::read_to_string(root.join(&page)).with_context(|| format!("reading {page}"))?;
        for link in find_links(&text) {
            if let Err(why) = resolve(root, &page, &text, &link.target) {
                problems.push(format!("{page}:{}: ({}): {why}", link.line, link.target));
            }
        }
    }
    Ok(problems)
}

/// `README.md` and the Markdown files under `docs/`, as paths from `root`
/// with `/` separators, sorted.
fn pages(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, pages: &mut Vec<String>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, pages)?;
            } else if path.extension().is_some_and(|e| e == "md") {
                let relative = path.strip_prefix(root).expect("under the root");
                pages.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut pages = Vec::new();
    if root.join(README).is_file() {
        pages.push(README.to_owned());
    }
    let docs = root.join(DOC_DIR);
    if docs.is_dir() {
        walk(root, &docs, &mut pages)?;
    }
    pages.sort();
    Ok(pages)
}

/// Whether `target` (a link on `page`, whose text is `page_text`) leads to
/// a file of the repository and, with a fragment, to a heading of it.
fn resolve(root: &Path, page: &str, page_text: &str, target: &str) -> Result<(), String> {
    if has_scheme(target) {
        return Ok(());
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let (file, text) = if path.is_empty() {
        (PathBuf::from(page), Some(page_text.to_owned()))
    } else {
        let file = if let Some(from_root) = path.strip_prefix('/') {
            PathBuf::from(from_root)
        } else {
            Path::new(page).parent().unwrap_or(Path::new("")).join(path)
        };
        let file = normalize(&file).ok_or("leads outside the repository")?;
        let full = root.join(&file);
        if !full.exists() {
            return Err(format!("no such file: {}", file.display()));
        }
        let is_markdown = full.is_file() && file.extension().is_some_and(|e| e == "md");
        (
            file,
            is_markdown.then(|| fs::read_to_string(&full).unwrap_or_default()),
        )
    };
    let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
        return Ok(());
    };
    // Fragments into source files (`#L10`) are GitHub's line anchors.
    let Some(text) = text else {
        return Ok(());
    };
    if anchors(&text).contains(fragment) {
        Ok(())
    } else {
        Err(format!(
            "no heading with anchor #{fragment} in {}",
            file.display()
        ))
    }
}

/// `https:`, `mailto:`...: a scheme before any `/`, `#` or `.`.
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(colon) => !target[..colon].contains(['/', '#', '.']) && colon > 0,
        None => false,
    }
}

/// `a/./b/../c` as `a/c`; `None` if it climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Whether a line opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("```") || line.starts_with("~~~")
}

/// `line` without its code spans (`` `...` ``), which show links rather
/// than make them.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The links of a Markdown text, outside fenced blocks and code spans.
fn find_links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut in_block = false;
    for (index, line) in text.lines().enumerate() {
        if is_fence(line) {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let line_number = index + 1;
        let line = without_code_spans(line);
        // `[label]: target` defines a reference link.
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some((_, after)) = rest.split_once("]:") {
                if let Some(target) = after.split_whitespace().next() {
                    links.push(Link {
                        line: line_number,
                        target: strip_angle_brackets(target).to_owned(),
                    });
                }
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            // The target ends at the `)` that balances the `(`.
            let mut depth = 0;
            let mut end = after.len();
            for (offset, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = offset;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            // A title (`(path "title")`) follows the target after a space;
            // `<...>` holds a target with spaces.
            let inside = after[..end].trim();
            let target = match inside.strip_prefix('<') {
                Some(bracketed) => bracketed.split('>').next().unwrap_or(""),
                None => inside.split_whitespace().next().unwrap_or(""),
            };
            if !target.is_empty() {
                links.push(Link {
                    line: line_number,
                    target: target.to_owned(),
                });
            }
            rest = &after[end.min(after.len())..];
        }
    }
    links
}

fn strip_angle_brackets(target: &str) -> &str {
    target
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(target)
}

/// Every anchor a page offers: its headings' slugs (a repeated one gets
/// `-1`, `-2`... as GitHub numbers them) and explicit `id="..."` or
/// `name="..."` attributes.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_block = false;
    for line in text.lines() {
        if is_fence(line) {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        for attribute in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attribute) {
                rest = &rest[at + attribute.len()..];
                if let Some(end) = rest.find('"') {
                    anchors.insert(rest[..end].to_owned());
                }
            }
        }
        let Some(heading) = heading_text(line) else {
            continue;
        };
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut repeat = 0;
        while anchors.contains(&anchor) {
            repeat += 1;
            anchor = format!("{base}-{repeat}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// The text of an ATX heading line (`## Title ##` gives `Title`).
fn heading_text(line: &str) -> Option<&str> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim_end())
}

/// A heading's anchor as GitHub makes it: the text as shown (links give
/// their text, code spans lose their backticks), lowercased, with every
/// character that is not a letter, digit, space, `-` or `_` dropped and
/// each space a `-`.
pub fn slug(heading: &str) -> String {
    let mut shown = String::new();
    let mut rest = heading;
    // `[text](target)` shows as `text`.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        shown.push_str(&rest[..open]);
        shown.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    shown.push_str(rest);
    shown
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_githubs() {
        assert_eq!(slug("10. Troubleshooting"), "10-troubleshooting");
        assert_eq!(
            slug("9. How the chapters stay true"),
            "9-how-the-chapters-stay-true"
        );
        assert_eq!(
            slug("Periodic timeouts (addition)"),
            "periodic-timeouts-addition"
        );
        assert_eq!(slug("`data_len` and `DATA`"), "data_len-and-data");
        assert_eq!(slug("See [the model](model.md): why?"), "see-the-model-why");
        assert_eq!(slug("A -- B"), "a----b");
        assert_eq!(slug("Über 2 × 3"), "über-2--3");
    }

    #[test]
    fn repeated_headings_are_numbered() {
        let found = anchors("# Notes\n## Notes\n```\n# Notes\n```\n### Notes ##\n<a id=\"x\"></a>");
        let expected: BTreeSet<String> = ["notes", "notes-1", "notes-2", "x"]
            .map(String::from)
            .into();
        assert_eq!(found, expected);
    }

    #[test]
    fn links_outside_code_are_found() {
        let text = "See [a](a.md#top) and ![b](img/b.png \"title\").\n\
                    `[not](code.md)` but [c](<c d.md>)\n\
                    ```\n[not](block.md)\n```\n\
                    [ref]: docs/ref.md\n\
                    [f(x)](f(x).md)";
        let targets: Vec<(usize, String)> = find_links(text)
            .into_iter()
            .map(|link| (link.line, link.target))
            .collect();
        assert_eq!(
            targets,
            [
                (1, "a.md#top"),
                (1, "img/b.png"),
                (2, "c d.md"),
                (6, "docs/ref.md"),
                (7, "f(x).md"),
            ]
            .map(|(line, target)| (line, target.to_owned()))
        );
    }

    #[test]
    fn dead_links_and_anchors_are_reported() {
        let root = std::env::temp_dir().join(format!("xtask-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("docs/sub")).unwrap();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/lib.rs"), "").unwrap();
        fs::write(
            root.join("README.md"),
            "# Stopwatch\n## Quick start\n\
             [ok](docs/guide.md#the-guide) [ok](#quick-start) [ok](src/) \
             [ok](https://example.invalid/x) [ok](/src/lib.rs#L3)\n\
             [dead](docs/missing.md)\n[dead](docs/guide.md#nowhere)\n[dead](#quick)\n",
        )
        .unwrap();
        fs::write(
            root.join("docs/guide.md"),
            "# The guide\n[ok](../README.md#stopwatch) [ok](sub/deep.md)\n[dead](../../out.md)\n",
        )
        .unwrap();
        fs::write(root.join("docs/sub/deep.md"), "[ok](../guide.md)\n").unwrap();
        let found = problems(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found,
            [
                "README.md:4: (docs/missing.md): no such file: docs/missing.md",
                "README.md:5: (docs/guide.md#nowhere): no heading with anchor #nowhere in \
                 docs/guide.md",
                "README.md:6: (#quick): no heading with anchor #quick in README.md",
                "docs/guide.md:3: (../../out.md): leads outside the repository",
            ]
        );
    }

    #[test]
    fn the_documentation_has_no_dead_links() {
        let root = crate::repo::Repo::locate().root;
        check(&root).unwrap();
    }
}
