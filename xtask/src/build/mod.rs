// SPDX-License-Identifier: GPL-2.0-or-later
//! The build pipeline: prerequisites, QEMU's source (downloaded, restored,
//! patched) and build in the cache, and the guest kernel, each step a
//! row of the build summary ([`pipeline::Session`] runs them). Where the
//! source comes from Debian's package, [`debian`] is the adapter; where
//! it is QEMU's release tarball, [`upstream`] (through [`download`]).

pub mod cache;
pub mod debian;
pub mod download;
pub mod host_packages;
pub mod image_size;
pub mod kernel;
pub mod patches;
pub mod pins;
pub mod pipeline;
pub mod prereqs;
pub mod qemu_build;
pub mod qemu_source;
pub mod release_tarball;
pub mod upstream;
