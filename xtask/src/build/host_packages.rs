// SPDX-License-Identifier: GPL-2.0-or-later
//! The system packages the build needs, for each package manager: the
//! host's manager (from `/etc/os-release` and the tools on PATH), one table
//! of what is needed with each manager's package names, what is missing,
//! and installing it as root or through password-less sudo; otherwise the
//! exact command to run is printed and the build stops. docs/hosts.md
//! shows the same table (a test compares them).

use anyhow::{bail, Context, Result};
use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::util::{run, stdout_of};

/// Where the host says what it is.
pub const OS_RELEASE: &str = "/etc/os-release";

/// Test-only: one more package name to require (e.g. one that does not
/// exist), to see the "missing, run this command" path on a host that has
/// everything.
pub const EXTRA_PACKAGE_ENV: &str = "STOPWATCH_PREREQS_EXTRA_PACKAGE";

/// A package manager this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Debian, Ubuntu and their derivatives (apt-get, dpkg).
    Apt,
    /// Fedora and its relatives (dnf, rpm).
    Dnf,
    /// Arch Linux (pacman).
    Pacman,
    /// openSUSE (zypper, rpm).
    Zypper,
}

impl Manager {
    pub const ALL: [Manager; 4] = [Manager::Apt, Manager::Dnf, Manager::Pacman, Manager::Zypper];

    /// The name people know it by (docs/hosts.md's column heading).
    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Pacman => "pacman",
            Manager::Zypper => "zypper",
        }
    }

    /// The program that installs packages.
    fn installer(self) -> &'static str {
        match self {
            Manager::Apt => "apt-get",
            Manager::Dnf => "dnf",
            Manager::Pacman => "pacman",
            Manager::Zypper => "zypper",
        }
    }

    /// The arguments before the package names: non-interactive, and no
    /// recommended extras on Debian.
    fn install_args(self) -> &'static [&'static str] {
        match self {
            Manager::Apt => &["install", "-y", "--no-install-recommends"],
            Manager::Dnf => &["install", "-y"],
            Manager::Pacman => &["-S", "--needed", "--noconfirm"],
            Manager::Zypper => &["--non-interactive", "install"],
        }
    }

    /// `/etc/os-release` IDs (ID or ID_LIKE) of the distributions that use
    /// this manager.
    fn os_ids(self) -> &'static [&'static str] {
        match self {
            Manager::Apt => &["debian", "ubuntu"],
            Manager::Dnf => &["fedora", "rhel", "centos"],
            Manager::Pacman => &["arch"],
            Manager::Zypper => &["suse", "opensuse", "sles"],
        }
    }

    /// This manager's column of a [`Need`].
    pub fn package_of(self, need: &Need) -> Option<&'static str> {
        match self {
            Manager::Apt => need.apt,
            Manager::Dnf => need.dnf,
            Manager::Pacman => need.pacman,
            Manager::Zypper => need.zypper,
        }
    }
}

/// When a [`Need`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only where QEMU's source comes from Debian's source package
    /// (`apt-get source`, on a host with a Debian archive configured).
    DebianSource,
}

/// One thing the build needs, and each manager's package for it (`None`:
/// no package; for bindgen the build then installs bindgen-cli with cargo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub what: &'static str,
    pub why: &'static str,
    pub apt: Option<&'static str>,
    pub dnf: Option<&'static str>,
    pub pacman: Option<&'static str>,
    pub zypper: Option<&'static str>,
    pub when: When,
}

/// A need with the same package name everywhere.
const fn everywhere(what: &'static str, why: &'static str, package: &'static str) -> Need {
    Need {
        what,
        why,
        apt: Some(package),
        dnf: Some(package),
        pacman: Some(package),
        zypper: Some(package),
        when: When::Always,
    }
}

