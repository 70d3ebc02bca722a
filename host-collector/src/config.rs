//! The collector's configuration (`/etc/xsmon/collector.toml`). Every key
//! is optional; a missing file means all defaults.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;
use xsmon_checks::disk::DiskConfig;
use xsmon_checks::memory::MemoryConfig;

pub const DEFAULT_PATH: &str = "/etc/xsmon/collector.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The history database.
    pub db: PathBuf,
    /// This dom0's name (default: the hostname).
    pub dom0_name: Option<String>,
    /// A guest of which dom0 has seen no new probe run for this long is
    /// reported as not reporting (default: two probe intervals). Measured
    /// by dom0's clock, never the guest's.
    pub stale_after_secs: u64,
    /// A guest whose clock is off by more than this is warned about, with
    /// the offset (a `clock` finding).
    pub clock_skew_max_secs: u64,
    /// The shared config directories (one folder per dom0 with its guests'
    /// .cfg files): the statement of which guests should run on this dom0,
    /// and how a migrated guest is told from a lost one.
    pub config_dirs: Vec<PathBuf>,
    /// Guests that are meant to be stopped although they have a config
    /// here (names, `*` matches any characters). They are shown as
    /// `stopped` (ok) instead of `down` (an error). Nothing is silenced
    /// unless listed here.
    pub expect_stopped: Vec<String>,
    /// Also read the 2010 design's shared path for guests that write there.
    pub legacy: bool,
    pub retention: Retention,
    pub dom0: Dom0Config,
    pub xenstore_timeout_secs: u64,
    /// Run `xl list -v` for every domain's state, CPU time and memory
    /// (trusted: from the hypervisor, not the guest).
    pub xl: PathBuf,
    /// How the hypervisor's view of a domain is judged.
    pub hypervisor: HypervisorConfig,
    /// How domains starting, being built and restarting are told.
    pub lifecycle: LifecycleConfig,
    /// Guests that cannot run guest-probe (Windows, BSD, appliances):
    /// reported by what Xen and their guest agent say.
    pub without_probe: crate::agent::WithoutProbe,
    /// After each cycle, write every figure and status as Prometheus
    /// metrics to this file (for node_exporter's textfile collector, e.g.
    /// /var/lib/prometheus/node-exporter/xsmon.prom).
    pub prometheus_textfile: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: PathBuf::from("/var/lib/xsmon/history.db"),
            dom0_name: None,
            stale_after_secs: 600,
            clock_skew_max_secs: 600,
            config_dirs: vec![PathBuf::from("/data/config/auto")],
            expect_stopped: Vec::new(),
            legacy: false,
            retention: Retention::default(),
            dom0: Dom0Config::default(),
            xenstore_timeout_secs: 5,
            xl: PathBuf::from("xl"),
            hypervisor: HypervisorConfig::default(),
            lifecycle: LifecycleConfig::default(),
            without_probe: Default::default(),
            prometheus_textfile: None,
        }
    }
}

/// `[hypervisor]`: when a domain's state becomes an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HypervisorConfig {
    /// A paused domain is a warning, and an error once paused this long.
    pub paused_error_after_secs: u64,
    /// A domain paused this soon after its start is being built by the
    /// toolstack (xl builds a domain paused and unpauses it once its
    /// devices are up: seconds, up to a minute for an HVM guest on a busy
    /// dom0), not paused by an admin: `starting`, no warning, no advice.
    pub creation_secs: u64,
    /// A domain shut down but not destroyed (or dying) this long is an
    /// error: the toolstack did not clean it up, and it holds its memory.
    pub stuck_after_secs: u64,
    /// A guest whose last domain xl's log says was suspended (`xl save`,
    /// `xl migrate` away) and that runs nowhere here is `saved`, no
    /// finding, this long: the restore (or the move of its config) comes
    /// within it. After it, down, its words naming the save.
    pub saved_secs: u64,
    /// CPU % of all its vCPUs over a cycle's interval at which a domain is
    /// a warning (`cpu_pct` in its `xen` figures); unset: no warning.
    pub cpu_pct_warning: Option<f64>,
    /// ... and an error.
    pub cpu_pct_error: Option<f64>,
    /// A domain whose probe is silent and that used at least this CPU %
    /// over the interval is "spinning: likely hung".
    pub spinning_pct: f64,
    /// A running domain whose memory stays more than `balloon_off_pct` of
    /// its target (and 32 MiB) away from the toolstack's target this long
    /// after it started is a warning (`balloon`).
    pub balloon_settle_secs: u64,
    pub balloon_off_pct: f64,
    /// A vif dropping this many packets per second (both ways, averaged
    /// over the cycle's interval) is a warning; unset: no warning.
    pub vif_drops_per_s_warning: Option<f64>,
}

