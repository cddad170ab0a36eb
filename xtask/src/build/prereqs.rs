// SPDX-License-Identifier: GPL-2.0-or-later
//! Checks (and where it can, installs) what the builds need: the pinned
//! Rust toolchain with the guest target, the system packages QEMU's build
//! uses (through the host's package manager, [`host_packages`]), bindgen
//! and Python. Every failure says how to fix it.

use anyhow::{bail, Context, Result};
use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::Cache;
use crate::build::host_packages::{self, HostEnv, Manager};
use crate::util::{run, stdout_of};

/// Oldest bindgen QEMU's meson files accept.
const MIN_BINDGEN: (u32, u32) = (0, 60);

/// The toolchain file's pins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToolchainPins {
    pub channel: String,
    pub components: Vec<String>,
    pub targets: Vec<String>,
}

/// Reads `rust-toolchain.toml`'s `channel`, `components` and `targets`.
/// A tiny reader for this one flat file spares a TOML dependency.
pub fn parse_toolchain_file(text: &str) -> Result<ToolchainPins> {
    let mut pins = ToolchainPins::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let words: Vec<String> = value
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|w| w.trim().trim_matches('"').to_string())
            .filter(|w| !w.is_empty())
            .collect();
        match key.trim() {
            "channel" => pins.channel = words.into_iter().next().unwrap_or_default(),
            "components" => pins.components = words,
            "targets" => pins.targets = words,
            _ => {}
        }
    }
    if pins.channel.is_empty() {
        bail!("no `channel = \"...\"` in rust-toolchain.toml");
    }
    Ok(pins)
}

/// Makes sure the toolchain of `rust-toolchain.toml`, its components and
/// targets are installed: a plain cargo call installs a missing toolchain
/// but not the targets it lists.
pub fn ensure_rust_toolchain(repo: &Path) -> Result<ToolchainPins> {
    let file = repo.join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let pins = parse_toolchain_file(&text).with_context(|| format!("in {}", file.display()))?;
    let channel = pins.channel.as_str();

    let toolchains = stdout_of(Command::new("rustup").args(["toolchain", "list"])).context(
        "rustup is needed to manage the pinned Rust toolchain: install it (https://rustup.rs) \
         and run again",
    )?;
    let installed = toolchains.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name == channel || name.starts_with(&format!("{channel}-"))
    });
    if !installed {
        eprintln!("Installing Rust {channel} (pinned in rust-toolchain.toml)...");
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", channel, "--profile", "minimal"]);
        if !pins.components.is_empty() {
            install.args(["--component", &pins.components.join(",")]);
        }
        run(&mut install)?;
    }

    add_missing(
        channel,
        "component",
        &pins.components,
        |installed, wanted| {
            // Listed with the host triple: `clippy-x86_64-unknown-linux-gnu`.
            installed == wanted || installed.starts_with(&format!("{wanted}-"))
        },
    )?;
    add_missing(channel, "target", &pins.targets, |installed, wanted| {
        installed.trim() == wanted
    })?;
    // QEMU's configure looks for rustdoc on PATH beside rustc: every
    // rustup installation has its proxy, a hand-assembled toolchain may
    // not (configure would stop much later, "Program 'rustdoc' not found").
    stdout_of(Command::new("rustdoc").arg("--version").current_dir(repo)).context(
        "rustdoc is not on PATH, and QEMU's configure needs it beside rustc: a rustup \
         installation puts its proxy next to cargo's (`rustup self update` restores missing \
         proxies)",
    )?;
    Ok(pins)
}

/// Tools found for the QEMU build.
#[derive(Debug)]
pub struct HostTools {
    /// Directories to put first on PATH for configure and ninja.
    pub extra_path: Vec<PathBuf>,
    /// `bindgen --version`, part of the cache key.
    pub bindgen_version: String,
}

impl HostTools {
    /// PATH with [`HostTools::extra_path`] in front.
    pub fn path_env(&self) -> Result<std::ffi::OsString> {
        let existing = env::var_os("PATH").unwrap_or_default();
        let dirs = self
            .extra_path
            .iter()
            .cloned()
            .chain(env::split_paths(&existing));
        env::join_paths(dirs).context("a directory on PATH contains ':'")
    }
}

