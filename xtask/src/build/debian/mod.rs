// SPDX-License-Identifier: GPL-2.0-or-later
//! What building from Debian's source package needs beyond the generic
//! steps: the Debian mirror apt already uses ([`mirror`]), and the meson
//! wrap files that say which crates Debian's `+ds` repack stripped
//! ([`meson_wrap`]).

pub mod meson_wrap;
pub mod mirror;
