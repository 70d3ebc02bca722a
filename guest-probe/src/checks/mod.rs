//! The four checks. Each turns figures into a [`CheckResult`]; a check that
//! cannot read what it needs becomes status `unknown` with the reason, and
//! the others still run.

pub mod cpu;
pub mod net;
pub mod swap;

/// The interval between two samples, or why there is none.
pub struct Interval {
    pub prev: crate::state::Sample,
    pub now: crate::state::Sample,
    /// Set on a first run, or after a suspension, where the interval is a
    /// short sample.
    pub note: Option<String>,
    /// The domain was suspended since the previous run (or during this
    /// one): the interval is a short sample taken afterwards.
    pub resumed: Option<xsmon_proto::layout::Resumed>,
}

impl Interval {
    pub fn seconds(&self) -> f64 {
        (self.now.time_ms.saturating_sub(self.prev.time_ms)) as f64 / 1000.0
    }
}
