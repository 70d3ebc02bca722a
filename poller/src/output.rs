//! The output modes: a report for humans, raw lines for scripts, a Nagios
//! plugin's status line and long output, and JSON.

use std::fmt::Write as _;
use xsmon_proto::rawline::RawLine;

use xsmon_proto::rawline;

use crate::report::{exit_state, Report};

fn age(a: Option<i64>) -> String {
    match a {
        None => String::new(),
        Some(s) if s < 120 => format!("{s}s ago"),
        Some(s) if s < 7200 => format!("{}m ago", s / 60),
        Some(s) if s < 172_800 => format!("{}h ago", s / 3600),
        Some(s) => format!("{}d ago", s / 86400),
    }
}

/// Makes guest text safe for a terminal: no escape sequences, no newlines.
fn tty_safe(s: &str) -> String {
    xsmon_proto::text::clean(s, 400)
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// The human report: errors, then warnings, then notes, grouped by dom0
/// then guest, each with its age; a summary line.
pub fn report(r: &Report, colour: bool) -> String {
    let p = Paint(colour);
    let mut out = String::new();
    let sections = [
        ("ERRORS", &["error"][..], "1;31"),
        ("WARNINGS", &["warning", "unknown"][..], "1;33"),
        ("NOTES", &["info"][..], "1;36"),
    ];
    // Columns as wide as their longest entry (a 64-character guest name
    // must not shift every column after it), at least the usual widths.
    let who_of = |f: &RawLine| {
        if f.host.is_empty() {
            "(dom0)".to_string()
        } else {
            tty_safe(&f.host)
        }
    };
    let who_w = r
        .findings
        .iter()
        .map(|f| who_of(f).chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let check_w = r
        .findings
        .iter()
        .map(|f| tty_safe(&f.check).chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    for (title, sevs, code) in sections {
        let items: Vec<_> = r
            .findings
            .iter()
            .filter(|f| sevs.contains(&f.severity.as_str()))
            .collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{}",
            p.wrap(code, &format!("{title} ({})", items.len()))
        );
        let mut last_dom0: Option<&str> = None;
        for f in items {
            if last_dom0 != Some(f.dom0.as_str()) {
                let head = if f.dom0.is_empty() {
                    "(discovery)".to_string()
                } else {
                    format!("dom0 {}", tty_safe(&f.dom0))
                };
                let _ = writeln!(out, "  {}", p.wrap("1", &head));
                last_dom0 = Some(f.dom0.as_str());
            }
            let who = who_of(f);
            let tag = if f.severity == "unknown" {
                " UNKNOWN"
            } else {
                ""
            };
            let a = age(f.age);
            let a = if a.is_empty() {
                String::new()
            } else {
                format!(" [{a}]")
            };
            let _ = writeln!(
                out,
                "    {who:<who_w$} {:<check_w$}{tag} {}{a}",
                tty_safe(&f.check),
                tty_safe(&f.message)
            );
        }
        out.push('\n');
    }
    let s = &r.summary;
    let line = format!(
        "{} dom0s polled, {} unreachable; {} guests: {} ok, {} warning, {} error, {} stale",
        s.dom0s, s.unreachable, s.guests, s.ok, s.warning, s.error, s.stale
    );
    let code = match exit_state(r) {
        0 => "1;32",
        1 | 3 => "1;33",
        _ => "1;31",
    };
    if let Some(u) = &r.undetermined {
        let _ = writeln!(
            out,
            "{}",
            p.wrap("1;33", &format!("UNKNOWN: {}", tty_safe(u)))
        );
    }
    let _ = writeln!(out, "{}", p.wrap(code, &line));
    out
}

/// `poller raw`: one rawline per finding (see xsmon_proto::rawline).
pub fn raw(r: &Report) -> String {
    r.findings
        .iter()
        .map(|f| rawline::print(f) + "\n")
        .collect()
}

/// Nagios plugin output (monitoring-plugins guidelines): one status line
/// with performance data, then the long output.
/// The bytes of the first output line a Nagios plugin may count on (Nagios
/// 4's documented limit on a plugin's output is 8 KB, for every line
/// together: this leaves the finding lines room).
const FIRST_LINE_BUDGET: usize = 6000;

/// The Nagios plugin output. Scoped to a guest (or else to a dom0), the
/// performance data adds that host's own figures (see `perfdata`).
pub fn nagios(r: &Report, only_dom0: Option<&str>, only_guest: Option<&str>) -> (String, u8) {
    let s = &r.summary;
    let state = exit_state(r);
    let word = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][state as usize];
    let mut summary = if s.errors + s.warnings == 0 {
        format!("{} guests ok on {} dom0s", s.guests, s.dom0s)
    } else {
        format!(
            "{} error{}, {} warning{}; {} guests on {} dom0s",
            s.errors,
            if s.errors == 1 { "" } else { "s" },
            s.warnings,
            if s.warnings == 1 { "" } else { "s" },
            s.guests,
            s.dom0s
        )
    };
    if s.unreachable > 0 {
        summary.push_str(&format!(" ({} unreachable)", s.unreachable));
    }
    if s.stale > 0 {
        summary.push_str(&format!(" ({} stale)", s.stale));
    }
    if let Some(u) = &r.undetermined {
        // Nagios treats '|' as the start of performance data.
        summary = tty_safe(u).replace('|', "/");
    }
    // Performance data: 'label'=value[UOM];warn;crit;min;max
    let perf = format!(
        "'dom0s'={};;;0 'dom0s_unreachable'={};;1;0 'guests'={};;;0 'guests_ok'={};;;0 'guests_warning'={};;;0 'guests_error'={};;;0 'guests_stale'={};;1;0",
        s.dom0s, s.unreachable, s.guests, s.ok, s.warning, s.error, s.stale
    );
    // The line: "XSMON WORD - summary[ (note)] | counts figures".
    let note_room = 150;
    let (figures, dropped) = crate::perfdata::fit(
        scoped_perfdata(r, only_dom0, only_guest),
        FIRST_LINE_BUDGET.saturating_sub(30 + summary.len() + note_room + perf.len()),
    );
    if dropped > 0 {
        summary.push_str(&format!(
            " (performance data: {dropped} of {} figures left out: Nagios keeps only the first 8 KB of a plugin's output)",
            figures.len() + dropped
        ));
    }
    let mut perf = vec![perf];
    perf.extend(figures);
    let mut out = format!("XSMON {word} - {summary} | {}\n", perf.join(" "));
    for f in r.findings.iter().filter(|f| f.severity != "info") {
        let who = match (f.dom0.is_empty(), f.host.is_empty()) {
            (true, _) => "discovery".to_string(),
            (false, true) => tty_safe(&f.dom0),
            (false, false) => format!("{}/{}", tty_safe(&f.dom0), tty_safe(&f.host)),
        }
        .replace('|', "/");
        let a = age(f.age);
        let a = if a.is_empty() {
            String::new()
        } else {
            format!(" ({a})")
        };
        // Nagios treats '|' as the start of performance data.
        let msg = tty_safe(&f.message).replace('|', "/");
        let _ = writeln!(
            out,
            "{} {who} {}: {msg}{a}",
            f.severity.to_uppercase(),
            tty_safe(&f.check).replace('|', "/")
        );
    }
    (out, state)
}

/// The figures of the scoped guest (every running instance of the name,
/// labels prefixed with the instance when there are several), or of the
/// scoped dom0 itself.
fn scoped_perfdata(r: &Report, only_dom0: Option<&str>, only_guest: Option<&str>) -> Vec<String> {
    let hosts: Vec<(&str, &[xsmon_proto::snmpline::CheckFigures])> = r
        .dom0s
        .iter()
        .filter(|d| only_dom0.is_none_or(|n| d.name == n))
        .flat_map(|d| d.guests.iter().map(move |g| (d, g)))
        .filter(|(_, g)| match only_guest {
            Some(q) => crate::report::is_guest(&g.name, q),
            None => only_dom0.is_some() && g.name == crate::report::DOM0_HOST,
        })
        .filter(|(_, g)| !g.figures.is_empty())
        .map(|(_, g)| (g.name.as_str(), g.figures.as_slice()))
        .collect();
    let several = hosts.len() > 1;
    hosts
        .into_iter()
        .flat_map(|(name, figs)| {
            let prefix = if several {
                format!("{}/", crate::perfdata::label_safe(name))
            } else {
                String::new()
            };
            crate::perfdata::of_host(figs, &prefix)
        })
        .collect()
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `poller prometheus`: the state of every dom0 and guest as Prometheus
/// metrics (text exposition), e.g. for node_exporter's textfile collector
/// on the poller host.
pub fn prometheus(r: &Report) -> String {
    use xsmon_proto::prom::{render, status_code, Family};
    let mut up = Family::gauge(
        "xsmon_up",
        "Whether the dom0's state could be read over SNMP (1) or not (0).",
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
    render(&[
        up,
        cycle_age,
        guest_status,
        stale,
        down,
        domain_state,
        report_age,
        check_status,
        figure,
        threshold,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Summary;

    fn line(host: &str, check: &str, sev: &str) -> RawLine {
        RawLine {
            severity: sev.into(),
            dom0: "xen01".into(),
            host: host.into(),
            check: check.into(),
            age: Some(30),
            message: "something".into(),
        }
    }

    #[test]
    fn report_columns_line_up_for_long_names() {
        let long = "a-guest-with-a-very-long-name-that-fills-sixty-four-characters-x";
        let r = Report {
            time: 0,
            dom0s: Vec::new(),
            findings: vec![
                line(long, "disk0", "error"),
                line("web01", "a-long-check-id", "error"),
                line("db01", "cpu", "warning"),
            ],
            summary: Summary::default(),
            undetermined: None,
        };
        let text = report(&r, false);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("    ")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        // The message column starts at one place on every row.
        let starts: Vec<usize> = rows.iter().map(|l| l.find("something").unwrap()).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
        assert!(starts[0] > long.len() + "a-long-check-id".len(), "{text}");
    }
}
