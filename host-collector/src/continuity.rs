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

/// What a new domain of the VM is, as far as dom0 can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewDomain {
    /// The same kernel runs on in it (restored or migrated): the run says
    /// its probe resumed, or carries the boot id of the VM's previous run.
    Resumed,
    /// Another boot of the VM's kernel: the boot ids differ (key layout 5
    /// on both sides), and the run does not say it resumed.
    Rebooted,
    /// The runs cannot say: a boot id is missing on one side (a probe
    /// older than layout 5, a row stored before schema 6) and the run read
    /// does not say it resumed (it may not be the first of the domain).
    Unknown,
}

impl NewDomain {
    /// Judges a new domain's `run` against the boot the VM's stored run
    /// carried. The probe's own `resumed` comes first: it saw its kernel
    /// go on in another domain, even when that kernel's save was made in
    /// an earlier boot than the one dom0 last saw.
    pub fn of(prev: Option<&HostRow>, run: &Run) -> NewDomain {
        if run.resumed.is_some() {
            return NewDomain::Resumed;
        }
        match (prev.and_then(|h| h.run_boot.as_deref()), run.boot.as_ref()) {
            (Some(was), Some(now)) if was == now.as_str() => NewDomain::Resumed,
            (Some(_), Some(_)) => NewDomain::Rebooted,
            _ => NewDomain::Unknown,
        }
    }
}

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
    /// What the new domain is, when it is one.
    pub kind: Option<NewDomain>,
    /// The words for the guest's message, from [`new_instance_note`].
    pub note: Option<String>,
}

impl Continuity {
    /// This cycle takes the VM's new domain for a reboot (its count grows):
    /// only on evidence, another boot of its kernel.
    pub fn rebooted(&self) -> bool {
        self.kind == Some(NewDomain::Rebooted)
    }
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
    let kind = new_domain.then(|| NewDomain::of(prev, run));
    Continuity {
        new_domain,
        kind,
        note: new_instance_note(prev, g.domid, run, kind, config_elsewhere),
    }
}

