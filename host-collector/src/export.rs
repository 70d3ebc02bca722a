//! Export: the cycle as Prometheus metrics, in a textfile for
//! node_exporter's textfile collector (`prometheus_textfile`).

use std::path::Path;

use anyhow::{Context, Result};
use xsmon_store::CycleRecord;

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
    let mut down = Family::gauge(
        "xsmon_guest_down",
        "Whether the guest should run on this dom0 and does not (1) or not (0).",
    );
    let mut age = Family::gauge(
        "xsmon_guest_report_age_seconds",
        "Seconds since dom0 first saw the guest's latest probe run (dom0's clock).",
    );
    let mut values = Family::gauge(
        "xsmon_check_value",
        "A figure of a check (percentages 0-100, rtt_ms in milliseconds, bytes, seconds).",
    );
    let mut checks = Family::gauge(
        "xsmon_check_status",
        "Status of each check that is not ok: 1 warning, 2 error, 3 unknown.",
    );
    for h in c.hosts.iter().filter(|h| h.listed) {
        let g = || vec![dom0(), ("guest", h.label.clone())];
        status.add(g(), status_code(h.status));
        stale.add(
            g(),
            if xsmon_proto::snmpline::probe_is_silent(h.probe) {
                1.0
            } else {
                0.0
            },
        );
        down.add(
            g(),
            if xsmon_proto::snmpline::probe_is_down(h.probe) {
                1.0
            } else {
                0.0
            },
        );
        if let Some(r) = h.run {
            age.add(g(), (now - r.seen).max(0) as f64);
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
    let text = render(&[
        last, duration, xs_ok, status, stale, down, age, values, checks,
    ]);
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
