//! A simulated Xen site on one machine, for the poller's tests and the demo:
//! several "dom0s", each in its own network namespace (or on loopback ports
//! where namespaces cannot be made) with its own real oxenstored, collector
//! database and snmpd serving the two extend lines; guests filled by the
//! real guest-probe from fixture /proc trees; and a shared config directory
//! laid out as in the 2010 design.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{add_domain, bin, probe_root, Netns, Snmpd, Xenstored, COMMUNITY};

/// What a simulated guest suffers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ailment {
    Healthy,
    /// Swapping hard, with high steal and iowait (two samples, 5 min apart).
    Swapping,
    /// A filesystem 100% full (a real, filled tmpfs in a private mount
    /// namespace of the probe).
    FullDisk,
    /// Its gateway does not answer (an address nobody holds).
    UnreachableGateway,
    /// Its probe stopped reporting an hour ago.
    Stale,
}

/// How a simulated dom0 behaves on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Nothing answers at its address.
    Down,
    /// snmpd answers after `ms` milliseconds (its extend command is slow).
    Slow(u64),
    /// snmpd serves something that is not xsmon output.
    Garbage,
}

impl std::fmt::Display for Ailment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ailment::Healthy => "healthy",
            Ailment::Swapping => "swapping",
            Ailment::FullDisk => "full disk",
            Ailment::UnreachableGateway => "unreachable gateway",
            Ailment::Stale => "stale probe",
        })
    }
}

pub struct GuestSpec {
    pub name: String,
    pub ailment: Ailment,
    /// The dom0 folder its .cfg goes in (another dom0's for a migrated guest).
    pub cfg_under: Option<String>,
}

pub struct Dom0Spec {
    pub name: String,
    pub behaviour: Behaviour,
    pub guests: Vec<GuestSpec>,
}

pub struct SimDom0 {
    pub name: String,
    pub behaviour: Behaviour,
    /// host:port where its snmpd listens (or would).
    pub target: String,
    pub xs: Option<Xenstored>,
    pub snmpd: Option<Snmpd>,
    pub db: PathBuf,
    _ns: Option<Netns>,
}

pub struct SimCluster {
    pub dom0s: Vec<SimDom0>,
    /// The shared config directory (`<dir>/auto/<dom0>/<guest>.cfg`).
    pub config_dir: PathBuf,
    /// A poller config naming every dom0's address, timeout and community.
    pub poller_config: PathBuf,
    /// True when the dom0s live in network namespaces.
    pub namespaces: bool,
    dir: tempfile::TempDir,
    _blackholes: Vec<std::net::UdpSocket>,
}

