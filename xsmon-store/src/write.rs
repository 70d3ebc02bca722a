//! Writing one cycle: a transaction per cycle, a savepoint per host, the
//! host rows and their events, and `forget`.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{CheckResult, Status};

use crate::*;

/// One host's state in one cycle, and what becomes of its `host` row.
#[derive(Debug, Clone)]
pub struct HostRecord {
    /// The existing `host` row this record updates (`None`: a new host).
    pub row: Option<i64>,
    /// Stable identity: `dom0`, `uuid:<uuid>`, `name:<name>`, `domid:<n>`.
    pub ident: String,
    pub uuid: Option<String>,
    /// The toolstack's name (or the last one known).
    pub name: String,
    /// The name shown for this host in this cycle, unique within it.
    pub label: String,
    pub domid: Option<u32>,
    /// The `host` row's state after this cycle ('running', 'gone', ...).
    pub state: &'static str,
    /// Has a .cfg under this dom0 (kept for running hosts).
    pub config: bool,
    /// Whether a status row is written (false: only the host row changes).
    pub listed: bool,
    /// 'fresh', 'stale', 'missing', 'invalid', 'host', 'down' or 'stopped'.
    pub probe: &'static str,
    pub probe_time: Option<i64>,
    pub probe_seq: Option<u64>,
    /// The run dom0 now knows of (stored in the host row when `Some`).
    pub run: Option<SeenRun>,
    pub status: Status,
    pub message: String,
    /// The checks that are not ok.
    pub findings: Vec<CheckResult>,
    /// (kind, target, name, value) figures to keep.
    pub figures: Vec<(String, String, String, f64)>,
    /// Every figure of the current run with its thresholds (empty when the
    /// run is not current): the host's latest figures.
    pub latest: Vec<CheckFigures>,
    /// Events to record for this host: (kind, detail).
    pub events: Vec<(&'static str, String)>,
    /// What the hypervisor says of it this cycle (kept in the host row;
    /// `None`: not a running domain, or no hypervisor view).
    pub xen: Option<XenSeen>,
    /// This cycle took a new domain of the VM for a reboot: its count
    /// (`host.reboots`) grows by one.
    pub rebooted: bool,
    /// The guest kernel's boot id the run carried (stored with `run`).
    pub run_boot: Option<String>,
    /// When the toolstack created the running domain `domid` (kept while
    /// the host runs).
    pub started: Option<f64>,
    /// Restarts of the VM learned in this cycle (a restart already stored
    /// for the same new domain is kept as it was).
    pub restarts: Vec<Restart>,
}

/// A restart of a VM: a domain of it ended and the toolstack started
/// another (table `restart`, schema 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// When the new domain started (else when dom0 learned of it).
    pub time: i64,
    pub old_domid: Option<u32>,
    pub new_domid: u32,
    /// `crash`, `reboot`, `watchdog`, `soft_reset` or `unknown`.
    pub reason: String,
    /// xl's action (`restart`, `coredump-restart`, ...), when its log says.
    pub action: Option<String>,
}

impl HostRecord {
    /// A record with no probe data yet: `listed`, status error.
    pub fn new(ident: String, name: String, label: String, state: &'static str) -> HostRecord {
        HostRecord {
            row: None,
            ident,
            uuid: None,
            name,
            label,
            domid: None,
            state,
            config: false,
            listed: true,
            probe: "missing",
            probe_time: None,
            probe_seq: None,
            run: None,
            status: Status::Error,
            message: String::new(),
            findings: Vec::new(),
            figures: Vec::new(),
            latest: Vec::new(),
            events: Vec::new(),
            xen: None,
            rebooted: false,
            run_boot: None,
            started: None,
            restarts: Vec::new(),
        }
    }
}

/// One collection cycle.
#[derive(Debug, Clone)]
pub struct CycleRecord {
    pub time: i64,
    pub duration_ms: i64,
    pub dom0: String,
    pub error: Option<String>,
    pub hosts: Vec<HostRecord>,
}

/// How long rows are kept.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub raw_secs: i64,
    pub hourly_secs: i64,
    pub daily_secs: i64,
}

