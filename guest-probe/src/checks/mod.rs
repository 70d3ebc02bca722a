//! The four checks. Each turns figures into a [`CheckResult`]; a check that
//! cannot read what it needs becomes status `unknown` with the reason, and
//! the others still run.

pub mod cpu;
pub mod disk;
pub mod net;
pub mod swap;

use xsmon_proto::Status;

use crate::config::Thresholds;

/// How bad `value` is against `t` (higher is worse).
pub fn grade(value: f64, t: Thresholds) -> Status {
    if value >= t.error {
        Status::Error
    } else if value >= t.warning {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// The interval between two samples, or why there is none.
pub struct Interval {
    pub prev: crate::state::Sample,
    pub now: crate::state::Sample,
    /// Set on a first run, where the interval is a short sample.
    pub note: Option<String>,
}

impl Interval {
    pub fn seconds(&self) -> f64 {
        (self.now.time_ms.saturating_sub(self.prev.time_ms)) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading() {
        let t = Thresholds::new(80.0, 90.0);
        assert_eq!(grade(10.0, t), Status::Ok);
        assert_eq!(grade(80.0, t), Status::Warning);
        assert_eq!(grade(95.0, t), Status::Error);
    }
}
