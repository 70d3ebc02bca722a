//! A VM seen under a new domain: the same UUID, another domid. Saves,
//! restores, live migrations and reboots all give a VM a new domain; none
//! of them is a finding, and each gets its own words in the guest's note.
//!
//! What tells them apart:
//!
//! - the probe's `resumed` field (key layout 4): its domain was suspended
//!   since its previous run, so the VM was restored or migrated, not
//!   rebooted;
//! - what this dom0 saw in between: a VM not running here at the previous
//!   cycle and back now was saved and restored (or migrated away and
//!   back); one whose config lives in another dom0's folder came from
//!   there;
//! - one that ran here at the previous cycle and resumes in a new domain
//!   now was restored or live-migrated within this dom0 between two
//!   cycles: dom0 cannot tell which, and says so.
//!
//! The note stands while the run that says it resumed is the latest (a
//! later cycle, or `host-collector watch`'s, words it from the run alone).

use xsmon_proto::layout::Run;
use xsmon_store::HostRow;

use crate::gather::Guest;

/// How a run stands to the VM's stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    /// The run comes from a domain other than the one the stored run was
    /// read from (`host.run_domid`). Its seq then starts afresh without a
    /// finding. Cycles in between may have seen the new domain before its
    /// probe wrote anything (`xl migrate` does not copy the guest's
    /// xenstore area), and the probe may have written more than one run
    /// before the next cycle: only the stored run's own domain tells.
    /// For a row stored before schema 5 (no `run_domid`), what tells:
    /// the row's domid changed; the run says its probe's previous run was
    /// written in another domain (`resumed`, key layout 4); or the stored
    /// run was first seen before the toolstack created this domain
    /// (`/vm/<uuid>/start_time`, which is gone after a migration).
    pub new_domain: bool,
    /// The words for the guest's message, from [`new_instance_note`].
    pub note: Option<String>,
}

/// Judges the running domain `g`'s `run` against the VM's stored row.
pub fn of(
    prev: Option<&HostRow>,
    g: &Guest,
    run: &Run,
    config_elsewhere: Option<&str>,
) -> Continuity {
    let new_domain = match prev.and_then(|h| h.run.and(h.run_domid)) {
        Some(read_from) => read_from != g.domid,
        None => {
            let first_here = run
                .resumed
                .and_then(|r| r.from_domid)
                .is_some_and(|was| was != g.domid);
            prev.and_then(|h| h.domid).is_some_and(|d| d != g.domid)
                || first_here
                || g.start_time.is_some_and(|created| {
                    prev.and_then(|h| h.run)
                        .is_some_and(|r| (r.seen as f64) < created)
                })
        }
    };
    Continuity {
        new_domain,
        note: new_instance_note(prev, g.domid, run, config_elsewhere),
    }
}

