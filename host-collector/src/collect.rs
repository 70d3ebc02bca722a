//! One collection cycle: read every guest from xenstore, judge each (fresh,
//! stale, silent, invalid), check dom0 itself, add the hypervisor's own
//! figures, and store it all in one transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::TimeZone;
use rusqlite::Connection;
use xsmon_checks::Sys;
use xsmon_proto::{CheckResult, Status};

use crate::config::Config;
use crate::db::{self, CycleRecord, HostRecord, Keep, DOM0_NAME};
use crate::gather::{self, Found, Guest};
use crate::hostfig::HostFigures;

/// Values of these names are kept in history; the rest are only shown.
const KEPT: &[&str] = &[
    "load_per_cpu",
    "iowait_pct",
    "steal_pct",
    "pages_per_s",
    "used_pct",
    "inodes_pct",
    "loss_pct",
    "rtt_ms",
];

/// Everything one cycle needs from outside.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub xenstore: Option<&'a Path>,
    /// Root for dom0's own /proc and mount points (tests use fixtures).
    pub root: &'a Path,
    /// The cycle's time (Unix seconds).
    pub now: i64,
}

/// Runs one cycle and stores it. Returns the record written. A xenstore
/// that cannot be read is recorded as the cycle's error (so snmp-extend and
/// the poller report it) and returned as an error.
pub fn run_cycle(conn: &mut Connection, inp: &Inputs<'_>) -> Result<CycleRecord> {
    let started = Instant::now();
    let cfg = inp.config;
    let dom0 = cfg.dom0_name();
    let cluster = xsmon_proto::cluster::scan(&cfg.config_dirs);
    for p in &cluster.problems {
        tracing::warn!("{p}");
    }
    let gathered = read_xenstore(inp);
    let sys = Sys::new(inp.root);
    let figures = crate::hostfig::collect(&cfg.xl, &sys.path("sys/class/net"));
    let mut hosts = vec![dom0_record(&sys, cfg, &figures)];
    let error = match &gathered {
        Ok(guests) => {
            hosts.extend(judge_all(
                conn,
                guests,
                &figures,
                inp.now,
                cfg.stale_after_secs as i64,
            )?);
            None
        }
        Err(e) => Some(format!("cannot read xenstore: {e:#}")),
    };
    let record = CycleRecord {
        time: inp.now,
        duration_ms: started.elapsed().as_millis() as i64,
        dom0,
        error: error.clone(),
        hosts,
    };
    db::write_cycle(conn, &record, &cluster, keep(cfg))?;
    if let Some(path) = &cfg.prometheus_textfile {
        // The history is stored; a textfile that cannot be written is
        // reported but does not undo the cycle.
        if let Err(e) = write_textfile(path, &record, inp.now) {
            tracing::error!("cannot write {}: {e:#}", path.display());
        }
    }
    match error {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(record),
    }
}

fn keep(cfg: &Config) -> Keep {
    let day = 86_400i64;
    Keep {
        raw_secs: i64::from(cfg.retention.raw_days) * day,
        hourly_secs: i64::from(cfg.retention.hourly_days) * day,
        daily_secs: i64::from(cfg.retention.daily_days) * day,
    }
}

fn read_xenstore(inp: &Inputs<'_>) -> Result<Vec<Guest>> {
    let mut xs = match inp.xenstore {
        Some(p) => xsmon_xenstore::Client::open(p)?,
        None => xsmon_xenstore::Client::open_default()?,
    };
    xs.set_timeout(Duration::from_secs(inp.config.xenstore_timeout_secs.max(1)));
    gather::gather(&mut xs, inp.config.legacy)
}

/// Judges every guest. Two domains claiming one name (which a toolstack
/// never allows) both get an error rather than one hiding the other.
pub fn judge_all(
    conn: &Connection,
    guests: &[Guest],
    fig: &HostFigures,
    now: i64,
    stale_after: i64,
) -> Result<Vec<HostRecord>> {
    let mut out: Vec<HostRecord> = Vec::with_capacity(guests.len());
    for g in guests {
        let mut rec = judge(conn, g, now, stale_after)?;
        if out.iter().any(|o| o.name == rec.name) {
            rec.name = format!("domid-{}", g.domid);
            rec.status = Status::Error;
            rec.message = format!("domain {} uses a name another domain already has", g.domid);
        }
        add_host_figures(&mut rec, g.domid, fig);
        out.push(rec);
    }
    Ok(out)
}

