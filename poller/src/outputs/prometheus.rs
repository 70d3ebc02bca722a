//! `poller prometheus` and the service's `/metrics`: the state of every
//! dom0 and guest as Prometheus metrics (text exposition).

use crate::report::Report;
use crate::site::changes;

/// `poller prometheus`: the state of every dom0 and guest as Prometheus
/// metrics (text exposition), e.g. for node_exporter's textfile collector
/// on the poller host.
pub fn prometheus(r: &Report) -> String {
    use xsmon_proto::prom::{render, status_code, Family};
    let mut up = Family::gauge(
        "xsmon_up",
        "Whether the dom0's state could be read over SNMP (1) or not (0).",
    );
    let mut polled_at = Family::gauge(
        "xsmon_site_poll_timestamp_seconds",
        "When the poll of the site these metrics come from began (Unix time): the service's last cycle, or this run's.",
    );
    polled_at.add(Vec::new(), r.time as f64);
    let mut poll_duration = Family::gauge(
        "xsmon_dom0_poll_duration_seconds",
        "How long the dom0 took to answer the poll (or to be given up).",
    );
    let mut cycle_age = Family::gauge(
        "xsmon_dom0_cycle_age_seconds",
        "Seconds since the dom0's collector last completed a cycle.",
    );
    let mut guest_status = Family::gauge(
        "xsmon_guest_status",
        "Worst check status of a guest: 0 ok, 1 warning, 2 error, 3 unknown.",
    );
    let mut stale = Family::gauge(
        "xsmon_guest_probe_stale",
        "Whether the guest's probe is stale, silent or sent invalid data (1) or not (0).",
    );
    let mut down = Family::gauge(
        "xsmon_guest_down",
        "Whether the guest should run on this dom0 and does not (1) or not (0).",
    );
    let mut domain_state = Family::gauge(
        "xsmon_guest_domain_state",
        "1 for the hypervisor's state of the guest's domain (running, blocked, paused, crashed, dying, shutdown-<reason>), from dom0s that know it.",
    );
    let mut report_age = Family::gauge(
        "xsmon_guest_report_age_seconds",
        "Seconds since the guest's probe last reported.",
    );
    let mut check_status = Family::gauge(
        "xsmon_check_status",
        "Status of each check that is not ok: 1 warning, 2 error, 3 unknown.",
    );
    let mut figure = Family::gauge(
        "xsmon_figure",
        "A host's latest figure (check kind, target and figure name as labels; units in the name: _pct, _ms, _bytes, _s).",
    );
    let mut threshold = Family::gauge(
        "xsmon_figure_threshold",
        "The threshold the guest graded a figure by (level: warning or error).",
    );
    for d in &r.dom0s {
        for g in &d.guests {
            for c in &g.figures {
                let labels = |name: &str| {
                    vec![
                        ("dom0", d.name.clone()),
                        ("guest", g.name.clone()),
                        ("kind", c.kind.clone()),
                        ("target", c.target.clone()),
                        ("name", name.to_string()),
                    ]
                };
                for v in &c.values {
                    figure.add(labels(&v.name), v.value);
                }
                for l in &c.limits {
                    for (level, t) in [("warning", l.warning), ("error", l.error)] {
                        if let Some(t) = t {
                            let mut ls = labels(&l.name);
                            ls.push(("level", level.to_string()));
                            threshold.add(ls, t);
                        }
                    }
                }
            }
        }
        up.add(
            vec![("dom0", d.name.clone())],
            if d.error.is_none() { 1.0 } else { 0.0 },
        );
        poll_duration.add(vec![("dom0", d.name.clone())], d.elapsed_ms as f64 / 1000.0);
        if let Some(t) = d.cycle_time {
            cycle_age.add(vec![("dom0", d.name.clone())], (r.time - t).max(0) as f64);
        }
        for g in &d.guests {
            let labels = vec![("dom0", d.name.clone()), ("guest", g.name.clone())];
            guest_status.add(labels.clone(), status_code(g.status));
            let is_stale = xsmon_proto::snmpline::probe_is_silent(&g.probe);
            stale.add(labels.clone(), if is_stale { 1.0 } else { 0.0 });
            let is_down = xsmon_proto::snmpline::probe_is_down(&g.probe) && !g.migrated;
            down.add(labels.clone(), if is_down { 1.0 } else { 0.0 });
            if let Some(state) = &g.domain_state {
                let mut ls = labels.clone();
                ls.push(("state", state.clone()));
                domain_state.add(ls, 1.0);
            }
            if let Some(a) = g.age {
                report_age.add(labels, a as f64);
            }
        }
        for f in d.findings.iter().filter(|f| !f.host.is_empty()) {
            let code = match f.severity.as_str() {
                "warning" => 1.0,
                "error" => 2.0,
                "unknown" => 3.0,
                _ => continue,
            };
            check_status.add(
                vec![
                    ("dom0", d.name.clone()),
                    ("guest", f.host.clone()),
                    ("check", f.check.clone()),
                ],
                code,
            );
        }
    }
    let mut since = Family::gauge(
        "xsmon_problem_since_timestamp_seconds",
        "When each standing problem began (Unix time), as the poller service saw it (from its state only): one series per finding that is a warning, an error or unknown (guest empty: the dom0 itself).",
    );
    if let Some(m) = &r.memory {
        for f in &r.findings {
            if let Some(t) = changes::is_problem(&f.severity)
                .then(|| m.since_of(&f.dom0, &f.host, &f.check))
                .flatten()
            {
                since.add(
                    vec![
                        ("dom0", f.dom0.clone()),
                        ("guest", f.host.clone()),
                        ("check", f.check.clone()),
                        ("severity", f.severity.clone()),
                    ],
                    t as f64,
                );
            }
        }
    }
    render(&[
        polled_at,
        up,
        poll_duration,
        cycle_age,
        guest_status,
        stale,
        down,
        domain_state,
        report_age,
        check_status,
        since,
        figure,
        threshold,
    ])
}
