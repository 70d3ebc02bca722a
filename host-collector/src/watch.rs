//! What `host-collector watch` follows besides the domains' comings and
//! goings: the domains a cycle served as `starting`. Each one's probe area
//! is watched until its first run lands (a cycle then serves it at once),
//! and a cycle is due when its first run was due (a probe that never
//! wrote is then served as silent without waiting for cron). A domain the
//! toolstack is still building (paused, before xl unpauses it) is looked
//! at again every few seconds: no xenstore event says it now runs, and it
//! would be served as being built until its first run. A domain is
//! followed only while it is starting: a guest that keeps writing to its
//! area after its first run costs dom0 nothing.

use std::collections::BTreeMap;

use xsmon_store::CycleRecord;

/// The token of the watches on starting domains' probe areas.
pub const TOKEN: &str = "xsmon-first-run";

/// How soon a domain being built (paused by the toolstack) is looked at
/// again: it runs within seconds, and a cycle costs dom0 little.
pub const BUILD_RECHECK_SECS: i64 = 3;

/// The starting domains of the last cycle: domid -> when a cycle is due
/// for it (Unix seconds).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Starting {
    pub due: BTreeMap<u32, i64>,
}

impl Starting {
    /// The starting domains of `record`, each due `first_run_secs` after
    /// its start (a cycle's time when dom0 could not read the start), or
    /// [`BUILD_RECHECK_SECS`] after this cycle while it is being built.
    pub fn of(record: &CycleRecord, first_run_secs: u64) -> Starting {
        let due = record
            .hosts
            .iter()
            .filter(|h| h.listed && h.probe == "starting")
            .filter_map(|h| {
                let domid = h.domid?;
                if h.xen.as_ref().is_some_and(|x| x.state == "paused") {
                    return Some((domid, record.time + BUILD_RECHECK_SECS));
                }
                let from = h.started.map_or(record.time, |t| t as i64);
                // One second past the due time: the cycle then finds it due.
                Some((domid, from + first_run_secs as i64 + 1))
            })
            .collect();
        Starting { due }
    }

    /// The probe area of a domain, as watched.
    pub fn path(domid: u32) -> String {
        format!(
            "/local/domain/{domid}/{}",
            xsmon_proto::layout::DATA_SUBPATH
        )
    }

    /// The domains to start and to stop watching, going from `self` to
    /// `next`.
    pub fn changes(&self, next: &Starting) -> (Vec<u32>, Vec<u32>) {
        let add = next
            .due
            .keys()
            .filter(|d| !self.due.contains_key(d))
            .copied()
            .collect();
        let drop = self
            .due
            .keys()
            .filter(|d| !next.due.contains_key(d))
            .copied()
            .collect();
        (add, drop)
    }

    /// The earliest due time, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.due.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsmon_store::HostRecord;

    fn host(domid: u32, probe: &'static str, started: Option<f64>) -> HostRecord {
        let mut h = HostRecord::new(format!("domid:{domid}"), "g".into(), "g".into(), "running");
        h.domid = Some(domid);
        h.probe = probe;
        h.started = started;
        h
    }

    #[test]
    fn starting_domains_are_followed_until_their_first_run_is_due() {
        let record = CycleRecord {
            time: 1_000,
            duration_ms: 5,
            dom0: "xen01".into(),
            error: None,
            hosts: vec![
                host(3, "starting", Some(990.0)),
                host(4, "fresh", Some(500.0)),
                host(5, "starting", None),
            ],
        };
        let s = Starting::of(&record, 420);
        assert_eq!(s.due, BTreeMap::from([(3, 1_411), (5, 1_421)]));
        // Being built (paused by the toolstack): looked at again soon.
        let mut built = record.hosts[0].clone();
        built.xen = Some(xsmon_store::XenSeen {
            domid: 3,
            state: "paused".into(),
            since: 998,
            cpu_time_s: 0.0,
            cpu_at: 1_000,
            counters: Default::default(),
        });
        let building = CycleRecord {
            hosts: vec![built],
            ..record.clone()
        };
        assert_eq!(
            Starting::of(&building, 420).due,
            BTreeMap::from([(3, 1_000 + BUILD_RECHECK_SECS)])
        );
        assert_eq!(s.next_due(), Some(1_411));
        assert_eq!(Starting::path(3), "/local/domain/3/data/xsmon");
        let later = Starting {
            due: BTreeMap::from([(5, 1_421), (6, 1_500)]),
        };
        assert_eq!(s.changes(&later), (vec![6], vec![3]));
        assert_eq!(Starting::default().next_due(), None);
    }
}
