//! What one check yields.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The outcome of a check, in increasing order of concern for sorting:
/// `Ok < Warning < Unknown < Error`. (Unknown ranks above warning: a check
/// that could not run hides whatever it should have seen.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Unknown => "unknown",
            Status::Error => "error",
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s {
            "ok" => Ok(Status::Ok),
            "warning" => Ok(Status::Warning),
            "unknown" => Ok(Status::Unknown),
            "error" => Ok(Status::Error),
            other => Err(format!(
                "unknown status {:?}",
                crate::text::clean(other, 20)
            )),
        }
    }
}

/// One named numeric figure of a check (e.g. `iowait_pct` = 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub name: String,
    pub value: f64,
}

/// The thresholds a figure was graded against (higher is worse), as the
/// guest's own configuration set them: what a graph draws as lines and
/// Nagios performance data carries as `warn;crit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// The figure's name, one of the check's values.
    pub name: String,
    pub warning: Option<f64>,
    pub error: Option<f64>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable id within one run: `cpu`, `swap`, `disk0`, `net3`, ...
    pub id: String,
    /// What kind of check: `cpu`, `swap`, `disk`, `net`.
    pub kind: String,
    /// What was checked, when a kind has several (a mount point, a gateway).
    pub target: String,
    pub status: Status,
    /// One line for a human.
    pub message: String,
    pub values: Vec<Value>,
    /// The thresholds behind `status`, one per graded figure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
}

impl CheckResult {
    pub fn new(id: impl Into<String>, kind: &str, target: impl Into<String>) -> CheckResult {
        CheckResult {
            id: id.into(),
            kind: kind.to_string(),
            target: target.into(),
            status: Status::Ok,
            message: String::new(),
            values: Vec::new(),
            limits: Vec::new(),
        }
    }

    /// A check that could not run; the reason says why.
    pub fn unknown(
        id: impl Into<String>,
        kind: &str,
        target: impl Into<String>,
        reason: impl fmt::Display,
    ) -> CheckResult {
        let mut r = CheckResult::new(id, kind, target);
        r.status = Status::Unknown;
        r.message = format!("check could not run: {reason}");
        r
    }

    pub fn value(&mut self, name: &str, value: f64) -> &mut Self {
        self.values.push(Value {
            name: name.to_string(),
            value,
        });
        self
    }

    /// Records the thresholds `name` is graded against.
    pub fn limit(&mut self, name: &str, warning: Option<f64>, error: Option<f64>) -> &mut Self {
        self.limits.retain(|l| l.name != name);
        self.limits.push(Limit {
            name: name.to_string(),
            warning,
            error,
        });
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|v| v.name == name).map(|v| v.value)
    }
}

/// Is this figure a counter that only grows (dom0's hypervisor figures of
/// kind `xen`: CPU time, bytes, packets, drops, requests, sectors), rather
/// than a gauge (CPU %, rates, memory, vCPUs, uptime, the reboot count,
/// and every figure a probe reports)? Charts draw counters as rates per
/// second; Nagios performance data marks them `c`.
pub fn is_counter(kind: &str, name: &str) -> bool {
    kind == "xen"
        && !(name.ends_with("_pct")
            || name.ends_with("_per_s")
            || matches!(name, "vcpus" | "uptime_s" | "reboots")
            || name.starts_with("mem_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_order_and_parse() {
        assert!(
            Status::Error > Status::Unknown
                && Status::Unknown > Status::Warning
                && Status::Warning > Status::Ok
        );
        for s in [Status::Ok, Status::Warning, Status::Unknown, Status::Error] {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("OK".parse::<Status>().is_err());
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
    }
}
