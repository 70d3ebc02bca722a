//! Memory: how much is still available (MemAvailable, which counts
//! reclaimable cache), for dom0 itself. dom0's memory is fixed at boot on a
//! Xen host (dom0_mem), so running short there hurts every guest's I/O.

use serde::Deserialize;
use xsmon_proto::CheckResult;

use crate::sys::Sys;
use crate::thresholds::Thresholds;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Memory in use (100 - available %), percent.
    pub used_pct: Thresholds,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            used_pct: Thresholds::new(90.0, 97.0),
        }
    }
}

pub fn check(sys: &Sys, cfg: &MemoryConfig) -> CheckResult {
    let mem = match sys.meminfo() {
        Ok(m) => m,
        Err(e) => return CheckResult::unknown("mem", "mem", "", format!("{e:#}")),
    };
    let total = mem.mem_total as f64;
    // Kernels before 3.14 have no MemAvailable; free + cached is close.
    let available = mem
        .mem_available
        .map(|a| a as f64)
        .unwrap_or((mem.mem_free + mem.cached + mem.buffers) as f64);
    let used_pct = if total > 0.0 {
        100.0 * (1.0 - available / total)
    } else {
        0.0
    };
    let mut r = CheckResult::new("mem", "mem", "");
    r.status = cfg.used_pct.grade(used_pct);
    r.message = format!(
        "{used_pct:.0}% of {} MiB memory in use, {} MiB available, {} MiB free",
        mem.mem_total / (1024 * 1024),
        available as u64 / (1024 * 1024),
        mem.mem_free / (1024 * 1024)
    );
    r.value("used_pct", used_pct)
        .value("available_bytes", available)
        .value("free_bytes", mem.mem_free as f64)
        .value("total_bytes", total);
    r
}
