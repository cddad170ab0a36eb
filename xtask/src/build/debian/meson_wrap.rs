// SPDX-License-Identifier: GPL-2.0-or-later
//! Reads meson `[wrap-file]` files, which name the Rust crates QEMU's Rust
//! code depends on (`subprojects/*-rs.wrap`).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The parts of a `[wrap-file]` wrap this build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateWrap {
    /// The wrap's file name without `.wrap`, e.g. `anyhow-1-rs`.
    pub wrap_name: String,
    /// Crate name and exact version, from `directory = name-version`.
    pub crate_name: String,
    pub crate_version: String,
    /// The directory meson unpacks the crate into, under `subprojects/`.
    pub directory: String,
    /// File name meson expects in `subprojects/packagecache/`.
    pub source_filename: String,
    /// SHA-256 meson checks that file against: the `.crate` file's hash.
    pub source_hash: String,
    /// Folder under `subprojects/packagefiles/` overlaid on the crate.
    pub patch_directory: String,
}

impl CrateWrap {
    pub fn read(path: &Path) -> Result<CrateWrap> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let wrap_name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("odd wrap file name {}", path.display()))?;
        CrateWrap::parse(wrap_name, &text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(wrap_name: &str, text: &str) -> Result<CrateWrap> {
        let mut section = "";
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            } else if section == "wrap-file" {
                if let Some((key, value)) = line.split_once('=') {
                    fields.push((key.trim().to_string(), value.trim().to_string()));
                }
            }
        }
        let field = |key: &str| -> Result<String> {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("no `{key} =` in its [wrap-file] section"))
        };
        let directory = field("directory")?;
        let Some((crate_name, crate_version)) = directory.rsplit_once('-') else {
            bail!("`directory = {directory}` is not of the form <crate>-<version>");
        };
        if !crate_version.starts_with(|c: char| c.is_ascii_digit()) {
            bail!("`directory = {directory}` is not of the form <crate>-<version>");
        }
        Ok(CrateWrap {
            wrap_name: wrap_name.to_string(),
            crate_name: crate_name.to_string(),
            crate_version: crate_version.to_string(),
            source_filename: field("source_filename")?,
            source_hash: field("source_hash")?.to_ascii_lowercase(),
            patch_directory: field("patch_directory").unwrap_or_else(|_| wrap_name.to_string()),
            directory,
        })
    }
}

/// How meson gets a subproject: the kind of a wrap's `[wrap-*]` section
/// and the directory under `subprojects/` it ends up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapSource {
    /// `file` (an archive meson downloads into `subprojects/packagecache/`),
    /// `git`, ...: the section name after `wrap-`.
    pub kind: String,
    /// `directory =`, else the wrap's own name (as meson and
    /// `scripts/make-release` default it).
    pub directory: String,
}

impl WrapSource {
    /// Reads the first `[wrap-*]` section of the wrap `wrap_name`.
    pub fn parse(wrap_name: &str, text: &str) -> Result<WrapSource> {
        let mut kind = None;
        let mut directory = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if kind.is_some() {
                    break;
                }
                kind = name.strip_prefix("wrap-").map(str::to_string);
            } else if kind.is_some() {
                if let Some(("directory", value)) =
                    line.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
                {
                    directory = Some(value.to_string());
                }
            }
        }
        let Some(kind) = kind else {
            bail!("subprojects/{wrap_name}.wrap has no [wrap-*] section");
        };
        Ok(WrapSource {
            kind,
            directory: directory.unwrap_or_else(|| wrap_name.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN_WRAP: &str = "[wrap-file]
directory = syn-2.0.104
source_url = https://crates.example/api/v1/crates/syn/2.0.104/download
source_filename = syn-2.0.104.0.tar.gz
source_hash = 17b6f705963418cdb9927482fa304bc562ece2fdd4f616084c50b7023b435a40
#method = cargo
patch_directory = syn-2-rs

# bump this version number on every change to meson.build or the patches:
# v2
";

    #[test]
    fn parses_a_crate_wrap() -> Result<()> {
        let wrap = CrateWrap::parse("syn-2-rs", SYN_WRAP)?;
        assert_eq!(wrap.crate_name, "syn");
        assert_eq!(wrap.crate_version, "2.0.104");
        assert_eq!(wrap.directory, "syn-2.0.104");
        assert_eq!(wrap.source_filename, "syn-2.0.104.0.tar.gz");
        assert_eq!(
            wrap.source_hash,
            "17b6f705963418cdb9927482fa304bc562ece2fdd4f616084c50b7023b435a40"
        );
        assert_eq!(wrap.patch_directory, "syn-2-rs");
        Ok(())
    }

    #[test]
    fn dashed_crate_names_split_at_the_version() -> Result<()> {
        let text = "[wrap-file]\ndirectory = proc-macro-error-attr-1.0.4\n\
                    source_filename = proc-macro-error-attr-1.0.4.tar.gz\nsource_hash = AB\n";
        let wrap = CrateWrap::parse("proc-macro-error-attr-1-rs", text)?;
        assert_eq!(wrap.crate_name, "proc-macro-error-attr");
        assert_eq!(wrap.crate_version, "1.0.4");
        assert_eq!(wrap.source_hash, "ab");
        // Without `patch_directory`, meson looks for the wrap's own name.
        assert_eq!(wrap.patch_directory, "proc-macro-error-attr-1-rs");
        Ok(())
    }

    #[test]
    fn missing_fields_are_named() {
        let error = CrateWrap::parse("x-rs", "[wrap-file]\ndirectory = x-1.0\n").unwrap_err();
        assert!(error.to_string().contains("source_filename"), "{error}");
        let error = CrateWrap::parse("x-rs", "[wrap-file]\ndirectory = x\n").unwrap_err();
        assert!(error.to_string().contains("<crate>-<version>"), "{error}");
    }

    #[test]
    fn reads_the_kind_and_directory_of_any_wrap() -> Result<()> {
        let git = "[wrap-git]\nurl = https://git.example/keycodemapdb.git\n\
                   revision = f5772a62ec52591ff6870b7e8ef32482371f22c6\ndepth = 1\n";
        let source = WrapSource::parse("keycodemapdb", git)?;
        assert_eq!(source.kind, "git");
        // No `directory =`: the wrap's name, as meson defaults it.
        assert_eq!(source.directory, "keycodemapdb");
        let file = WrapSource::parse("syn-2-rs", SYN_WRAP)?;
        assert_eq!(
            (file.kind.as_str(), file.directory.as_str()),
            ("file", "syn-2.0.104")
        );
        // A `directory =` of a later section is not the wrap's.
        let two = "[wrap-git]\nurl = x\n[provide]\ndirectory = other\n";
        assert_eq!(WrapSource::parse("a", two)?.directory, "a");
        assert!(WrapSource::parse("b", "[provide]\nb = b_dep\n").is_err());
        Ok(())
    }
}