/// How the running domain `domid` continues the VM dom0 knew as `prev`:
/// `kind` when it is a new domain of it. `config_elsewhere` is the dom0
/// whose folder of the shared config directory holds the VM's config, if
/// not this one.
pub fn new_instance_note(
    prev: Option<&HostRow>,
    domid: u32,
    run: &Run,
    kind: Option<NewDomain>,
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
    // The domain dom0 last read a run from, else the one it last saw.
    let old = prev.run_domid.or(prev.domid)?;
    let Some(kind) = kind.filter(|_| old != domid) else {
        // dom0 already read this domain; the run (until the probe's next)
        // still says where it came from.
        return run.resumed.map(|r| match r.from_domid {
            Some(was) if was != domid => {
                format!("restored or migrated: resumed in domain {domid} (was {was}){suspended}")
            }
            _ => format!("suspended and resumed in the same domain {domid}{suspended}"),
        });
    };
    let change = format!("domain {old} -> {domid}");
    // The probe names the domain its kernel last ran in: when that is not
    // the one dom0 last read it from, a state older than dom0's last
    // reading was restored.
    let older = run
        .resumed
        .and_then(|r| r.from_domid)
        .filter(|was| *was != old && *was != domid)
        .map(|was| format!("; its kernel last ran in domain {was}, not {old}: an older save"))
        .unwrap_or_default();
    let since = if prev.domid == Some(old) {
        " since the last cycle"
    } else {
        ""
    };
    Some(match kind {
        NewDomain::Resumed if prev.state == "running" && !from.is_empty() => {
            format!("migrated here{from} ({change}{suspended})")
        }
        NewDomain::Resumed if prev.state == "running" => format!(
            "restored or migrated within this dom0{since} ({change}{suspended}; the same boot of its kernel{older})"
        ),
        NewDomain::Resumed => format!(
            "restored ({change}{suspended}; it was not running here at the last cycle{older})"
        ),
        NewDomain::Rebooted => {
            format!("rebooted or created again ({change}: another boot of its kernel)")
        }
        NewDomain::Unknown => format!(
            "a new domain of the same VM ({change}); its probe's run does not say whether it rebooted or resumed (no boot id before key layout 5)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsmon_proto::layout::{BootId, Resumed};

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
            run_boot: None,
            started: None,
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
            boot: None,
        }
    }

    fn boot(n: u8) -> Option<BootId> {
        BootId::from_kernel(&format!("{n:02x}").repeat(16))
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
        let n = |prev: Option<&HostRow>, r, kind, elsewhere| {
            new_instance_note(prev, 9, &run(r), kind, elsewhere)
        };
        use NewDomain::{Rebooted, Unknown};
        const RESUMED_HERE: NewDomain = NewDomain::Resumed;
        assert_eq!(n(Some(&row(9, "running")), None, None, None), None);
        assert_eq!(
            n(Some(&row(7, "running")), None, Some(Rebooted), None).unwrap(),
            "rebooted or created again (domain 7 -> 9: another boot of its kernel)"
        );
        assert_eq!(
            n(Some(&row(7, "running")), None, Some(Unknown), None).unwrap(),
            "a new domain of the same VM (domain 7 -> 9); its probe's run does not say whether it rebooted or resumed (no boot id before key layout 5)"
        );
        assert_eq!(
            n(Some(&row(7, "down")), RESUMED, Some(RESUMED_HERE), None).unwrap(),
            "restored (domain 7 -> 9, suspended 8.4 s; it was not running here at the last cycle)"
        );
        assert_eq!(
            n(Some(&row(7, "running")), RESUMED, Some(RESUMED_HERE), None).unwrap(),
            "restored or migrated within this dom0 since the last cycle (domain 7 -> 9, suspended 8.4 s; the same boot of its kernel)"
        );
        // Told by the boot id alone (the run read is not the first after
        // the restore): the same words, without the suspension's length.
        assert_eq!(
            n(Some(&row(7, "running")), None, Some(RESUMED_HERE), None).unwrap(),
            "restored or migrated within this dom0 since the last cycle (domain 7 -> 9; the same boot of its kernel)"
        );
        // A cycle saw the new domain before its first run: not "since the
        // last cycle", and the old domain is the one the run came from.
        let mut seen_new = row(9, "running");
        seen_new.run_domid = Some(7);
        assert_eq!(
            n(Some(&seen_new), None, Some(RESUMED_HERE), None).unwrap(),
            "restored or migrated within this dom0 (domain 7 -> 9; the same boot of its kernel)"
        );
        // An older save restored: the probe's kernel last ran in domain 5,
        // dom0 last read it in 7.
        let older = Some(Resumed {
            from_domid: Some(5),
            suspended_ms: None,
        });
        assert_eq!(
            n(Some(&row(7, "running")), older, Some(RESUMED_HERE), None).unwrap(),
            "restored or migrated within this dom0 since the last cycle (domain 7 -> 9; the same boot of its kernel; its kernel last ran in domain 5, not 7: an older save)"
        );
        assert_eq!(
            n(None, RESUMED, Some(RESUMED_HERE), Some("xen02")).unwrap(),
            "migrated here from dom0 xen02 (its config is in xen02's folder): resumed in domain 9, suspended 8.4 s"
        );
        assert_eq!(n(None, None, None, None), None);
        // A later cycle, the same run: where it came from, still.
        assert_eq!(
            n(Some(&row(9, "running")), RESUMED, None, None).unwrap(),
            "restored or migrated: resumed in domain 9 (was 7), suspended 8.4 s"
        );
        let in_place = Some(Resumed {
            from_domid: None,
            suspended_ms: Some(2_000),
        });
        assert!(n(Some(&row(9, "running")), in_place, None, None)
            .unwrap()
            .starts_with("suspended and resumed in the same domain"));
    }

    #[test]
    fn the_boot_id_tells_a_reboot_from_a_restore_whichever_run_is_read() {
        let mut prev = row(7, "running");
        prev.run = Some(stored(40));
        prev.run_domid = Some(7);
        prev.run_boot = boot(1).map(|b| b.as_str().to_string());
        let g = guest(9, Some(2_000.0));
        // The second run of the restored domain (seq 2, no `resumed`):
        // the same boot, so restored, and not counted.
        let mut second = run(None);
        second.seq = 2;
        second.boot = boot(1);
        let c = of(Some(&prev), &g, &second, None);
        assert_eq!((c.new_domain, c.kind), (true, Some(NewDomain::Resumed)));
        assert!(!c.rebooted());
        // Another boot: a reboot, counted, whichever run is read.
        second.boot = boot(2);
        let c = of(Some(&prev), &g, &second, None);
        assert_eq!(c.kind, Some(NewDomain::Rebooted));
        assert!(c.rebooted());
        // The probe says it resumed (its kernel's save was made in an
        // earlier boot than dom0 last saw): its word stands.
        second.resumed = RESUMED;
        assert_eq!(
            of(Some(&prev), &g, &second, None).kind,
            Some(NewDomain::Resumed)
        );
        // No boot id on either side, no `resumed`: dom0 does not know, and
        // the count does not guess.
        let mut old_probe = run(None);
        old_probe.seq = 1;
        let c = of(Some(&prev), &g, &old_probe, None);
        assert_eq!(c.kind, Some(NewDomain::Unknown));
        assert!(!c.rebooted());
        prev.run_boot = None;
        let c = of(Some(&prev), &g, &second, None);
        assert_eq!(c.kind, Some(NewDomain::Resumed));
        // The same domain: no kind at all.
        prev.run_domid = Some(9);
        prev.domid = Some(9);
        assert_eq!(of(Some(&prev), &g, &old_probe, None).kind, None);
    }
}