/// A need with a name for each manager (apt, dnf, pacman, zypper).
const fn named(
    what: &'static str,
    why: &'static str,
    [apt, dnf, pacman, zypper]: [&'static str; 4],
) -> Need {
    Need {
        what,
        why,
        apt: Some(apt),
        dnf: Some(dnf),
        pacman: Some(pacman),
        zypper: Some(zypper),
        when: When::Always,
    }
}

/// A need of the Debian source path only: apt's package, nothing elsewhere.
const fn debian_source(what: &'static str, why: &'static str, apt: &'static str) -> Need {
    Need {
        what,
        why,
        apt: Some(apt),
        dnf: None,
        pacman: None,
        zypper: None,
        when: When::DebianSource,
    }
}

/// What QEMU's configure and build, the debug tools and the host tests
/// need from the system, with each manager's package names.
pub const NEEDS: &[Need] = &[
    everywhere("C compiler", "QEMU's C code", "gcc"),
    named(
        "ninja",
        "QEMU's build tool",
        ["ninja-build", "ninja-build", "ninja", "ninja"],
    ),
    named(
        "pkg-config",
        "finds the C libraries",
        [
            "pkgconf",
            "pkgconf-pkg-config",
            "pkgconf",
            "pkgconf-pkg-config",
        ],
    ),
    named(
        "GLib",
        "QEMU's base library",
        ["libglib2.0-dev", "glib2-devel", "glib2", "glib2-devel"],
    ),
    named(
        "zlib",
        "compression",
        ["zlib1g-dev", "zlib-devel", "zlib", "zlib-devel"],
    ),
    named(
        "libfdt",
        "device trees (--enable-fdt=system)",
        ["libfdt-dev", "libfdt-devel", "dtc", "libfdt-devel"],
    ),
    everywhere("flex", "QEMU's parsers", "flex"),
    everywhere("bison", "QEMU's parsers", "bison"),
    named(
        "libclang",
        "bindgen reads C headers through libclang",
        ["libclang-dev", "clang-devel", "clang", "clang-devel"],
    ),
    Need {
        what: "bindgen",
        why: "generates QEMU's Rust bindings (where none, bindgen-cli is installed with cargo)",
        apt: Some("bindgen"),
        dnf: Some("bindgen-cli"),
        pacman: Some("rust-bindgen"),
        zypper: None,
        when: When::Always,
    },
    debian_source(
        "dpkg-dev",
        "apt-get source unpacks with dpkg-source",
        "dpkg-dev",
    ),
    debian_source(
        "Debian keyring",
        "verifies the QEMU source download",
        "debian-archive-keyring",
    ),
    named(
        "xz",
        "unpacks the QEMU tarball",
        ["xz-utils", "xz", "xz", "xz"],
    ),
    named(
        "dtc",
        "cargo xtask dtb decompiles the board's device tree",
        ["device-tree-compiler", "dtc", "dtc", "dtc"],
    ),
    named(
        "gdb for aarch64",
        "cargo xtask gdb debugs the aarch64 guest",
        ["gdb-multiarch", "gdb", "aarch64-linux-gnu-gdb", "gdb"],
    ),
    named(
        "Python venv",
        "configure's Python venv",
        ["python3-venv", "python3", "python", "python3"],
    ),
    everywhere("bzip2", "firmware handling in QEMU's meson files", "bzip2"),
    everywhere("git", "the patch queue in the QEMU source tree", "git"),
    everywhere(
        "ccache",
        "QEMU's C compilations shared by every checkout's QEMU build",
        "ccache",
    ),
    everywhere(
        "swig",
        "builds pylibfdt, which dt-schema (the binding's test) needs",
        "swig",
    ),
    named(
        "Python headers",
        "builds pylibfdt (as swig)",
        ["python3-dev", "python3-devel", "python", "python3-devel"],
    ),
    named(
        "aarch64 binutils",
        "assembles the test vectors of kvm-check's instruction classifier",
        [
            "binutils-aarch64-linux-gnu",
            "binutils-aarch64-linux-gnu",
            "aarch64-linux-gnu-binutils",
            "cross-aarch64-binutils",
        ],
    ),
];

/// Where the host's facts come from: injectable for tests.
#[derive(Debug, Clone)]
pub struct HostEnv {
    pub os_release: PathBuf,
    /// The PATH searched for the package tools (and given to them).
    pub path: OsString,
    pub root: bool,
}

impl HostEnv {
    /// This machine.
    pub fn current() -> HostEnv {
        HostEnv {
            os_release: PathBuf::from(OS_RELEASE),
            path: env::var_os("PATH").unwrap_or_default(),
            root: stdout_of(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0"),
        }
    }

    /// `program` as found on [`HostEnv::path`].
    fn find(&self, program: &str) -> Option<PathBuf> {
        env::split_paths(&self.path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    }

    /// A command for `program` found on our PATH, which it also gets.
    fn command(&self, program: &str) -> Result<Command> {
        let found = self
            .find(program)
            .with_context(|| format!("{program} not found on PATH"))?;
        let mut cmd = Command::new(found);
        cmd.env("PATH", &self.path);
        Ok(cmd)
    }
}

/// `ID` and `ID_LIKE` of an os-release file, in that order.
pub fn os_ids(os_release_text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for line in os_release_text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        match key {
            "ID" => ids.insert(0, value.to_lowercase()),
            "ID_LIKE" => ids.extend(value.split_whitespace().map(str::to_lowercase)),
            _ => {}
        }
    }
    ids
}

/// The host's package manager: the one of the distribution os-release
/// names (or one it is like) whose installer is on PATH; else the first
/// installer found on PATH.
pub fn detect(host: &HostEnv) -> Result<Manager> {
    let text = fs::read_to_string(&host.os_release).unwrap_or_default();
    let present = |manager: Manager| host.find(manager.installer()).is_some();
    let by_os = os_ids(&text).iter().find_map(|id| {
        Manager::ALL.into_iter().find(|manager| {
            // openSUSE's IDs are "opensuse-leap", "opensuse-tumbleweed".
            manager.os_ids().iter().any(|known| {
                id == known || id.strip_prefix(known).is_some_and(|s| s.starts_with('-'))
            })
        })
    });
    if let Some(manager) = by_os.filter(|m| present(*m)) {
        return Ok(manager);
    }
    if let Some(manager) = Manager::ALL.into_iter().find(|m| present(*m)) {
        return Ok(manager);
    }
    bail!(
        "found none of apt-get, dnf, pacman or zypper on PATH ({} says {:?}): install the \
         equivalents of these packages by hand (docs/hosts.md lists them per distribution): {}",
        host.os_release.display(),
        os_ids(&text),
        NEEDS
            .iter()
            .filter_map(|need| need.apt.filter(|_| need.when == When::Always))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The packages `manager` must have, with why, in table order, each once.
pub fn needed(
    manager: Manager,
    debian_source: bool,
    extra: Option<&str>,
) -> Vec<(String, &'static str)> {
    let mut packages: Vec<(String, &'static str)> = Vec::new();
    for need in NEEDS {
        if need.when == When::DebianSource && !debian_source {
            continue;
        }
        if let Some(name) = manager.package_of(need) {
            if !packages.iter().any(|(known, _)| known == name) {
                packages.push((name.to_string(), need.why));
            }
        }
    }
    if let Some(extra) = extra.filter(|e| !e.is_empty()) {
        packages.push((extra.to_string(), "required by the test-only variable"));
    }
    packages
}

/// Those of `names` that are not installed, asking `manager`'s query tool
/// once for all of them.
pub fn missing(host: &HostEnv, manager: Manager, names: &[String]) -> Result<Vec<String>> {
    let (tool, args): (&str, &[&str]) = match manager {
        Manager::Apt => ("dpkg-query", &["-W", "-f=${Package} ${Status}\\n"]),
        // --whatprovides: Fedora's zlib-devel is provided by zlib-ng-compat-devel.
        Manager::Dnf | Manager::Zypper => ("rpm", &["-q", "--whatprovides"]),
        // -T lists the arguments that no installed package satisfies.
        Manager::Pacman => ("pacman", &["-T"]),
    };
    let output = host
        .command(tool)?
        .args(args)
        .args(names)
        .output()
        .with_context(|| format!("could not run {tool}"))?;
    // Missing packages make these tools exit non-zero: the listing says which.
    let listing = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = listing.lines().map(str::trim).collect();
    Ok(names
        .iter()
        .filter(|name| match manager {
            Manager::Apt => !lines.iter().any(|line| {
                line.split_once(' ').is_some_and(|(package, status)| {
                    package.split(':').next() == Some(name.as_str())
                        && status.ends_with(" installed")
                })
            }),
            Manager::Dnf | Manager::Zypper => lines
                .iter()
                .any(|line| *line == format!("no package provides {name}")),
            Manager::Pacman => lines.contains(&name.as_str()),
        })
        .cloned()
        .collect())
}

/// How the install command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Root,
    /// Through `sudo -n` (password-less sudo works).
    Sudo,
}

/// The commands that install `packages` (apt refreshes its lists first:
/// stale ones make installs fail with "held broken packages"), each as
/// program and arguments, before any sudo.
pub fn install_commands(manager: Manager, packages: &[String]) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    if manager == Manager::Apt {
        commands.push(vec!["apt-get".to_string(), "update".to_string()]);
    }
    let mut install = vec![manager.installer().to_string()];
    install.extend(manager.install_args().iter().map(|a| a.to_string()));
    install.extend(packages.iter().cloned());
    commands.push(install);
    commands
}

/// What to tell someone who must install `packages` themselves.
pub fn manual_command(manager: Manager, packages: &[String]) -> String {
    install_commands(manager, packages)
        .iter()
        .map(|words| format!("sudo {}", words.join(" ")))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Root, else password-less sudo (`sudo -n true` on our PATH succeeds),
/// else none.
pub fn privilege(host: &HostEnv) -> Option<Privilege> {
    if host.root {
        return Some(Privilege::Root);
    }
    let sudo_works = host.command("sudo").is_ok_and(|mut sudo| {
        sudo.args(["-n", "true"])
            .status()
            .is_ok_and(|status| status.success())
    });
    sudo_works.then_some(Privilege::Sudo)
}

/// Finds the packages `manager` lacks and installs them (as root or with
/// password-less sudo); otherwise stops with the command to run.
pub fn ensure(
    host: &HostEnv,
    manager: Manager,
    debian_source: bool,
    extra: Option<&str>,
) -> Result<()> {
    let wanted = needed(manager, debian_source, extra);
    let names: Vec<String> = wanted.iter().map(|(name, _)| name.clone()).collect();
    let missing = missing(host, manager, &names)?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("Missing {} packages:", manager.name());
    for (name, why) in wanted.iter().filter(|(n, _)| missing.contains(n)) {
        eprintln!("  {name:<28} {why}");
    }
    let Some(privilege) = privilege(host) else {
        bail!(
            "missing {} packages ({}), and neither root nor password-less sudo is available \
             to install them; run:\n  {}\nthen run this command again",
            manager.name(),
            missing.join(" "),
            manual_command(manager, &missing)
        );
    };
    for words in install_commands(manager, &missing) {
        let mut cmd = match privilege {
            Privilege::Root => host.command(&words[0])?,
            Privilege::Sudo => {
                let mut sudo = host.command("sudo")?;
                sudo.arg("-n");
                if manager == Manager::Apt {
                    // sudo drops the variable; `env` passes it through.
                    sudo.args(["env", "DEBIAN_FRONTEND=noninteractive"]);
                }
                sudo.arg(&words[0]);
                sudo
            }
        };
        if manager == Manager::Apt {
            // No debconf questions.
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
        cmd.args(&words[1..]);
        run(&mut cmd).with_context(|| format!("could not install {}", missing.join(" ")))?;
    }
    let still = self::missing(host, manager, &missing)?;
    if !still.is_empty() {
        bail!(
            "still missing after installing with {}: {}",
            manager.installer(),
            still.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_packages/tests.rs"]
mod tests;
