// SPDX-License-Identifier: GPL-2.0-or-later
//! Finds the Debian archive mirror this machine's apt already uses, so the
//! QEMU source package is fetched through the same (possibly local or
//! proxied) mirror, without naming any host in this repository; and so
//! tells whether there is one at all (on Ubuntu, say, there is not, and
//! QEMU's release tarball is downloaded instead).

use anyhow::{bail, Result};
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Environment variable that overrides the mirror found in apt's config.
pub const MIRROR_ENV: &str = "STOPWATCH_DEBIAN_MIRROR";

/// Debian release names and aliases (not Ubuntu's or a vendor's).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
];

/// Suffixes of suites served by the main archive (unlike `-security`).
const ARCHIVE_SUITE_SUFFIXES: &[&str] = &["", "-updates", "-backports", "-proposed-updates"];

/// One `deb`/`deb-src` source from apt's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

impl AptSource {
    /// Whether this is the Debian archive proper: a Debian release suite
    /// with the `main` component, and not the security archive.
    fn is_debian_archive(&self) -> bool {
        let debian_suite = self.suites.iter().any(|suite| {
            ARCHIVE_SUITE_SUFFIXES.iter().any(|suffix| {
                suite
                    .strip_suffix(suffix)
                    .is_some_and(|name| DEBIAN_SUITES.contains(&name))
            })
        });
        let security = self.uri.trim_end_matches('/').ends_with("-security");
        debian_suite && !security && self.components.iter().any(|c| c == "main")
    }
}

/// The Debian archive URI to fetch sources from: `$STOPWATCH_DEBIAN_MIRROR`,
/// else the first Debian archive in apt's source lists.
pub fn find() -> Result<String> {
    find_with(&|name| std::env::var_os(name))
}

/// Whether Debian's source package can be fetched here: a Debian archive
/// in apt's configuration, or `$STOPWATCH_DEBIAN_MIRROR`.
pub fn archive_configured(env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    find_with(env).is_ok()
}

/// [`find`] with the environment `env` (the variables, and `APT_CONFIG`
/// for apt-config).
pub fn find_with(env: &dyn Fn(&str) -> Option<OsString>) -> Result<String> {
    if let Some(uri) = env(MIRROR_ENV) {
        let uri = uri.to_string_lossy();
        if !uri.trim().is_empty() {
            return Ok(uri.trim().trim_end_matches('/').to_string());
        }
    }
    let lists = SourceLists::of_apt(env);
    match pick_debian_archive(&lists.read()) {
        Some(uri) => Ok(uri),
        None => bail!(
            "found no Debian archive in {} or {} (looked for a `deb` source of a Debian suite \
             such as bookworm with component main).\n\
             Set {MIRROR_ENV}=<URI of a Debian mirror> and run again, or pass \
             --qemu-tarball <path of an upstream qemu-10.2.2.tar.xz>",
            lists.list.display(),
            lists.parts.display()
        ),
    }
}

/// Where apt reads its sources: the one file and the directory of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLists {
    pub list: PathBuf,
    pub parts: PathBuf,
}

impl SourceLists {
    /// As apt's own configuration says (`Dir::Etc::sourcelist` and
    /// `Dir::Etc::sourceparts`, through `apt-config`, which honours
    /// `APT_CONFIG`); `/etc/apt`'s where there is no apt-config (a host
    /// without apt, where these files are absent too).
    pub fn of_apt(env: &dyn Fn(&str) -> Option<OsString>) -> SourceLists {
        let mut cmd = Command::new("apt-config");
        cmd.args(["shell", "LIST", "Dir::Etc::sourcelist/f"])
            .args(["PARTS", "Dir::Etc::sourceparts/d"])
            .env_remove("APT_CONFIG")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = env("APT_CONFIG") {
            cmd.env("APT_CONFIG", config);
        }
        let output = cmd.output().ok().filter(|o| o.status.success());
        let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let value = |name: &str| text.as_deref().and_then(|t| shell_value(t, name));
        SourceLists {
            list: value("LIST").unwrap_or_else(|| PathBuf::from("/etc/apt/sources.list")),
            parts: value("PARTS").unwrap_or_else(|| PathBuf::from("/etc/apt/sources.list.d")),
        }
    }

    /// Every source in the one-line and deb822 files, in apt's order.
    pub fn read(&self) -> Vec<AptSource> {
        let mut sources = Vec::new();
        if let Ok(text) = fs::read_to_string(&self.list) {
            sources.extend(parse_one_line_format(&text));
        }
        let mut parts: Vec<_> = fs::read_dir(&self.parts)
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        parts.sort();
        for path in parts {
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => sources.extend(parse_one_line_format(&text)),
                Some("sources") => sources.extend(parse_deb822_format(&text)),
                _ => {} // e.g. "*.disabled": apt ignores these too
            }
        }
        sources
    }
}

