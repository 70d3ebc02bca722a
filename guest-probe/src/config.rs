//! The probe's configuration (`/etc/xsmon/probe.toml`). Every key is
//! optional; a missing file means all defaults.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
pub use xsmon_checks::disk::DiskConfig;
pub use xsmon_checks::Thresholds;

pub const DEFAULT_PATH: &str = "/etc/xsmon/probe.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub cpu: CpuConfig,
    pub swap: SwapConfig,
    /// Memory in use (MemAvailable; MemFree + Buffers + Cached on kernels
    /// before 3.14).
    pub memory: xsmon_checks::memory::MemoryConfig,
    pub disk: DiskConfig,
    pub net: NetConfig,
    pub xenstore: XenstoreConfig,
    /// Where the probe keeps counters between runs.
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// 5-minute load average divided by the number of online CPUs.
    pub load_per_cpu: Thresholds,
    /// Percentage of CPU time waiting for I/O.
    pub iowait_pct: Thresholds,
    /// Percentage of CPU time the hypervisor gave to other guests.
    pub steal_pct: Thresholds,
    /// On the first run (no state file) the probe samples for this long.
    pub first_sample_ms: u64,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            load_per_cpu: Thresholds::new(2.0, 4.0),
            iowait_pct: Thresholds::new(20.0, 40.0),
            steal_pct: Thresholds::new(10.0, 25.0),
            first_sample_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwapConfig {
    /// Pages swapped in plus out per second.
    pub pages_per_s: Thresholds,
    /// Swap space in use, percent; a warning at most, use alone does not hurt.
    pub used_pct_warning: f64,
}

impl Default for SwapConfig {
    fn default() -> Self {
        SwapConfig {
            pages_per_s: Thresholds::new(100.0, 1000.0),
            used_pct_warning: 80.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Gateways to ping, in addition to those found.
    pub gateways: Vec<Ipv4Addr>,
    /// Take gateways from the routing table (/proc/net/route).
    pub from_routes: bool,
    /// The 2010 convention: a NIC whose MAC is 00:16 + its IPv4 address in
    /// hex gets the gateway of the rule whose network holds that address.
    pub mac_rules: Vec<MacRule>,
    /// Echo requests per gateway.
    pub count: u32,
    /// How long to wait for replies, for all gateways at once.
    pub timeout_ms: u64,
    /// Round-trip time, milliseconds.
    pub rtt_ms: Thresholds,
    /// Packet loss, percent (100% loss is always an error).
    pub loss_pct: Thresholds,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            gateways: Vec::new(),
            from_routes: true,
            mac_rules: Vec::new(),
            count: 3,
            timeout_ms: 1000,
            rtt_ms: Thresholds::new(100.0, 500.0),
            loss_pct: Thresholds::new(30.0, 100.0),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacRule {
    /// e.g. "172.19.10.0/24"
    pub network: String,
    pub gateway: Ipv4Addr,
}

impl MacRule {
    /// Does this rule's network hold `ip`?
    pub fn contains(&self, ip: Ipv4Addr) -> Result<bool> {
        let (net, len) = self.network.split_once('/').with_context(|| {
            format!("mac rule network {:?} is not address/prefix", self.network)
        })?;
        let net: Ipv4Addr = net
            .parse()
            .with_context(|| format!("mac rule network {:?}", self.network))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .with_context(|| format!("mac rule prefix {:?}", self.network))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(u32::from(ip) & mask == u32::from(net) & mask)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XenstoreConfig {
    /// Write under the guest's own home (`data/xsmon`).
    pub home: bool,
    /// Also write the 2010 design's shared path, for sites still reading it.
    pub legacy: bool,
    /// The name under the legacy path (default: the hostname).
    pub legacy_name: Option<String>,
    /// Seconds one xenstore request may take.
    pub timeout_secs: u64,
    /// The key layout written: 6 (default: 2 keys for a typical guest,
    /// with the thresholds behind each status, whether the domain was
    /// suspended since the last run and the kernel's boot id), 5 (the
    /// same in 3 keys, for dom0s whose collector is xsmon 0.5), 4 (without
    /// the boot id, xsmon 0.4), 3 (without either, xsmon 0.3), 2 (without
    /// thresholds, xsmon 0.2) or 1 (one key per field, for collectors
    /// older than 0.2).
    /// Upgrade the dom0s first.
    pub layout: u32,
}

impl Default for XenstoreConfig {
    fn default() -> Self {
        XenstoreConfig {
            home: true,
            legacy: false,
            legacy_name: None,
            timeout_secs: 5,
            layout: xsmon_proto::layout::VERSION,
        }
    }
}

impl Config {
    /// Loads `path`. A missing file is fine when `must_exist` is false (the
    /// default path); a broken one is an error naming the line.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config> {
        let config: Config =
            xsmon_cli::load_config(path, must_exist).map_err(anyhow::Error::msg)?;
        config
            .check()
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }

    /// What TOML types cannot say: the MAC rules' networks are well formed.
    fn check(&self) -> Result<()> {
        for rule in &self.net.mac_rules {
            rule.contains(Ipv4Addr::UNSPECIFIED)?;
        }
        if !matches!(self.xenstore.layout, 1..=6) {
            anyhow::bail!(
                "xenstore.layout must be 1, 2, 3, 4, 5 or 6, not {}",
                self.xenstore.layout
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.disk.used_pct, Thresholds::new(85.0, 95.0));
        assert!(c.xenstore.home && !c.xenstore.legacy);
    }

    #[test]
    fn settings_parse() {
        let c = Config::parse(
            r#"
            [disk]
            used_pct = { warning = 70, error = 90 }
            exclude = ["/mnt/scratch"]
            [[disk.mount]]
            path = "/var/log"
            used_pct = { warning = 95, error = 99 }
            [net]
            gateways = ["192.0.2.1"]
            mac_rules = [{ network = "172.19.10.0/24", gateway = "172.19.10.1" }]
            "#,
        )
        .unwrap();
        assert_eq!(c.disk.used_pct.warning, 70.0);
        assert_eq!(c.disk.mount[0].path, PathBuf::from("/var/log"));
        assert!(c.net.mac_rules[0]
            .contains("172.19.10.77".parse().unwrap())
            .unwrap());
        assert!(!c.net.mac_rules[0]
            .contains("172.19.11.77".parse().unwrap())
            .unwrap());
    }

    #[test]
    fn a_broken_config_names_the_line() {
        let err = Config::parse("[disk]\nused_pct = 12\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = Config::parse("[cpu]\n\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
        assert!(Config::parse(
            "[net]\nmac_rules = [{ network = \"10.0.0.0\", gateway = \"10.0.0.1\" }]"
        )
        .is_err());
    }
}
