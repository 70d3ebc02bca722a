//! The site's state as `poller serve` keeps it (xsmon-store's `site`
//! database): written once per cycle, read by every other mode. A reader
//! sees one whole cycle (a read transaction), and refuses a state older
//! than its limit rather than answer from it: a stopped service must never
//! look like a quiet site.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use xsmon_store::site::{
    self, Cycle, CycleWrite, Dom0Row, GuestRow, Keep, Scope, Served, ServedChange, SiteDb,
};

use super::{changes, Memory, Site};
use crate::config::ServiceConfig;
use crate::discover::Known;
use crate::poll::{attach_figures, failed, read_served, Dom0Result};
use crate::report::Report;
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
        bail!(
            "the site's state ({}) has no poll yet: is xsmon-poller running? (--live polls the dom0s now)",
            path.display()
        );
    };
    check_fresh(&cycle, now)?;
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
        }),
    }))
}

/// The config directories' cluster from (guest, dom0) pairs: whole, or as
/// much of it as a scoped read needs.
fn cluster_of(homes: Vec<(String, String)>) -> xsmon_proto::cluster::Cluster {
    let mut c = xsmon_proto::cluster::Cluster::default();
    for (guest, dom0) in homes {
        c.dom0s.entry(dom0).or_default().push(guest);
    }
    for guests in c.dom0s.values_mut() {
        guests.sort();
        guests.dedup();
    }
    c
}

/// (guest, dom0) for every .cfg of the cluster.
fn homes_of(known: &Known) -> Vec<(String, String)> {
    known
        .cluster
        .dom0s
        .iter()
        .flat_map(|(d, guests)| guests.iter().map(move |g| (g.clone(), d.clone())))
        .collect()
}

/// A state older than its limit is refused.
fn check_fresh(cycle: &Cycle, now: i64) -> Result<()> {
    let age = now - cycle.time;
    if age > cycle.stale_after_secs {
        bail!(
            "the site's state is {} old (its last poll began at {}; xsmon-poller polls every {} s): is xsmon-poller running? (--live polls the dom0s now)",
            words::duration(age),
            words::moment(cycle.time, now),
            cycle.interval_secs
        );
    }
    Ok(())
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
        attach_figures(&mut r, figures);
    }
    r
}

/// The service's side: the database, and what it holds of each dom0 (so a
/// cycle writes only what changed, and reads only the figures of dom0s
/// that collected since).
pub struct Keeper {
    db: SiteDb,
    /// A hash of each dom0's served state, as stored.
    state_hash: HashMap<String, u64>,
    /// The collector cycle whose figures are stored, by dom0.
    figures_cycle: HashMap<String, i64>,
    /// The config directories' cluster as stored.
    cluster: Option<xsmon_proto::cluster::Cluster>,
}

/// What one cycle kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept {
    pub problems: usize,
    pub transitions: usize,
    /// dom0s whose served state or figures were written (changed).
    pub written: usize,
}

impl Keeper {
    pub fn open(path: &Path) -> Result<Keeper> {
        let db = SiteDb::open_rw(path)?;
        Ok(Keeper {
            db,
            state_hash: HashMap::new(),
            figures_cycle: HashMap::new(),
            cluster: None,
        })
    }

    /// The collector cycle whose figures are kept, by dom0.
    pub fn figures_cycles(&self) -> &HashMap<String, i64> {
        &self.figures_cycle
    }

