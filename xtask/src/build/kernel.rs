// SPDX-License-Identifier: GPL-2.0-or-later
//! Builds the bare-metal guest kernel in two flavors ([`Flavor`]: without
//! and with the in-guest test suite) and installs each into `target/vm/`
//! twice: the ELF (`guest-kernel`, `guest-kernel-test`), and the flat
//! arm64 Image that VMMs and firmware load (`.bin`: the ELF's loadable
//! bytes, from `llvm-objcopy -O binary`, starting with the 64-byte Image
//! header that `guest-kernel/src/arch/boot.rs` puts at `_start`).
//!
//! `llvm-objcopy` comes from rustup's `llvm-tools` component (pinned in
//! `rust-toolchain.toml`, installed like rustfmt and clippy): the same LLVM
//! as the compiler and linker that made the ELF, on any host, without root;
//! Debian's binutils-aarch64-linux-gnu would work too but only on Debian
//! and through apt.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::image_size;
use crate::util::{self, stdout_of};
use system_tests::repo::{cargo, Repo};
pub use system_tests::repo::{Flavor, BOOT_FLOOR_PACKAGE};

pub const PACKAGE: &str = "guest-kernel";
pub const TARGET: &str = "aarch64-unknown-none";
/// The kernel's debug info: file and line of every instruction, no types
/// or variables.
const LINE_TABLES: &str = "line-tables-only";

/// The kernel's compiler flags: the tiny code model, and panic messages'
/// source paths shortened to what a reader needs (the image has a size
/// budget, [`IMAGE_MAX_BYTES`], and absolute paths say nothing).
fn kernel_rustflags(repo: &Repo) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec![
        // PC-relative `adr` instead of `adrp` + `add` for every address:
        // the whole image is far within the tiny model's 1 MiB (saves ~3 KB).
        "-Ccode-model=tiny".to_string(),
        format!("--remap-path-prefix={}/=", repo.root.display()),
    ];
    if let Some(cargo_home) = cargo_home {
        // Crates' sources live in <CARGO_HOME>/registry/src/<index>/.
        if let Ok(indexes) = std::fs::read_dir(cargo_home.join("registry").join("src")) {
            for index in indexes.flatten() {
                flags.push(format!("--remap-path-prefix={}/=", index.path().display()));
            }
        }
    }
    flags.join("\x1f")
}

/// The flat Image's size budget: the shipped kernel's; the test kernel
/// has none (its suite is as large as the tests need).
pub const fn budget(flavor: Flavor) -> Option<u64> {
    match flavor {
        Flavor::Shipped => Some(IMAGE_MAX_BYTES),
        Flavor::WithTests => None,
    }
}

/// Builds both flavors and the boot-floor kernel into `target/vm/`;
/// returns the shipped ELF.
pub fn build(repo: &Repo) -> Result<PathBuf> {
    for flavor in [Flavor::Shipped, Flavor::WithTests] {
        build_flavor(repo, flavor)?;
    }
    build_boot_floor(repo)?;
    Ok(repo.kernel_binary())
}