fn judge(conn: &Connection, g: &Guest, now: i64, stale_after: i64) -> Result<HostRecord> {
    let mut rec = HostRecord {
        name: g
            .name
            .clone()
            .unwrap_or_else(|| format!("domid-{}", g.domid)),
        domid: Some(g.domid),
        probe: "missing",
        probe_time: None,
        probe_seq: None,
        status: Status::Error,
        message: String::new(),
        findings: Vec::new(),
        figures: Vec::new(),
    };
    if let Some(problem) = &g.name_problem {
        rec.probe = "invalid";
        rec.message = format!("domain {}: {problem}", g.domid);
        return Ok(rec);
    }
    match &g.found {
        Found::Nothing => {
            rec.message = match db::last_probe_time(conn, &rec.name)? {
                Some(t) => format!(
                    "probe not reporting since {} (no results in xenstore)",
                    when(t, now)
                ),
                None => "probe not reporting: no results in xenstore".to_string(),
            };
        }
        Found::Invalid(why) => {
            rec.probe = "invalid";
            rec.message = format!("guest wrote invalid results, ignored: {why}");
        }
        Found::Run { run, legacy } => {
            rec.probe_time = Some(run.time);
            rec.probe_seq = Some(run.seq);
            if now - run.time > stale_after {
                rec.probe = "stale";
                rec.message = format!("probe not reporting since {}", when(run.time, now));
                return Ok(rec);
            }
            rec.probe = "fresh";
            rec.status = run
                .checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(Status::Unknown);
            rec.findings = run
                .checks
                .iter()
                .filter(|c| c.status != Status::Ok)
                .cloned()
                .collect();
            rec.message = summary(&run.checks);
            if run.checks.is_empty() {
                rec.message = "probe reported no checks".into();
            }
            if run.time - now > 300 {
                rec.status = rec.status.max(Status::Warning);
                rec.message
                    .push_str(&format!("; guest clock {} s ahead of dom0", run.time - now));
            }
            if *legacy {
                rec.message.push_str(" (from the legacy shared path)");
            }
            rec.figures = kept_figures(&run.checks);
        }
    }
    Ok(rec)
}

/// "all 7 checks ok", or "1 error, 2 warnings: <worst finding>".
pub fn summary(checks: &[CheckResult]) -> String {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let (e, u, w) = (
        count(Status::Error),
        count(Status::Unknown),
        count(Status::Warning),
    );
    if e + u + w == 0 {
        return format!("all {} checks ok", checks.len());
    }
    let mut parts = Vec::new();
    for (n, word) in [(e, "error"), (u, "unknown"), (w, "warning")] {
        if n > 0 {
            parts.push(format!(
                "{n} {word}{}",
                if n > 1 && word != "unknown" { "s" } else { "" }
            ));
        }
    }
    let worst = checks
        .iter()
        .max_by_key(|c| c.status)
        .map(|c| c.message.as_str())
        .unwrap_or("");
    format!("{}: {worst}", parts.join(", "))
}

fn kept_figures(checks: &[CheckResult]) -> Vec<(String, String, String, f64)> {
    let mut out = Vec::new();
    for c in checks {
        for v in c.values.iter().filter(|v| KEPT.contains(&v.name.as_str())) {
            out.push((c.kind.clone(), c.target.clone(), v.name.clone(), v.value));
        }
    }
    out
}

fn add_host_figures(rec: &mut HostRecord, domid: u32, fig: &HostFigures) {
    if let Some(t) = fig.cpu_time_s.get(&domid) {
        rec.figures
            .push(("xen".into(), String::new(), "cpu_time_s".into(), *t));
    }
    if let Some(vifs) = fig.vifs.get(&domid) {
        for (vif, (rx, tx)) in vifs {
            rec.figures
                .push(("xen".into(), vif.clone(), "rx_bytes".into(), *rx as f64));
            rec.figures
                .push(("xen".into(), vif.clone(), "tx_bytes".into(), *tx as f64));
        }
    }
}

