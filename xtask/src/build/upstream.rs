// SPDX-License-Identifier: GPL-2.0-or-later
//! The adapter for building from QEMU's own release tarball, beside
//! [`debian`](crate::build::debian): downloaded from QEMU's download site
//! (or the mirror `$STOPWATCH_QEMU_URL` names) into the cache's downloads,
//! and checked against the pinned SHA-256 (or `$STOPWATCH_QEMU_SHA256`)
//! before it is used. The release ships most of what Debian's repack
//! strips; `debian::repack` restores the rest (the crates
//! `scripts/make-release` does not name: glib-sys for 10.2.2).

use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::PathBuf;

use crate::build::cache::Cache;
use crate::build::download::{self, Download};
use crate::build::pins;
use crate::build::qemu_source::TARBALL_ENV;

/// Environment variable: where to download the release tarball from
/// instead of QEMU's download site (a mirror, a local server in a test).
/// Setting it chooses the download even where a Debian archive is
/// configured.
pub const URL_ENV: &str = "STOPWATCH_QEMU_URL";
/// Environment variable: the SHA-256 the downloaded tarball must have
/// instead of the pinned one (for the tarball `$STOPWATCH_QEMU_URL` names).
pub const SHA256_ENV: &str = "STOPWATCH_QEMU_SHA256";

/// The release tarball to download, and the hash it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub url: String,
    pub sha256: String,
}

impl Release {
    /// The pinned release, the URL and hash taken from the environment
    /// where set there.
    pub fn from_env(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Release> {
        let url = set(env, URL_ENV).unwrap_or_else(|| pins::UPSTREAM_TARBALL_URL.to_string());
        let sha256 = match set(env, SHA256_ENV) {
            None => pins::UPSTREAM_TARBALL.sha256.to_string(),
            Some(hash) => {
                let hash = hash.to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{SHA256_ENV} must be a SHA-256 (64 hexadecimal digits), not {hash:?}");
                }
                hash
            }
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("{URL_ENV} must be an https:// (or http://) URL, not {url:?}");
        }
        Ok(Release { url, sha256 })
    }

    /// Whether the environment asks for the download (either override set).
    pub fn asked_for(env: &dyn Fn(&str) -> Option<OsString>) -> bool {
        set(env, URL_ENV).is_some() || set(env, SHA256_ENV).is_some()
    }
}

/// A variable's value, if set and not blank.
fn set(env: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Option<String> {
    env(name)
        .map(|value| value.to_string_lossy().trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Where the release tarball is kept: with the other downloads.
pub fn cached_path(cache: &Cache) -> PathBuf {
    cache
        .downloads()
        .join("qemu")
        .join(pins::UPSTREAM_TARBALL.name)
}

/// The checked release tarball in the cache, downloaded if needed.
pub fn fetch(cache: &Cache, release: &Release) -> Result<PathBuf> {
    let dest = cached_path(cache);
    let fetched = download::fetch(&Download {
        url: &release.url,
        sha256: &release.sha256,
        dest: &dest,
        timeout: download::DEFAULT_TIMEOUT,
    });
    if let Err(error) = fetched {
        bail!(
            "could not get QEMU's source {name}: {error:#}\n\n\
             Without access to {url}: download {name} (SHA-256 {sha256}) some other way and \
             pass it with --qemu-tarball PATH (or {TARBALL_ENV}=PATH); or set {URL_ENV} to a \
             mirror of it.",
            name = pins::UPSTREAM_TARBALL.name,
            url = release.url,
            sha256 = release.sha256,
        );
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_pins_unless_overridden() {
        let pinned = Release::from_env(&env_of(&[])).unwrap();
        assert_eq!(pinned.url, pins::UPSTREAM_TARBALL_URL);
        assert_eq!(pinned.sha256, pins::UPSTREAM_TARBALL.sha256);
        assert!(!Release::asked_for(&env_of(&[(URL_ENV, " ")])));

        let vars = &[
            (URL_ENV, "http://127.0.0.1:8000/q.tar.xz"),
            (
                SHA256_ENV,
                "AB00000000000000000000000000000000000000000000000000000000000000",
            ),
        ];
        let mirror = Release::from_env(&env_of(vars)).unwrap();
        assert_eq!(mirror.url, "http://127.0.0.1:8000/q.tar.xz");
        assert!(mirror.sha256.starts_with("ab000"));
        assert!(Release::asked_for(&env_of(vars)));
    }

    #[test]
    fn a_malformed_override_is_refused() {
        let error = Release::from_env(&env_of(&[(SHA256_ENV, "abc")])).unwrap_err();
        assert!(error.to_string().contains(SHA256_ENV), "{error}");
        let error = Release::from_env(&env_of(&[(URL_ENV, "ftp://x/q.tar.xz")])).unwrap_err();
        assert!(error.to_string().contains(URL_ENV), "{error}");
    }

    #[test]
    fn offline_the_message_names_the_file_the_url_and_the_way_around() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = std::env::temp_dir().join(format!("xtask-upstream-{}", std::process::id()));
        let cache = Cache { root: root.clone() };
        let url = format!("http://127.0.0.1:{port}/qemu-10.2.2.tar.xz");
        let release = Release {
            url: url.clone(),
            sha256: pins::UPSTREAM_TARBALL.sha256.to_string(),
        };
        let message = format!("{:#}", fetch(&cache, &release).unwrap_err());
        for needed in [
            "could not get QEMU's source qemu-10.2.2.tar.xz",
            &format!("Without access to {url}"),
            "--qemu-tarball PATH",
        ] {
            assert!(
                message.contains(needed),
                "{needed:?} missing from: {message}"
            );
        }
        assert!(!cached_path(&cache).exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
