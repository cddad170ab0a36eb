// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask tarball-check`: the slow, opt-in end-to-end check of the
//! path a host without a Debian archive takes (not part of `cargo xtask
//! test`). It assembles a release-shaped tarball
//! ([`release_tarball`]), serves it over HTTP on 127.0.0.1, makes a fresh
//! `git clone` of this checkout's HEAD in a scratch directory and runs
//! `cargo xtask test` there (or `build` + `test guest` with `--quick`),
//! with apt's configuration hiding the Debian archive (as on Ubuntu), the
//! download pointed at the local server, and a cache of its own (only
//! ccache is shared, so QEMU's C files come from it). Then it checks that
//! the tarball was really downloaded and built from, and that Debian's
//! source package was not touched.

pub(crate) mod server;

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::build::cache::{Cache, CACHE_DIR_ENV};
use crate::build::pins;
use crate::build::prereqs::cargo;
use crate::build::qemu_source::{self, QemuTarball, TARBALL_ENV};
use crate::build::release_tarball;
use crate::build::upstream::{self, SHA256_ENV, URL_ENV};
use crate::repo::Repo;
use crate::util::{self, sha256_file, Step, SummaryRow};
use server::FileServer;

/// apt configuration that lists no source at all: what apt sees on a host
/// without a Debian archive (Ubuntu, say), without touching /etc/apt.
pub const APT_CONFIG_WITHOUT_SOURCES: &str =
    "Dir::Etc::sourcelist \"/dev/null\";\nDir::Etc::sourceparts \"/nonexistent\";\n";

/// Variables of this process that must not reach the clone's build: they
/// would choose its tarball, cache or toolchain for it.
const NOT_INHERITED: &[&str] = &[
    TARBALL_ENV,
    URL_ENV,
    SHA256_ENV,
    CACHE_DIR_ENV,
    crate::build::debian::mirror::MIRROR_ENV,
    "APT_CONFIG",
    "CARGO_TARGET_DIR",
    "RUSTUP_TOOLCHAIN",
];

/// How the clone gets the tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Downloaded from the local server (`STOPWATCH_QEMU_URL`): the path
    /// of a host without a Debian archive.
    Download,
    /// Passed as a file (`STOPWATCH_QEMU_TARBALL`, as `--qemu-tarball`).
    File,
}

/// `cargo xtask tarball-check`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    /// An already assembled tarball to use instead of assembling one.
    pub tarball: Option<PathBuf>,
    /// `build` + `test guest` instead of the whole `cargo xtask test`.
    pub quick: bool,
    /// Keep the scratch directory (clone, cache, logs) after success.
    pub keep: bool,
    pub delivery: Delivery,
}

/// The scratch directory of a check (replaced by the next one).
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join("stopwatch-tarball-check")
}

/// Runs the check; prints a summary with every step's time.
pub fn run(repo: &Repo, cache: &Cache, options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let result = run_steps(repo, cache, options, &mut rows);
    rows.push(SummaryRow {
        name: "total".into(),
        outcome: if result.is_ok() { "passed" } else { "FAILED" }.into(),
        duration: started.elapsed(),
    });
    util::print_summary("Tarball check", &rows);
    result
}