/// What [`write_cycle`] stored.
#[derive(Debug, Clone)]
pub struct Written {
    pub cycle_id: i64,
    /// Hosts whose records could not be stored whole: each got a status
    /// row saying so (or, failing that, a line here and in the cycle's
    /// `problems`), and the rest of the cycle was stored.
    pub problems: Vec<String>,
}

/// Writes a whole cycle in one transaction: either all of it is there
/// afterwards, or none of it. Each host is written under its own savepoint:
/// a host whose rows cannot be stored (a constraint, a bad value) costs
/// only that host its figures, never the cycle.
pub fn write_cycle(conn: &mut Connection, c: &CycleRecord, keep: Keep) -> Result<Written> {
    let tx = conn.transaction()?;
    let listed = c.hosts.iter().filter(|h| h.listed).count();
    tx.execute(
        "INSERT INTO cycle (time, duration_ms, dom0, guests, error) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.time, c.duration_ms, c.dom0, listed as i64, c.error],
    )?;
    let cycle_id = tx.last_insert_rowid();
    let mut metrics = MetricIds::default();
    let mut problems = Vec::new();
    for h in &c.hosts {
        if let Err(e) = write_host_isolated(&tx, cycle_id, c.time, h, &mut metrics) {
            let why = format!("cannot store {} ({}): {e}", h.label, h.ident);
            tracing::error!("{why}");
            if h.listed && write_failure_row(&tx, cycle_id, c.time, h, &why).is_ok() {
                problems.push(why);
                continue;
            }
            problems.push(why);
        }
    }
    if !problems.is_empty() {
        tx.execute(
            "UPDATE cycle SET problems = ?2 WHERE id = ?1",
            params![cycle_id, problems.join("\n")],
        )?;
    }
    apply_retention(&tx, c.time, keep)?;
    tx.commit()?;
    Ok(Written { cycle_id, problems })
}

/// Writes one host's rows under a savepoint, rolled back on failure.
fn write_host_isolated(
    tx: &Transaction<'_>,
    cycle_id: i64,
    now: i64,
    h: &HostRecord,
    metrics: &mut MetricIds,
) -> Result<()> {
    tx.prepare_cached("SAVEPOINT host")?.execute([])?;
    match write_host(tx, cycle_id, now, h, metrics) {
        Ok(()) => {
            tx.prepare_cached("RELEASE host")?.execute([])?;
            metrics.keep_added();
            Ok(())
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO host; RELEASE host")?;
            metrics.drop_added();
            Err(e)
        }
    }
}

fn write_host(
    tx: &Transaction<'_>,
    cycle_id: i64,
    now: i64,
    h: &HostRecord,
    metrics: &mut MetricIds,
) -> Result<()> {
    let host_id = upsert_host(tx, h, now)?;
    for (kind, detail) in &h.events {
        event(tx, now, host_id, kind, detail)?;
    }
    for r in &h.restarts {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO restart (host_id, new_domid, time, old_domid, reason, action)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            host_id,
            r.new_domid,
            r.time,
            r.old_domid,
            r.reason,
            r.action
        ])?;
    }
    if !h.listed {
        return Ok(());
    }
    insert_status(tx, cycle_id, host_id, h, h.status, &h.message)?;
    for f in &h.findings {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO finding (cycle_id, host_id, check_id, kind, target, status, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![cycle_id, host_id, f.id, f.kind, f.target, f.status.as_str(), f.message])?;
    }
    let mut samples = Vec::with_capacity(h.figures.len());
    for (kind, target, name, value) in &h.figures {
        samples.push((metrics.get(tx, kind, target, name)?, to_stored(*value)));
    }
    insert_samples(tx, cycle_id, host_id, &samples)
}

/// Rows per INSERT of samples: a host's figures go in a few statements
/// rather than one per figure (a dom0 of 1,000 guests stores some 20,000
/// figures a cycle, and the per-statement work was most of it).
const SAMPLES_PER_INSERT: usize = 16;

/// One host's figures of one cycle: (metric id, stored value).
fn insert_samples(
    tx: &Transaction<'_>,
    cycle_id: i64,
    host_id: i64,
    samples: &[(i64, i64)],
) -> Result<()> {
    for chunk in samples.chunks(SAMPLES_PER_INSERT) {
        let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut st = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO sample (cycle_id, host_id, metric_id, v) VALUES {rows}"
        ))?;
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 4);
        for (metric_id, v) in chunk {
            params.extend([&cycle_id as &dyn rusqlite::ToSql, &host_id, metric_id, v]);
        }
        st.execute(params.as_slice())?;
    }
    Ok(())
}

