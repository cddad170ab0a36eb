// SPDX-License-Identifier: GPL-2.0-or-later
//! Downloads one file over HTTPS (or plain HTTP, for a local mirror or a
//! test) into the cache, checked: the bytes go into `NAME.part`, a broken
//! transfer is resumed with a Range request where the server allows it
//! (else started over), the size the server announced is checked, and the
//! SHA-256 is checked before the file is renamed to `NAME`. A file that
//! does not match is deleted, never used.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{fetch_verified, format_duration, sha256_file, Pinned};

/// How long a server may keep us waiting (to connect, or for the next
/// bytes) before the download fails instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Transfers tried per call while each one makes progress (a broken
/// connection is resumed; one that brings nothing is not tried again).
const MAX_ATTEMPTS: usize = 5;

/// One file to download.
#[derive(Debug, Clone)]
pub struct Download<'a> {
    pub url: &'a str,
    /// The SHA-256 the file must have, lowercase hex.
    pub sha256: &'a str,
    /// Where the checked file goes; its `.part` sibling holds the bytes
    /// until then.
    pub dest: &'a Path,
    /// Connect and stall limit ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

/// How the file came to be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It was there already, with the right hash.
    Cached,
    Downloaded,
}

/// Where the bytes of `dest` gather until they are checked: its name, the
/// expected hash's first 16 digits (so that a run expecting another file,
/// e.g. after `STOPWATCH_QEMU_SHA256` changed, never resumes these bytes),
/// then `.part`.
pub fn part_path(dest: &Path, sha256: &str) -> PathBuf {
    let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
    name.push(format!(".{}.part", &sha256[..sha256.len().min(16)]));
    dest.with_file_name(name)
}

/// Deletes the `.part` files of `dest` other than `part`: bytes gathered
/// for another expected file, which no run will resume.
fn remove_other_parts(dest: &Path, part: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    for entry in fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))? {
        let path = entry?.path();
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        if file_name.starts_with(&prefix) && file_name.ends_with(".part") && path != part {
            remove(&path)?;
        }
    }
    Ok(())
}

/// Makes sure `download.dest` holds the file with the expected hash:
/// keeps a matching file, else downloads it (resuming a `.part` left by an
/// interrupted run) and checks it.
pub fn fetch(download: &Download) -> Result<Fetched> {
    let dest = download.dest;
    // One download of a file at a time (two checkouts building under
    // different keys may want the same tarball).
    let mut lock = dest.as_os_str().to_owned();
    lock.push(".lock");
    let _lock = crate::util::lock_file(Path::new(&lock), "downloading it", |message| {
        eprintln!("{message}")
    })?;
    let mut fetched = Fetched::Cached;
    let pinned = Pinned {
        path: dest.to_path_buf(),
        sha256: download.sha256,
    };
    // A file there with another hash is deleted (and said so) first.
    fetch_verified(&[pinned], || {
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        let part = part_path(dest, download.sha256);
        remove_other_parts(dest, &part)?;
        let started = Instant::now();
        eprintln!("Downloading {}\n    to {}", download.url, dest.display());
        let received = transfer(download, &part)?;
        check_and_install(download, &part)?;
        eprintln!(
            "    {} downloaded in {}, sha256 checked",
            human_size(received),
            format_duration(started.elapsed())
        );
        fetched = Fetched::Downloaded;
        Ok(())
    })?;
    Ok(fetched)
}

/// The final check: the hash of the complete `.part`, then the rename. A
/// mismatch deletes the bytes.
fn check_and_install(download: &Download, part: &Path) -> Result<()> {
    let got = sha256_file(part)?;
    if got != download.sha256 {
        remove(part)?;
        bail!(
            "the download of {} does not have the expected SHA-256, so it was deleted\n  \
             expected sha256 {}\n  got      sha256 {got}\n\
             The server sent a different or damaged file; if the file there is meant to \
             differ (a mirror, a newer release), give its hash as well",
            download.url,
            download.sha256
        );
    }
    fs::rename(part, download.dest).with_context(|| {
        format!(
            "could not rename {} to {}",
            part.display(),
            download.dest.display()
        )
    })
}

/// How one HTTP exchange ended.
enum Attempt {
    /// `.part` holds everything the server announced (or, without a
    /// length, everything it sent before closing).
    Complete,
    /// The connection broke, or stalled, during the body; `.part` holds
    /// what came before, `received` bytes of it from this exchange.
    Broken { received: u64, why: anyhow::Error },
    /// The server cannot resume this `.part` (it was deleted): start over.
    StartOver,
}

/// What the exchanges of one call learned about the server.
#[derive(Default)]
struct Transfer {
    /// The file's size, once announced.
    total: Option<u64>,
    /// Bytes received, all exchanges together.
    received: u64,
    /// Whether the server answered a Range request with the whole file.
    ignores_ranges: bool,
    /// The last tenth reported where no progress bar is drawn.
    reported_percent: u64,
}

