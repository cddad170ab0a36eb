// SPDX-License-Identifier: GPL-2.0-or-later
//! Restores what Debian's `+ds` repack strips from QEMU's release source:
//! the Python wheels configure installs (`python/wheels/`) and the Rust
//! crates of the `subprojects/*-rs.wrap` files, with this repository's
//! meson files for them. An upstream tarball ships the wheels and most
//! crates, so on it these steps restore only what it lacks.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::Cache;
use crate::build::debian::meson_wrap::CrateWrap;
use crate::build::pins;
use crate::build::prereqs::cargo;
use crate::util::{self, fetch_verified, run_captured, verify_sha256, Pinned};

/// Puts back into the extracted tree `src` what the repack stripped.
pub fn restore_stripped(repo: &Path, cache: &Cache, src: &Path) -> Result<()> {
    restore_python_wheels(cache, src)?;
    restore_rust_crates(repo, cache, src)
}

/// Puts the meson and pycotap wheels into `python/wheels/` (configure runs
/// with --disable-download and installs them from there).
fn restore_python_wheels(cache: &Cache, src: &Path) -> Result<()> {
    let in_tree = src.join("python/wheels");
    let downloads = cache.downloads().join("wheels");
    let missing: Vec<_> = pins::PYTHON_WHEELS
        .iter()
        .filter(|w| !in_tree.join(w.file.name).is_file()) // upstream ships them
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let files: Vec<Pinned> = missing
        .iter()
        .map(|w| Pinned {
            path: downloads.join(w.file.name),
            sha256: w.file.sha256,
        })
        .collect();
    fetch_verified(&files, || {
        eprintln!("Downloading Python wheels for QEMU's configure...");
        let python = python_venv(cache)?;
        run_captured(
            Command::new(python)
                .args(["-m", "pip", "download", "--quiet", "--no-deps"])
                .args(["--only-binary=:all:", "-d"])
                .arg(&downloads)
                .args(missing.iter().map(|w| w.requirement)),
        )
        .context("could not download the Python wheels QEMU's configure needs")
        .map(drop)
    })?;
    fs::create_dir_all(&in_tree)?;
    for wheel in missing {
        let downloaded = downloads.join(wheel.file.name);
        fs::copy(&downloaded, in_tree.join(wheel.file.name))
            .with_context(|| format!("could not copy {}", downloaded.display()))?;
    }
    Ok(())
}

