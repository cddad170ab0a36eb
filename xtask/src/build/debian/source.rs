// SPDX-License-Identifier: GPL-2.0-or-later
//! Downloads Debian's QEMU source package (the pinned `+ds` orig tarball
//! and its companions) through a private apt configuration that reads
//! only the Debian source index, leaving the system's apt setup untouched.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::Cache;
use crate::build::debian::mirror;
use crate::build::pins;
use crate::util::{self, fetch_verified, run_captured, Pinned};

/// Downloads (if needed) and verifies the orig tarball; returns its path.
/// `alternative` says what to do instead if the archive no longer has it.
pub fn fetch_orig_tarball(cache: &Cache, alternative: &str) -> Result<PathBuf> {
    let dir = cache.downloads().join("qemu");
    let orig = dir.join(pins::DEBIAN_ORIG_TARBALL.name);
    // The build needs the orig tarball; the other files of the
    // source package are checked when they are there.
    let files: Vec<Pinned> = pins::DEBIAN_SOURCE_FILES
        .iter()
        .map(|file| Pinned {
            path: dir.join(file.name),
            sha256: file.sha256,
        })
        .filter(|file| file.path == orig || file.path.is_file())
        .collect();
    fetch_verified(&files, || download_source_package(cache, &dir, alternative))?;
    Ok(orig)
}

/// `apt-get source --download-only` with a private apt configuration that
/// lists only the Debian source index; the system's apt setup is untouched.
fn download_source_package(cache: &Cache, into: &Path, alternative: &str) -> Result<()> {
    let keyring = Path::new(pins::DEBIAN_KEYRING);
    if !keyring.is_file() {
        bail!(
            "{} is missing: install Debian's debian-archive-keyring package",
            keyring.display()
        );
    }
    let mirror = mirror::find()?;
    let apt = cache.apt();
    for dir in [
        apt.join("lists/partial"),
        apt.join("cache/archives/partial"),
        into.to_path_buf(),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    let sources_list = apt.join("sources.list");
    util::write_if_changed(
        &sources_list,
        format!(
            "deb-src [signed-by={}] {mirror} {} main\n",
            keyring.display(),
            pins::DEBIAN_SUITE
        )
        .as_bytes(),
    )?;
    let private_apt = || {
        let mut cmd = Command::new("apt-get");
        for option in [
            format!("Dir::Etc::SourceList={}", sources_list.display()),
            "Dir::Etc::SourceParts=/dev/null".to_string(),
            format!("Dir::State::Lists={}", apt.join("lists").display()),
            format!("Dir::Cache={}", apt.join("cache").display()),
            // Our own state directories: no need for the system's locks,
            // nor for apt's unprivileged download user (it cannot write here).
            "Debug::NoLocking=1".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd.arg("-q");
        cmd
    };
    eprintln!(
        "Downloading Debian's source package {}={} from {mirror} ({})...",
        pins::DEBIAN_SOURCE_PACKAGE,
        pins::DEBIAN_VERSION,
        pins::DEBIAN_SUITE
    );
    run_captured(private_apt().arg("update"))
        .with_context(|| format!("could not read the source index of {mirror}"))?;
    let wanted = format!("{}={}", pins::DEBIAN_SOURCE_PACKAGE, pins::DEBIAN_VERSION);
    run_captured(
        private_apt()
            .args(["--download-only", "source", &wanted])
            .current_dir(into),
    )
    .with_context(|| {
        format!(
            "could not download {wanted} from Debian {} (the version may have left the \
             archive).\nAlternative: {alternative}",
            pins::DEBIAN_SUITE,
        )
    })?;
    Ok(())
}
