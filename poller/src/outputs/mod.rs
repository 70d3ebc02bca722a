//! The output modes, each reading a `Report`: the human report
//! (`human`), raw lines for scripts, a Nagios plugin's status line and
//! long output (`nagios`), JSON, Prometheus's exposition (`prometheus`),
//! and a guest's or dom0's transitions (`history`). Every text that came
//! from a dom0 is escaped here, whatever the mode.

pub mod history;
pub mod human;
pub mod nagios;
pub mod prometheus;

use xsmon_proto::rawline;

use crate::report::Report;

pub(crate) fn age(a: Option<i64>) -> String {
    match a {
        None => String::new(),
        Some(s) if s < 120 => format!("{s}s ago"),
        Some(s) if s < 7200 => format!("{}m ago", s / 60),
        Some(s) if s < 172_800 => format!("{}h ago", s / 3600),
        Some(s) => format!("{}d ago", s / 86400),
    }
}

/// Makes guest text safe for a terminal: no escape sequences, no newlines.
pub(crate) fn tty_safe(s: &str) -> String {
    xsmon_proto::text::clean(s, 400)
}

/// `poller raw`: one rawline per finding (see xsmon_proto::rawline),
/// and the `unknown` line of a question that could not be answered (a
/// script reading lines must not take nothing for nothing wrong).
pub fn raw(r: &Report) -> String {
    r.findings
        .iter()
        .chain(&r.undetermined)
        .map(|f| rawline::print(f) + "\n")
        .collect()
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