fn insert_status(
    tx: &Transaction<'_>,
    cycle_id: i64,
    host_id: i64,
    h: &HostRecord,
    status: Status,
    message: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO status (cycle_id, host_id, label, domid, probe, probe_time, probe_seq, seen_time, status, message, domain_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        cycle_id,
        host_id,
        h.label,
        h.domid,
        h.probe,
        h.probe_time,
        h.probe_seq.map(|s| s as i64),
        h.run.map(|r| r.seen),
        status.as_str(),
        message,
        h.xen.as_ref().map(|x| x.state.as_str())
    ])?;
    Ok(())
}

/// After a host's rows failed: one status row that says so, so the host
/// keeps its line (an error) in snmp-extend's output.
fn write_failure_row(
    tx: &Transaction<'_>,
    cycle_id: i64,
    now: i64,
    h: &HostRecord,
    why: &str,
) -> Result<()> {
    tx.execute_batch("SAVEPOINT failure")?;
    let attempt = (|| -> Result<()> {
        let host_id = match existing_host_id(tx, h)? {
            Some(id) => id,
            None => insert_host(tx, h, now)?,
        };
        insert_status(tx, cycle_id, host_id, h, Status::Error, why)
    })();
    match attempt {
        Ok(()) => {
            tx.execute_batch("RELEASE failure")?;
            Ok(())
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO failure; RELEASE failure")?;
            Err(e)
        }
    }
}

fn existing_host_id(tx: &Transaction<'_>, h: &HostRecord) -> Result<Option<i64>> {
    if let Some(id) = h.row {
        return Ok(Some(id));
    }
    Ok(tx
        .prepare_cached("SELECT id FROM host WHERE ident = ?1")?
        .query_row([&h.ident], |r| r.get(0))
        .optional()?)
}

