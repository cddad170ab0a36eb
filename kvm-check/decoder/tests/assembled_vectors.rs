// SPDX-License-Identifier: GPL-2.0-or-later

//! Checks [`a64_access_class::classify`] against `tests/vectors.s`, as
//! assembled by GNU as for aarch64: every line's word must get the class
//! its `// expect:` comment names.

use std::path::{Path, PathBuf};
use std::process::Command;

use a64_access_class::classify;

/// The assembler's architecture: everything the vectors use (LSE atomics,
/// RCpc, RCpc2, pointer authentication, memory tagging, memory copy/set).
const MARCH: &str = "-march=armv8.8-a+memtag";

/// The aarch64 binutils' program prefixes: Debian's, Ubuntu's, Fedora's
/// and Arch's; openSUSE's; Homebrew's bare-metal ones.
const PREFIXES: &[&str] = &["aarch64-linux-gnu-", "aarch64-suse-linux-", "aarch64-elf-"];

/// `tool` (`as`, `objcopy`) with the first prefix whose assembler is on
/// PATH (the first prefix when none is, for the message).
fn binutil(tool: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let prefix = PREFIXES
        .iter()
        .find(|prefix| {
            std::env::split_paths(&path).any(|dir| dir.join(format!("{prefix}as")).is_file())
        })
        .unwrap_or(&PREFIXES[0]);
    format!("{prefix}{tool}")
}

/// Runs a binutils tool, with a clear message when it is missing.
fn run(tool: &str, args: &[&std::ffi::OsStr]) {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "could not run {tool} ({error}): install Debian's binutils-aarch64-linux-gnu \
             (other distributions: docs/hosts.md; `cargo xtask test` installs it)"
            )
        });
    assert!(
        output.status.success(),
        "{tool} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The words of `source`, in order.
fn assemble(source: &Path, scratch: &Path) -> Vec<u32> {
    let object = scratch.join("vectors.o");
    let binary = scratch.join("vectors.bin");
    run(
        &binutil("as"),
        &[
            MARCH.as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            object.as_os_str(),
        ],
    );
    run(
        &binutil("objcopy"),
        &[
            "-O".as_ref(),
            "binary".as_ref(),
            "-j".as_ref(),
            ".text".as_ref(),
            object.as_os_str(),
            binary.as_os_str(),
        ],
    );
    let bytes = std::fs::read(&binary).expect("objcopy wrote the binary");
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks_exact(4)
        .map(|word| u32::from_le_bytes(word.try_into().expect("4 bytes")))
        .collect()
}

/// (instruction text, expected key) per instruction line of the source.
fn expectations(source: &str) -> Vec<(String, String)> {
    source
        .lines()
        .filter_map(|line| {
            let (instruction, comment) = line.split_once("//")?;
            let key = comment.trim().strip_prefix("expect:")?;
            Some((instruction.trim().to_string(), key.trim().to_string()))
        })
        .collect()
}

#[test]
fn every_assembled_vector_gets_its_class() {
    let source_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors.s");
    let source = std::fs::read_to_string(&source_path).expect("tests/vectors.s");
    let scratch = std::env::temp_dir().join(format!("a64-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let words = assemble(&source_path, &scratch);
    std::fs::remove_dir_all(&scratch).ok();

    let expected = expectations(&source);
    assert_eq!(
        words.len(),
        expected.len(),
        "every instruction line needs an `// expect:` comment, and only those"
    );
    let mismatches: Vec<String> = words
        .iter()
        .zip(&expected)
        .filter(|(&word, (_, key))| classify(word).key() != key)
        .map(|(&word, (text, key))| {
            format!(
                "{text:<32} {word:#010x}: expected {key}, got {}",
                classify(word).key()
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
    // Both verdicts are exercised.
    assert!(words.iter().any(|&w| classify(w).is_emulable()));
    assert!(words.iter().any(|&w| !classify(w).is_emulable()));
}
