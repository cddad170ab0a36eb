// SPDX-License-Identifier: GPL-2.0-or-later
//! Finds the Debian archive mirror this machine's apt already uses, so the
//! QEMU source package is fetched through the same (possibly local or
//! proxied) mirror, without naming any host in this repository.

use anyhow::{bail, Result};
use std::fs;
use std::path::Path;

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
/// else the first Debian archive in `/etc/apt/sources.list{,.d}`.
pub fn find() -> Result<String> {
    if let Ok(uri) = std::env::var(MIRROR_ENV) {
        if !uri.trim().is_empty() {
            return Ok(uri.trim().trim_end_matches('/').to_string());
        }
    }
    let sources = read_system_sources(Path::new("/etc/apt"));
    match pick_debian_archive(&sources) {
        Some(uri) => Ok(uri),
        None => bail!(
            "found no Debian archive in /etc/apt/sources.list or /etc/apt/sources.list.d/ \
             (looked for a `deb` source of a Debian suite such as bookworm with component main).\n\
             Set {MIRROR_ENV}=<URI of a Debian mirror> and run again, or pass \
             --qemu-tarball <path of an upstream qemu-10.2.2.tar.xz>"
        ),
    }
}

/// Reads every source in apt's one-line and deb822 files, in apt's order.
fn read_system_sources(etc_apt: &Path) -> Vec<AptSource> {
    let mut sources = Vec::new();
    if let Ok(text) = fs::read_to_string(etc_apt.join("sources.list")) {
        sources.extend(parse_one_line_format(&text));
    }
    let mut parts: Vec<_> = fs::read_dir(etc_apt.join("sources.list.d"))
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
}
