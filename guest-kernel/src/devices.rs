// SPDX-License-Identifier: GPL-2.0-or-later
//! What the kernel found and drives: the decoded device tree and one
//! driver per usable stopwatch, set once at boot ([`init`]) and shared
//! read-only from then on.
//!
//! This module owns that state. The boot sequence hands [`Machine`] to
//! those who work on it (the shell, the tests); the interrupt dispatcher,
//! which has no caller to hand it anything, looks a driver up by index
//! ([`stopwatch`]).

use board_discovery::{BoardInfo, MAX_STOPWATCHES};

use crate::drivers::stopwatch::Stopwatch;
use crate::sync::SetOnce;

/// The stopwatch drivers; stopwatch N is the Nth usable node. (The
/// kernel's fixed-capacity list, `heapless::Vec`: an empty one is all zero
/// bytes, so a `static` one lands in `.bss`, not in the Image.)
pub type Stopwatches = heapless::Vec<Stopwatch, MAX_STOPWATCHES>;

/// The board and its devices.
pub struct Machine {
    /// What the device tree said; it lives as long as the (never
    /// overwritten) device tree in RAM.
    pub board: BoardInfo<'static>,
    /// Every usable stopwatch in the device tree, in its order.
    pub stopwatches: Stopwatches,
}

static MACHINE: SetOnce<Machine> = SetOnce::new();

/// Makes a driver for every usable stopwatch in `board` and keeps both.
///
/// # Safety
///
/// Every stopwatch's registers must be mapped as Device memory and its
/// shared region as Normal memory, and nothing else may drive them.
pub unsafe fn init(board: BoardInfo<'static>) -> &'static Machine {
    let mut stopwatches = Stopwatches::new();
    for info in board.stopwatches.iter() {
        // SAFETY: Passed on from our caller; each node gets one driver.
        let driver = unsafe { Stopwatch::new(*info) };
        // Both lists hold MAX_STOPWATCHES.
        let _ = stopwatches.push(driver);
    }
    MACHINE
        .set(Machine { board, stopwatches })
        .unwrap_or_else(|_| panic!("devices set up twice"))
}

/// Stopwatch `index`'s driver (none before [`init`]), for the interrupt
/// dispatcher.
pub fn stopwatch(index: usize) -> Option<&'static Stopwatch> {
    MACHINE.get()?.stopwatches.get(index)
}