/// How the running domain `domid` continues the VM dom0 knew as `prev`,
/// when it is a new domain of it. `config_elsewhere` is the dom0 whose
/// folder of the shared config directory holds the VM's config, if not
/// this one.
pub fn new_instance_note(
    prev: Option<&HostRow>,
    domid: u32,
    run: &Run,
    config_elsewhere: Option<&str>,
) -> Option<String> {
    let suspended = run
        .resumed
        .and_then(|r| r.suspended_ms)
        .map(|ms| format!(", suspended {:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let from = config_elsewhere
        .map(|d| format!(" from dom0 {d} (its config is in {d}'s folder)"))
        .unwrap_or_default();
    let Some(prev) = prev else {
        // First seen here, already resumed: it came over a migration.
        return run
            .resumed
            .map(|_| format!("migrated here{from}: resumed in domain {domid}{suspended}"));
    };
    let old = prev.domid?;
    if old == domid {
        // dom0 already knows this domain; the run (until the probe's next)
        // still says where it came from.
        return run.resumed.map(|r| match r.from_domid {
            Some(was) if was != domid => {
                format!("restored or migrated: resumed in domain {domid} (was {was}){suspended}")
            }
            _ => format!("suspended and resumed in the same domain {domid}{suspended}"),
        });
    }
    let change = format!("domain {old} -> {domid}");
    Some(match (run.resumed, prev.state.as_str()) {
        (Some(_), "running") if !from.is_empty() => {
            format!("migrated here{from} ({change}{suspended})")
        }
        (Some(_), "running") => format!(
            "restored or migrated within this dom0 since the last cycle ({change}{suspended})"
        ),
        (Some(_), _) => {
            format!("restored ({change}{suspended}; it was not running here at the last cycle)")
        }
        (None, _) => format!("rebooted or created again ({change})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsmon_proto::layout::Resumed;

    fn row(domid: u32, state: &str) -> HostRow {
        HostRow {
            id: 1,
            ident: "uuid:x".into(),
            uuid: None,
            name: "web01".into(),
            last_seen: 0,
            domid: Some(domid),
            state: state.into(),
            config: true,
            run: None,
            run_domid: None,
            xen: None,
            reboots: 0,
        }
    }

    fn run(resumed: Option<Resumed>) -> Run {
        Run {
            probe: "guest-probe 0.4.0".into(),
            time: 0,
            seq: 5,
            checks: Vec::new(),
            resumed,
        }
    }

    /// A stored run with seq `seq`, seen at 1,000.
    fn stored(seq: u64) -> xsmon_store::SeenRun {
        xsmon_store::SeenRun {
            seq,
            digest: 5,
            time: 1_000,
            seen: 1_000,
        }
    }

    /// Running domain `domid` of web01, created at `start_time`.
    fn guest(domid: u32, start_time: Option<f64>) -> Guest {
        Guest {
            start_time,
            ..Guest::named(domid, "web01")
        }
    }

    const RESUMED: Option<Resumed> = Some(Resumed {
        from_domid: Some(7),
        suspended_ms: Some(8_400),
    });

    #[test]
    fn a_new_domain_is_a_new_domid_or_a_stored_run_older_than_the_domain() {
        let guest = |start_time| guest(9, start_time);
        let mut seen_here = row(9, "running");
        seen_here.run = Some(stored(1));
        // A domid change.
        assert!(of(Some(&row(7, "running")), &guest(None), &run(None), None).new_domain);
        // Same domid; the stored run was seen before this domain existed
        // (a migration, then a cycle before the probe's first run).
        assert!(of(Some(&seen_here), &guest(Some(1_500.0)), &run(RESUMED), None).new_domain);
        // Same domid, no start_time (libxl removed /vm/<uuid> with the
        // migration's source domain): the run says it is the probe's
        // first in this domain.
        assert!(of(Some(&seen_here), &guest(None), &run(RESUMED), None).new_domain);
        // ... or after: one domain, whose seq rules stand, even while its
        // run says it was suspended and resumed in place.
        let in_place = Some(Resumed {
            from_domid: None,
            suspended_ms: Some(2_000),
        });
        let later = of(Some(&seen_here), &guest(Some(900.0)), &run(in_place), None);
        assert!(!later.new_domain);
        assert!(later.note.is_some());
        let from_here = Some(Resumed {
            from_domid: Some(9),
            suspended_ms: None,
        });
        assert!(!of(Some(&seen_here), &guest(None), &run(from_here), None).new_domain);
        assert!(!of(Some(&seen_here), &guest(None), &run(None), None).new_domain);
    }

    #[test]
    fn the_stored_runs_own_domain_decides_from_schema_5_on() {
        let guest = guest(16, None);
        // Seen in domain 12; a cycle after the migration already stored
        // domid 16; the probe then wrote two runs there before the next
        // cycle (the second does not say it resumed), and /vm/<uuid> has
        // no start_time: still the new domain's run (the lab's CI failure).
        let mut prev = row(16, "running");
        prev.run = Some(stored(2));
        prev.run_domid = Some(12);
        assert!(of(Some(&prev), &guest, &run(None), None).new_domain);
        // Read from this very domain: the seq rules stand, whatever the
        // run says of where its probe ran before.
        prev.run_domid = Some(16);
        assert!(!of(Some(&prev), &guest, &run(RESUMED), None).new_domain);
    }

    #[test]
    fn each_way_to_a_new_domain_has_its_words() {
        let n =
            |prev: Option<&HostRow>, r, elsewhere| new_instance_note(prev, 9, &run(r), elsewhere);
        assert_eq!(n(Some(&row(9, "running")), None, None), None);
        assert_eq!(
            n(Some(&row(7, "running")), None, None).unwrap(),
            "rebooted or created again (domain 7 -> 9)"
        );
        assert_eq!(
            n(Some(&row(7, "down")), RESUMED, None).unwrap(),
            "restored (domain 7 -> 9, suspended 8.4 s; it was not running here at the last cycle)"
        );
        assert!(n(Some(&row(7, "running")), RESUMED, None)
            .unwrap()
            .starts_with("restored or migrated within this dom0"));
        assert_eq!(
            n(None, RESUMED, Some("xen02")).unwrap(),
            "migrated here from dom0 xen02 (its config is in xen02's folder): resumed in domain 9, suspended 8.4 s"
        );
        assert_eq!(n(None, None, None), None);
        // A later cycle, the same run: where it came from, still.
        assert_eq!(
            n(Some(&row(9, "running")), RESUMED, None).unwrap(),
            "restored or migrated: resumed in domain 9 (was 7), suspended 8.4 s"
        );
        let in_place = Some(Resumed {
            from_domid: None,
            suspended_ms: Some(2_000),
        });
        assert!(n(Some(&row(9, "running")), in_place, None)
            .unwrap()
            .starts_with("suspended and resumed in the same domain"));
    }
}
