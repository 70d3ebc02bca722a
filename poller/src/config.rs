//! The poller's configuration (`/etc/xsmon/poller.toml`). Every key is
//! optional; command-line options add to or override it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use crate::engine::Limits;
use crate::secret::{self, Secret};
use crate::snmp::{Credentials, SiteCredentials};
use crate::usm::{AuthProtocol, PrivProtocol};

pub const DEFAULT_PATH: &str = "/etc/xsmon/poller.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Shared config directories (one folder per dom0 holding its guests'
    /// .cfg files); one per datacenter, say.
    pub config_dirs: Vec<PathBuf>,
    /// dom0s to ask for `listXenCluster` (host or host:port).
    pub principals: Vec<String>,
    /// dom0s to poll in any case (name, or name=host:port).
    pub hosts: Vec<String>,
    /// Where to reach a dom0 when it is not its name: name -> host[:port].
    pub addresses: BTreeMap<String, String>,
    /// The SNMP port when an address gives none.
    pub port: u16,
    pub snmp: SnmpConfig,
    pub service: ServiceConfig,
    pub push: PushConfig,
    /// Who besides the file's owner may read the secrets this file holds:
    /// "" (no one: the file must not be group- or world-readable), a
    /// group's name (the file may be 0640 to that group, e.g. Nagios's
    /// when its checks poll live), or "anyone" (no check, not advised).
    pub secrets_readable_by: String,
}

/// Where `poller serve` pushes each cycle's results (`[push]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Nagios's external command file (its `command_file`, e.g.
    /// "/var/lib/nagios4/rw/nagios.cmd"); empty: no push. The objects the
    /// results name: `poller nagios-objects`.
    pub nagios_command_file: PathBuf,
    /// Icinga 2's API (e.g. "https://icinga.example.org:5665"); empty: no
    /// push. The objects the results name: `poller icinga2-objects`.
    pub icinga2_url: String,
    /// The API user: an `ApiUser` whose only permission is
    /// "actions/process-check-result".
    pub icinga2_user: String,
    /// Its password.
    pub icinga2_password: Secret,
    /// The CA that signed the API's certificate, PEM (Icinga's own:
    /// /var/lib/icinga2/certs/ca.crt on its master); empty: the usual
    /// public roots.
    pub icinga2_ca: PathBuf,
}

impl PushConfig {
    /// Whether any consumer is set.
    pub fn any(&self) -> bool {
        !self.nagios_command_file.as_os_str().is_empty() || !self.icinga2_url.is_empty()
    }
}

/// `poller serve` and the site's state it keeps (`[service]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Seconds between the starts of two polls of the site. 60: a site of
    /// 10,000 dom0s is polled in about 2 s (docs/performance.md), so a
    /// poll never runs into the next, and each dom0's snmpd runs
    /// snmp-extend once a minute, about a tenth of a second of its CPU.
    pub interval_secs: u64,
    /// The site's database. Every mode reads it when it exists (unless
    /// `--live`), so a site without the service polls as before.
    pub state: PathBuf,
    /// How old the state may be before a reader says UNKNOWN; 0: two
    /// intervals.
    pub stale_after_secs: u64,
    /// Where to serve `/metrics` (e.g. "127.0.0.1:9780"); empty: not served.
    pub listen: String,
    /// How long the transition log is kept, in days.
    pub keep_days: u64,
    /// The most transitions kept (the oldest go first).
    pub max_transitions: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            interval_secs: 60,
            state: PathBuf::from(DEFAULT_STATE),
            stale_after_secs: 0,
            listen: String::new(),
            keep_days: 400,
            max_transitions: 5_000_000,
        }
    }
}

impl ServiceConfig {
    /// How long a pushed result stands before Nagios calls it stale (the
    /// objects' `freshness_threshold`): three intervals and a minute.
    pub fn freshness(&self) -> u64 {
        3 * self.interval_secs.max(1) + 60
    }

    /// How old the state may be before readers call it stale.
    pub fn stale_after(&self) -> u64 {
        if self.stale_after_secs > 0 {
            self.stale_after_secs
        } else {
            2 * self.interval_secs.max(1)
        }
    }
}

pub const DEFAULT_STATE: &str = "/var/lib/xsmon/poller.db";