/// Checks the system packages, Python and bindgen, installing what is
/// missing when allowed to. `debian_source`: QEMU's source comes from
/// Debian's source package (`apt-get source`), which needs a few more.
pub fn ensure_host_tools(cache: &Cache, debian_source: bool) -> Result<HostTools> {
    let manager = ensure_system_packages(debian_source)?;
    ensure_python(manager)?;
    ensure_bindgen(
        &cache.tools(),
        &env::var_os("PATH").unwrap_or_default(),
        &cargo(),
    )?;
    detect_host_tools(cache)
}

/// Makes sure the bindgen configure will find (`tools/bin` first, then
/// `path`) is new enough: where the distribution's is older than QEMU
/// needs (Ubuntu 22.04's 0.59) or there is none, `cargo install`s
/// bindgen-cli into `tools` (the cache's).
fn ensure_bindgen(tools: &Path, path: &OsStr, cargo: &OsStr) -> Result<()> {
    let found = bindgen_version(&tools.join("bin"), path);
    if found
        .as_deref()
        .is_some_and(|version| version_at_least(version, MIN_BINDGEN))
    {
        return Ok(());
    }
    let why = found.map_or("not found".to_string(), |v| format!("{v} is too old"));
    eprintln!(
        "bindgen {why}; installing bindgen-cli into {} (a few minutes)...",
        tools.display()
    );
    run(Command::new(cargo)
        .args(["install", "--locked", "bindgen-cli", "--root"])
        .arg(tools))
    .context(
        "could not install bindgen-cli with cargo; install your distribution's bindgen \
         (0.60 or newer) instead",
    )
}

/// The tools as they are, installing nothing (for commands that only
/// need the cache key).
pub fn detect_host_tools(cache: &Cache) -> Result<HostTools> {
    let tools_bin = cache.tools().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let bindgen_version = bindgen_version(&tools_bin, &path)
        .filter(|version| version_at_least(version, MIN_BINDGEN))
        .context("no bindgen >= 0.60 found: run `cargo xtask build`, which installs it")?;
    Ok(HostTools {
        extra_path: vec![tools_bin],
        bindgen_version,
    })
}

/// `rustup <kind> add`s those of `wanted` that `rustup <kind> list
/// --installed` does not show (a plain cargo call does not add them).
fn add_missing(
    channel: &str,
    kind: &str,
    wanted: &[String],
    is_listed_as: impl Fn(&str, &str) -> bool,
) -> Result<()> {
    let installed = stdout_of(Command::new("rustup").args([
        kind,
        "list",
        "--installed",
        "--toolchain",
        channel,
    ]))?;
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|w| !installed.lines().any(|line| is_listed_as(line, w)))
        .collect();
    if !missing.is_empty() {
        eprintln!("Adding Rust {kind}s {}...", missing.join(", "));
        run(Command::new("rustup")
            .args([kind, "add", "--toolchain", channel])
            .args(&missing))?;
    }
    Ok(())
}

pub use system_tests::repo::cargo;

/// Finds this host's package manager and the packages it lacks, and
/// installs them (as root, or with password-less sudo); otherwise stops
/// with the command to run. Returns the manager.
pub fn ensure_system_packages(debian_source: bool) -> Result<Manager> {
    let host = HostEnv::current();
    let manager = host_packages::detect(&host)?;
    let extra = env::var(host_packages::EXTRA_PACKAGE_ENV).ok();
    host_packages::ensure(&host, manager, debian_source, extra.as_deref())?;
    Ok(manager)
}

fn ensure_python(manager: Manager) -> Result<()> {
    let status = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status();
    let package = |what: &str| {
        host_packages::NEEDS
            .iter()
            .find(|need| need.what == what)
            .and_then(|need| manager.package_of(need))
            .unwrap_or("python3")
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => bail!(
            "python3 cannot create virtual environments (no `venv`/`ensurepip`), which QEMU's \
             configure needs: install {}'s {} (or the venv module of the python3 first on PATH)",
            manager.name(),
            package("Python venv")
        ),
        Err(_) => bail!(
            "python3 not found: install {}'s {}",
            manager.name(),
            package("Python venv")
        ),
    }
}

