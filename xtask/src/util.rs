// SPDX-License-Identifier: GPL-2.0-or-later
//! Helpers shared by the subcommands: running programs, hashing files,
//! copying trees, and printing step banners and summary tables.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use system_tests::process::{
    command_line, format_duration, run, run_captured, shell_quote, stdout_of,
};

/// Lowercase hex SHA-256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("could not read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails with an error that says how to fix a download that does not match
/// its pinned checksum.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        bail!(
            "checksum mismatch for {}\n  expected sha256 {expected}\n  actual   sha256 {actual}\n\
             The file is damaged or not the pinned one: delete it and run the command again \
             to download it anew (rm {})",
            path.display(),
            shell_quote(path.as_os_str())
        );
    }
    Ok(())
}

/// Writes `contents` to `path` unless the file already holds exactly that,
/// so that build tools watching modification times see no change.
/// Returns whether it wrote.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("could not write {}", path.display()))?;
    Ok(true)
}

/// Every regular file under `root`, as sorted paths relative to it,
/// skipping directories for which `skip_dir` (given the relative path)
/// says so.
pub fn list_files(root: &Path, skip_dir: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries =
            fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let path = relative.join(entry.file_name());
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if !skip_dir(&path) {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What [`mirror_tree`] did.
#[derive(Debug, Default)]
pub struct MirrorReport {
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
}

/// Makes `to` hold the same files as `from` (minus skipped directories),
/// writing only files whose content differs and deleting files that are no
/// longer in `from`.
pub fn mirror_tree(
    from: &Path,
    to: &Path,
    skip_dir: &dyn Fn(&Path) -> bool,
) -> Result<MirrorReport> {
    let mut report = MirrorReport::default();
    let wanted = list_files(from, skip_dir)?;
    for relative in &wanted {
        let source = from.join(relative);
        let contents =
            fs::read(&source).with_context(|| format!("could not read {}", source.display()))?;
        if write_if_changed(&to.join(relative), &contents)? {
            report.written.push(relative.clone());
        }
    }
    if to.is_dir() {
        for relative in list_files(to, &|_| false)? {
            if wanted.binary_search(&relative).is_err() {
                let stale = to.join(&relative);
                fs::remove_file(&stale)
                    .with_context(|| format!("could not delete {}", stale.display()))?;
                report.removed.push(relative);
            }
        }
        remove_empty_dirs(to)?;
    }
    Ok(report)
}

/// Removes the empty directories below `dir` (not `dir` itself).
fn remove_empty_dirs(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_empty_dirs(&path)?;
            if fs::read_dir(&path)?.next().is_none() {
                fs::remove_dir(&path)
                    .with_context(|| format!("could not delete {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Copies a whole directory tree (used for the small `packagefiles`).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for relative in list_files(from, &|_| false)? {
        let target = to.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        fs::copy(from.join(&relative), &target)
            .with_context(|| format!("could not write {}", target.display()))?;
    }
    Ok(())
}

/// Installs `from` as `to` (a build output into `target/vm/`) unless `to`
/// is already an untouched copy of it: same size and the same modification
/// time, which the copy is given. Any later write to `to` (a corrupted or
/// half-written copy) changes its time or size, so it is copied again; so
/// is a source rebuilt, older or newer. Returns whether it copied.
pub fn install_copy(from: &Path, to: &Path) -> Result<bool> {
    let source = fs::metadata(from).with_context(|| format!("{} is missing", from.display()))?;
    let source_modified = source.modified()?;
    if let Ok(target) = fs::metadata(to) {
        if target.len() == source.len() && target.modified()? == source_modified {
            return Ok(false);
        }
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    // Copy beside the target, then rename: a running QEMU keeps its
    // binary, and an interrupted copy never passes for a whole one. The
    // process id keeps two concurrent installs apart.
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    let copied = fs::copy(from, &partial)
        .and_then(|_| fs::File::options().write(true).open(&partial))
        .and_then(|file| file.set_modified(source_modified))
        .and_then(|()| fs::rename(&partial, to));
    if let Err(error) = copied {
        let _ = fs::remove_file(&partial);
        return Err(error)
            .with_context(|| format!("could not copy {} to {}", from.display(), to.display()));
    }
    Ok(true)
}

/// A downloaded file and the SHA-256 it must have.
pub struct Pinned<'a> {
    pub path: PathBuf,
    pub sha256: &'a str,
}

/// Makes sure every file of `files` is there with its pinned hash: runs
/// `download` if one is missing or damaged (a damaged one, such as an
/// interrupted download, is deleted first, and said so), then checks them
/// all again; a second mismatch is an error that names both hashes.
pub fn fetch_verified(files: &[Pinned], download: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut needed = false;
    for file in files {
        if !file.path.is_file() {
            needed = true;
            continue;
        }
        let actual = sha256_file(&file.path)?;
        if actual != file.sha256 {
            eprintln!(
                "{} is damaged (sha256 {actual}, pinned {}): downloading it again",
                file.path.display(),
                file.sha256
            );
            fs::remove_file(&file.path)
                .with_context(|| format!("could not delete {}", file.path.display()))?;
            needed = true;
        }
    }
    if needed {
        download()?;
    }
    for file in files {
        verify_sha256(&file.path, file.sha256)?;
    }
    Ok(())
}

/// Takes an exclusive lock on `path` (created if needed) for as long as
/// the returned file lives. If another process holds it, `on_wait` hears
/// a message naming the lock file, and the call waits.
pub fn lock_file(path: &Path, what: &str, on_wait: impl FnOnce(&str)) -> Result<fs::File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    if file.try_lock().is_err() {
        on_wait(&format!(
            "Waiting for another `cargo xtask` that is {what} (it holds the lock {})...",
            path.display()
        ));
        file.lock()
            .with_context(|| format!("could not lock {}", path.display()))?;
    }
    Ok(file)
}

/// Deletes a directory tree if it exists.
pub fn remove_dir_all_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("could not delete {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Prints a step banner and times the step.
pub struct Step {
    title: String,
    started: Instant,
}

impl Step {
    pub fn start(title: impl Into<String>) -> Step {
        let title = title.into();
        eprintln!("==> {title}");
        Step {
            title,
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints the closing line and returns the step's row for a summary.
    pub fn finish(self, outcome: &str) -> SummaryRow {
        let duration = self.elapsed();
        eprintln!(
            "    {} ({outcome}, {})",
            self.title,
            format_duration(duration)
        );
        SummaryRow {
            name: self.title,
            outcome: outcome.to_string(),
            duration,
        }
    }
}

/// One line of a summary table.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub name: String,
    pub outcome: String,
    pub duration: Duration,
}

/// Prints rows as an aligned table.
pub fn print_summary(title: &str, rows: &[SummaryRow]) {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let outcome_width = rows.iter().map(|r| r.outcome.len()).max().unwrap_or(0);
    eprintln!("\n{title}");
    for row in rows {
        eprintln!(
            "  {:<name_width$}  {:<outcome_width$}  {:>8}",
            row.name,
            row.outcome,
            format_duration(row.duration)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn checksum_mismatch_names_both_sums_and_the_fix() {
        let path = std::env::temp_dir().join(format!("xtask-sum-{}", std::process::id()));
        std::fs::write(&path, b"not the pinned file").unwrap();
        let wrong = "0".repeat(64);
        let error = verify_sha256(&path, &wrong).unwrap_err().to_string();
        assert!(
            error.contains(&format!("expected sha256 {wrong}")),
            "{error}"
        );
        assert!(
            error.contains(&sha256_hex(b"not the pinned file")),
            "{error}"
        );
        assert!(
            error.contains("delete it and run the command again"),
            "{error}"
        );
        verify_sha256(&path, &sha256_hex(b"not the pinned file")).unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_second_locker_says_it_waits_names_the_lock_and_waits() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let path = dir.join("10.2.2-key.lock");
        let first = lock_file(&path, "building QEMU", |message| {
            panic!("nobody holds the lock yet, yet: {message}")
        })
        .unwrap();
        let (sender, messages) = std::sync::mpsc::channel();
        let second_path = path.clone();
        let second = std::thread::spawn(move || {
            let lock = lock_file(&second_path, "building QEMU", |message| {
                sender.send(message.to_string()).unwrap()
            });
            (lock.map(drop), Instant::now())
        });
        let message = messages.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(message.starts_with("Waiting for another `cargo xtask`"));
        assert!(message.contains(&path.display().to_string()), "{message}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !second.is_finished(),
            "the second waits while the first builds"
        );
        let released = Instant::now();
        drop(first);
        let (locked, acquired) = second.join().unwrap();
        locked.unwrap();
        assert!(acquired >= released);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn install_copies_only_what_is_not_an_untouched_copy() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let (built, installed) = (dir.join("built"), dir.join("vm/installed"));
        fs::write(&built, b"kernel v1")?;
        assert!(install_copy(&built, &installed)?);
        assert!(!install_copy(&built, &installed)?, "untouched: kept");
        // An interrupted earlier copy left its partial file behind, and
        // the installed file is gone: installed again, leftovers ignored.
        fs::write(installed.with_extension("partial-1"), b"kern")?;
        fs::remove_file(&installed)?;
        assert!(install_copy(&built, &installed)?);
        // Truncated in place.
        fs::write(&installed, b"kernel")?;
        assert!(install_copy(&built, &installed)?);
        assert_eq!(fs::read(&installed)?, b"kernel v1");
        // Rebuilt with the same size: the time differs.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&built, b"kernel v2")?;
        assert!(install_copy(&built, &installed)?);
        assert_eq!(fs::read(&installed)?, b"kernel v2");
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn mirrors_only_what_changed() -> Result<()> {
        let scratch = std::env::temp_dir().join(format!("xtask-mirror-{}", std::process::id()));
        let (from, to) = (scratch.join("from"), scratch.join("to"));
        fs::create_dir_all(from.join("src"))?;
        fs::create_dir_all(from.join("target/debug"))?;
        fs::create_dir_all(to.join("old"))?;
        fs::write(from.join("src/lib.rs"), "new")?;
        fs::write(from.join("meson.build"), "same")?;
        fs::write(from.join("target/debug/junk"), "skip me")?;
        fs::write(to.join("meson.build"), "same")?;
        fs::write(to.join("old/gone.rs"), "stale")?;

        let skip_target = |p: &Path| p.file_name() == Some(OsStr::new("target"));
        let report = mirror_tree(&from, &to, &skip_target)?;
        assert_eq!(report.written, vec![PathBuf::from("src/lib.rs")]);
        assert_eq!(report.removed, vec![PathBuf::from("old/gone.rs")]);
        assert!(!to.join("old").exists());
        assert!(!to.join("target").exists());

        let again = mirror_tree(&from, &to, &skip_target)?;
        assert!(again.written.is_empty() && again.removed.is_empty());
        fs::remove_dir_all(&scratch)?;
        Ok(())
    }
}
