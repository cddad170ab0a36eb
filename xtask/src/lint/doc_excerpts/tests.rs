// SPDX-License-Identifier: GPL-2.0-or-later
//! The excerpt check's tests: planted regions, quotes and chapters.

use super::quotes::rust_string_value;
use super::regions::{find_regions, marker};
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