/// `bindgen --version` of the bindgen that configure will find, with
/// `tools_bin` searched first, as in the PATH configure gets.
fn bindgen_version(tools_bin: &Path, path: &OsStr) -> Option<String> {
    let program = std::iter::once(tools_bin.to_path_buf())
        .chain(env::split_paths(path))
        .map(|dir| dir.join("bindgen"))
        .find(|candidate| candidate.is_file())?;
    let text = stdout_of(Command::new(program).arg("--version")).ok()?;
    Some(text.trim().to_string())
}

/// Whether "bindgen 0.60.1" is at least `(major, minor)`.
fn version_at_least(version_text: &str, (major, minor): (u32, u32)) -> bool {
    let version = version_text.split_whitespace().last().unwrap_or("");
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_toolchain_file() -> Result<()> {
        let text = "# The one toolchain\n[toolchain]\nchannel = \"1.95.0\"\n\
                    components = [\"rustfmt\", \"clippy\"]\ntargets = [\"aarch64-unknown-none\"]\n\
                    profile = \"minimal\"\n";
        let pins = parse_toolchain_file(text)?;
        assert_eq!(
            pins,
            ToolchainPins {
                channel: "1.95.0".into(),
                components: vec!["rustfmt".into(), "clippy".into()],
                targets: vec!["aarch64-unknown-none".into()],
            }
        );
        assert!(parse_toolchain_file("[toolchain]\n").is_err());
        Ok(())
    }

    /// Puts an executable `name` running `body` into `dir`.
    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_old_or_missing_bindgen_is_replaced_by_bindgen_cli_in_the_cache() {
        let scratch = env::temp_dir().join(format!("xtask-bindgen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let tools = scratch.join("cache-tools");
        let log = scratch.join("cargo.log");
        let cargo = scratch.join("fake-cargo/cargo");
        script(
            cargo.parent().unwrap(),
            "cargo",
            &format!("echo \"$*\" >> {}", log.display()),
        );
        let system = scratch.join("system-bin");
        let installs = || std::fs::read_to_string(&log).unwrap_or_default();
        let want = format!("install --locked bindgen-cli --root {}\n", tools.display());

        // The distribution's is too old (Ubuntu 22.04's).
        script(&system, "bindgen", "echo bindgen 0.59.1");
        ensure_bindgen(&tools, system.as_os_str(), cargo.as_os_str()).unwrap();
        assert_eq!(installs(), want, "bindgen 0.59.1 on PATH");

        // None at all.
        std::fs::remove_file(&log).unwrap();
        std::fs::remove_file(system.join("bindgen")).unwrap();
        ensure_bindgen(&tools, system.as_os_str(), cargo.as_os_str()).unwrap();
        assert_eq!(installs(), want, "no bindgen");

        // New enough: nothing installed; and the cache's, once there, wins.
        std::fs::remove_file(&log).unwrap();
        script(&system, "bindgen", "echo bindgen 0.60.1");
        ensure_bindgen(&tools, system.as_os_str(), cargo.as_os_str()).unwrap();
        script(&system, "bindgen", "echo bindgen 0.59.1");
        script(&tools.join("bin"), "bindgen", "echo bindgen 0.72.1");
        ensure_bindgen(&tools, system.as_os_str(), cargo.as_os_str()).unwrap();
        assert_eq!(installs(), "", "bindgen new enough");
        let _ = std::fs::remove_dir_all(&scratch);
    }

    #[test]
    fn compares_bindgen_versions() {
        assert!(version_at_least("bindgen 0.60.1", (0, 60)));
        assert!(version_at_least("bindgen 0.71.1", (0, 60)));
        assert!(!version_at_least("bindgen 0.59.2", (0, 60)));
        assert!(!version_at_least("garbage", (0, 60)));
    }
}