impl Default for HypervisorConfig {
    fn default() -> Self {
        HypervisorConfig {
            paused_error_after_secs: 900,
            creation_secs: 120,
            stuck_after_secs: 300,
            saved_secs: 600,
            cpu_pct_warning: Some(95.0),
            cpu_pct_error: None,
            spinning_pct: 95.0,
            balloon_settle_secs: 600,
            balloon_off_pct: 5.0,
            vif_drops_per_s_warning: Some(10.0),
        }
    }
}

/// `[lifecycle]`: domains starting, being built and restarted by the
/// toolstack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// A domain whose probe has written nothing yet is `starting` (ok, not
    /// a silent probe) for this long after the toolstack created it: the
    /// packaged timer and cron line run the probe every 5 minutes on the
    /// clock, so its first run comes within 5 minutes of the boot, plus
    /// the boot itself (2 minutes allowed).
    pub first_run_secs: u64,
    /// This many restarts of a VM (crashes and reboots alike: a new domain
    /// the toolstack started when the last one ended) within
    /// `restart_window_secs` are a restart loop, a warning. A crash that
    /// the toolstack restarted stays a warning for the window too.
    pub restart_loop_count: u32,
    pub restart_window_secs: u64,
    /// Where xl keeps its log of each domain it watches (`xl-<name>.log`:
    /// each shutdown, its reason, and what xl did about it).
    pub xl_log_dir: PathBuf,
    /// Where libxl keeps each domain's config as the toolstack built it
    /// (`userdata-d.<domid>.<uuid>.libxl-json`: its `on_crash` action).
    pub libxl_dir: PathBuf,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            first_run_secs: 420,
            restart_loop_count: 3,
            restart_window_secs: 3600,
            xl_log_dir: PathBuf::from("/var/log/xen"),
            libxl_dir: PathBuf::from("/var/lib/xen"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    pub raw_days: u32,
    pub hourly_days: u32,
    pub daily_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_days: 7,
            hourly_days: 90,
            daily_days: 730,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Dom0Config {
    pub memory: MemoryConfig,
    pub disk: DiskConfig,
}

impl Config {
    pub fn load(path: &Path, must_exist: bool) -> Result<Config> {
        xsmon_cli::load_config(path, must_exist).map_err(anyhow::Error::msg)
    }

    pub fn dom0_name(&self) -> String {
        self.dom0_name
            .clone()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|s| s.trim().to_string())
            .filter(|s| xsmon_proto::cluster::valid_name(s))
            .unwrap_or_else(|| "dom0".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented example (collector.toml.example, in the reference
    /// docs) states the defaults, and every key there is.
    #[test]
    fn the_example_states_every_key_with_its_default() {
        let example = include_str!("../collector.toml.example");
        let parsed: Config = toml::from_str(example).expect("the example parses");
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", Config::default()),
            "collector.toml.example differs from the defaults"
        );
        // Every field name of the configuration, nested ones included, as
        // its Debug output names it, is a key (or a commented one) there.
        let debug = format!("{:?}", Config::default());
        let fields: std::collections::BTreeSet<&str> = debug
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter_map(|w| w.strip_suffix(':'))
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(fields.len() > 20, "{fields:?}");
        for f in fields {
            // `f = ...` (at a line's start or inside an inline table), or a
            // table `[f]`, `[x.f]`, `[[x.f]]`.
            let stated = example.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                let key = format!("{f} =");
                l.starts_with(&key)
                    || l.contains(&format!("{{ {key}"))
                    || l.contains(&format!(", {key}"))
                    || l.contains(&format!("[{f}]"))
                    || l.contains(&format!(".{f}]"))
            });
            assert!(stated, "collector.toml.example does not state `{f}`");
        }
    }

    #[test]
    fn defaults_and_errors() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.stale_after_secs, 600);
        assert_eq!(c.retention.raw_days, 7);
        let e = toml::from_str::<Config>("stale_after_secs = 600\n[retention]\nraw = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
