//! The service's side of the site's state: each cycle written in one
//! transaction that spans the poll (so the figures of 10,000 dom0s go to
//! the database as they are read instead of being held), with only what
//! changed since the last cycle (what a dom0 served is the same until its
//! collector cycles), its findings judged against the problems that stood.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use xsmon_proto::cluster::Cluster;
use xsmon_proto::rawline::RawLine;
use xsmon_store::site::{
    self, Cycle, CycleTx, CycleWrite, Dom0Row, GuestRow, Keep, ServedChange, SiteDb,
};

use super::changes;
use crate::config::ServiceConfig;
use crate::discover::Known;
use crate::poll::Dom0Result;

/// A poll of the whole site as its report judged it: its dom0s, and every
/// finding.
pub struct Judged {
    pub dom0s: Vec<Dom0Result>,
    pub findings: Vec<RawLine>,
}

/// The database, and what it holds of each dom0.
pub struct Keeper {
    db: SiteDb,
    held: Held,
}

/// What the database holds, as the service remembers it.
#[derive(Default)]
struct Held {
    /// A hash of each dom0's served state.
    state_hash: HashMap<String, u64>,
    /// The collector cycle whose figures are stored, by dom0.
    figures_cycle: HashMap<String, i64>,
    /// The config directories' cluster.
    cluster: Option<Cluster>,
}

/// What one cycle kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept {
    pub problems: usize,
    pub transitions: usize,
    /// dom0s whose served state was written (changed).
    pub written: usize,
    /// dom0s whose figures were read and written.
    pub figures: usize,
}

impl Keeper {
    pub fn open(path: &Path) -> Result<Keeper> {
        Ok(Keeper {
            db: SiteDb::open_rw(path)?,
            held: Held::default(),
        })
    }

    /// The collector cycle whose figures are kept, by dom0: a poll reads
    /// the figures of the dom0s that collected since.
    pub fn figures_cycles(&self) -> HashMap<String, i64> {
        self.held.figures_cycle.clone()
    }

    /// Records that a poll could not be made, and why: readers of the
    /// state, once it is stale, say so.
    pub fn failed(&mut self, time: i64, why: &str) -> Result<()> {
        Ok(self.db.record_failure(time, why)?)
    }

    /// Records how a push to `consumer` went.
    pub fn pushed(&mut self, consumer: &str, time: i64, outcome: Result<(), &str>) -> Result<()> {
        Ok(self.db.record_push(consumer, time, outcome)?)
    }

    /// Begins a cycle (see `Cycling`).
    pub fn begin(&mut self) -> Result<Cycling<'_>> {
        Ok(Cycling {
            tx: self.db.begin_cycle()?,
            held: &mut self.held,
            figures: 0,
            failed: None,
        })
    }
}

/// A cycle being kept: figures written as the poll reads them, the rest at
/// `finish`. Dropped unfinished, nothing of it is written, and the service
/// forgets what it held (the next cycle writes everything again).
pub struct Cycling<'k> {
    tx: CycleTx<'k>,
    held: &'k mut Held,
    figures: usize,
    failed: Option<anyhow::Error>,
}

impl Cycling<'_> {
    /// Writes the figures a poll just read for a dom0, and drops them from
    /// its result (they were parsed to be checked; the service needs the
    /// text only). A failure is kept for `finish`.
    pub fn take_figures(&mut self, d: &mut Dom0Result) {
        for g in &mut d.guests {
            g.figures = Vec::new();
        }
        let Some(figures) = d.served_figures.take() else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.tx.write_figures(&d.name, &figures) {
            self.failed = Some(e.into());
            return;
        }
        self.figures += 1;
        match (&figures, d.cycle_time) {
            (Ok(_), Some(t)) => self.held.figures_cycle.insert(d.name.clone(), t),
            _ => self.held.figures_cycle.remove(&d.name),
        };
    }

    /// Writes the rest of the cycle and commits it: the poll that began at
    /// `time` (its dom0s, as the whole site's report left them) as the
    /// state, the report's findings judged against the problems that stood.
    pub fn finish(
        self,
        time: i64,
        known: &Known,
        judged: Judged,
        service: &ServiceConfig,
        elapsed_ms: i64,
    ) -> Result<Kept> {
        let Cycling {
            tx,
            held,
            figures,
            failed,
        } = self;
        let outcome = match failed {
            Some(e) => Err(e),
            None => write(tx, held, time, known, judged, service, elapsed_ms),
        };
        match outcome {
            Ok(kept) => Ok(Kept { figures, ..kept }),
            Err(e) => {
                *held = Held::default();
                Err(e)
            }
        }
    }
}

/// The state, the problems and the transitions of a cycle, committed.
fn write(
    tx: CycleTx<'_>,
    held: &mut Held,
    time: i64,
    known: &Known,
    mut report: Judged,
    service: &ServiceConfig,
    elapsed_ms: i64,
) -> Result<Kept> {
    let before = tx.standing_problems()?;
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
        .filter_map(|d| state_change(&mut held.state_hash, d))
        .collect();
    let cycle = Cycle {
        time,
        elapsed_ms,
        interval_secs: service.interval_secs as i64,
        stale_after_secs: service.stale_after() as i64,
        problems: serde_json::to_string(&known.problems)?,
    };
    let homes = (held.cluster.as_ref() != Some(&known.cluster)).then(|| homes_of(known));
    let keep = Keep {
        secs: (service.keep_days as i64).saturating_mul(86400),
        max_transitions: service.max_transitions as i64,
    };
    tx.finish(
        &CycleWrite {
            cycle: &cycle,
            dom0s: &dom0s,
            changed: &changed,
            homes: homes.as_deref(),
            problems: &problems,
            transitions: &transitions,
        },
        keep,
    )?;
    if homes.is_some() {
        held.cluster = Some(known.cluster.clone());
    }
    held.forget_gone(&report.dom0s);
    log_transitions(&transitions);
    Ok(Kept {
        problems: problems.len(),
        transitions: transitions.len(),
        written: changed.len(),
        figures: 0,
    })
}

impl Held {
    /// Forgets what it held of dom0s no longer polled (the store drops them).
    fn forget_gone(&mut self, dom0s: &[Dom0Result]) {
        let names: HashSet<&str> = dom0s.iter().map(|d| d.name.as_str()).collect();
        self.state_hash.retain(|n, _| names.contains(n.as_str()));
        self.figures_cycle.retain(|n, _| names.contains(n.as_str()));
    }
}

/// A dom0's served state when it changed since it was stored (taken, not
/// copied: at 10,000 dom0s that is tens of MiB), with the guests it lists.
fn state_change(held: &mut HashMap<String, u64>, d: &mut Dom0Result) -> Option<ServedChange> {
    if d.error.is_some() {
        return None;
    }
    let text = d.served.take()?;
    let h = state_hash(&text);
    if held.get(&d.name) == Some(&h) {
        return None;
    }
    held.insert(d.name.clone(), h);
    Some(ServedChange {
        name: d.name.clone(),
        state: Some((text, guest_rows(d))),
        figures: None,
    })
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

/// (guest, dom0) for every .cfg of the cluster.
fn homes_of(known: &Known) -> Vec<(String, String)> {
    known
        .cluster
        .dom0s
        .iter()
        .flat_map(|(d, guests)| guests.iter().map(move |g| (g.clone(), d.clone())))
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