/// The value of `NAME='value'` in `apt-config shell` output (single
/// quotes, a quote inside written `'\''`); `None` when empty.
fn shell_value(text: &str, name: &str) -> Option<PathBuf> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))?;
    let value = line
        .trim()
        .strip_prefix('\'')?
        .strip_suffix('\'')?
        .replace("'\\''", "'");
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// The URI of the first Debian archive among `sources`.
pub fn pick_debian_archive(sources: &[AptSource]) -> Option<String> {
    sources
        .iter()
        .find(|s| s.is_debian_archive())
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// Parses `sources.list` lines: `deb [options] URI suite [component...]`.
pub fn parse_one_line_format(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb-src ")
            .or_else(|| line.strip_prefix("deb "))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            // Options such as `[arch=amd64 signed-by=...]` may hold spaces.
            let Some(end) = rest.find(']') else { continue };
            rest = &rest[end + 1..];
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        sources.push(AptSource {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    sources
}

/// Parses deb822 `*.sources` stanzas (`Types:`, `URIs:`, `Suites:`,
/// `Components:`, `Enabled:`), one source per URI.
pub fn parse_deb822_format(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for stanza in split_stanzas(text) {
        let field = |name: &str| -> Vec<String> {
            stanza
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let types = field("Types");
        let enabled = field("Enabled");
        if !types.iter().any(|t| t == "deb" || t == "deb-src")
            || enabled.first().is_some_and(|e| e == "no")
        {
            continue;
        }
        for uri in field("URIs") {
            sources.push(AptSource {
                uri,
                suites: field("Suites"),
                components: field("Components"),
            });
        }
    }
    sources
}

/// Splits deb822 text into stanzas of (field, value), joining continuation
/// lines and dropping comments.
fn split_stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if !stanzas.last().is_some_and(Vec::is_empty) {
                stanzas.push(Vec::new());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let stanza: &mut Vec<(String, String)> = stanzas.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    stanzas.retain(|s| !s.is_empty());
    stanzas
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made-up hosts: the repository names no real registry.
    const DEB822: &str = "\
Types: deb
# a snapshot this machine was built from
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_finds_the_archive_not_security() {
        let sources = parse_deb822_format(DEB822);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            pick_debian_archive(&sources).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(pick_debian_archive(&sources[1..]), None);
    }

    #[test]
    fn deb822_skips_disabled_stanzas_and_joins_continuations() {
        let text = "Types: deb\nURIs: http://off.example/debian\nSuites: trixie\n\
                    Components: main\nEnabled: no\n\n\
                    Types: deb deb-src\nURIs: http://a.example/debian\n  http://b.example/debian/\n\
                    Suites: sid\nComponents: main contrib\n";
        let sources = parse_deb822_format(text);
        let uris: Vec<_> = sources.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["http://a.example/debian", "http://b.example/debian/"]
        );
        assert_eq!(
            pick_debian_archive(&sources).as_deref(),
            Some("http://a.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options_and_comments() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://vendor.example/apt cloud-sdk-bookworm main\n\
                    deb http://docker.example/linux/debian bookworm stable\n\
                    deb http://pg.example/pub bookworm-pgdg main\n\
                    deb-src http://mirror.example/debian/ trixie main # sources too\n";
        let sources = parse_one_line_format(text);
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[0].suites, ["cloud-sdk-bookworm"]);
        assert_eq!(
            pick_debian_archive(&sources).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn third_party_only_finds_nothing() {
        let text = "Types: deb\nURIs: https://node.example/node_20.x\nSuites: nodistro\n\
                    Components: main\n";
        assert_eq!(pick_debian_archive(&parse_deb822_format(text)), None);
    }

    #[test]
    fn apt_config_shell_values() {
        let text = "LIST='/etc/apt/sources.list'\nPARTS='/tmp/it'\\''s/'\n";
        assert_eq!(
            shell_value(text, "LIST"),
            Some(PathBuf::from("/etc/apt/sources.list"))
        );
        assert_eq!(
            shell_value(text, "PARTS"),
            Some(PathBuf::from("/tmp/it's/"))
        );
        assert_eq!(shell_value("LIST=''\n", "LIST"), None);
    }

    #[test]
    fn apts_configuration_says_where_the_sources_are() {
        if Command::new("apt-config").arg("dump").output().is_err() {
            eprintln!("no apt-config on this host: not run");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-apt-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("apt.conf");
        fs::write(
            &config,
            "Dir::Etc::sourcelist \"/dev/null\";\nDir::Etc::sourceparts \"/nonexistent\";\n",
        )
        .unwrap();
        let env = |name: &str| (name == "APT_CONFIG").then(|| config.clone().into_os_string());
        let lists = SourceLists::of_apt(&env);
        assert_eq!(lists.list, PathBuf::from("/dev/null"));
        assert_eq!(lists.parts, PathBuf::from("/nonexistent/"));
        assert!(!archive_configured(&env));
        let message = find_with(&env).unwrap_err().to_string();
        assert!(
            message.contains("found no Debian archive in /dev/null"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
