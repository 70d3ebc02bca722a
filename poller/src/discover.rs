//! Which dom0s to poll: the shared config directories, the principal dom0s'
//! `listXenCluster`, and a static list, merged by name.

use std::collections::BTreeMap;
use std::time::Duration;

use xsmon_proto::cluster::{self, Cluster};
use xsmon_proto::snmpline::{parse_all, Record};

use crate::config::Config;
use crate::engine::fetch_extend;
use crate::snmp::{Credentials, SiteCredentials};

/// A dom0 to poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dom0 {
    pub name: String,
    /// host:port
    pub target: String,
    /// Where it was found: "config", "principal <host>", "static".
    pub found_in: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub dom0s: Vec<Dom0>,
    pub known: Known,
}

/// What discovery learnt besides the dom0s, which the report needs (and
/// the service keeps with the site's state).
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// The guests' .cfg files per dom0, from the config directories.
    pub cluster: Cluster,
    /// Problems met while discovering (reported as errors).
    pub problems: Vec<String>,
}

pub fn discover(cfg: &Config, creds: &SiteCredentials, timeout: Duration) -> Discovery {
    let cluster = cluster::scan(&cfg.config_dirs);
    let mut d = Discovery {
        dom0s: Vec::new(),
        known: Known {
            problems: cluster.problems.clone(),
            cluster,
        },
    };
    let mut found: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    for name in d.known.cluster.dom0s.keys() {
        found
            .entry(name.clone())
            .or_default()
            .1
            .push("config".into());
    }
    for p in &cfg.principals {
        let target = with_port(p, cfg.port);
        // A principal is a dom0 too: its own credentials when it has them.
        let host = p.rsplit_once(':').map_or(p.as_str(), |(h, _)| h);
        match ask_principal(&target, creds.for_dom0(host), timeout, cfg.snmp.retries) {
            Ok(names) => {
                for n in names {
                    found.entry(n).or_default().1.push(format!("principal {p}"));
                }
            }
            Err(e) => d
                .known
                .problems
                .push(format!("listXenCluster from principal {p}: {e}")),
        }
    }
    for h in &cfg.hosts {
        let (name, addr) = match h.split_once('=') {
            Some((n, a)) => (n.to_string(), Some(with_port(a, cfg.port))),
            None => (h.clone(), None),
        };
        if !cluster::valid_name(&name) {
            d.known.problems.push(format!(
                "static host {:?} is not a plain host name",
                xsmon_proto::text::clean(&name, 80)
            ));
            continue;
        }
        let e = found.entry(name).or_default();
        e.1.push("static".into());
        if addr.is_some() {
            e.0 = addr;
        }
    }
    for (name, (addr, found_in)) in found {
        let target = addr
            .or_else(|| cfg.addresses.get(&name).map(|a| with_port(a, cfg.port)))
            .unwrap_or_else(|| with_port(&name, cfg.port));
        d.dom0s.push(Dom0 {
            name,
            target,
            found_in,
        });
    }
    d
}

/// Adds the default port unless `addr` has one ("[v6]:port" or "host:port").
pub fn with_port(addr: &str, port: u16) -> String {
    let has_port = if addr.starts_with('[') {
        addr.contains("]:")
    } else {
        addr.matches(':').count() == 1
    };
    if has_port {
        addr.to_string()
    } else if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn ask_principal(
    target: &str,
    creds: &Credentials,
    timeout: Duration,
    retries: u32,
) -> Result<Vec<String>, String> {
    let served = fetch_extend(target, "listXenCluster", creds, timeout, retries)
        .map_err(|e| e.to_string())?;
    let recs = parse_all(&(served.lines.join("\n") + "\n")).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for r in recs {
        match r {
            Record::Dom0 { name, .. } if cluster::valid_name(&name) => names.push(name),
            Record::Dom0 { name, .. } => {
                return Err(format!(
                    "dom0 name {:?} is not a plain host name",
                    xsmon_proto::text::clean(&name, 80)
                ))
            }
            Record::Error { message, .. } => return Err(message),
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(with_port("xen01", 161), "xen01:161");
        assert_eq!(with_port("xen01:1161", 161), "xen01:1161");
        assert_eq!(with_port("10.0.0.1", 161), "10.0.0.1:161");
        assert_eq!(with_port("fd00::1", 161), "[fd00::1]:161");
        assert_eq!(with_port("[fd00::1]:99", 161), "[fd00::1]:99");
    }

    #[test]
    fn static_hosts_and_addresses_merge_with_config_dirs() {
        let dir = std::env::temp_dir().join(format!("xsmon-disc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("xen01")).unwrap();
        std::fs::write(dir.join("xen01/web.cfg"), "").unwrap();
        let cfg = Config {
            config_dirs: vec![dir.clone()],
            hosts: vec![
                "xen01".into(),
                "xen02=127.0.0.1:1234".into(),
                "bad name".into(),
            ],
            addresses: [("xen01".to_string(), "10.1.1.1".to_string())].into(),
            ..Config::default()
        };
        let d = discover(
            &cfg,
            &SiteCredentials {
                site: Credentials::V2c {
                    community: crate::secret::Secret::new("x"),
                },
                per_dom0: Default::default(),
            },
            Duration::from_millis(10),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(d.dom0s.len(), 2);
        assert_eq!(d.dom0s[0].target, "10.1.1.1:161");
        assert_eq!(d.dom0s[0].found_in, vec!["config", "static"]);
        assert_eq!(d.dom0s[1].target, "127.0.0.1:1234");
        assert_eq!(d.known.problems.len(), 1);
    }
}
