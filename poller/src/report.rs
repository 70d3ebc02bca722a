//! The report: what a poll of the site (live, or kept by the service)
//! means, as findings (errors, warnings, notes) and a summary, optionally
//! scoped to one dom0 or one guest. Every output mode prints a `Report`.

use serde::Serialize;
use xsmon_proto::rawline::RawLine;
use xsmon_proto::Status;

use crate::poll::{base_name, in_scope, is_guest, Dom0Result, DOM0_HOST};
use crate::site::{Memory, Site};

/// Everything the outputs need.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub time: i64,
    pub dom0s: Vec<Dom0Result>,
    /// Every finding, errors first, then unknown, warnings, notes; by dom0
    /// then guest.
    pub findings: Vec<RawLine>,
    pub summary: Summary,
    /// Set when the question asked (a scoped guest) cannot be answered:
    /// an `unknown` finding of its own, which every mode says (in JSON,
    /// its message, as it always was).
    #[serde(serialize_with = "message_only")]
    pub undetermined: Option<RawLine>,
    /// What the service remembers (since when, what changed); `None` for a
    /// live poll. Not in the JSON: its contract is one poll's.
    #[serde(skip)]
    pub memory: Option<Memory>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub dom0s: usize,
    pub unreachable: usize,
    pub guests: usize,
    pub ok: usize,
    pub warning: usize,
    pub error: usize,
    pub stale: usize,
    /// Guests that should run on their dom0 and do not.
    pub down: usize,
    pub errors: usize,
    pub warnings: usize,
}

fn rank(sev: &str) -> u8 {
    match sev {
        "error" => 0,
        "unknown" => 1,
        "warning" => 2,
        _ => 3,
    }
}

