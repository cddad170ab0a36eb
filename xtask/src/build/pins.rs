// SPDX-License-Identifier: GPL-2.0-or-later
//! Every pinned version and checksum of what the QEMU build downloads.
//!
//! Downloads are verified against these hashes, and the hashes feed the
//! build cache key, so changing one here rebuilds QEMU in a fresh directory.

/// The QEMU release the patches in `patches/` apply to.
pub const QEMU_VERSION: &str = "10.2.2";

/// Debian's source package, fetched with `apt-get source` (Debian mirrors
/// keep older versions far longer than a release's download page is cached
/// anywhere we can reach).
pub const DEBIAN_SOURCE_PACKAGE: &str = "qemu";
pub const DEBIAN_VERSION: &str = "1:10.2.2+ds-1";
/// The Debian suite whose source index carries [`DEBIAN_VERSION`].
pub const DEBIAN_SUITE: &str = "sid";
/// Keyring that signs the Debian archive (package `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A file and the SHA-256 it must have.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// The upstream sources, repacked by Debian without firmware blobs,
/// `subprojects/packagefiles` and `python/wheels` (the "+ds"). The only file
/// the build needs.
pub const DEBIAN_ORIG_TARBALL: PinnedFile = PinnedFile {
    name: "qemu_10.2.2+ds.orig.tar.xz",
    sha256: "be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb",
};

/// Everything `apt-get source --download-only` fetches; all are verified.
pub const DEBIAN_SOURCE_FILES: [PinnedFile; 3] = [
    DEBIAN_ORIG_TARBALL,
    PinnedFile {
        name: "qemu_10.2.2+ds-1.dsc",
        sha256: "f1684b3aa5ec500c3389d346c6501dee45041ea91656c6556d4da9023b7987dd",
    },
    PinnedFile {
        name: "qemu_10.2.2+ds-1.debian.tar.xz",
        sha256: "ddf75aceab4f8f77374f3cb34fc97b41514895aeb293ce8b2ddd5e072bb0f5c0",
    },
];

/// QEMU's own release tarball, downloaded from QEMU's download site where
/// no Debian archive is configured (`build::upstream`). It ships most of
/// what Debian's repack strips (the meson subprojects `scripts/make-release`
/// names, the Python wheels); the rest is restored into it.
pub const UPSTREAM_TARBALL: PinnedFile = PinnedFile {
    name: "qemu-10.2.2.tar.xz",
    sha256: "784b296ff29c1417aa72323abcb2d2ea9ab9771724f577dcd785c3b04f21e176",
};
/// Where [`UPSTREAM_TARBALL`] is downloaded from (QEMU's download site).
pub const UPSTREAM_TARBALL_URL: &str = "https://download.qemu.org/qemu-10.2.2.tar.xz";

/// A Python wheel that QEMU's configure installs into its build venv.
#[derive(Debug, Clone, Copy)]
pub struct PinnedWheel {
    /// `pip` requirement, `name==version`.
    pub requirement: &'static str,
    pub file: PinnedFile,
}

/// The wheels upstream ships in `python/wheels/` and the `+ds` tarball
/// drops; configure runs with `--disable-download`, so they must be there.
pub const PYTHON_WHEELS: [PinnedWheel; 2] = [
    PinnedWheel {
        requirement: "meson==1.9.0",
        file: PinnedFile {
            name: "meson-1.9.0-py3-none-any.whl",
            sha256: "45e51ddc41e37d961582d06e78c48e0f9039011587f3495c4d6b0781dad92357",
        },
    },
    PinnedWheel {
        requirement: "pycotap==1.3.1",
        file: PinnedFile {
            name: "pycotap-1.3.1-py3-none-any.whl",
            sha256: "1c3a25b3ff89e48f4e00f1f71dbbc1642b4f65c65d416524d07e73492fff25ea",
        },
    },
];

/// Version of the preparation pipeline in this crate. Bump it whenever a
/// change here alters what ends up in the QEMU source or build directory,
/// so that existing caches are not reused.
pub const PIPELINE_VERSION: u32 = 2;

/// Git tag on the commit holding the pristine (restored) QEMU source; the
/// commits after it are exactly `patches/*.patch`.
pub const BASE_TAG: &str = "stopwatch-base";