/// Fills `part` completely, resuming when the connection breaks with
/// progress; returns the bytes received.
fn transfer(download: &Download, part: &Path) -> Result<u64> {
    let agent = agent(download.url, download.timeout);
    let mut state = Transfer::default();
    let bar = progress_bar();
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        match exchange(&agent, download, part, &mut state, &bar) {
            Ok(Attempt::Complete) => break Ok(state.received),
            Ok(Attempt::StartOver) if attempts < MAX_ATTEMPTS => {}
            Ok(Attempt::Broken { received, why }) if received > 0 && attempts < MAX_ATTEMPTS => {
                bar.suspend(|| {
                    eprintln!(
                        "    the transfer broke after {} ({why:#}): {}",
                        human_size(file_len(part)),
                        if state.ignores_ranges {
                            "starting over (the server does not resume)"
                        } else {
                            "resuming"
                        }
                    )
                });
            }
            Ok(Attempt::Broken { why, .. }) => break Err(why),
            Ok(Attempt::StartOver) => break Err(anyhow!("the server could not resume")),
            Err(error) => break Err(error),
        }
    };
    bar.finish_and_clear();
    result.map_err(|error| {
        // Bytes the server cannot resume from are of no use to a later run.
        let keep = file_len(part) > 0 && !state.ignores_ranges;
        if !keep {
            let _ = fs::remove_file(part);
        }
        let kept = if keep {
            format!(
                "\n{} bytes are kept in {}: the next run resumes from there",
                file_len(part),
                part.display()
            )
        } else {
            String::new()
        };
        anyhow!(
            "could not download {} ({attempts} attempt(s)): {error:#}{kept}",
            download.url
        )
    })
}

fn agent(url: &str, timeout: Duration) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder();
    if is_loopback(url) {
        // A server on this machine (a local mirror, a test's) is reached
        // directly, whatever proxy the environment names.
        config = config.proxy(None);
    }
    config
        // Statuses are ours to judge (206, 416, and the message of a 404).
        .http_status_as_error(false)
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .user_agent(concat!("stopwatch-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Whether `url`'s host is this machine.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One GET: with a Range for the bytes `part` lacks when it holds some.
fn exchange(
    agent: &ureq::Agent,
    download: &Download,
    part: &Path,
    state: &mut Transfer,
    bar: &ProgressBar,
) -> Result<Attempt> {
    let have = file_len(part);
    let mut request = agent.get(download.url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .map_err(|error| explain(error, download.timeout))?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let (start, total) = match status.as_u16() {
        206 if have > 0 => {
            let range = header("content-range").unwrap_or_default();
            match parse_content_range(&range) {
                Some((first, last, total)) if first == have && last < total.unwrap_or(u64::MAX) => {
                    (have, total.or(Some(last + 1)))
                }
                _ => {
                    bar.suspend(|| {
                        eprintln!(
                            "    the server sent the range {range:?} for bytes={have}-: starting over"
                        )
                    });
                    remove(part)?;
                    return Ok(Attempt::StartOver);
                }
            }
        }
        200 => {
            if have > 0 {
                state.ignores_ranges = true;
            }
            (0, content_length)
        }
        416 if have > 0 => {
            // More bytes than the file has, or a server that cannot
            // resume: the .part is of no use.
            bar.suspend(|| {
                eprintln!("    the server cannot resume from byte {have} (HTTP 416): starting over")
            });
            remove(part)?;
            return Ok(Attempt::StartOver);
        }
        _ => bail!(
            "{} answered HTTP {}{}",
            download.url,
            status.as_u16(),
            status
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        ),
    };
    if let (Some(known), Some(now)) = (state.total, total) {
        if known != now {
            remove(part)?;
            bail!(
                "{} changed size during the download: {known} bytes announced first, now \
                 {now}; the partial file was deleted",
                download.url
            );
        }
    }
    state.total = state.total.or(total);
    let mut file = if start > 0 {
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    }
    .with_context(|| format!("could not write {}", part.display()))?;
    if let Some(total) = state.total {
        bar.set_length(total);
    }
    bar.set_position(start);

    let mut body = response.body_mut().as_reader();
    let mut buffer = vec![0; 1 << 16];
    let mut received = 0u64;
    let broken = loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break Some(ureq::Error::from(error)),
        };
        file.write_all(&buffer[..n])
            .with_context(|| format!("could not write {}", part.display()))?;
        received += n as u64;
        state.received += n as u64;
        bar.inc(n as u64);
        if let Some(total) = state.total.filter(|_| bar.is_hidden()) {
            // Without a terminal (CI, a log), a line every tenth.
            let percent = (start + received) * 100 / total.max(1);
            if percent >= state.reported_percent + 10 {
                state.reported_percent = percent - percent % 10;
                eprintln!(
                    "    {percent}% ({} of {})",
                    human_size(start + received),
                    human_size(total)
                );
            }
        }
    };
    file.flush()
        .with_context(|| format!("could not write {}", part.display()))?;
    drop(file);
    let now = file_len(part);
    let why = match (broken, state.total) {
        (Some(ureq::Error::Io(io)), Some(total)) if io.kind() == io::ErrorKind::UnexpectedEof => {
            closed_early(now, total)
        }
        (Some(error), Some(total)) => {
            explain(error, download.timeout).context(format!("after {now} of {total} bytes"))
        }
        (Some(error), None) => explain(error, download.timeout),
        (None, Some(total)) if now < total => closed_early(now, total),
        (None, Some(total)) if now > total => {
            remove(part)?;
            bail!(
                "{} sent {now} bytes, more than the {total} it announced",
                download.url
            );
        }
        (None, _) => return Ok(Attempt::Complete),
    };
    Ok(Attempt::Broken { received, why })
}

fn closed_early(now: u64, total: u64) -> anyhow::Error {
    anyhow!("the server closed the connection after {now} of the {total} bytes it announced")
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): (first, last, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    (first <= last).then_some((first, last, total))
}

/// An error of ureq, said plainly; a timeout says so and for how long.
fn explain(error: ureq::Error, timeout: Duration) -> anyhow::Error {
    match error {
        ureq::Error::Timeout(which) => anyhow!(
            "timed out: the server sent nothing for {} ({which})",
            format_duration(timeout)
        ),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => anyhow!(
            "timed out: the server sent nothing for {} ({io})",
            format_duration(timeout)
        ),
        other => anyhow!(other),
    }
}

fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "    [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    )
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("could not delete {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
