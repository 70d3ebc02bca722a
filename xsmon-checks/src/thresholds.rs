//! Warning and error thresholds, the same machinery on guests and dom0.

use serde::Deserialize;
use xsmon_proto::{CheckResult, Status};

/// A warning and an error threshold; a figure at or above one is that bad.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub warning: f64,
    pub error: f64,
}

impl Thresholds {
    pub const fn new(warning: f64, error: f64) -> Thresholds {
        Thresholds { warning, error }
    }

    /// How bad `value` is (higher is worse).
    pub fn grade(&self, value: f64) -> Status {
        if value >= self.error {
            Status::Error
        } else if value >= self.warning {
            Status::Warning
        } else {
            Status::Ok
        }
    }

    /// Grades figure `name` of `check` and records these thresholds on it,
    /// so that graphs and performance data show what it was judged by.
    pub fn judge(&self, check: &mut CheckResult, name: &str, value: f64) -> Status {
        check.limit(name, Some(self.warning), Some(self.error));
        self.grade(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading() {
        let t = Thresholds::new(80.0, 90.0);
        assert_eq!(t.grade(10.0), Status::Ok);
        assert_eq!(t.grade(80.0), Status::Warning);
        assert_eq!(t.grade(95.0), Status::Error);
    }
}
