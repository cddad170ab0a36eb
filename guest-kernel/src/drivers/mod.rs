// SPDX-License-Identifier: GPL-2.0-or-later
//! Device drivers.

pub mod gic;
pub mod stopwatch;
pub mod uart;