/// Builds the report of a site (live or kept), optionally scoped to one
/// dom0 and/or one guest.
pub fn build(site: Site, only_dom0: Option<&str>, only_guest: Option<&str>) -> Report {
    let Site {
        time: now,
        known,
        mut dom0s,
        others,
        memory,
    } = site;
    if let Some(d) = only_dom0 {
        dom0s.retain(|r| r.name == d);
    }
    let mut findings: Vec<RawLine> = known
        .problems
        .iter()
        .filter(|_| only_dom0.is_none() && only_guest.is_none())
        .map(|p| RawLine {
            severity: "error".into(),
            dom0: String::new(),
            host: String::new(),
            check: "config".into(),
            age: None,
            message: p.clone(),
        })
        .collect();
    // A push the service could not make is said where the whole site is:
    // results that do not reach Nagios are never dropped in silence.
    if only_dom0.is_none() && only_guest.is_none() {
        for (consumer, since, error) in memory.iter().flat_map(|m| &m.push_failures) {
            findings.push(RawLine {
                severity: "warning".into(),
                dom0: String::new(),
                host: String::new(),
                check: "push".into(),
                age: None,
                message: format!(
                    "results not pushed to {consumer} since {}: {error}; xsmon-poller tries again at each poll",
                    crate::words::moment(*since, now)
                ),
            });
        }
        let set_aside = memory.as_ref().map_or(&[][..], |m| &m.set_aside);
        if let Some(last) = set_aside.last() {
            let path = last.path.display();
            let mut message = format!(
                "the site's state database was damaged: xsmon-poller set it aside as {path} {} and started a new one; \
                 the transitions and since-when before then are only in that file. Remove or move it to clear this",
                crate::words::moment(last.at, now)
            );
            let n = set_aside.len();
            if n > 1 {
                message.push_str(&format!(" ({n} damaged files set aside in all)"));
            }
            findings.push(RawLine {
                severity: "warning".into(),
                dom0: String::new(),
                host: String::new(),
                check: "state".into(),
                age: None,
                message,
            });
        }
    }
    // A guest one dom0 reports as down (its config is there) while another
    // runs it has migrated: the note below says so, not an error as well.
    let running_somewhere: std::collections::HashSet<String> = dom0s
        .iter()
        .flat_map(|r| &r.guests)
        .filter(|g| !matches!(g.probe.as_str(), "down" | "stopped"))
        .map(|g| base_name(&g.name).to_string())
        .collect();
    let moved_away = |host: &str, probe_or_check: &str| {
        matches!(probe_or_check, "down" | "running") && running_somewhere.contains(base_name(host))
    };
    for r in &mut dom0s {
        r.findings.retain(|f| !moved_away(&f.host, &f.check));
        for g in &mut r.guests {
            g.migrated = moved_away(&g.name, &g.probe);
        }
    }
    // Scoped to a guest: the dom0s that run it (a per-guest Nagios service
    // must not go critical because some other dom0 is down).
    for r in dom0s.iter().filter(|r| in_scope(r, None, only_guest)) {
        findings.extend(
            r.findings
                .iter()
                .filter(|f| only_guest.is_none_or(|g| is_guest(&f.host, g) || f.host.is_empty()))
                .cloned(),
        );
        // A guest running on another dom0 than the one its config sits
        // under has migrated: a note, not two problems.
        for g in &r.guests {
            if only_guest.is_some_and(|og| !is_guest(&g.name, og)) {
                continue;
            }
            let homes = known.cluster.homes_of(base_name(&g.name));
            if !homes.is_empty() && !homes.contains(&r.name.as_str()) {
                findings.push(RawLine {
                    severity: "info".into(),
                    dom0: r.name.clone(),
                    host: g.name.clone(),
                    check: "migrated".into(),
                    age: g.age,
                    message: format!(
                        "runs on {}, its config is under {} (migrated)",
                        r.name,
                        homes.join(", ")
                    ),
                });
            }
        }
    }
    let mut undetermined = None;
    if let Some(g) = only_guest {
        let seen = dom0s
            .iter()
            .any(|r| r.guests.iter().any(|x| is_guest(&x.name, g)));
        let failed: Vec<&str> = dom0s
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.name.as_str())
            .collect();
        if !seen && failed.is_empty() {
            findings.push(RawLine {
                severity: "error".into(),
                dom0: String::new(),
                host: g.to_string(),
                check: "probe".into(),
                age: None,
                message: format!("{g} is not reported by any polled dom0"),
            });
        } else if !seen {
            undetermined = Some(RawLine {
                severity: "unknown".into(),
                dom0: String::new(),
                host: g.to_string(),
                check: "probe".into(),
                age: None,
                message: format!(
                    "{g} is not on any dom0 that answered, and {} could not be polled",
                    failed.join(", ")
                ),
            });
        }
    }
    findings.sort_by(|a, b| {
        (rank(&a.severity), &a.dom0, &a.host, &a.check).cmp(&(
            rank(&b.severity),
            &b.dom0,
            &b.host,
            &b.check,
        ))
    });
    // dom0s a scoped read or push left out are counted, unless the scope
    // is one dom0 (whose report counts that one).
    let others = if only_dom0.is_some() { 0 } else { others };
    let mut s = Summary {
        dom0s: dom0s.len() + others,
        unreachable: dom0s.iter().filter(|r| r.error.is_some()).count(),
        ..Default::default()
    };
    let counted = dom0s
        .iter()
        .flat_map(|r| &r.guests)
        .filter(|g| g.name != DOM0_HOST && only_guest.is_none_or(|og| is_guest(&g.name, og)))
        .filter(|g| !moved_away(&g.name, &g.probe));
    for g in counted {
        s.guests += 1;
        if xsmon_proto::snmpline::probe_is_silent(&g.probe) {
            s.stale += 1;
        } else if xsmon_proto::snmpline::probe_is_down(&g.probe) {
            s.down += 1;
        } else {
            match g.status {
                Status::Ok => s.ok += 1,
                Status::Warning | Status::Unknown => s.warning += 1,
                Status::Error => s.error += 1,
            }
        }
    }
    s.errors = findings.iter().filter(|f| f.severity == "error").count();
    s.warnings = findings
        .iter()
        .filter(|f| matches!(f.severity.as_str(), "warning" | "unknown"))
        .count();
    Report {
        time: now,
        dom0s,
        findings,
        summary: s,
        undetermined,
        memory,
    }
}

fn message_only<S: serde::Serializer>(line: &Option<RawLine>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&line.as_ref().map(|l| &l.message), s)
}

/// 0 nothing wrong, 1 warnings, 2 errors, 3 undetermined (Nagios OK,
/// WARNING, CRITICAL, UNKNOWN).
pub fn exit_state(r: &Report) -> u8 {
    if r.undetermined.is_some() && r.summary.errors == 0 {
        3
    } else if r.summary.errors > 0 {
        2
    } else if r.summary.warnings > 0 {
        1
    } else {
        0
    }
}
