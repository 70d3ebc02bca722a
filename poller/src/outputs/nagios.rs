//! The Nagios plugin output (monitoring-plugins guidelines): one status
//! line with performance data, then the long output.

use std::fmt::Write as _;

use super::{age, tty_safe};
use crate::report::{exit_state, Report};

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
        summary = tty_safe(&u.message).replace('|', "/");
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
            Some(q) => crate::poll::is_guest(&g.name, q),
            None => only_dom0.is_some() && g.name == crate::poll::DOM0_HOST,
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