fn run_steps(
    repo: &Repo,
    cache: &Cache,
    options: &Options,
    rows: &mut Vec<SummaryRow>,
) -> Result<()> {
    let work = scratch_dir();
    if work.to_string_lossy().contains('+') {
        bail!(
            "the scratch directory {} contains a '+', which QEMU's build cannot take",
            work.display()
        );
    }
    // Resolved before the scratch directory is emptied: a tarball inside
    // it (one a `--keep` run left) would be deleted with it.
    let given = match &options.tarball {
        Some(path) => {
            let path = fs::canonicalize(path)
                .with_context(|| format!("tarball {} not found", path.display()))?;
            if path.starts_with(fs::canonicalize(&work).unwrap_or_else(|_| work.clone())) {
                bail!(
                    "the tarball {} is inside the scratch directory, which the check empties \
                     first: copy it elsewhere and pass that",
                    path.display()
                );
            }
            Some(path)
        }
        None => None,
    };
    // One check at a time: they share the scratch directory.
    let _lock = util::lock_file(
        &work.with_extension("lock"),
        "running the tarball check",
        |message| eprintln!("    {message}"),
    )?;
    util::remove_dir_all_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;

    let tarball = match given {
        Some(path) => path,
        None => {
            let step = Step::start("Assemble the release-shaped tarball");
            let assembled = release_tarball::assemble(repo, cache, &work.join(tarball_name()))?;
            rows.push(step.finish(&format!("{} MB", assembled.bytes / 1_000_000)));
            assembled.path
        }
    };
    let sha256 = sha256_file(&tarball)?;
    eprintln!("    {sha256}  {}", tarball.display());

    let step = Step::start("Fresh clone of this checkout's HEAD");
    let dirty = util::stdout_of(
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(&repo.root),
    )?;
    if !dirty.trim().is_empty() {
        eprintln!(
            "    note: uncommitted changes of {} are not in the clone",
            repo.root.display()
        );
    }
    let clone = work.join("repo");
    util::run_captured(
        Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(&repo.root)
            .arg(&clone),
    )?;
    let head = util::stdout_of(
        Command::new("git")
            .args(["log", "-1", "--format=commit %h"])
            .current_dir(&clone),
    )?;
    rows.push(step.finish(head.trim()));

    let scratch_cache = work.join("cache");
    share_ccache(cache, &scratch_cache)?;
    let apt_config = work.join("apt-without-sources.conf");
    fs::write(&apt_config, APT_CONFIG_WITHOUT_SOURCES)?;

    let server = match options.delivery {
        Delivery::Download => Some(FileServer::start(&tarball, &tarball_name())?),
        Delivery::File => None,
    };
    let mut env: Vec<(&str, OsString)> = vec![
        (CACHE_DIR_ENV, scratch_cache.clone().into()),
        ("APT_CONFIG", apt_config.clone().into()),
    ];
    match &server {
        Some(server) => {
            let url = server.url(&tarball_name());
            eprintln!("    serving it at {url}");
            env.push((URL_ENV, url.into()));
            env.push((SHA256_ENV, sha256.clone().into()));
        }
        None => env.push((TARBALL_ENV, tarball.clone().into())),
    }

    let log_path = work.join("check.log");
    let runs: &[&[&str]] = if options.quick {
        &[&["build"], &["test", "guest"]]
    } else {
        &[&["test"]]
    };
    for args in runs {
        let title = format!("cargo xtask {} (in the clone)", args.join(" "));
        let step = Step::start(&title);
        let mut cmd = Command::new(cargo());
        cmd.arg("xtask").args(*args).current_dir(&clone);
        for name in NOT_INHERITED {
            cmd.env_remove(name);
        }
        for (name, value) in &env {
            cmd.env(name, value);
        }
        eprintln!("    {}", env_line(&env));
        let passed = run_teed(&mut cmd, &log_path)?;
        rows.push(step.finish(if passed { "passed" } else { "FAILED" }));
        if !passed {
            bail!(
                "`cargo xtask {}` failed in the clone: its output is above and in {} (the \
                 scratch directory is kept)",
                args.join(" "),
                log_path.display()
            );
        }
    }

    let step = Step::start("Checks: downloaded, built from it, Debian's source untouched");
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let findings = check_outcome(&scratch_cache, &clone, &sha256, server.as_ref(), &log)?;
    for finding in &findings {
        eprintln!("    ok: {finding}");
    }
    rows.push(step.finish(&format!("{} checks passed", findings.len())));

    if options.keep {
        eprintln!("Kept {}", work.display());
    } else {
        util::remove_dir_all_if_exists(&work)?;
    }
    Ok(())
}

fn tarball_name() -> String {
    format!("{}.tar.xz", release_tarball::top_dir_name())
}

/// The variables as a shell would set them, to rerun a step by hand.
fn env_line(env: &[(&str, OsString)]) -> String {
    env.iter()
        .map(|(name, value)| format!("{name}={}", util::shell_quote(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes the scratch cache's ccache directory the shared one: QEMU's C
/// objects are the same (ccache-cc keys them relative to the cache's
/// `qemu/`), so only what differs is compiled.
fn share_ccache(cache: &Cache, scratch_cache: &Path) -> Result<()> {
    let shared = cache.ccache();
    fs::create_dir_all(&shared)
        .with_context(|| format!("could not create {}", shared.display()))?;
    fs::create_dir_all(scratch_cache)?;
    let scratch = Cache {
        root: scratch_cache.to_path_buf(),
    };
    std::os::unix::fs::symlink(&shared, scratch.ccache())
        .with_context(|| format!("could not link {}", scratch.ccache().display()))
}

/// Runs `cmd`, its output both on stderr and appended to `log`; returns
/// whether it succeeded.
fn run_teed(cmd: &mut Command, log: &Path) -> Result<bool> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", util::command_line(cmd)))?;
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let file = Arc::clone(&file);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let mut line = line;
                line.push(b'\n');
                let _ = std::io::stderr().write_all(&line);
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(&line);
                }
            }
        })
    })
    .collect();
    let status = child
        .wait()
        .context("the clone's cargo xtask did not finish")?;
    for pump in pumps {
        let _ = pump.join();
    }
    Ok(status.success())
}