impl SimCluster {
    /// Builds the whole site. `say` narrates (the demo prints it).
    pub fn build(
        specs: Vec<Dom0Spec>,
        poller_timeout_ms: u64,
        say: &dyn Fn(&str),
    ) -> Result<SimCluster> {
        let dir = tempfile::Builder::new().prefix("xsmon-site-").tempdir()?;
        let auto = dir.path().join("auto");
        let namespaces = Netns::available();
        if !namespaces {
            say("network namespaces cannot be created here: the dom0s share loopback, on separate ports");
        }
        let mut dom0s = Vec::new();
        let mut blackholes = Vec::new();
        for spec in &specs {
            std::fs::create_dir_all(auto.join(&spec.name))?;
        }
        for spec in specs {
            for g in &spec.guests {
                let under = g.cfg_under.clone().unwrap_or_else(|| spec.name.clone());
                std::fs::create_dir_all(auto.join(&under))?;
                std::fs::write(
                    auto.join(&under).join(format!("{}.cfg", g.name)),
                    format!("name = \"{}\"\nmemory = 1024\n", g.name),
                )?;
            }
            dom0s.push(build_dom0(
                &spec,
                dir.path(),
                &auto,
                namespaces,
                &mut blackholes,
                say,
            )?);
        }
        let mut poller = format!(
            "config_dirs = [\"{}\"]\n[snmp]\ncommunity = \"{COMMUNITY}\"\ntimeout_ms = {poller_timeout_ms}\nretries = 0\n[addresses]\n",
            auto.display()
        );
        for d in &dom0s {
            poller.push_str(&format!("{} = \"{}\"\n", d.name, d.target));
        }
        let poller_config = dir.path().join("poller.toml");
        crate::write_private(&poller_config, poller)?;
        Ok(SimCluster {
            dom0s,
            config_dir: auto,
            poller_config,
            namespaces,
            dir,
            _blackholes: blackholes,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the real poller with this site's config.
    pub fn poller(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("poller"));
        c.args(args).arg("--config").arg(&self.poller_config);
        c
    }

    /// Runs one more collection cycle on every working dom0.
    pub fn collect_all(&self) -> Result<()> {
        for d in &self.dom0s {
            if let Some(xs) = &d.xs {
                collect(&d.db, &d.name, xs, self.dir.path())?;
            }
        }
        Ok(())
    }
}

fn build_dom0(
    spec: &Dom0Spec,
    dir: &Path,
    auto: &Path,
    namespaces: bool,
    blackholes: &mut Vec<std::net::UdpSocket>,
    say: &dyn Fn(&str),
) -> Result<SimDom0> {
    let ns = if namespaces {
        Some(Netns::create()?)
    } else {
        None
    };
    let db = dir.join(format!("{}.db", spec.name));
    if spec.behaviour == Behaviour::Down {
        // Nothing listens: in a namespace, an address nobody holds (requests
        // vanish, as for a powered-off host); on loopback, a UDP socket that
        // never answers.
        let target = match &ns {
            Some(ns) => format!("{}:161", ns.unused_ip),
            None => {
                let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
                let t = s.local_addr()?.to_string();
                blackholes.push(s);
                t
            }
        };
        say(&format!(
            "dom0 {}: down (nothing answers at {target})",
            spec.name
        ));
        return Ok(SimDom0 {
            name: spec.name.clone(),
            behaviour: spec.behaviour,
            target,
            xs: None,
            snmpd: None,
            db,
            _ns: ns,
        });
    }
    let xs = Xenstored::start().context("starting oxenstored")?;
    let mut c = xs.client()?;
    for (i, g) in spec.guests.iter().enumerate() {
        let domid = i as u32 + 1;
        add_domain(&mut c, domid, &g.name)?;
        probe_guest(&xs, domid, g.ailment, ns.as_ref(), dir)?;
    }
    say(&format!(
        "dom0 {}: oxenstored up, {} guests probed ({})",
        spec.name,
        spec.guests.len(),
        spec.guests
            .iter()
            .map(|g| format!("{}: {}", g.name, g.ailment))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    collect(&db, &spec.name, &xs, dir)?;
    let extend = bin("snmp-extend");
    let basic = match spec.behaviour {
        Behaviour::Slow(ms) => {
            let script = dir.join(format!("{}-slow.sh", spec.name));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nsleep {}\nexec {} basic-monitoring --db {}\n",
                    ms as f64 / 1000.0,
                    extend.display(),
                    db.display()
                ),
            )?;
            make_executable(&script)?;
            script.display().to_string()
        }
        Behaviour::Garbage => "/bin/echo <html>500 Internal Server Error</html>".to_string(),
        _ => format!(
            "{} basic-monitoring --db {}",
            extend.display(),
            db.display()
        ),
    };
    let conf = format!(
        "extend basicXenstoreMonitoring {basic}\nextend listXenCluster {} list-cluster --dir {}\nextend xsmonFigures {} figures --db {}\n",
        extend.display(),
        auto.display(),
        extend.display(),
        db.display()
    );
    let (snmpd, target) = match &ns {
        Some(ns) => {
            let s = Snmpd::start_on(&ns.ns_ip, Some(&ns.name), &conf)?;
            let t = s.target();
            (s, t)
        }
        None => {
            let s = Snmpd::start(&conf)?;
            let t = s.target();
            (s, t)
        }
    };
    say(&format!(
        "dom0 {}: snmpd serving on {target} ({:?})",
        spec.name, spec.behaviour
    )
    .to_lowercase());
    Ok(SimDom0 {
        name: spec.name.clone(),
        behaviour: spec.behaviour,
        target,
        xs: Some(xs),
        snmpd: Some(snmpd),
        db,
        _ns: ns,
    })
}

fn make_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs the real guest-probe for one guest, as that domain.
fn probe_guest(
    xs: &Xenstored,
    domid: u32,
    ailment: Ailment,
    ns: Option<&Netns>,
    dir: &Path,
) -> Result<()> {
    let gw_dead = ns.map(|n| n.unused_ip.clone());
    let gateway = match (ailment, &gw_dead) {
        (Ailment::UnreachableGateway, Some(ip)) => ip.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let work = tempfile::Builder::new()
        .prefix("xsmon-guest-")
        .tempdir_in(dir)?;
    let state = work.path().join("probe.state");
    let cfg = work.path().join("probe.toml");
    std::fs::write(
        &cfg,
        "[cpu]\nfirst_sample_ms = 100\n[net]\ntimeout_ms = 500\n",
    )?;
    let run = |sample: &str| -> Result<()> {
        let root = probe_root("xen-guest", sample, &[&gateway])?;
        let mut cmd = if ailment == Ailment::FullDisk {
            // A 1 MiB tmpfs over /srv/data, filled, in a mount namespace of
            // the probe's own: the host's mounts are untouched.
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"]).arg(format!(
                "mount -t tmpfs -o size=1m xsmon-full {0}/srv/data && dd if=/dev/zero of={0}/srv/data/fill bs=64k count=32 2>/dev/null; exec \"$0\" \"$@\"",
                root.path().display()
            ));
            c.arg(bin("guest-probe"));
            c
        } else {
            Command::new(bin("guest-probe"))
        };
        let out = cmd
            .arg("--root")
            .arg(root.path())
            .arg("--config")
            .arg(&cfg)
            .arg("--state-file")
            .arg(&state)
            .arg("--xenstore")
            .arg(xs.socket())
            .args(["--domain-path", &format!("/local/domain/{domid}")])
            .output()?;
        if !out.status.success() {
            bail!(
                "guest-probe for domain {domid} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    run("a")?;
    if ailment == Ailment::Swapping {
        age_state(&state, 300)?;
        run("b")?;
    }
    if ailment == Ailment::Stale {
        let mut c = xs.client()?;
        let old = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            - 3600;
        // The run's own time, an hour ago, in whichever layout the probe
        // wrote (version 6: the second field of each chunk; 2 to 5: the
        // first field of `run`; version 1: `time`).
        let base = format!("/local/domain/{domid}/data/xsmon");
        let chunk0 = xsmon_xenstore::Store::read_opt(&mut c, &format!("{base}/chunk/0"))?;
        let v6_chunks = chunk0
            .filter(|c| xsmon_proto::layout::is_run_head(c))
            .and_then(|c| xsmon_proto::layout::chunks_in_head(&c));
        let run_key = match v6_chunks {
            Some(_) => None,
            None => xsmon_xenstore::Store::read_opt(&mut c, &format!("{base}/run"))?,
        };
        match (v6_chunks, run_key) {
            (Some(n), _) => {
                for i in 0..n {
                    let key = format!("{base}/chunk/{i}");
                    let chunk =
                        String::from_utf8_lossy(&xsmon_xenstore::Store::read(&mut c, &key)?)
                            .into_owned();
                    let mut f: Vec<String> = chunk.split(' ').map(str::to_string).collect();
                    f[1] = old.to_string();
                    xsmon_xenstore::Store::write(&mut c, &key, f.join(" ").as_bytes())?;
                }
            }
            (None, Some(run)) => {
                let run = String::from_utf8_lossy(&run).into_owned();
                let rest = run.split_once(' ').map(|(_, r)| r).unwrap_or("");
                xsmon_xenstore::Store::write(
                    &mut c,
                    &format!("{base}/run"),
                    format!("{old} {rest}").as_bytes(),
                )?;
            }
            (None, None) => xsmon_xenstore::Store::write(
                &mut c,
                &format!("{base}/time"),
                old.to_string().as_bytes(),
            )?,
        }
    }
    Ok(())
}

/// Makes a probe state file look `secs` older.
pub fn age_state(state: &Path, secs: u64) -> Result<()> {
    let text = std::fs::read_to_string(state)?;
    let mut out = String::new();
    for line in text.lines() {
        match line
            .strip_prefix("time_ms ")
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(t) => out.push_str(&format!("time_ms {}\n", t - secs * 1000)),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    std::fs::write(state, out)?;
    Ok(())
}

/// One collection cycle for a dom0 into `db`.
fn collect(db: &Path, name: &str, xs: &Xenstored, dir: &Path) -> Result<()> {
    let cfg = dir.join(format!("{name}-collector.toml"));
    std::fs::write(
        &cfg,
        format!(
            "db = \"{}\"\ndom0_name = \"{name}\"\nconfig_dirs = [\"{}\"]\nxl = \"/nonexistent/xl\"\n",
            db.display(),
            dir.join("auto").display()
        ),
    )?;
    let root = probe_root("linux-host", "a", &[])?;
    let out = Command::new(bin("host-collector"))
        .arg("--config")
        .arg(&cfg)
        .args(["collect", "--xenstore"])
        .arg(xs.socket())
        .arg("--root")
        .arg(root.path())
        .output()?;
    if !out.status.success() {
        bail!(
            "host-collector on {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The demo's site: three dom0s, one of them down; guests healthy,
/// swapping, with a full disk, with an unreachable gateway, with a stopped
/// probe; one guest migrated (its .cfg still under the other dom0).
pub fn demo_specs() -> Vec<Dom0Spec> {
    let g = |name: &str, ailment| GuestSpec {
        name: name.into(),
        ailment,
        cfg_under: None,
    };
    vec![
        Dom0Spec {
            name: "xen01".into(),
            behaviour: Behaviour::Normal,
            guests: vec![
                g("web01", Ailment::Healthy),
                g("db01", Ailment::FullDisk),
                g("app01", Ailment::Swapping),
            ],
        },
        Dom0Spec {
            name: "xen02".into(),
            behaviour: Behaviour::Normal,
            guests: vec![
                g("mail01", Ailment::Healthy),
                g("gw01", Ailment::UnreachableGateway),
                g("old01", Ailment::Stale),
                GuestSpec {
                    name: "moved01".into(),
                    ailment: Ailment::Healthy,
                    cfg_under: Some("xen01".into()),
                },
            ],
        },
        Dom0Spec {
            name: "xen03".into(),
            behaviour: Behaviour::Down,
            guests: vec![g("lost01", Ailment::Healthy)],
        },
    ]
}

/// The findings the demo's site must produce, as (severity, dom0, host,
/// check) in `poller raw` order.
pub const DEMO_FINDINGS: &[(&str, &str, &str, &str)] = &[
    ("error", "xen01", "app01", "cpu"),
    ("error", "xen01", "app01", "swap"),
    ("error", "xen01", "db01", "disk2"),
    ("error", "xen02", "gw01", "net0"),
    ("error", "xen02", "old01", "probe"),
    ("error", "xen03", "", "snmp"),
    ("info", "xen02", "moved01", "migrated"),
];
