//! The human report: errors, then warnings, then notes, grouped by dom0
//! then guest, each with its age and, when the service keeps the site's
//! state, since when it stands; what changed since a time; a summary.

use std::fmt::Write as _;

use xsmon_proto::rawline::RawLine;

use super::{age, tty_safe};
use crate::report::{exit_state, Report};
use crate::site::{changes, Memory};
use crate::words;

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
/// then guest, each with its age (and since when it stands, when the
/// service keeps the site's state); what changed, when asked; a summary
/// line. `now` dates the "since".
pub fn report(r: &Report, colour: bool, now: i64) -> String {
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
            let mut tags: Vec<String> = Vec::new();
            let a = age(f.age);
            if !a.is_empty() {
                tags.push(a);
            }
            if let Some(t) = since(r, f) {
                tags.push(words::since(t, now));
            }
            let a = if tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", tags.join("; "))
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
    if let Some(m) = &r.memory {
        changes(&mut out, &p, m, now);
    }
    let s = &r.summary;
    let mut line = format!(
        "{} dom0s polled, {} unreachable; {} guests: {} ok, {} warning, {} error, {} stale",
        s.dom0s, s.unreachable, s.guests, s.ok, s.warning, s.error, s.stale
    );
    let code = match exit_state(r) {
        0 => "1;32",
        1 | 3 => "1;33",
        _ => "1;31",
    };
    if r.memory.is_some() {
        line.push_str(&format!(
            " (as xsmon-poller polled the site at {}, {} ago)",
            words::moment(r.time, now),
            words::duration(now - r.time)
        ));
    }
    if let Some(u) = &r.undetermined {
        let _ = writeln!(
            out,
            "{}",
            p.wrap("1;33", &format!("UNKNOWN: {}", tty_safe(&u.message)))
        );
    }
    let _ = writeln!(out, "{}", p.wrap(code, &line));
    out
}

/// Since when a problem stands, from the service's memory.
fn since(r: &Report, f: &RawLine) -> Option<i64> {
    if !changes::is_problem(&f.severity) {
        return None;
    }
    r.memory.as_ref()?.since_of(&f.dom0, &f.host, &f.check)
}

/// The section of what changed since the time asked (`--changes-since`).
fn changes(out: &mut String, p: &Paint, m: &Memory, now: i64) {
    let Some(from) = m.changes_since else {
        return;
    };
    let head = format!(
        "CHANGES since {} ({})",
        words::moment(from, now),
        m.changes.len()
    );
    let _ = writeln!(out, "{}", p.wrap("1;35", &head));
    if m.changes.is_empty() {
        let _ = writeln!(out, "    none");
    }
    for t in &m.changes {
        let who = if t.host.is_empty() {
            "(dom0)".to_string()
        } else {
            tty_safe(&t.host)
        };
        let _ = writeln!(
            out,
            "    {} {} {who} {}: {} -> {}: {}",
            words::moment(t.time, now),
            tty_safe(&t.dom0),
            tty_safe(&t.check),
            t.old,
            t.new,
            tty_safe(&t.message)
        );
    }
    out.push('\n');
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
            memory: None,
        };
        let text = report(&r, false, 0);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("    ")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        // The message column starts at one place on every row.
        let starts: Vec<usize> = rows.iter().map(|l| l.find("something").unwrap()).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
        assert!(starts[0] > long.len() + "a-long-check-id".len(), "{text}");
    }
}