/// A venv of our own for pip: Debian's python3 has no pip module, and
/// pip refuses to touch the system Python there anyway.
pub fn python_venv(cache: &Cache) -> Result<PathBuf> {
    let venv = cache.tools().join("python-venv");
    let python = venv.join("bin/python3");
    if !python.is_file() {
        run_captured(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("could not create a Python venv: `cargo xtask prereqs` installs what it needs (docs/hosts.md)")?;
    }
    Ok(python)
}

/// Fills `subprojects/packagecache/` with the crates of every `*-rs.wrap`
/// (fetched by cargo, checked against the wrap's hash) and
/// `subprojects/packagefiles/` with this repository's meson files for them.
fn restore_rust_crates(repo: &Path, cache: &Cache, src: &Path) -> Result<()> {
    let subprojects = src.join("subprojects");
    let mut wraps = Vec::new();
    for entry in fs::read_dir(&subprojects)
        .with_context(|| format!("could not list {}", subprojects.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("-rs.wrap") {
            let wrap = CrateWrap::read(&path)?;
            if !crate_is_shipped(&subprojects, &wrap) {
                wraps.push(wrap);
            }
        }
    }
    wraps.sort_by(|a, b| a.wrap_name.cmp(&b.wrap_name));
    if wraps.is_empty() {
        return Ok(());
    }

    let packagefiles = repo.join("patches/packagefiles");
    for wrap in &wraps {
        let from = packagefiles.join(&wrap.patch_directory);
        if !from.join("meson.build").is_file() {
            bail!(
                "subprojects/{}.wrap needs a meson.build for crate {} {}, and {} has none: \
                 write one (see the other folders there) and run again",
                wrap.wrap_name,
                wrap.crate_name,
                wrap.crate_version,
                from.display()
            );
        }
        util::copy_tree(
            &from,
            &subprojects.join("packagefiles").join(&wrap.patch_directory),
        )?;
    }

    fetch_crates(cache, &wraps)?;
    let packagecache = subprojects.join("packagecache");
    fs::create_dir_all(&packagecache)?;
    for wrap in &wraps {
        let crate_file = find_crate_file(&wrap.crate_name, &wrap.crate_version)?;
        verify_sha256(&crate_file, &wrap.source_hash).with_context(|| {
            format!(
                "the crate does not match subprojects/{}.wrap's source_hash",
                wrap.wrap_name
            )
        })?;
        fs::copy(&crate_file, packagecache.join(&wrap.source_filename))
            .with_context(|| format!("could not copy {}", crate_file.display()))?;
    }
    Ok(())
}

/// Whether the tree already has the crate of `wrap`: unpacked, or (as an
/// upstream release tarball ships it, `scripts/make-release`) its archive
/// in `packagecache/` with the wrap's hash and its meson files in
/// `packagefiles/`. A release ships only the crates `make-release` names,
/// so the others are restored even there.
fn crate_is_shipped(subprojects: &Path, wrap: &CrateWrap) -> bool {
    if subprojects.join(&wrap.directory).is_dir() {
        return true;
    }
    let archive = subprojects.join("packagecache").join(&wrap.source_filename);
    archive.is_file()
        && verify_sha256(&archive, &wrap.source_hash).is_ok()
        && subprojects
            .join("packagefiles")
            .join(&wrap.patch_directory)
            .join("meson.build")
            .is_file()
}

/// Lets cargo download the exact crate versions into its own cache,
/// through a throwaway manifest that depends on all of them.
fn fetch_crates(cache: &Cache, wraps: &[CrateWrap]) -> Result<()> {
    let project = cache.downloads().join("crates-manifest");
    let mut manifest = String::from(
        "# Written by `cargo xtask`: lets cargo fetch the crates of QEMU's *-rs.wrap files.\n\
         [package]\nname = \"qemu-wrap-crates\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n[dependencies]\n",
    );
    for wrap in wraps {
        manifest.push_str(&format!(
            "{} = \"={}\"\n",
            wrap.crate_name, wrap.crate_version
        ));
    }
    util::write_if_changed(&project.join("Cargo.toml"), manifest.as_bytes())?;
    util::write_if_changed(&project.join("src/lib.rs"), b"")?;
    eprintln!("Fetching {} crates for QEMU's Rust code...", wraps.len());
    run_captured(
        Command::new(cargo())
            .args(["fetch", "--quiet", "--manifest-path"])
            .arg(project.join("Cargo.toml")),
    )
    .context("cargo could not fetch the crates of QEMU's subprojects/*-rs.wrap")?;
    Ok(())
}

/// The `.crate` file cargo keeps for `name`-`version`.
fn find_crate_file(name: &str, version: &str) -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registries = cargo_home.join("registry/cache");
    let file_name = format!("{name}-{version}.crate");
    fs::read_dir(&registries)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(&file_name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "cargo fetched, yet {file_name} is not under {}",
                registries.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_counts_as_shipped_unpacked_or_as_its_checked_archive_with_meson_files() -> Result<()>
    {
        let subprojects =
            std::env::temp_dir().join(format!("xtask-shipped-{}", std::process::id()));
        let archive = b"a crate archive";
        let wrap = CrateWrap::parse(
            "foo-1-rs",
            &format!(
                "[wrap-file]\ndirectory = foo-1.2.3\nsource_filename = foo-1.2.3.tar.gz\n\
                 source_hash = {}\npatch_directory = foo-1-rs\n",
                util::sha256_hex(archive)
            ),
        )?;
        fs::create_dir_all(subprojects.join("packagecache"))?;
        let packagefiles = subprojects.join("packagefiles/foo-1-rs");
        fs::create_dir_all(&packagefiles)?;
        let cached = subprojects.join("packagecache/foo-1.2.3.tar.gz");
        // Debian's tree: neither.
        assert!(!crate_is_shipped(&subprojects, &wrap));
        // A release's: the archive and the meson files.
        fs::write(&cached, archive)?;
        fs::write(packagefiles.join("meson.build"), b"project('foo')")?;
        assert!(crate_is_shipped(&subprojects, &wrap));
        // An archive that is not the wrap's, or no meson files: restored.
        fs::write(&cached, b"another crate")?;
        assert!(!crate_is_shipped(&subprojects, &wrap));
        fs::write(&cached, archive)?;
        fs::remove_file(packagefiles.join("meson.build"))?;
        assert!(!crate_is_shipped(&subprojects, &wrap));
        // Unpacked, as meson leaves it.
        fs::create_dir_all(subprojects.join("foo-1.2.3"))?;
        assert!(crate_is_shipped(&subprojects, &wrap));
        fs::remove_dir_all(&subprojects)?;
        Ok(())
    }
}
