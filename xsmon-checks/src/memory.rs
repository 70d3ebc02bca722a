//! Memory: how much is still available (MemAvailable, which counts
//! reclaimable cache), for dom0 itself and for every guest. dom0's memory
//! is fixed at boot on a Xen host (dom0_mem), so running short there hurts
//! every guest's I/O; a guest short of memory swaps or kills processes.

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
    r.status = cfg.used_pct.judge(&mut r, "used_pct", used_pct);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_with(meminfo: &str) -> (tempfile::TempDir, Sys) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), meminfo).unwrap();
        let sys = Sys::new(dir.path());
        (dir, sys)
    }

    fn used_pct(r: &CheckResult) -> f64 {
        r.values
            .iter()
            .find(|v| v.name == "used_pct")
            .unwrap()
            .value
    }

    #[test]
    fn mem_available_or_free_buffers_cached_on_old_kernels() {
        let base = "MemTotal: 1000000 kB\nMemFree: 50000 kB\nBuffers: 10000 kB\nCached: 100000 kB\nSwapCached: 0 kB\nActive: 1 kB\nInactive: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nDirty: 0 kB\nWriteback: 0 kB\nMapped: 0 kB\nSlab: 0 kB\nCommitLimit: 0 kB\nCommitted_AS: 0 kB\nVmallocTotal: 0 kB\nVmallocUsed: 0 kB\nVmallocChunk: 0 kB\n";
        let (_d, sys) = sys_with(&format!("{base}MemAvailable: 400000 kB\n"));
        let r = check(&sys, &MemoryConfig::default());
        let used = used_pct(&r);
        assert!((used - 60.0).abs() < 0.01, "{used}");
        // A 2.6/3.10 kernel (RHEL 6/7 guests) has no MemAvailable.
        let old = base
            .replace("MemFree: 50000", "MemFree: 20000")
            .replace("Buffers: 10000", "Buffers: 5000")
            .replace("Cached: 100000", "Cached: 5000");
        let (_d, sys) = sys_with(&old);
        let r = check(&sys, &MemoryConfig::default());
        let used = used_pct(&r);
        assert!((used - 97.0).abs() < 0.01, "{used}");
        assert_eq!(r.status, xsmon_proto::Status::Error);
    }
}