/// What the clone's run must have left: the tarball downloaded from the
/// server (when served) into the scratch cache with its hash; the shared
/// source prepared from it (its note file) without the Debian-only
/// patches; no trace of Debian's source package. Returns what was found.
fn check_outcome(
    scratch_cache: &Path,
    clone: &Path,
    sha256: &str,
    server: Option<&FileServer>,
    log: &str,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let downloads = scratch_cache.join("downloads/qemu");
    if let Some(server) = server {
        let served = server.served();
        let path = format!("/{}", tarball_name());
        let body: u64 = served
            .iter()
            .filter(|s| s.method == "GET" && s.path == path && matches!(s.status, 200 | 206))
            .map(|s| s.body_bytes)
            .sum();
        if body == 0 {
            bail!("the server sent no tarball: it answered {served:?}");
        }
        found.push(format!(
            "the server sent the tarball: {body} bytes in {} request(s)",
            served.len()
        ));
        // The line the build prints for the source it chose.
        let source = QemuTarball::Release(upstream::Release {
            url: server.url(&tarball_name()),
            sha256: sha256.to_string(),
        })
        .describe();
        if !log.contains(&source) {
            bail!("the build's output never says its source is {source:?}");
        }
        found.push(format!("the build's output says its source is {source}"));
        let downloaded = upstream::cached_path(&Cache {
            root: scratch_cache.to_path_buf(),
        });
        let actual = sha256_file(&downloaded)
            .with_context(|| format!("the download is not at {}", downloaded.display()))?;
        if actual != sha256 {
            bail!("{} has sha256 {actual}, not {sha256}", downloaded.display());
        }
        found.push(format!(
            "{} has the served tarball's sha256",
            downloaded.display()
        ));
    }
    let debian_files: Vec<_> = pins::DEBIAN_SOURCE_FILES
        .iter()
        .map(|file| downloads.join(file.name))
        .filter(|path| path.exists())
        .collect();
    if !debian_files.is_empty() {
        bail!("Debian's source package was downloaded: {debian_files:?}");
    }
    if scratch_cache.join("apt").exists() {
        bail!(
            "the build used apt (it left {})",
            scratch_cache.join("apt").display()
        );
    }
    found.push("no Debian source package and no apt state in the scratch cache".into());

    let prepared = prepared_sources(scratch_cache)?;
    let [src] = prepared.as_slice() else {
        bail!("expected one prepared QEMU source in the scratch cache, found {prepared:?}");
    };
    if !src.join(release_tarball::NOTE_FILE).is_file() {
        bail!(
            "{} was not prepared from the assembled tarball (no {})",
            src.display(),
            release_tarball::NOTE_FILE
        );
    }
    let applied = util::stdout_of(
        Command::new("git")
            .args(["rev-list", "--count"])
            .arg(format!("{}..HEAD", pins::BASE_TAG))
            .current_dir(src),
    )?;
    let applied: usize = applied.trim().parse().context("git rev-list --count")?;
    let mut upstream_patches = 0;
    let patches = qemu_source::patch_files(clone)?;
    for patch in &patches {
        if !crate::build::patches::is_debian_only(&fs::read_to_string(patch)?) {
            upstream_patches += 1;
        }
    }
    if applied != upstream_patches {
        bail!(
            "{} has {applied} patch commits; the upstream path applies {upstream_patches} of \
             the {} patches (not the Debian-only ones)",
            src.display(),
            patches.len()
        );
    }
    found.push(format!(
        "the QEMU source was prepared from the assembled tarball, with {applied} of {} patches \
         (the Debian-only ones skipped)",
        patches.len()
    ));
    Ok(found)
}

