// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask release-tarball`: a `qemu-10.2.2.tar.xz` laid out as QEMU's
//! own `scripts/make-release` lays out a release (top directory
//! `qemu-10.2.2/`, the wrap-git subprojects checked out, the archives of
//! the wrap-file subprojects it names in `subprojects/packagecache/` but
//! not unpacked, their meson files in `subprojects/packagefiles/`, the
//! Python wheels), assembled from Debian's source package and what
//! [`repack`] restores. No patch is applied: the Debian-only edits
//! stay out. It stands in for the real release where that cannot be
//! downloaded (`cargo xtask tarball-check` serves it to a fresh clone).
//!
//! What Debian's `+ds` strips and cannot be restored from here (the ROM
//! sources, the firmware images) stays out, except the edk2 images QEMU's
//! meson files unpack whenever they build an Arm target: those are empty
//! stand-ins, so that the build takes the upstream path (Debian-only patch
//! skipped) exactly as with the real release.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::cache::Cache;
use crate::build::debian::meson_wrap::{CrateWrap, WrapSource};
use crate::build::debian::{repack, source};
use crate::build::{pins, qemu_source};
use crate::repo::Repo;
use crate::util::{self, sha256_file};

/// The file QEMU's build unpacks edk2 firmware from, and whose presence
/// tells a tree with firmware from one without (patch 0009).
const EDK2_LIST_FILE: &str = "pc-bios/meson.build";

/// What `bzip2` makes of empty input: the stand-in for each edk2 image.
const EMPTY_BZIP2: [u8; 14] = [
    b'B', b'Z', b'h', b'9', 0x17, 0x72, 0x45, 0x38, 0x50, 0x90, 0, 0, 0, 0,
];

/// The file at the top of the tarball that says how it was made.
pub const NOTE_FILE: &str = "ASSEMBLED-BY-STOPWATCH.txt";

/// An assembled tarball.
#[derive(Debug)]
pub struct Assembled {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    /// How it differs from what `scripts/make-release` would make.
    pub differences: Vec<String>,
}

/// Where `cargo xtask release-tarball` writes by default.
pub fn default_path(repo: &Repo) -> PathBuf {
    repo.cargo_target_dir()
        .join("release-tarball")
        .join(pins::UPSTREAM_TARBALL.name)
}

/// The name of the tarball's top directory, `qemu-<version>`.
pub fn top_dir_name() -> String {
    format!("qemu-{}", pins::QEMU_VERSION)
}

/// Assembles the tarball at `out` (replacing it; written beside it first,
/// so an interrupted run leaves no half file under that name).
pub fn assemble(repo: &Repo, cache: &Cache, out: &Path) -> Result<Assembled> {
    let orig = source::fetch_orig_tarball(
        cache,
        "none: the tarball is assembled from Debian's source package",
    )?;
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let staging = out_dir.join(format!(".{}.staging", top_dir_name()));
    util::remove_dir_all_if_exists(&staging)?;
    let top = staging.join(top_dir_name());
    fs::create_dir_all(&top).with_context(|| format!("could not create {}", top.display()))?;
    let result = fill_and_pack(repo, cache, &orig, &top, out);
    util::remove_dir_all_if_exists(&staging)?;
    let differences = result?;
    Ok(Assembled {
        path: out.to_path_buf(),
        sha256: sha256_file(out)?,
        bytes: fs::metadata(out)?.len(),
        differences,
    })
}

