//! Counters kept between runs, so that a 5-minute cron gives 5-minute
//! averages without sleeping. A small `key value` text file, replaced
//! atomically (write to a temporary file, then rename).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

pub const DEFAULT_PATH: &str = "/var/lib/xsmon/probe.state";

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Wall clock, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Boot time from /proc/stat; a change means the counters restarted.
    pub btime: u64,
    pub cpu_total: u64,
    pub cpu_iowait: u64,
    pub cpu_steal: u64,
    pub pswpin: u64,
    pub pswpout: u64,
}

const FIELDS: [&str; 7] = [
    "time_ms",
    "btime",
    "cpu_total",
    "cpu_iowait",
    "cpu_steal",
    "pswpin",
    "pswpout",
];

impl Sample {
    fn fields(&self) -> [u64; 7] {
        [
            self.time_ms,
            self.btime,
            self.cpu_total,
            self.cpu_iowait,
            self.cpu_steal,
            self.pswpin,
            self.pswpout,
        ]
    }

    fn from_map(m: &BTreeMap<&str, u64>) -> Option<Sample> {
        let g = |k: &str| m.get(k).copied();
        Some(Sample {
            time_ms: g("time_ms")?,
            btime: g("btime")?,
            cpu_total: g("cpu_total")?,
            cpu_iowait: g("cpu_iowait")?,
            cpu_steal: g("cpu_steal")?,
            pswpin: g("pswpin")?,
            pswpout: g("pswpout")?,
        })
    }

    /// Can `self` serve as the start of an interval ending at `now`? Not
    /// after a reboot, not if the clock went backwards, not if it is from
    /// more than a day ago (the figures would mean nothing).
    pub fn usable_before(&self, now: &Sample) -> bool {
        self.btime == now.btime
            && now.time_ms > self.time_ms
            && now.time_ms - self.time_ms <= 86_400_000
            && now.cpu_total >= self.cpu_total
    }
}

/// Cumulative CPU and swap counters now. A missing vmstat leaves the swap
/// counters at zero; the swap check reports that on its own.
pub fn sample(sys: &xsmon_checks::Sys) -> Result<Sample> {
    let stats = sys.kernel_stats()?;
    let t = &stats.total;
    let cpu_total = t.user
        + t.nice
        + t.system
        + t.idle
        + t.iowait.unwrap_or(0)
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    let vm = sys.vmstat().ok();
    let vmget = |k: &str| {
        vm.as_ref()
            .and_then(|v| v.0.get(k))
            .map(|v| (*v).max(0) as u64)
            .unwrap_or(0)
    };
    Ok(Sample {
        time_ms: xsmon_checks::sys::now_ms(),
        btime: stats.btime,
        cpu_total,
        cpu_iowait: t.iowait.unwrap_or(0),
        cpu_steal: t.steal.unwrap_or(0),
        pswpin: vmget("pswpin"),
        pswpout: vmget("pswpout"),
    })
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The previous sample; `None` when there is none or it is unreadable
    /// (a broken state file only costs one short sample, so it is not fatal).
    pub fn load(&self) -> Option<Sample> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut m = BTreeMap::new();
        for line in text.lines().take(64) {
            if let Some((k, v)) = line.split_once(' ') {
                if let Ok(v) = v.trim().parse::<u64>() {
                    m.insert(k, v);
                }
            }
        }
        let s = Sample::from_map(&m);
        if s.is_none() {
            tracing::warn!(path = %self.path.display(), "state file unreadable, sampling afresh");
        }
        s
    }

    pub fn save(&self, s: &Sample) -> Result<()> {
        let mut text = String::from("# xsmon guest-probe counters; safe to delete\n");
        for (k, v) in FIELDS.iter().zip(s.fields()) {
            text.push_str(&format!("{k} {v}\n"));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming to {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("sub/probe.state"));
        assert_eq!(f.load(), None);
        let s = Sample {
            time_ms: 1,
            btime: 2,
            cpu_total: 3,
            cpu_iowait: 4,
            cpu_steal: 5,
            pswpin: 6,
            pswpout: 7,
        };
        f.save(&s).unwrap();
        assert_eq!(f.load(), Some(s));
        std::fs::write(dir.path().join("sub/probe.state"), "garbage\n").unwrap();
        assert_eq!(f.load(), None);
    }

    #[test]
    fn reboot_or_old_state_is_not_used() {
        let a = Sample {
            time_ms: 1000,
            btime: 5,
            cpu_total: 10,
            ..Default::default()
        };
        let mut b = Sample {
            time_ms: 301_000,
            btime: 5,
            cpu_total: 20,
            ..Default::default()
        };
        assert!(a.usable_before(&b));
        b.btime = 6;
        assert!(!a.usable_before(&b));
        b.btime = 5;
        b.time_ms = 500;
        assert!(!a.usable_before(&b));
    }
}