/// The prepared sources (`qemu/<version>-<key>/src`) in a cache.
fn prepared_sources(cache_root: &Path) -> Result<Vec<PathBuf>> {
    let cache = Cache {
        root: cache_root.to_path_buf(),
    };
    let dir = cache.qemu_builds();
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|src| src.is_dir())
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apt_config_hides_every_source() -> Result<()> {
        // apt-config reads it as apt would; the paths it names hold no
        // source at all.
        let path = std::env::temp_dir().join(format!("xtask-apt-{}.conf", std::process::id()));
        fs::write(&path, APT_CONFIG_WITHOUT_SOURCES)?;
        let output = Command::new("apt-config")
            .args([
                "shell",
                "LIST",
                "Dir::Etc::sourcelist/f",
                "PARTS",
                "Dir::Etc::sourceparts/d",
            ])
            .env("APT_CONFIG", &path)
            .output();
        fs::remove_file(&path)?;
        let Ok(output) = output else {
            eprintln!("no apt-config on this host: nothing to check");
            return Ok(());
        };
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("LIST='/dev/null'"), "{text}");
        assert!(text.contains("PARTS='/nonexistent/'"), "{text}");
        Ok(())
    }

    /// A scratch cache as a passing run leaves it: the tarball downloaded,
    /// one prepared source with the note file and the upstream path's
    /// patch commits.
    fn passing_scratch(root: &Path, upstream_patches: usize) -> Result<PathBuf> {
        let cache = root.join("cache");
        let downloaded = upstream::cached_path(&Cache {
            root: cache.clone(),
        });
        fs::create_dir_all(downloaded.parent().unwrap())?;
        fs::write(&downloaded, b"the tarball")?;
        let src = cache.join("qemu/10.2.2-0123456789abcdef/src");
        fs::create_dir_all(&src)?;
        fs::write(src.join(release_tarball::NOTE_FILE), b"assembled")?;
        let git = |args: &[&str]| {
            util::run_captured(
                Command::new("git")
                    .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
                    .args(args)
                    .current_dir(&src),
            )
        };
        git(&["init", "--quiet"])?;
        git(&["commit", "--quiet", "--allow-empty", "-m", "base"])?;
        git(&["tag", pins::BASE_TAG])?;
        for n in 0..upstream_patches {
            git(&[
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                &format!("patch {n}"),
            ])?;
        }
        Ok(cache)
    }

    #[test]
    fn the_checks_find_a_passing_run_and_each_sign_of_the_wrong_path() -> Result<()> {
        let root = std::env::temp_dir().join(format!("xtask-outcome-{}", std::process::id()));
        let repo = Repo::locate().root;
        let patches = qemu_source::patch_files(&repo)?;
        let upstream_patches = patches
            .iter()
            .filter(|p| !crate::build::patches::is_debian_only(&fs::read_to_string(p).unwrap()))
            .count();
        assert!(
            upstream_patches < patches.len(),
            "the series has Debian-only patches"
        );
        let served = root.join("served.tar.xz");
        fs::create_dir_all(&root)?;
        fs::write(&served, b"the tarball")?;
        let sha = crate::util::sha256_hex(b"the tarball");
        let server = FileServer::start(&served, &tarball_name())?;
        let url = server.url(&tarball_name());
        let log = format!("    source: QEMU's release tarball, {url}\n");
        let check = |cache: &Path, log: &str| {
            check_outcome(cache, &repo, &sha, Some(&server), log).map_err(|e| e.to_string())
        };

        // Nothing was requested from the server yet.
        let cache = passing_scratch(&root.join("a"), upstream_patches)?;
        let error = check(&cache, &log).unwrap_err();
        assert!(error.contains("the server sent no tarball"), "{error}");
        let mut stream = std::net::TcpStream::connect(server.addr)?;
        write!(stream, "GET /{} HTTP/1.1\r\n\r\n", tarball_name())?;
        std::io::Read::read_to_end(&mut stream, &mut Vec::new())?;
        let found = check(&cache, &log).unwrap();
        assert_eq!(found.len(), 5, "{found:?}");

        let error = check(&cache, &format!("    source: the tarball {url}\n")).unwrap_err();
        assert!(error.contains("never says its source is"), "{error}");
        let debian_file = cache
            .join("downloads/qemu")
            .join(pins::DEBIAN_ORIG_TARBALL.name);
        fs::write(&debian_file, b"")?;
        let error = check(&cache, &log).unwrap_err();
        assert!(
            error.contains("Debian's source package was downloaded"),
            "{error}"
        );
        fs::remove_file(&debian_file)?;
        fs::create_dir_all(cache.join("apt"))?;
        let error = check(&cache, &log).unwrap_err();
        assert!(error.contains("the build used apt"), "{error}");
        fs::remove_dir(cache.join("apt"))?;

        // The Debian-only patches applied too.
        let all_patches = passing_scratch(&root.join("b"), patches.len())?;
        let error = check(&all_patches, &log).unwrap_err();
        assert!(error.contains("not the Debian-only ones"), "{error}");
        // Another tarball downloaded.
        fs::write(
            upstream::cached_path(&Cache {
                root: cache.clone(),
            }),
            b"other",
        )?;
        let error = check(&cache, &log).unwrap_err();
        assert!(error.contains("has sha256"), "{error}");
        fs::remove_dir_all(&root)?;
        Ok(())
    }
}
