//! Reading the system through a root directory, so tests can point the
//! probe at fixture trees of /proc and /sys captured on real machines.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use procfs_core::{ExplicitSystemInfo, FromBufRead, FromBufReadSI, FromRead};

pub struct Sys {
    root: PathBuf,
}

impl Sys {
    pub fn new(root: impl Into<PathBuf>) -> Sys {
        Sys { root: root.into() }
    }

    /// `rel` (e.g. "proc/stat") under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.root.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    fn open(&self, rel: &str) -> Result<std::io::BufReader<std::fs::File>> {
        let p = self.path(rel);
        let f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
        Ok(std::io::BufReader::new(f))
    }

    pub fn read_string(&self, rel: &str) -> Result<String> {
        let p = self.path(rel);
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    }

    pub fn loadavg(&self) -> Result<procfs_core::LoadAverage> {
        procfs_core::LoadAverage::from_read(self.open("proc/loadavg")?)
            .context("cannot parse proc/loadavg")
    }

    pub fn kernel_stats(&self) -> Result<procfs_core::KernelStats> {
        let si = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        procfs_core::KernelStats::from_buf_read(self.open("proc/stat")?, &si)
            .context("cannot parse proc/stat")
    }

    pub fn vmstat(&self) -> Result<procfs_core::VmStat> {
        procfs_core::VmStat::from_buf_read(self.open("proc/vmstat")?)
            .context("cannot parse proc/vmstat")
    }

    pub fn meminfo(&self) -> Result<procfs_core::Meminfo> {
        procfs_core::Meminfo::from_buf_read(self.open("proc/meminfo")?)
            .context("cannot parse proc/meminfo")
    }

    pub fn mountinfo(&self) -> Result<procfs_core::process::MountInfos> {
        procfs_core::process::MountInfos::from_buf_read(self.open("proc/self/mountinfo")?)
            .context("cannot parse proc/self/mountinfo")
    }

    pub fn routes(&self) -> Result<procfs_core::net::RouteEntries> {
        procfs_core::net::RouteEntries::from_buf_read(self.open("proc/net/route")?)
            .context("cannot parse proc/net/route")
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