fn insert_host(tx: &Transaction<'_>, h: &HostRecord, now: i64) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO host (ident, uuid, name, first_seen, last_seen, domid, state, config)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        h.ident, h.uuid, h.name, now, h.domid, h.state, h.config
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Updates (or creates) a host's row: identity, name, state, the
/// hypervisor's view and the run dom0 saw, in one statement (the row is
/// rewritten once a cycle, not once per part: a 1,000-guest cycle
/// rewrote 3,000 records). `last_seen` moves only while the host runs
/// here; the hypervisor's view is cleared for a running host without one
/// and kept for one that is not running.
fn upsert_host(tx: &Transaction<'_>, h: &HostRecord, now: i64) -> Result<i64> {
    let id = match existing_host_id(tx, h)? {
        Some(id) => id,
        None => insert_host(tx, h, now)?,
    };
    let running = h.state == "running";
    // A running VM under a new name keeps the old one (an old config
    // named after it is then told as such).
    if running {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO former_name (host_id, name, until)
             SELECT id, name, ?3 FROM host WHERE id = ?1 AND name <> ?2",
        )?
        .execute(params![id, h.name, now])?;
        tx.prepare_cached("DELETE FROM former_name WHERE host_id = ?1 AND name = ?2")?
            .execute(params![id, h.name])?;
    }
    let latest = (!h.latest.is_empty()).then(|| {
        h.latest
            .iter()
            .map(CheckFigures::print)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let x = h.xen.as_ref();
    let r = h.run.as_ref();
    tx.prepare_cached(
        "UPDATE host SET ident = ?2, uuid = coalesce(?3, uuid), name = ?4, state = ?5,
                last_seen = CASE WHEN ?6 THEN ?7 ELSE last_seen END,
                domid = CASE WHEN ?6 THEN ?8 ELSE domid END,
                config = CASE WHEN ?6 THEN ?9 ELSE config END,
                figures = ?10,
                xen_state = CASE WHEN ?11 THEN ?12 WHEN ?6 THEN NULL ELSE xen_state END,
                xen_since = CASE WHEN ?11 THEN ?13 WHEN ?6 THEN NULL ELSE xen_since END,
                cpu_time_ms = CASE WHEN ?11 THEN ?14 WHEN ?6 THEN NULL ELSE cpu_time_ms END,
                cpu_at = CASE WHEN ?11 THEN ?15 WHEN ?6 THEN NULL ELSE cpu_at END,
                xen_counters = CASE WHEN ?11 THEN ?16 WHEN ?6 THEN NULL ELSE xen_counters END,
                reboots = reboots + ?17,
                run_seq = CASE WHEN ?18 THEN ?19 ELSE run_seq END,
                run_digest = CASE WHEN ?18 THEN ?20 ELSE run_digest END,
                run_time = CASE WHEN ?18 THEN ?21 ELSE run_time END,
                run_seen = CASE WHEN ?18 THEN ?22 ELSE run_seen END,
                run_domid = CASE WHEN ?18 THEN ?8 ELSE run_domid END,
                run_boot = CASE WHEN ?18 THEN ?23 ELSE run_boot END,
                started = CASE WHEN ?6 THEN ?24 ELSE started END
          WHERE id = ?1",
    )?
    .execute(params![
        id,
        h.ident,
        h.uuid,
        h.name,
        h.state,
        running,
        now,
        h.domid,
        h.config,
        latest,
        x.is_some(),
        x.map(|x| x.state.as_str()),
        x.map(|x| x.since),
        x.map(|x| to_stored(x.cpu_time_s)),
        x.map(|x| x.cpu_at),
        x.map(|x| x.print_counters()),
        h.rebooted as i64,
        r.is_some(),
        r.map(|r| r.seq as i64),
        r.map(|r| r.digest as i64),
        r.map(|r| r.time),
        r.map(|r| r.seen),
        h.run_boot,
        h.started
    ])?;
    Ok(id)
}

fn event(tx: &Transaction<'_>, time: i64, host_id: i64, kind: &str, detail: &str) -> Result<()> {
    tx.prepare_cached("INSERT INTO event (time, host_id, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![time, host_id, kind, detail])?;
    Ok(())
}

/// `host-collector forget`: an admin says a guest that is not running here
/// is gone for good; it is no longer reported as down. Its history stays.
pub fn forget(conn: &mut Connection, spec: &str, now: i64) -> Result<HostRow> {
    let h = find_host(conn, spec)?;
    if h.ident == DOM0_IDENT {
        return Err(Error::Refused("dom0 itself cannot be forgotten".into()));
    }
    if h.state == "running" {
        return Err(Error::Refused(format!(
            "{} ({}) is running here as domain {}: nothing to forget",
            h.name,
            h.ident,
            h.domid.map(|d| d.to_string()).unwrap_or_else(|| "?".into())
        )));
    }
    let tx = conn.transaction()?;
    tx.execute("UPDATE host SET state = 'forgotten' WHERE id = ?1", [h.id])?;
    event(
        &tx,
        now,
        h.id,
        "forgotten",
        &format!(
            "{} ({}) forgotten by an admin (was {})",
            h.name, h.ident, h.state
        ),
    )?;
    tx.commit()?;
    Ok(h)
}

/// Metric ids looked up in this cycle. The ids a host's savepoint added
/// are dropped with it when it is rolled back (their rows are gone).
///
/// Keyed by `kind NUL target NUL name` built in one reused buffer, so a
/// lookup allocates nothing (a 1,000-guest cycle looks up some 20,000
/// figures). Unambiguous: kinds and names are plain words, so the first
/// and last NUL are the separators whatever the target holds.
#[derive(Default)]
struct MetricIds {
    ids: HashMap<String, i64>,
    added: Vec<String>,
    key: String,
}

impl MetricIds {
    fn get(&mut self, tx: &Transaction<'_>, kind: &str, target: &str, name: &str) -> Result<i64> {
        self.key.clear();
        for (i, part) in [kind, target, name].into_iter().enumerate() {
            if i > 0 {
                self.key.push('\0');
            }
            self.key.push_str(part);
        }
        if let Some(id) = self.ids.get(self.key.as_str()) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO metric (kind, target, name) VALUES (?1, ?2, ?3)")?
            .execute(params![kind, target, name])?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM metric WHERE kind = ?1 AND target = ?2 AND name = ?3")?
            .query_row(params![kind, target, name], |r| r.get(0))?;
        self.added.push(self.key.clone());
        self.ids.insert(self.key.clone(), id);
        Ok(id)
    }

    fn keep_added(&mut self) {
        self.added.clear();
    }

    fn drop_added(&mut self) {
        for k in self.added.drain(..) {
            self.ids.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep() -> Keep {
        Keep {
            raw_secs: 7 * 86400,
            hourly_secs: 90 * 86400,
            daily_secs: 730 * 86400,
        }
    }

    fn cycle(time: i64, h: HostRecord) -> CycleRecord {
        CycleRecord {
            time,
            duration_ms: 1,
            dom0: "dom0".into(),
            error: None,
            hosts: vec![h],
        }
    }

    /// The one-statement update keeps each part's rules: the hypervisor's
    /// view is set when read, cleared for a running host without one, kept
    /// for one that is not running; the run is kept when none is seen;
    /// reboots only grow; `last_seen` and `domid` move only while running.
    #[test]
    fn a_host_row_is_updated_part_by_part_in_one_statement() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::open_rw(&dir.path().join("h.db")).unwrap();
        let mut h = HostRecord::new("uuid:a".into(), "web01".into(), "web01".into(), "running");
        h.domid = Some(7);
        h.run = Some(SeenRun {
            seq: 3,
            digest: 9,
            time: 100,
            seen: 101,
        });
        h.run_boot = Some("b".repeat(32));
        h.xen = Some(XenSeen {
            domid: 7,
            state: "blocked".into(),
            since: 90,
            cpu_time_s: 1.5,
            cpu_at: 100,
            counters: [("vcpu0".to_string(), 1.25)].into(),
        });
        h.rebooted = true;
        write_cycle(&mut conn, &cycle(100, h.clone()), keep()).unwrap();
        let row = crate::hosts(&conn).unwrap().remove(0);
        assert_eq!((row.last_seen, row.domid, row.reboots), (100, Some(7), 1));
        assert_eq!(row.run, h.run);
        assert_eq!((row.run_domid, row.run_boot), (Some(7), h.run_boot.clone()));
        assert_eq!(
            row.xen.as_ref().map(|x| (x.state.as_str(), x.since)),
            Some(("blocked", 90))
        );
        assert_eq!(row.xen.as_ref().unwrap().counters["vcpu0"], 1.25);

        // Running, no run seen, no hypervisor view, not rebooted.
        let mut next = h.clone();
        next.row = Some(row.id);
        next.domid = Some(8);
        next.run = None;
        next.xen = None;
        next.rebooted = false;
        write_cycle(&mut conn, &cycle(200, next.clone()), keep()).unwrap();
        let row = crate::hosts(&conn).unwrap().remove(0);
        assert_eq!((row.last_seen, row.domid, row.reboots), (200, Some(8), 1));
        assert_eq!((row.run, row.run_domid), (h.run, Some(7)));
        assert_eq!(row.xen, None);

        // Back with a view, then gone: the view and last_seen stay.
        next.xen = h.xen.clone();
        write_cycle(&mut conn, &cycle(300, next.clone()), keep()).unwrap();
        next.state = "gone";
        next.xen = None;
        next.domid = Some(9);
        write_cycle(&mut conn, &cycle(400, next), keep()).unwrap();
        let row = crate::hosts(&conn).unwrap().remove(0);
        assert_eq!(
            (row.state.as_str(), row.last_seen, row.domid),
            ("gone", 300, Some(8))
        );
        assert_eq!(row.xen.map(|x| x.state), Some("blocked".to_string()));
    }

    /// Metric ids found by their joined key: the same figure, the same id;
    /// a target holding the separator is still its own metric.
    #[test]
    fn metric_keys_do_not_run_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::open_rw(&dir.path().join("h.db")).unwrap();
        let tx = conn.transaction().unwrap();
        let mut ids = MetricIds::default();
        let a = ids.get(&tx, "disk", "/a\0b", "used").unwrap();
        let b = ids.get(&tx, "disk", "/a", "used").unwrap();
        let c = ids.get(&tx, "disk", "/a\0b", "used").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, c);
    }
}
