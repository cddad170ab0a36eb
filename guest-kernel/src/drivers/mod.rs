//! Device drivers.

pub mod gic;
pub mod stopwatch;
pub mod uart;
