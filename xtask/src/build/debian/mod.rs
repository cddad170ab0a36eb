// SPDX-License-Identifier: GPL-2.0-or-later
//! The adapter for building from Debian's source package, beside the
//! generic steps in `build::qemu_source`: the download ([`source`]) through
//! the Debian mirror apt already uses ([`mirror`]), and putting back what
//! the `+ds` repack strips ([`repack`]), the crates named by the meson
//! wrap files ([`meson_wrap`]) among it.

pub mod meson_wrap;
pub mod mirror;
pub mod repack;
pub mod source;
