//! The site's state as `poller serve` keeps it (xsmon-store's `site`
//! database), read by every mode but serve (which writes it: `keeper`). A
//! reader sees one whole cycle (a read transaction), and refuses a state
//! older than its limit rather than answer from it: a stopped service must
//! never look like a quiet site.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xsmon_store::site::{Cycle, Dom0Row, Scope, Served, SiteDb};

use super::{cluster_of, Memory, Site};
use crate::discover::Known;
use crate::poll::{attach_figures, failed, read_served, Dom0Result, OtherCycle};
use crate::words;

/// Reads the site's state kept at `path`, scoped as a check asks (a scoped
/// read loads only the dom0s it shows in full). `Ok(None)`: no service
/// keeps one there. An error: there is one, but it cannot answer (stale,
/// not yet written, another version), said as a Nagios check says UNKNOWN.
pub fn read(
    path: &Path,
    scope: Scope<'_>,
    changes_since: Option<i64>,
    now: i64,
) -> Result<Option<Site>> {
    let Some(mut db) = SiteDb::open_ro(path)? else {
        return Ok(None);
    };
    let snap = db.snapshot()?;
    let Some(cycle) = snap.cycle()? else {
        if let Some((since, _, why)) = snap.failure()? {
            bail!(
                "the site's state ({}) has no poll yet: xsmon-poller's polls fail since {}: {} (--live polls the dom0s now)",
                path.display(),
                words::moment(since, now),
                xsmon_proto::text::clean(&why, 300)
            );
        }
        bail!(
            "the site's state ({}) has no poll yet: is xsmon-poller running? (--live polls the dom0s now)",
            path.display()
        );
    };
    check_fresh(&cycle, now, || Ok(snap.failure()?))?;
    let problems: Vec<String> = serde_json::from_str(&cycle.problems)
        .with_context(|| format!("reading the site's state {}", path.display()))?;
    let (rows, others) = snap.dom0s(scope)?;
    let dom0s: Vec<Dom0Result> = rows
        .into_iter()
        .map(|(row, served)| dom0_of(row, served, cycle.time))
        .collect();
    // A scoped read reads what its dom0s need: their problems, and where
    // the configs of the guests they run are; a whole-site read, all.
    let shown: Option<Vec<&str>> =
        (!matches!(scope, Scope::All)).then(|| dom0s.iter().map(|d| d.name.as_str()).collect());
    let guests: Option<Vec<&str>> = shown.as_ref().map(|_| {
        dom0s
            .iter()
            .flat_map(|d| &d.guests)
            .map(|g| crate::poll::base_name(&g.name))
            .collect()
    });
    let since = snap
        .problems(shown.as_deref())?
        .into_iter()
        .map(|p| ((p.dom0, p.host, p.check), p.since))
        .collect();
    let known = Known {
        cluster: cluster_of(snap.homes(guests.as_deref())?),
        problems,
    };
    let changes = match changes_since {
        Some(t) => snap.transitions(None, t)?,
        None => Vec::new(),
    };
    Ok(Some(Site {
        time: cycle.time,
        known,
        dom0s,
        others,
        memory: Some(Memory {
            since,
            changes_since,
            changes,
            // Said by the whole site's report only.
            push_failures: match scope {
                Scope::All => snap.push_failures()?,
                Scope::Dom0(_) | Scope::Guest(_) => Vec::new(),
            },
            set_aside: match scope {
                Scope::All => xsmon_store::damage::kept_aside(path),
                Scope::Dom0(_) | Scope::Guest(_) => Vec::new(),
            },
        }),
    }))
}

/// A state older than its limit is refused, with why when the service
/// said why its polls fail (asked only then: a fresh read is the hot path).
fn check_fresh(
    cycle: &Cycle,
    now: i64,
    failure: impl FnOnce() -> Result<Option<(i64, i64, String)>>,
) -> Result<()> {
    let age = now - cycle.time;
    if age <= cycle.stale_after_secs {
        return Ok(());
    }
    if let Some((since, _, why)) = failure()? {
        bail!(
            "the site's state is {} old: xsmon-poller's polls fail since {}: {} (--live polls the dom0s now)",
            words::duration(age),
            words::moment(since, now),
            xsmon_proto::text::clean(&why, 300)
        );
    }
    bail!(
        "the site's state is {} old (its last poll began at {}; xsmon-poller polls every {} s): is xsmon-poller running? (--live polls the dom0s now)",
        words::duration(age),
        words::moment(cycle.time, now),
        cycle.interval_secs
    )
}

/// A dom0 back from the state: what it served read as the poll read it
/// (the same words, the ages as of that poll); a dom0 out of the read's
/// scope comes back with its name, target and error only.
fn dom0_of(row: Dom0Row, served: Option<Served>, poll_time: i64) -> Dom0Result {
    let mut r = Dom0Result::new(&row.name, &row.target);
    r.elapsed_ms = row.elapsed_ms.max(0) as u64;
    if let Some(error) = row.error {
        if served.is_some() {
            failed(&mut r, error);
        } else {
            r.error = Some(error);
        }
        return r;
    }
    let Some(served) = served else {
        return r;
    };
    let lines = served.state.lines().map(str::to_string).collect();
    read_served(
        &mut r,
        crate::snmp::Served {
            lines,
            result: row.extend_result,
        },
        poll_time,
    );
    if r.error.is_none() {
        r.served_time = row.served_time;
    }
    if let Some(figures) = served.figures {
        // The service keeps figures of a cycle until it has read the
        // next one's: those of an older cycle are not shown.
        attach_figures(&mut r, figures, OtherCycle::Skip);
    }
    r
}

/// The transitions of a guest or dom0 since `since`, from the history the
/// service keeps at `path` (fresh or not: history stays true).
pub fn history(path: &Path, name: &str, since: i64) -> Result<Vec<xsmon_store::site::Transition>> {
    let Some(mut db) = SiteDb::open_ro(path)? else {
        bail!(
            "poller history reads the history that `poller serve` keeps in {}: there is none (is xsmon-poller running?)",
            path.display()
        );
    };
    let snap = db.snapshot()?;
    if !snap.knows(name)? {
        bail!(
            "no history for {:?}: the site's state knows no dom0 or guest of that name",
            xsmon_proto::text::clean(name, 80)
        );
    }
    Ok(snap.transitions(Some(name), since)?)
}
