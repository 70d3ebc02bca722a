//! The site's state as `poller serve` keeps it (xsmon-store's `site`
//! database): written once per cycle, read by every other mode. A reader
//! sees one whole cycle (a read transaction), and refuses a state older
//! than its limit rather than answer from it: a stopped service must never
//! look like a quiet site.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use xsmon_store::site::{self, Cycle, CycleWrite, Dom0Row, GuestRow, Keep, Scope, SiteDb};

use super::{changes, Memory, Site};
use crate::config::ServiceConfig;
use crate::poll::{Dom0Result, Polled};
use crate::report::Report;
use crate::words;

/// The version of the dom0 results' JSON the state holds (`poll::Dom0Result`
/// serialised). A reader of another version polls live instead of
/// misreading it.
pub const RESULT_FORMAT: &str = "dom0-result-1";

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
        bail!(
            "the site's state ({}) has no poll yet: is xsmon-poller running? (--live polls the dom0s now)",
            path.display()
        );
    };
    check_fresh(&cycle, path, now)?;
    let known = serde_json::from_str(&cycle.discovery)
        .with_context(|| format!("reading the site's state {}", path.display()))?;
    let mut dom0s = Vec::new();
    for row in snap.dom0s(scope)? {
        dom0s.push(
            dom0_of(row).with_context(|| format!("reading the site's state {}", path.display()))?,
        );
    }
    let since = snap
        .problems()?
        .into_iter()
        .map(|p| ((p.dom0, p.host, p.check), p.since))
        .collect();
    let changes = match changes_since {
        Some(t) => snap.transitions(None, t)?,
        None => Vec::new(),
    };
    Ok(Some(Site {
        time: cycle.time,
        known,
        dom0s,
        memory: Some(Memory {
            since,
            changes_since,
            changes,
        }),
    }))
}

/// A state older than its limit, or of another format, is refused.
fn check_fresh(cycle: &Cycle, path: &Path, now: i64) -> Result<()> {
    let age = now - cycle.time;
    if age > cycle.stale_after_secs {
        bail!(
            "the site's state is {} old (its last poll began at {}; xsmon-poller polls every {} s): is xsmon-poller running? (--live polls the dom0s now)",
            words::duration(age),
            words::moment(cycle.time, now),
            cycle.interval_secs
        );
    }
    if cycle.format != RESULT_FORMAT {
        bail!(
            "the site's state {} was written by another version of the poller (format {:?}, this one reads {RESULT_FORMAT:?}): restart xsmon-poller, or poll with --live",
            path.display(),
            xsmon_proto::text::clean(&cycle.format, 40)
        );
    }
    Ok(())
}

/// A dom0 row back into its result: in full, or a stub (a dom0 a scoped
/// read counts but does not show).
fn dom0_of(row: Dom0Row) -> Result<Dom0Result> {
    if row.result.is_empty() {
        let mut r = Dom0Result::new(&row.name, &row.target);
        r.error = row.error;
        return Ok(r);
    }
    serde_json::from_str(&row.result).with_context(|| format!("dom0 {}", row.name))
}

/// The service's side: the database, and the last cycle's results (whose
/// figures the next cycle keeps for a dom0 that has not collected since).
pub struct Keeper {
    db: SiteDb,
    last: HashMap<String, Dom0Result>,
}

/// What one cycle kept: what the service now remembers, and how much
/// changed.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub memory: Memory,
    pub problems: usize,
    pub transitions: usize,
}

impl Keeper {
    pub fn open(path: &Path) -> Result<Keeper> {
        let db = SiteDb::open_rw(path)?;
        Ok(Keeper {
            db,
            last: HashMap::new(),
        })
    }

    /// The last cycle's results, by dom0.
    pub fn last(&self) -> &HashMap<String, Dom0Result> {
        &self.last
    }

    /// Writes a cycle: `polled` as the state, `report` (the whole site's)
    /// judged against the problems that stood.
    pub fn keep(
        &mut self,
        polled: &Polled,
        report: &Report,
        service: &ServiceConfig,
        elapsed_ms: i64,
    ) -> Result<Kept> {
        let before = self.db.standing_problems()?;
        let unpolled: HashSet<&str> = polled
            .dom0s
            .iter()
            .filter(|d| d.error.is_some())
            .map(|d| d.name.as_str())
            .collect();
        let (problems, transitions) =
            changes::diff(&before, &report.findings, &unpolled, polled.time);
        let dom0s = polled
            .dom0s
            .iter()
            .map(|d| {
                Ok(Dom0Row {
                    name: d.name.clone(),
                    target: d.target.clone(),
                    error: d.error.clone(),
                    result: serde_json::to_string(d)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let guests: Vec<GuestRow> = polled
            .dom0s
            .iter()
            .flat_map(|d| {
                d.guests.iter().map(|g| GuestRow {
                    base: site::base_name(&g.name).to_string(),
                    dom0: d.name.clone(),
                    name: g.name.clone(),
                    status: g.status.as_str().to_string(),
                    probe: g.probe.clone(),
                })
            })
            .collect();
        let cycle = Cycle {
            time: polled.time,
            elapsed_ms,
            interval_secs: service.interval_secs as i64,
            stale_after_secs: service.stale_after() as i64,
            discovery: serde_json::to_string(&polled.known)?,
            format: RESULT_FORMAT.into(),
        };
        let keep = Keep {
            secs: (service.keep_days as i64).saturating_mul(86400),
            max_transitions: service.max_transitions as i64,
        };
        self.db.write_cycle(
            &CycleWrite {
                cycle: &cycle,
                dom0s: &dom0s,
                guests: &guests,
                problems: &problems,
                transitions: &transitions,
            },
            keep,
        )?;
        for t in &transitions {
            tracing::info!(
                dom0 = %xsmon_proto::text::clean(&t.dom0, 80),
                host = %xsmon_proto::text::clean(&t.host, 80),
                check = %xsmon_proto::text::clean(&t.check, 80),
                "{} -> {}: {}",
                t.old,
                t.new,
                xsmon_proto::text::clean(&t.message, 300)
            );
        }
        self.last = polled
            .dom0s
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        Ok(Kept {
            problems: problems.len(),
            transitions: transitions.len(),
            memory: Memory {
                since: problems
                    .into_iter()
                    .map(|p| ((p.dom0, p.host, p.check), p.since))
                    .collect(),
                ..Memory::default()
            },
        })
    }
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