/// `cargo build --release -p boot-floor-kernel`, then its ELF into
/// `target/vm/` (with the kernel's flags: same compiler, same code model).
fn build_boot_floor(repo: &Repo) -> Result<()> {
    let args = [
        "build",
        "--release",
        "-p",
        BOOT_FLOOR_PACKAGE,
        "--target",
        TARGET,
    ];
    eprintln!("    cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(args)
        .current_dir(&repo.root)
        .env("CARGO_ENCODED_RUSTFLAGS", kernel_rustflags(repo))
        .status()
        .context("could not run cargo")?;
    if !status.success() {
        bail!("the boot-floor kernel does not compile (cargo's errors are above); fix guest-kernel/boot-floor/");
    }
    let elf = repo
        .cargo_target_dir()
        .join(TARGET)
        .join("release")
        .join(BOOT_FLOOR_PACKAGE);
    util::install_copy(&elf, &repo.boot_floor_kernel())
        .with_context(|| format!("cargo built, but {} is missing", elf.display()))?;
    Ok(())
}

/// `cargo build --release -p guest-kernel --target aarch64-unknown-none`
/// (with the flavor's features), then the ELF and its Image into
/// `target/vm/`.
fn build_flavor(repo: &Repo, flavor: Flavor) -> Result<()> {
    let mut args = vec!["build", "--release", "-p", PACKAGE, "--target", TARGET];
    args.extend(flavor.cargo_features());
    eprintln!("    cargo {}", args.join(" "));
    let mut cmd = Command::new(cargo());
    cmd.args(&args)
        .current_dir(&repo.root)
        .env("CARGO_ENCODED_RUSTFLAGS", kernel_rustflags(repo))
        // Source lines for `cargo xtask gdb`, in non-allocated .debug_*
        // sections: the loaded image is the same size as without them.
        .env("CARGO_PROFILE_RELEASE_DEBUG", LINE_TABLES);
    let status = cmd.status().context("could not run cargo")?;
    if !status.success() {
        bail!(
            "the guest kernel does not compile (cargo's errors are above); fix {PACKAGE}/, or \
             use `cargo xtask build --no-kernel` to build QEMU alone"
        );
    }
    // Both flavors come out under the same name: copied before the next.
    let elf = repo
        .cargo_target_dir()
        .join(TARGET)
        .join("release")
        .join(PACKAGE);
    let installed = repo.kernel_elf(flavor);
    util::install_copy(&elf, &installed)
        .with_context(|| format!("cargo built, but {} is missing", elf.display()))?;
    write_image(&installed, &repo.kernel_image_of(flavor), flavor)
}

/// `llvm-objcopy -O binary ELF IMAGE`, then checks the Image's header,
/// prints its size report (each section's headroom, [`image_size`]) and,
/// for the shipped kernel, holds it to its budget.
fn write_image(elf: &Path, image: &Path, flavor: Flavor) -> Result<()> {
    let objcopy = llvm_objcopy()?;
    let partial = image.with_extension("bin.partial");
    util::run(
        Command::new(&objcopy)
            .args(["-O", "binary"])
            .arg(elf)
            .arg(&partial),
    )?;
    let bytes = std::fs::read(&partial)
        .with_context(|| format!("llvm-objcopy wrote no {}", partial.display()))?;
    let header = ImageHeader::parse(&bytes)
        .and_then(|header| header.check(bytes.len() as u64).map(|()| header))
        .with_context(|| format!("{} is not a valid arm64 Image", partial.display()))?;
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let sections = image_size::image_sections(&elf_bytes)
        .with_context(|| format!("reading the sections of {}", elf.display()))?;
    let report = image_size::SizeReport::new(&sections, budget(flavor));
    ensure!(
        report.image_bytes == bytes.len() as u64,
        "{}'s sections make {} bytes, but llvm-objcopy wrote {}",
        elf.display(),
        report.image_bytes,
        bytes.len()
    );
    report
        .check()
        .map_err(|error| {
            anyhow!(
                "{error}\n    its largest functions: {} --size-sort -S {}",
                objcopy.with_file_name("llvm-nm").display(),
                elf.display()
            )
        })
        .with_context(|| {
            format!(
                "{}: the shipped kernel outgrew its budget (IMAGE_MAX_BYTES in xtask/src/build/kernel.rs)",
                partial.display()
            )
        })?;
    std::fs::rename(&partial, image)
        .with_context(|| format!("could not write {}", image.display()))?;
    eprintln!(
        "    {}: arm64 Image, {} bytes{}, loaded {:#x} above a 2 MiB-aligned RAM base, needs {} bytes",
        image.display(),
        image_size::group(bytes.len() as u64),
        match budget(flavor) {
            Some(budget) => format!(
                " of its {} budget ({} left)",
                image_size::group(budget),
                image_size::group(budget - report.image_bytes)
            ),
            None => " (no budget)".to_string(),
        },
        header.text_offset,
        header.image_size
    );
    eprint!("{report}");
    Ok(())
}

/// `llvm-objcopy` of the pinned toolchain's `llvm-tools` component.
fn llvm_objcopy() -> Result<PathBuf> {
    let sysroot = stdout_of(Command::new("rustc").args(["--print", "sysroot"]))?;
    let version = stdout_of(Command::new("rustc").arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("`rustc -vV` names no host triple")?;
    let objcopy = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/llvm-objcopy");
    ensure!(
        objcopy.is_file(),
        "{} is missing: the `llvm-tools` rustup component makes the flat Image; \
         `cargo xtask build` installs it (it is in rust-toolchain.toml), or run \
         `rustup component add llvm-tools`",
        objcopy.display()
    );
    Ok(objcopy)
}

/// The 64-byte arm64 Image header (Linux's
/// `Documentation/arch/arm64/booting.rst`), little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub code0: u32,
    pub code1: u32,
    pub text_offset: u64,
    pub image_size: u64,
    pub flags: u64,
    pub reserved: [u64; 3],
    pub magic: [u8; 4],
    pub res5: u32,
}

/// "ARM\x64".
pub const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
/// Where the kernel is linked: `linker/guest-kernel.ld`'s KERNEL_BASE is
/// `virt`'s RAM base (0x40000000) plus this.
pub const IMAGE_TEXT_OFFSET: u64 = 0x20_0000;
/// Little-endian (bit 0 = 0), 4 KiB pages (bits 1-2 = 1), placed as close
/// as possible to the start of RAM (bit 3 = 0: the kernel runs at one
/// address only).
pub const IMAGE_FLAGS: u64 = 0b0010;
/// The shipped kernel's budget: its flat Image file (`cargo xtask build`
/// refuses a bigger one; the bench reports it).
pub const IMAGE_MAX_BYTES: u64 = 80 * 1024;

impl ImageHeader {
    pub fn parse(bytes: &[u8]) -> Result<ImageHeader> {
        ensure!(
            bytes.len() >= 64,
            "{} bytes, shorter than the 64-byte header",
            bytes.len()
        );
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        Ok(ImageHeader {
            code0: u32_at(0),
            code1: u32_at(4),
            text_offset: u64_at(8),
            image_size: u64_at(16),
            flags: u64_at(24),
            reserved: [u64_at(32), u64_at(40), u64_at(48)],
            magic: bytes[56..60].try_into().unwrap(),
            res5: u32_at(60),
        })
    }

    /// Checks every field against what the kernel needs, for an Image file
    /// of `file_len` bytes.
    pub fn check(&self, file_len: u64) -> Result<()> {
        ensure!(
            self.magic == IMAGE_MAGIC,
            "magic {:02x?}, not \"ARM\\x64\"",
            self.magic
        );
        // `b #64`: an unconditional branch (0b000101 in bits 31:26) over
        // the header to the code that follows it.
        ensure!(
            self.code0 == 0x1400_0010,
            "code0 {:#010x} is not a branch over the 64-byte header (0x14000010)",
            self.code0
        );
        ensure!(self.code1 == 0, "code1 {:#x} is not 0", self.code1);
        ensure!(
            self.text_offset == IMAGE_TEXT_OFFSET,
            "text_offset {:#x}, but the kernel is linked {IMAGE_TEXT_OFFSET:#x} above RAM's base",
            self.text_offset
        );
        ensure!(
            self.flags == IMAGE_FLAGS,
            "flags {:#x}, not {IMAGE_FLAGS:#x} (little-endian, 4 KiB pages, near RAM's base)",
            self.flags
        );
        ensure!(
            self.reserved == [0; 3] && self.res5 == 0,
            "reserved fields are not 0"
        );
        ensure!(
            self.image_size >= file_len && self.image_size.is_multiple_of(4096),
            "image_size {:#x} does not cover the {file_len:#x}-byte file in whole pages",
            self.image_size
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes() -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
        bytes[8..16].copy_from_slice(&IMAGE_TEXT_OFFSET.to_le_bytes());
        bytes[16..24].copy_from_slice(&0x3a000u64.to_le_bytes());
        bytes[24..32].copy_from_slice(&IMAGE_FLAGS.to_le_bytes());
        bytes[56..60].copy_from_slice(b"ARM\x64");
        bytes
    }

    #[test]
    fn a_good_header_passes() {
        let bytes = header_bytes();
        let header = ImageHeader::parse(&bytes).unwrap();
        assert_eq!(header.image_size, 0x3a000);
        header.check(bytes.len() as u64).unwrap();
    }

    #[test]
    fn every_field_is_checked() {
        let breakages: [(usize, u8, &str); 7] = [
            (0, 0x11, "code0"),
            (4, 1, "code1"),
            (9, 0x10, "text_offset"),
            (17, 0x01, "image_size"),
            (24, 0x0b, "flags"),
            (40, 1, "reserved"),
            (57, b'X', "magic"),
        ];
        for (offset, value, field) in breakages {
            let mut bytes = header_bytes();
            bytes[offset] = value;
            let error = ImageHeader::parse(&bytes)
                .unwrap()
                .check(bytes.len() as u64)
                .expect_err(field);
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        // Too big a file for image_size, or for the size target.
        let header = ImageHeader::parse(&header_bytes()).unwrap();
        assert!(header.check(0x3a001).is_err());
        let big = ImageHeader {
            image_size: 0x20_0000,
            ..header
        };
        assert!(big.check(IMAGE_MAX_BYTES + 1).is_ok());
        assert!(ImageHeader::parse(&[0; 63]).is_err());
    }

    /// Only the shipped kernel has a budget: the test kernel's suite may
    /// grow as the tests need.
    #[test]
    fn only_the_shipped_kernel_has_a_budget() {
        assert_eq!(budget(Flavor::Shipped), Some(IMAGE_MAX_BYTES));
        assert_eq!(IMAGE_MAX_BYTES, 80 * 1024);
        assert_eq!(budget(Flavor::WithTests), None);
    }

    /// The Image `cargo xtask build` wrote (skipped before the first build).
    #[test]
    fn the_built_image_has_a_valid_header() {
        for flavor in [Flavor::Shipped, Flavor::WithTests] {
            let image = Repo::locate().kernel_image_of(flavor);
            let Ok(bytes) = std::fs::read(&image) else {
                eprintln!("{} not built yet: skipped", image.display());
                continue;
            };
            let header = ImageHeader::parse(&bytes).unwrap();
            header.check(bytes.len() as u64).unwrap();
            if let Some(budget) = budget(flavor) {
                assert!(bytes.len() as u64 <= budget);
            }
        }
    }
}