impl Default for Config {
    fn default() -> Self {
        Config {
            config_dirs: Vec::new(),
            principals: Vec::new(),
            hosts: Vec::new(),
            addresses: BTreeMap::new(),
            port: 161,
            snmp: SnmpConfig::default(),
            service: ServiceConfig::default(),
            push: PushConfig::default(),
            secrets_readable_by: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnmpConfig {
    /// "2c" (default) or "3".
    pub version: String,
    pub community: Secret,
    /// How long a dom0's first answer may take. A dom0 is given up when it
    /// has answered nothing for `(retries + 1) * timeout_ms`; within that,
    /// requests are resent (every `timeout_ms / 4` until it first answers,
    /// then on a timeout adapted to its round trips).
    pub timeout_ms: u64,
    /// Extends the silence budget: `(retries + 1) * timeout_ms`.
    pub retries: u32,
    /// Requests in flight at once (one per dom0 at most). Keep it above
    /// the number of dom0s that may be down at once: each holds its slot
    /// for the whole silence budget. The network is protected by
    /// `max_packets_per_s`.
    pub concurrency: usize,
    /// Packets sent per second at most: a poll never floods a network.
    pub max_packets_per_s: u32,
    /// SNMPv3 user (authPriv), its passwords and protocols.
    pub v3_user: String,
    pub v3_auth_password: Secret,
    pub v3_priv_password: Secret,
    /// "SHA-512" (default), "SHA-384", "SHA-256", "SHA-224", or "SHA"
    /// (SHA-1, for agents that know no better), as net-snmp names them.
    pub v3_auth_protocol: String,
    /// "AES-256" (default), "AES-192", or "AES" (AES-128).
    pub v3_priv_protocol: String,
    /// Per dom0 (`[snmp.dom0.NAME]`): any of version, community and the
    /// v3_ keys, for dom0s that differ from the site's.
    pub dom0: BTreeMap<String, SnmpOverride>,
}

/// One dom0's SNMP settings where they differ from `[snmp]`'s.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnmpOverride {
    pub version: Option<String>,
    pub community: Option<Secret>,
    pub v3_user: Option<String>,
    pub v3_auth_password: Option<Secret>,
    pub v3_priv_password: Option<Secret>,
    pub v3_auth_protocol: Option<String>,
    pub v3_priv_protocol: Option<String>,
}

/// The secure default: SHA-512 and AES-256.
pub const DEFAULT_AUTH_PROTOCOL: &str = "SHA-512";
pub const DEFAULT_PRIV_PROTOCOL: &str = "AES-256";

impl Default for SnmpConfig {
    fn default() -> Self {
        SnmpConfig {
            version: "2c".into(),
            community: Secret::new("public"),
            timeout_ms: 2000,
            retries: 1,
            concurrency: 16_384,
            max_packets_per_s: 20_000,
            v3_user: String::new(),
            v3_auth_password: Secret::default(),
            v3_priv_password: Secret::default(),
            v3_auth_protocol: DEFAULT_AUTH_PROTOCOL.into(),
            v3_priv_protocol: DEFAULT_PRIV_PROTOCOL.into(),
            dom0: BTreeMap::new(),
        }
    }
}

impl Config {
    pub fn load(path: &Path, must_exist: bool) -> Result<Config> {
        let text = xsmon_cli::read_config(path, must_exist).map_err(anyhow::Error::msg)?;
        let Some(text) = text else {
            return Ok(Config::default());
        };
        let c: Config = xsmon_cli::parse_config(path, &text).map_err(anyhow::Error::msg)?;
        // The same text as a table: which secrets the file itself sets.
        let table: toml::Table = toml::from_str(&text)?;
        secret::check_file(path, &secret::secrets_set(&table), &c.secrets_readable_by)
            .map_err(anyhow::Error::msg)?;
        c.site_credentials()
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        if c.service.interval_secs == 0 {
            anyhow::bail!(
                "invalid config {}: service.interval_secs must be at least 1",
                path.display()
            );
        }
        Ok(c)
    }

    /// The SNMP credentials the config gives, the site's and each dom0's.
    pub fn site_credentials(&self) -> Result<SiteCredentials, String> {
        let s = &self.snmp;
        let site = credentials(s, &SnmpOverride::default()).map_err(|e| format!("[snmp]: {e}"))?;
        let mut per_dom0 = BTreeMap::new();
        for (name, o) in &s.dom0 {
            let c = credentials(s, o).map_err(|e| format!("[snmp.dom0.{name}]: {e}"))?;
            per_dom0.insert(name.clone(), c);
        }
        Ok(SiteCredentials { site, per_dom0 })
    }

    /// The poll's limits the config gives.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.snmp.timeout_ms.max(10)),
            retries: self.snmp.retries,
            max_in_flight: self.snmp.concurrency.max(1),
            max_pps: self.snmp.max_packets_per_s.max(1),
        }
    }
}

/// One dom0's credentials: its overrides over the site's `[snmp]`.
fn credentials(s: &SnmpConfig, o: &SnmpOverride) -> Result<Credentials, String> {
    let pick = |own: &Option<String>, site: &String| own.clone().unwrap_or_else(|| site.clone());
    let version = pick(&o.version, &s.version);
    match version.as_str() {
        "2c" => Ok(Credentials::V2c {
            community: o.community.clone().unwrap_or_else(|| s.community.clone()),
        }),
        "3" => {
            let user = pick(&o.v3_user, &s.v3_user);
            if user.is_empty() {
                return Err("version \"3\" needs v3_user".into());
            }
            Ok(Credentials::V3 {
                user,
                auth: o
                    .v3_auth_password
                    .clone()
                    .unwrap_or_else(|| s.v3_auth_password.clone()),
                privacy: o
                    .v3_priv_password
                    .clone()
                    .unwrap_or_else(|| s.v3_priv_password.clone()),
                auth_protocol: AuthProtocol::parse(&pick(
                    &o.v3_auth_protocol,
                    &s.v3_auth_protocol,
                ))?,
                priv_protocol: PrivProtocol::parse(&pick(
                    &o.v3_priv_protocol,
                    &s.v3_priv_protocol,
                ))?,
            })
        }
        v => Err(format!("version must be \"2c\" or \"3\", not {v:?}")),
    }
}
