//! What changed between two cycles of the site: each problem (a finding of
//! severity error, unknown or warning, keyed by dom0, host and check) that
//! appeared, changed severity or cleared, and since when each stands.
//! Pure: the service writes what it says.

use std::collections::{HashMap, HashSet};

use xsmon_proto::rawline::RawLine;
use xsmon_store::site::{Problem, Transition};

/// The state of a check that stands no problem.
pub const OK: &str = "ok";

/// Is a finding of this severity a problem (notes are not)?
pub fn is_problem(severity: &str) -> bool {
    matches!(severity, "error" | "unknown" | "warning")
}

/// The problems standing after a cycle whose findings are `findings`, and
/// the transitions from `before`. A problem of a dom0 in `unpolled` (its
/// state could not be read this cycle) stands as it was: not knowing is not
/// being well, and its guests' problems must not clear and start again
/// each time the dom0 drops off.
pub fn diff(
    before: &[Problem],
    findings: &[RawLine],
    unpolled: &HashSet<&str>,
    now: i64,
) -> (Vec<Problem>, Vec<Transition>) {
    let old: HashMap<(&str, &str, &str), &Problem> = before.iter().map(|p| (p.key(), p)).collect();
    let mut standing: Vec<Problem> = Vec::new();
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut transitions = Vec::new();
    for f in findings.iter().filter(|f| is_problem(&f.severity)) {
        let key = (f.dom0.as_str(), f.host.as_str(), f.check.as_str());
        if !seen.insert(key) {
            // Two findings of one check (a dom0 serving a check twice):
            // the first, the worst in the report's order, stands.
            continue;
        }
        let was = old.get(&key);
        let was_severity = was.map_or(OK, |p| p.severity.as_str());
        if was_severity != f.severity {
            transitions.push(transition(f, was_severity, &f.severity, &f.message, now));
        }
        standing.push(Problem {
            dom0: f.dom0.clone(),
            host: f.host.clone(),
            check: f.check.clone(),
            severity: f.severity.clone(),
            message: f.message.clone(),
            since: was.map_or(now, |p| p.since),
        });
    }
    for p in before {
        if seen.contains(&p.key()) {
            continue;
        }
        let dom0_silent = unpolled.contains(p.dom0.as_str()) && !p.host.is_empty();
        if dom0_silent {
            standing.push(p.clone());
        } else {
            transitions.push(Transition {
                time: now,
                dom0: p.dom0.clone(),
                host: p.host.clone(),
                check: p.check.clone(),
                old: p.severity.clone(),
                new: OK.into(),
                message: p.message.clone(),
            });
        }
    }
    (standing, transitions)
}

fn transition(f: &RawLine, old: &str, new: &str, message: &str, now: i64) -> Transition {
    Transition {
        time: now,
        dom0: f.dom0.clone(),
        host: f.host.clone(),
        check: f.check.clone(),
        old: old.into(),
        new: new.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(host: &str, check: &str, severity: &str, message: &str) -> RawLine {
        RawLine {
            severity: severity.into(),
            dom0: "xen01".into(),
            host: host.into(),
            check: check.into(),
            age: None,
            message: message.into(),
        }
    }

    fn moves(t: &[Transition]) -> Vec<String> {
        t.iter()
            .map(|t| format!("{} {} {}->{}", t.host, t.check, t.old, t.new))
            .collect()
    }

    #[test]
    fn a_problem_keeps_its_start_until_it_clears() {
        let none = HashSet::new();
        let disk = |sev: &str, msg: &str| vec![finding("web01", "disk1", sev, msg)];
        let (p1, t1) = diff(&[], &disk("warning", "/: 91% used"), &none, 100);
        assert_eq!(moves(&t1), ["web01 disk1 ok->warning"]);
        assert_eq!(p1[0].since, 100);
        // The same severity, another figure: no transition, the same start.
        let (p2, t2) = diff(&p1, &disk("warning", "/: 93% used"), &none, 160);
        assert!(t2.is_empty());
        assert_eq!((p2[0].since, p2[0].message.as_str()), (100, "/: 93% used"));
        // Worse: a transition, still the same problem since 100.
        let (p3, t3) = diff(&p2, &disk("error", "/: 99% used"), &none, 220);
        assert_eq!(moves(&t3), ["web01 disk1 warning->error"]);
        assert_eq!(t3[0].message, "/: 99% used");
        assert_eq!(p3[0].since, 100);
        // Gone: cleared, with the last words it had.
        let (p4, t4) = diff(&p3, &[], &none, 280);
        assert!(p4.is_empty());
        assert_eq!(moves(&t4), ["web01 disk1 error->ok"]);
        assert_eq!(t4[0].message, "/: 99% used");
    }

    #[test]
    fn notes_are_not_problems() {
        let (p, t) = diff(
            &[],
            &[finding("web01", "migrated", "info", "runs on xen02")],
            &HashSet::new(),
            100,
        );
        assert!(p.is_empty() && t.is_empty());
    }

    #[test]
    fn a_dom0_that_drops_off_keeps_its_guests_problems_and_says_so() {
        let (p1, _) = diff(
            &[],
            &[finding("web01", "disk1", "error", "/: 99% used")],
            &HashSet::new(),
            100,
        );
        let unreachable = finding("", "snmp", "error", "dom0 unreachable: no answer");
        let down: HashSet<&str> = ["xen01"].into();
        let (p2, t2) = diff(&p1, std::slice::from_ref(&unreachable), &down, 160);
        assert_eq!(moves(&t2), [" snmp ok->error"]);
        let web01 = p2.iter().find(|p| p.host == "web01").unwrap();
        assert_eq!((web01.since, web01.severity.as_str()), (100, "error"));
        // Back, and the disk fixed meanwhile: both said.
        let (p3, t3) = diff(&p2, &[], &HashSet::new(), 220);
        assert!(p3.is_empty());
        let mut m = moves(&t3);
        m.sort();
        assert_eq!(m, [" snmp error->ok", "web01 disk1 error->ok"]);
    }
}