/// dom0 itself: memory and disks, with the probe's threshold machinery.
fn dom0_record(sys: &Sys, cfg: &Config, fig: &HostFigures) -> HostRecord {
    let mut checks = vec![xsmon_checks::memory::check(sys, &cfg.dom0.memory)];
    checks.extend(xsmon_checks::disk::checks(sys, &cfg.dom0.disk));
    let mut rec = HostRecord {
        name: DOM0_NAME.to_string(),
        domid: Some(0),
        probe: "host",
        probe_time: None,
        probe_seq: None,
        status: checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Unknown),
        message: summary(&checks),
        findings: checks
            .iter()
            .filter(|c| c.status != Status::Ok)
            .cloned()
            .collect(),
        figures: kept_figures(&checks),
    };
    if !fig.unavailable.is_empty() {
        rec.message
            .push_str(&format!(" ({})", fig.unavailable.join("; ")));
    }
    add_host_figures(&mut rec, 0, fig);
    rec
}

/// Writes the cycle as Prometheus metrics, atomically (temporary file, then
/// rename), for node_exporter's textfile collector.
pub fn write_textfile(path: &Path, c: &CycleRecord, now: i64) -> Result<()> {
    use xsmon_proto::prom::{render, status_code, Family};
    let dom0 = || ("dom0", c.dom0.clone());
    let mut last = Family::gauge(
        "xsmon_collector_last_cycle_timestamp_seconds",
        "When the collector's last cycle ran (Unix time).",
    );
    last.add(vec![dom0()], c.time as f64);
    let mut duration = Family::gauge(
        "xsmon_collector_cycle_duration_seconds",
        "How long the last cycle took.",
    );
    duration.add(vec![dom0()], c.duration_ms as f64 / 1000.0);
    let mut xs_ok = Family::gauge(
        "xsmon_collector_xenstore_ok",
        "Whether the last cycle could read xenstore (1) or not (0).",
    );
    xs_ok.add(vec![dom0()], if c.error.is_none() { 1.0 } else { 0.0 });
    let mut status = Family::gauge(
        "xsmon_guest_status",
        "Worst check status of a guest (Domain-0 is dom0): 0 ok, 1 warning, 2 error, 3 unknown.",
    );
    let mut stale = Family::gauge(
        "xsmon_guest_probe_stale",
        "Whether the guest's probe is stale, silent or sent invalid data (1) or not (0).",
    );
    let mut age = Family::gauge(
        "xsmon_guest_report_age_seconds",
        "Seconds since the guest's probe last reported.",
    );
    let mut values = Family::gauge(
        "xsmon_check_value",
        "A figure of a check (percentages 0-100, rtt_ms in milliseconds, bytes, seconds).",
    );
    let mut checks = Family::gauge(
        "xsmon_check_status",
        "Status of each check that is not ok: 1 warning, 2 error, 3 unknown.",
    );
    for h in &c.hosts {
        let g = || vec![dom0(), ("guest", h.name.clone())];
        status.add(g(), status_code(h.status));
        stale.add(
            g(),
            if xsmon_proto::snmpline::probe_is_silent(h.probe) {
                1.0
            } else {
                0.0
            },
        );
        if let Some(t) = h.probe_time {
            age.add(g(), (now - t).max(0) as f64);
        }
        for (kind, target, name, v) in &h.figures {
            let mut l = g();
            l.extend([
                ("kind", kind.clone()),
                ("target", target.clone()),
                ("metric", name.clone()),
            ]);
            values.add(l, *v);
        }
        for f in &h.findings {
            let mut l = g();
            l.extend([
                ("check", f.id.clone()),
                ("kind", f.kind.clone()),
                ("target", f.target.clone()),
            ]);
            checks.add(l, status_code(f.status));
        }
    }
    let text = render(&[last, duration, xs_ok, status, stale, age, values, checks]);
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A time for humans: local date and time, and how long ago.
pub fn when(t: i64, now: i64) -> String {
    let local = chrono::Local
        .timestamp_opt(t, 0)
        .single()
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string());
    format!("{local} ({} ago)", ago(now - t))
}

pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3600)
    } else {
        format!("{} days", s / 86400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, status: Status, msg: &str) -> CheckResult {
        let mut r = CheckResult::new(id, "disk", "");
        r.status = status;
        r.message = msg.into();
        r
    }

    #[test]
    fn summaries() {
        assert_eq!(summary(&[c("a", Status::Ok, "")]), "all 1 checks ok");
        let s = summary(&[
            c("a", Status::Warning, "w"),
            c("b", Status::Error, "full"),
            c("c", Status::Error, "x"),
        ]);
        assert!(s.starts_with("2 errors, 1 warning: "), "{s}");
    }

    #[test]
    fn ages() {
        assert_eq!(ago(30), "30 s");
        assert_eq!(ago(600), "10 min");
        assert_eq!(ago(3 * 86400), "3 days");
    }
}