    /// Writes a cycle: the poll that began at `time` as the state (the
    /// dom0s of `report`, the whole site's), its findings judged against the
    /// problems that stood.
    pub fn keep(
        &mut self,
        time: i64,
        known: &Known,
        mut report: Report,
        service: &ServiceConfig,
        elapsed_ms: i64,
    ) -> Result<Kept> {
        let before = self.db.standing_problems()?;
        let unpolled: HashSet<&str> = report
            .dom0s
            .iter()
            .filter(|d| d.error.is_some())
            .map(|d| d.name.as_str())
            .collect();
        let (problems, transitions) = changes::diff(&before, &report.findings, &unpolled, time);
        let dom0s: Vec<Dom0Row> = report.dom0s.iter().map(row_of).collect();
        let changed: Vec<ServedChange> = report
            .dom0s
            .iter_mut()
            .filter_map(|d| self.change_of(d))
            .collect();
        let cycle = Cycle {
            time,
            elapsed_ms,
            interval_secs: service.interval_secs as i64,
            stale_after_secs: service.stale_after() as i64,
            problems: serde_json::to_string(&known.problems)?,
        };
        let homes = (self.cluster.as_ref() != Some(&known.cluster)).then(|| homes_of(known));
        let keep = Keep {
            secs: (service.keep_days as i64).saturating_mul(86400),
            max_transitions: service.max_transitions as i64,
        };
        let written = self.db.write_cycle(
            &CycleWrite {
                cycle: &cycle,
                dom0s: &dom0s,
                changed: &changed,
                homes: homes.as_deref(),
                problems: &problems,
                transitions: &transitions,
            },
            keep,
        );
        if let Err(e) = written {
            // Nothing of the cycle was written: remember nothing of it.
            self.state_hash.clear();
            self.figures_cycle.clear();
            self.cluster = None;
            return Err(e.into());
        }
        if homes.is_some() {
            self.cluster = Some(known.cluster.clone());
        }
        self.forget_gone(&report.dom0s);
        log_transitions(&transitions);
        Ok(Kept {
            problems: problems.len(),
            transitions: transitions.len(),
            written: changed.len(),
        })
    }

    /// What of a dom0's served text changed since it was stored (and
    /// remembers it as stored). The texts are taken, not copied: at
    /// 10,000 dom0s a copy of every dom0's figures is 60 MiB.
    fn change_of(&mut self, d: &mut Dom0Result) -> Option<ServedChange> {
        if d.error.is_some() {
            return None;
        }
        let mut change = ServedChange {
            name: d.name.clone(),
            state: None,
            figures: None,
        };
        if let Some(text) = d.served.take() {
            let h = state_hash(&text);
            if self.state_hash.get(&d.name) != Some(&h) {
                self.state_hash.insert(d.name.clone(), h);
                change.state = Some((text, guest_rows(d)));
            }
        }
        if let Some(figures) = d.served_figures.take() {
            match (&figures, d.cycle_time) {
                (Ok(_), Some(t)) => self.figures_cycle.insert(d.name.clone(), t),
                _ => self.figures_cycle.remove(&d.name),
            };
            change.figures = Some(figures);
        }
        (change.state.is_some() || change.figures.is_some()).then_some(change)
    }

    /// Forgets what it held of dom0s no longer polled (the store drops them).
    fn forget_gone(&mut self, dom0s: &[Dom0Result]) {
        let names: HashSet<&str> = dom0s.iter().map(|d| d.name.as_str()).collect();
        self.state_hash.retain(|n, _| names.contains(n.as_str()));
        self.figures_cycle.retain(|n, _| names.contains(n.as_str()));
    }
}

fn row_of(d: &Dom0Result) -> Dom0Row {
    Dom0Row {
        name: d.name.clone(),
        target: d.target.clone(),
        error: d.error.clone(),
        elapsed_ms: d.elapsed_ms as i64,
        extend_result: d.extend_result,
        served_time: d.served_time,
    }
}

fn guest_rows(d: &Dom0Result) -> Vec<GuestRow> {
    d.guests
        .iter()
        .map(|g| GuestRow {
            base: site::base_name(&g.name).to_string(),
            dom0: d.name.clone(),
            name: g.name.clone(),
            status: g.status.as_str().to_string(),
            probe: g.probe.clone(),
        })
        .collect()
}

/// A hash of a served state, without the time it was served at (the last
/// field of its header): the same lines served again are the same state.
fn state_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let (header, body) = text.split_once('\n').unwrap_or((text, ""));
    let header = header.rsplit_once(' ').map_or(header, |(h, _)| h);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    header.hash(&mut h);
    body.hash(&mut h);
    h.finish()
}

/// Each change of state, in the service's log.
fn log_transitions(transitions: &[xsmon_store::site::Transition]) {
    for t in transitions {
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
