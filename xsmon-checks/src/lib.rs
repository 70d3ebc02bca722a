//! Checks shared by `guest-probe` (inside a guest) and `host-collector`
//! (on dom0): reading /proc under a root directory (so tests can use
//! fixture trees), thresholds, disk space, memory.

pub mod disk;
pub mod memory;
pub mod sys;
pub mod thresholds;

pub use sys::Sys;
pub use thresholds::Thresholds;
