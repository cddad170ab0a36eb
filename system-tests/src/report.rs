// SPDX-License-Identifier: GPL-2.0-or-later
//! The trials' report file: one JSON line per trial run (name, verdict,
//! duration, a one-line detail), appended by the trial itself, so `cargo
//! xtask test` can print its table whichever runner (cargo test, nextest)
//! ran them, in parallel or not.

use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The variable naming the file the trials append their lines to; unset,
/// nothing is written.
pub const REPORT_ENV: &str = "STOPWATCH_TEST_REPORT";

/// One trial's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The trial's full name (`stage::name`).
    pub name: String,
    pub passed: bool,
    pub duration: Duration,
    /// What it measured, or why it failed.
    pub detail: String,
}

/// Appends `entry` to the file named by [`REPORT_ENV`], if set.
pub fn append(entry: &Entry) -> Result<()> {
    match std::env::var_os(REPORT_ENV).filter(|p| !p.is_empty()) {
        Some(path) => append_to(Path::new(&path), entry),
        None => Ok(()),
    }
}

/// Appends `entry` to the report file `path`.
pub fn append_to(path: &Path, entry: &Entry) -> Result<()> {
    let line = json!({
        "name": entry.name,
        "passed": entry.passed,
        "seconds": entry.duration.as_secs_f64(),
        "detail": entry.detail,
    });
    // One write of one whole line, in append mode: lines of trials that
    // end at once (threads, or nextest's processes) do not mix.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// The entries of a report file; a missing file holds none.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: not a report line: {line}", path.display()))?;
            Ok(Entry {
                name: value["name"].as_str().unwrap_or_default().to_string(),
                passed: value["passed"].as_bool().unwrap_or(false),
                duration: Duration::from_secs_f64(value["seconds"].as_f64().unwrap_or(0.0)),
                detail: value["detail"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_file() -> Result<()> {
        let path = std::env::temp_dir().join(format!("system-tests-report-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(read(&path)?.is_empty());
        let entries = [
            Entry {
                name: "guest::a \"quoted\" name".into(),
                passed: true,
                duration: Duration::from_millis(1500),
                detail: "12 passed, 0 failed".into(),
            },
            Entry {
                name: "serial::b".into(),
                passed: false,
                duration: Duration::from_millis(250),
                detail: "QEMU hung\nits last lines".into(),
            },
        ];
        for entry in &entries {
            append_to(&path, entry)?;
        }
        assert_eq!(read(&path)?, entries);
        std::fs::remove_file(path)?;
        Ok(())
    }
}