/// Extracts Debian's source into `top`, restores it, trims it to what
/// `make-release` ships, checks that, and packs it into `out`.
fn fill_and_pack(
    repo: &Repo,
    cache: &Cache,
    orig: &Path,
    top: &Path,
    out: &Path,
) -> Result<Vec<String>> {
    qemu_source::extract(orig, top)?;
    // The source's own files keep their times; what is added gets this one.
    let source_time = fs::metadata(top.join("VERSION"))?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();

    eprintln!("Restoring what Debian's repack strips (wheels, crates, packagefiles)...");
    repack::restore_stripped(&repo.root, cache, top)?;
    let make_release = read(&top.join("scripts/make-release"))?;
    let listed = make_release_subprojects(&make_release)?;
    let dropped = drop_unlisted_archives(top, &listed)?;
    check_make_release_contents(top, &listed)?;

    let mut differences = Vec::new();
    let stand_ins = write_edk2_stand_ins(top)?;
    if !stand_ins.is_empty() {
        differences.push(format!(
            "pc-bios/: {} edk2 firmware images are empty stand-ins ({}); the other firmware \
             images Debian strips are absent",
            stand_ins.len(),
            stand_ins.join(", ")
        ));
    }
    let missing_roms = empty_submodules(top)?;
    if !missing_roms.is_empty() {
        differences.push(format!(
            "submodule sources Debian strips are absent: {}",
            missing_roms.join(", ")
        ));
    }
    differences.push(
        "subprojects/packagefiles/: the crates' meson files are this repository's \
         (patches/packagefiles), written where Debian strips upstream's"
            .to_string(),
    );
    if !dropped.is_empty() {
        eprintln!(
            "    not shipped, as make-release does not name them: {}",
            dropped.join(", ")
        );
    }
    write_note(top, &differences)?;

    eprintln!("Packing {}...", out.display());
    let partial = out.with_extension("xz.partial");
    let packed = pack(top, source_time, &partial);
    if let Err(error) = packed {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    fs::rename(&partial, out)
        .with_context(|| format!("could not move {} to {}", partial.display(), out.display()))?;
    Ok(differences)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
}

/// The subprojects `scripts/make-release` downloads into a release: the
/// words of its `SUBPROJECTS="..."` assignment.
pub fn make_release_subprojects(script: &str) -> Result<Vec<String>> {
    let start = script
        .find("SUBPROJECTS=\"")
        .context("scripts/make-release has no SUBPROJECTS=\"...\" list")?
        + "SUBPROJECTS=\"".len();
    let end = script[start..]
        .find('"')
        .context("scripts/make-release's SUBPROJECTS list is not closed")?;
    Ok(script[start..start + end]
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Removes from `subprojects/packagecache/` the archives of wrap-file
/// subprojects `make-release` does not name (it downloads only those it
/// names); returns their wrap names.
fn drop_unlisted_archives(top: &Path, listed: &[String]) -> Result<Vec<String>> {
    let subprojects = top.join("subprojects");
    let mut dropped = Vec::new();
    for wrap_path in wrap_files(&subprojects)? {
        let name = wrap_name(&wrap_path);
        if listed.contains(&name) {
            continue;
        }
        if WrapSource::parse(&name, &read(&wrap_path)?)?.kind != "file" {
            continue;
        }
        let Ok(wrap) = CrateWrap::read(&wrap_path) else {
            continue;
        };
        let archive = subprojects.join("packagecache").join(&wrap.source_filename);
        if archive.is_file() {
            fs::remove_file(&archive)
                .with_context(|| format!("could not delete {}", archive.display()))?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Checks that the tree holds what `make-release` puts in for each listed
/// subproject: a wrap-file's archive in `packagecache/`, any other's
/// checked-out directory; and the wheels.
fn check_make_release_contents(top: &Path, listed: &[String]) -> Result<()> {
    let subprojects = top.join("subprojects");
    let mut missing = Vec::new();
    for name in listed {
        let wrap_path = subprojects.join(format!("{name}.wrap"));
        let wrap = WrapSource::parse(name, &read(&wrap_path)?)?;
        let needed = if wrap.kind == "file" {
            let file = CrateWrap::read(&wrap_path)?;
            subprojects.join("packagecache").join(file.source_filename)
        } else {
            subprojects.join(&wrap.directory).join("meson.build")
        };
        if !needed.is_file() {
            missing.push(needed);
        }
    }
    for wheel in pins::PYTHON_WHEELS {
        let path = top.join("python/wheels").join(wheel.file.name);
        if !path.is_file() {
            missing.push(path);
        }
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|p| p.strip_prefix(top).unwrap_or(p).display().to_string())
            .collect();
        bail!(
            "the assembled tree lacks what scripts/make-release ships: {}",
            names.join(", ")
        );
    }
    Ok(())
}

/// `subprojects/*.wrap`, sorted.
fn wrap_files(subprojects: &Path) -> Result<Vec<PathBuf>> {
    let mut wraps: Vec<PathBuf> = fs::read_dir(subprojects)
        .with_context(|| format!("could not list {}", subprojects.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wrap"))
        .collect();
    wraps.sort();
    Ok(wraps)
}

fn wrap_name(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The edk2 images `pc-bios/meson.build` unpacks (its `fds = [...]`).
pub fn edk2_images(meson_build: &str) -> Vec<String> {
    let Some(start) = meson_build.find("fds = [") else {
        return Vec::new();
    };
    let list = &meson_build[start + "fds = [".len()..];
    let list = &list[..list.find(']').unwrap_or(list.len())];
    list.split(',')
        .map(|item| item.trim().trim_matches('\'').to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Writes an empty stand-in for each edk2 image the tree lacks; returns
/// their names.
fn write_edk2_stand_ins(top: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for image in edk2_images(&read(&top.join(EDK2_LIST_FILE))?) {
        let path = top.join("pc-bios").join(format!("{image}.bz2"));
        if !path.exists() {
            fs::write(&path, EMPTY_BZIP2)
                .with_context(|| format!("could not write {}", path.display()))?;
            written.push(format!("{image}.bz2"));
        }
    }
    Ok(written)
}

/// The `path = ...` entries of a `.gitmodules`.
pub fn submodule_paths(gitmodules: &str) -> Vec<String> {
    gitmodules
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "path").then(|| value.trim().to_string())
        })
        .collect()
}

/// The submodules (`make-release` ships them all) that are missing or
/// empty in the tree.
fn empty_submodules(top: &Path) -> Result<Vec<String>> {
    let gitmodules = read(&top.join(".gitmodules"))?;
    Ok(submodule_paths(&gitmodules)
        .into_iter()
        .filter(|path| {
            fs::read_dir(top.join(path)).map_or(true, |mut entries| entries.next().is_none())
        })
        .collect())
}

/// Says at the top of the tree how it was made, and how it differs.
fn write_note(top: &Path, differences: &[String]) -> Result<()> {
    let mut note = format!(
        "This is not QEMU's release tarball: `cargo xtask release-tarball` of the stopwatch\n\
         project assembled it from Debian's source package {} {} and what Debian's repack\n\
         strips (restored), laid out as QEMU's scripts/make-release lays out a release,\n\
         to test building from an upstream tarball. It differs from the release in:\n",
        pins::DEBIAN_SOURCE_PACKAGE,
        pins::DEBIAN_VERSION
    );
    for difference in differences {
        note.push_str(&format!("- {difference}\n"));
    }
    let path = top.join(NOTE_FILE);
    fs::write(&path, note).with_context(|| format!("could not write {}", path.display()))
}

/// The tar options that make the archive depend on the tree's contents
/// only: entries sorted, owners and modes fixed, no time later than
/// `source_time` (the added files would otherwise carry today's).
pub fn tar_args(top_name: &str, source_time: u64) -> Vec<String> {
    vec![
        "--create".into(),
        "--format=gnu".into(),
        "--sort=name".into(),
        "--owner=0".into(),
        "--group=0".into(),
        "--numeric-owner".into(),
        "--mode=u+rw,go-w".into(),
        format!("--mtime=@{source_time}"),
        "--clamp-mtime".into(),
        "--file=-".into(),
        top_name.into(),
    ]
}

/// `tar | xz` of `top` into `to`. xz runs multi-threaded (`-T0`), whose
/// output does not depend on the number of threads.
fn pack(top: &Path, source_time: u64, to: &Path) -> Result<()> {
    let parent = top.parent().context("the tree has a parent")?;
    let top_name = top.file_name().context("the tree has a name")?;
    let out = fs::File::create(to).with_context(|| format!("could not create {}", to.display()))?;
    let mut tar = Command::new("tar")
        .args(tar_args(&top_name.to_string_lossy(), source_time))
        .current_dir(parent)
        .stdout(Stdio::piped())
        .spawn()
        .context("could not run tar")?;
    let tar_out = tar.stdout.take().context("tar's output")?;
    let xz = Command::new("xz")
        .args(["-6", "-T0", "-c"])
        .stdin(tar_out)
        .stdout(out)
        .status()
        .context("could not run xz: `cargo xtask prereqs` installs it (docs/hosts.md)")?;
    let tar_status = tar.wait().context("tar did not finish")?;
    if !tar_status.success() || !xz.success() {
        bail!("packing failed: tar {tar_status}, xz {xz}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subprojects_make_release_downloads() -> Result<()> {
        let script = "# Only include wraps that are invoked with subproject()\n\
                      SUBPROJECTS=\"libvfio-user keycodemapdb\n  anyhow-1-rs syn-2-rs\"\n\
                      src=\"$1\"\n";
        assert_eq!(
            make_release_subprojects(script)?,
            ["libvfio-user", "keycodemapdb", "anyhow-1-rs", "syn-2-rs"]
        );
        assert!(make_release_subprojects("SUBPROJECTS=foo\n").is_err());
        assert!(make_release_subprojects("SUBPROJECTS=\"a b\n").is_err());
        Ok(())
    }

    #[test]
    fn reads_the_edk2_images_meson_unpacks() {
        let meson = "roms = []\nif unpack_edk2_blobs\n  fds = [\n    'edk2-aarch64-code.fd',\n\
                     \x20   'edk2-arm-vars.fd',\n  ]\n\n  foreach f : fds\n";
        assert_eq!(
            edk2_images(meson),
            ["edk2-aarch64-code.fd", "edk2-arm-vars.fd"]
        );
        assert!(edk2_images("blobs = ['bios.bin']").is_empty());
    }

    #[test]
    fn the_stand_in_is_an_empty_bzip2_stream() -> Result<()> {
        // bzip2 -dc must accept it, as QEMU's build runs exactly that.
        let dir = std::env::temp_dir().join(format!("xtask-bz2-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let path = dir.join("edk2-aarch64-code.fd.bz2");
        fs::write(&path, EMPTY_BZIP2)?;
        let output = Command::new("bzip2").arg("-dc").arg(&path).output();
        fs::remove_dir_all(&dir)?;
        let output = output.context("bzip2 is a prerequisite of the build")?;
        assert!(output.status.success(), "{output:?}");
        assert!(output.stdout.is_empty());
        Ok(())
    }

    #[test]
    fn reads_submodule_paths() {
        let text = "[submodule \"roms/seabios\"]\n\tpath = roms/seabios\n\
                    \turl = https://git.example/seabios.git/\n\
                    [submodule \"roms/edk2\"]\n\tpath = roms/edk2\n";
        assert_eq!(submodule_paths(text), ["roms/seabios", "roms/edk2"]);
    }

    #[test]
    fn packing_depends_on_the_contents_only() -> Result<()> {
        let root = std::env::temp_dir().join(format!("xtask-pack-{}", std::process::id()));
        let source_time = 1_600_000_000;
        // The same files, created in another order, at other times, with
        // another umask's modes: the same bytes.
        let make = |name: &str, order: &[&str], age: u64, mode: u32| -> Result<PathBuf> {
            use std::os::unix::fs::PermissionsExt;
            let top = root.join(name).join("qemu-10.2.2");
            for file in order {
                let path = top.join(file);
                fs::create_dir_all(path.parent().unwrap())?;
                fs::write(&path, format!("contents of {file}\n"))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                let time =
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(source_time + age);
                fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(time)?;
            }
            let out = root.join(format!("{name}.tar.xz"));
            pack(&top, source_time, &out)?;
            Ok(out)
        };
        let files = ["b.txt", "a/c.txt", "a/d.txt", "z/e.txt"];
        let reversed: Vec<&str> = files.iter().rev().copied().collect();
        let first = make("one", &files, 1000, 0o644);
        let second = make("two", &reversed, 5000, 0o664);
        let same = fs::read(first?)? == fs::read(second?)?;
        fs::remove_dir_all(&root)?;
        assert!(same, "two packings of the same tree differ");
        Ok(())
    }
}
