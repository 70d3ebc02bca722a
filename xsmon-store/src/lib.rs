//! xsmon's history store: `schema.sql` at the top of the repository is the
//! contract; this crate is the only code that touches it. It applies the
//! schema (and migrates older databases), writes one cycle per transaction
//! with every host isolated from the others, rolls old figures up, and
//! answers the queries of `status`, `history`, `forget` and snmp-extend.
//!
//! Used by host-collector (writes) and snmp-extend (reads), so that neither
//! program depends on the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use thiserror::Error;
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{CheckResult, Status};

/// The schema, current version, for a new database.
pub const SCHEMA: &str = include_str!("../../schema.sql");
pub const SCHEMA_VERSION: i64 = 4;
/// The oldest schema a read-only reader accepts: during an upgrade,
/// snmp-extend and `status` keep serving a database the collector has not
/// migrated yet (version 3 only added `host.figures`).
pub const OLDEST_READ: i64 = 2;
/// The first schema that keeps each host's latest figures (`host.figures`).
const FIGURES_SCHEMA: i64 = 3;
/// The first schema with the hypervisor's view (`status.domain_state`).
const DOMAIN_STATE_SCHEMA: i64 = 4;
/// dom0's own row in `host`: its ident and the name shown for it. No guest
/// ident can equal `dom0` (guest idents start with `uuid:`, `name:` or
/// `domid:`), and no guest is shown as `Domain-0` (see host-collector).
pub const DOM0_IDENT: &str = "dom0";
pub const DOM0_NAME: &str = "Domain-0";

/// Migrations from version N to N+1 (the first entry takes version 1 to
/// 2). Each runs in one transaction with foreign keys off, as SQLite's
/// table-rebuild procedure requires.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/v2.sql"),
    include_str!("migrations/v3.sql"),
    include_str!("migrations/v4.sql"),
];

/// What can go wrong with the store. Every variant says which database.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{what} {path}: {source}")]
    Sqlite {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("creating {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path} has schema version {found}, this program reads versions {OLDEST_READ} to {SCHEMA_VERSION}"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("database schema version {found} is newer than this program ({SCHEMA_VERSION})")]
    TooNew { found: i64 },
    #[error("{0}")]
    Query(#[from] rusqlite::Error),
    #[error("no history for {0:?}: not a host this collector has seen")]
    UnknownHost(String),
    #[error("{name:?} names {} hosts ({}): name one by its UUID", .candidates.len(), .candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn at<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(rusqlite::Error) -> Error + 'p {
    move |source| Error::Sqlite {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating if needed) the database for writing, in WAL mode.
pub fn open_rw(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path).map_err(at("opening database", path))?;
    let setup = |c: &Connection| -> rusqlite::Result<()> {
        c.busy_timeout(Duration::from_secs(10))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")
    };
    setup(&conn).map_err(at("setting up database", path))?;
    // A cycle's writes use about twenty distinct statements; past the
    // default cache of 16 every one of them would be compiled again for
    // every row.
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn, path)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(at("setting up database", path))?;
    Ok(conn)
}

/// Opens the database read-only, failing fast if it is busy (for snmpd's
/// extend, which must answer in milliseconds).
pub fn open_ro(path: &Path, busy: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(at("opening database read-only", path))?;
    conn.busy_timeout(busy)
        .map_err(at("opening database", path))?;
    // A reader answers one query and exits: a small page cache keeps its
    // memory low (snmpd runs it every poll).
    conn.pragma_update(None, "cache_size", -256)
        .map_err(at("opening database", path))?;
    let version = user_version(&conn, path)?;
    if !(OLDEST_READ..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(conn)
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64> {
    schema_version(conn).map_err(at("reading database", path))
}

/// The schema version of an open database (`PRAGMA user_version`).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Creates the schema in an empty database, or migrates an older one, one
/// version per transaction. A database newer than this program is refused.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version = user_version(conn, path)?;
    if version > SCHEMA_VERSION {
        return Err(Error::TooNew { found: version });
    }
    if version == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(at("applying the schema to", path))?;
        return Ok(());
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
        let to = i + 2;
        tracing::info!("migrating {} to schema version {to}", path.display());
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF; BEGIN; {m}; PRAGMA user_version = {to}; COMMIT;"
        ))
        .map_err(|source| {
            let _ = conn.execute_batch("ROLLBACK");
            Error::Sqlite {
                what: "migrating to the next schema version",
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// A host's row as the collector left it: who it is, whether it ran, and
/// dom0's observation of its probe's last run.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub id: i64,
    pub ident: String,
    pub uuid: Option<String>,
    pub name: String,
    pub last_seen: i64,
    pub domid: Option<u32>,
    pub state: String,
    pub config: bool,
    pub run: Option<SeenRun>,
    /// What the hypervisor said of it last cycle.
    pub xen: Option<XenSeen>,
}

/// What the hypervisor said of a domain in a cycle: its state (the word
/// of the SNMP line format's `G` record) since when, and its CPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct XenSeen {
    pub domid: u32,
    pub state: String,
    /// When dom0 first saw it in that state (dom0's clock).
    pub since: i64,
    pub cpu_time_s: f64,
    /// When the CPU time was read.
    pub cpu_at: i64,
}

/// A probe run as dom0 saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenRun {
    pub seq: u64,
    /// A digest of the run's content (see host-collector's freshness rules).
    pub digest: u64,
    /// The time the run claims (the guest's clock).
    pub time: i64,
    /// When dom0 first saw this run (dom0's clock).
    pub seen: i64,
}

/// Every host row, for the collector to match this cycle's domains to.
pub fn hosts(conn: &Connection) -> Result<Vec<HostRow>> {
    let mut st = conn.prepare(
        "SELECT id, ident, uuid, name, last_seen, domid, state, config,
                run_seq, run_digest, run_time, run_seen,
                xen_state, xen_since, cpu_time_ms, cpu_at FROM host ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        let seq: Option<i64> = r.get(8)?;
        let digest: Option<i64> = r.get(9)?;
        let time: Option<i64> = r.get(10)?;
        let seen: Option<i64> = r.get(11)?;
        let domid: Option<u32> = r.get(5)?;
        let xen = match (
            domid,
            r.get::<_, Option<String>>(12)?,
            r.get(13)?,
            r.get::<_, Option<i64>>(14)?,
            r.get(15)?,
        ) {
            (Some(domid), Some(state), Some(since), Some(cpu), Some(cpu_at)) => Some(XenSeen {
                domid,
                state,
                since,
                cpu_time_s: from_stored(cpu),
                cpu_at,
            }),
            _ => None,
        };
        Ok(HostRow {
            id: r.get(0)?,
            ident: r.get(1)?,
            uuid: r.get(2)?,
            name: r.get(3)?,
            last_seen: r.get(4)?,
            domid: r.get(5)?,
            state: r.get(6)?,
            config: r.get::<_, i64>(7)? != 0,
            run: match (seq, digest, time, seen) {
                (Some(seq), Some(digest), Some(time), Some(seen)) => Some(SeenRun {
                    seq: seq as u64,
                    digest: digest as u64,
                    time,
                    seen,
                }),
                _ => None,
            },
            xen,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

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

/// A value as stored: times 1000, as an integer.
pub fn to_stored(v: f64) -> i64 {
    (v * 1000.0).round().clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

pub fn from_stored(v: i64) -> f64 {
    v as f64 / 1000.0
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
    tx.execute_batch("SAVEPOINT host")?;
    match write_host(tx, cycle_id, now, h, metrics) {
        Ok(()) => {
            tx.execute_batch("RELEASE host")?;
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
    for (kind, target, name, value) in &h.figures {
        let metric_id = metrics.get(tx, kind, target, name)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO sample (host_id, metric_id, cycle_id, v) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![host_id, metric_id, cycle_id, to_stored(*value)])?;
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

/// Updates (or creates) a host's row: identity, name, state, and the run
/// dom0 saw. `last_seen` moves only while the host runs here.
fn upsert_host(tx: &Transaction<'_>, h: &HostRecord, now: i64) -> Result<i64> {
    let id = match existing_host_id(tx, h)? {
        Some(id) => id,
        None => insert_host(tx, h, now)?,
    };
    let running = h.state == "running";
    let latest = (!h.latest.is_empty()).then(|| {
        h.latest
            .iter()
            .map(CheckFigures::print)
            .collect::<Vec<_>>()
            .join("\n")
    });
    tx.prepare_cached(
        "UPDATE host SET ident = ?2, uuid = coalesce(?3, uuid), name = ?4, state = ?5,
                last_seen = CASE WHEN ?6 THEN ?7 ELSE last_seen END,
                domid = CASE WHEN ?6 THEN ?8 ELSE domid END,
                config = CASE WHEN ?6 THEN ?9 ELSE config END,
                figures = ?10
          WHERE id = ?1",
    )?
    .execute(params![
        id, h.ident, h.uuid, h.name, h.state, running, now, h.domid, h.config, latest
    ])?;
    if let Some(x) = &h.xen {
        tx.prepare_cached(
            "UPDATE host SET xen_state = ?2, xen_since = ?3, cpu_time_ms = ?4, cpu_at = ?5 WHERE id = ?1",
        )?
        .execute(params![id, x.state, x.since, to_stored(x.cpu_time_s), x.cpu_at])?;
    } else if running {
        tx.prepare_cached(
            "UPDATE host SET xen_state = NULL, xen_since = NULL, cpu_time_ms = NULL, cpu_at = NULL WHERE id = ?1",
        )?
        .execute(params![id])?;
    }
    if let Some(r) = h.run {
        tx.prepare_cached(
            "UPDATE host SET run_seq = ?2, run_digest = ?3, run_time = ?4, run_seen = ?5 WHERE id = ?1",
        )?
        .execute(params![id, r.seq as i64, r.digest as i64, r.time, r.seen])?;
    }
    Ok(id)
}

fn event(tx: &Transaction<'_>, time: i64, host_id: i64, kind: &str, detail: &str) -> Result<()> {
    tx.prepare_cached("INSERT INTO event (time, host_id, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![time, host_id, kind, detail])?;
    Ok(())
}

/// Finds the one host `spec` names: an ident (`uuid:...`), a bare UUID, a
/// label shown in the latest cycle (`web01#7`), or a name. A name several
/// hosts had is refused with the candidates, unless exactly one of them is
/// running.
pub fn find_host(conn: &Connection, spec: &str) -> Result<HostRow> {
    let all = hosts(conn)?;
    let lower = spec.to_ascii_lowercase();
    if let Some(h) = all.iter().find(|h| {
        h.ident == spec
            || h.uuid.as_deref() == Some(lower.as_str())
            || (spec == DOM0_NAME && h.ident == DOM0_IDENT)
    }) {
        return Ok(h.clone());
    }
    let labelled: Option<i64> = conn
        .query_row(
            "SELECT s.host_id FROM status s WHERE s.label = ?1 AND s.cycle_id = (SELECT max(id) FROM cycle)",
            [spec],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(h) = labelled.and_then(|id| all.iter().find(|h| h.id == id)) {
        return Ok(h.clone());
    }
    let named: Vec<&HostRow> = all
        .iter()
        .filter(|h| h.name == spec && h.ident != DOM0_IDENT)
        .collect();
    let running: Vec<&&HostRow> = named.iter().filter(|h| h.state == "running").collect();
    match (named.len(), running.len()) {
        (0, _) => Err(Error::UnknownHost(spec.to_string())),
        (1, _) => Ok(named[0].clone()),
        (_, 1) => Ok((*running[0]).clone()),
        _ => Err(Error::Ambiguous {
            name: spec.to_string(),
            candidates: named.iter().map(|h| h.ident.clone()).collect(),
        }),
    }
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
#[derive(Default)]
struct MetricIds {
    ids: HashMap<(String, String, String), i64>,
    added: Vec<(String, String, String)>,
}

impl MetricIds {
    fn get(&mut self, tx: &Transaction<'_>, kind: &str, target: &str, name: &str) -> Result<i64> {
        let key = (kind.to_string(), target.to_string(), name.to_string());
        if let Some(id) = self.ids.get(&key) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO metric (kind, target, name) VALUES (?1, ?2, ?3)")?
            .execute(params![kind, target, name])?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM metric WHERE kind = ?1 AND target = ?2 AND name = ?3")?
            .query_row(params![kind, target, name], |r| r.get(0))?;
        self.added.push(key.clone());
        self.ids.insert(key, id);
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

/// Rolls raw figures older than the raw retention into hourly rows, hourly
/// older than theirs into daily rows, and drops what is past all retention.
/// Cut-offs are aligned to the period, so an hour or a day is rolled up
/// whole, and the work is done once per hour (raw) or day (hourly), not on
/// every cycle.
pub fn apply_retention(tx: &Transaction<'_>, now: i64, keep: Keep) -> Result<()> {
    let raw_cut = (now - keep.raw_secs).div_euclid(3600) * 3600;
    let raw_done = meta_get(tx, "raw_rolled_until")?.unwrap_or(i64::MIN);
    if raw_cut > raw_done {
        roll_up_raw(tx, raw_cut)?;
        meta_set(tx, "raw_rolled_until", raw_cut)?;
    }
    let hourly_cut = (now - keep.hourly_secs).div_euclid(86400) * 86400;
    let hourly_done = meta_get(tx, "hourly_rolled_until")?.unwrap_or(i64::MIN);
    if hourly_cut > hourly_done {
        roll_up_hourly(tx, hourly_cut, now - keep.daily_secs)?;
        tx.execute("DELETE FROM event WHERE time < ?1", [now - keep.daily_secs])?;
        meta_set(tx, "hourly_rolled_until", hourly_cut)?;
    }
    Ok(())
}

/// Folds a rollup row into one that exists for the same period: counts
/// add up, the average is weighted by them.
const MERGE_ROLLUP: &str = "ON CONFLICT (host_id, metric_id, period, start) DO UPDATE SET
    vavg = CAST(round((rollup.vavg * rollup.n + excluded.vavg * excluded.n) * 1.0 / (rollup.n + excluded.n)) AS INTEGER),
    n = rollup.n + excluded.n,
    vmin = min(rollup.vmin, excluded.vmin),
    vmax = max(rollup.vmax, excluded.vmax)";

fn roll_up_raw(tx: &Transaction<'_>, cut: i64) -> Result<()> {
    let last_old_cycle: Option<i64> =
        tx.query_row("SELECT max(id) FROM cycle WHERE time < ?1", [cut], |r| {
            r.get(0)
        })?;
    let Some(last) = last_old_cycle else {
        return Ok(());
    };
    tx.execute(
        &format!(
            "INSERT INTO rollup (host_id, metric_id, period, start, n, vmin, vavg, vmax)
             SELECT s.host_id, s.metric_id, 3600, (c.time / 3600) * 3600, count(*), min(s.v),
                    CAST(round(avg(s.v)) AS INTEGER), max(s.v)
               FROM sample s JOIN cycle c ON c.id = s.cycle_id
              WHERE s.cycle_id <= ?1
              GROUP BY s.host_id, s.metric_id, (c.time / 3600) * 3600 {MERGE_ROLLUP}"
        ),
        [last],
    )?;
    // One key range per (host, metric): sample has no index by cycle.
    let pairs = host_metric_pairs(tx)?;
    let mut del = tx.prepare_cached(
        "DELETE FROM sample WHERE host_id = ?1 AND metric_id = ?2 AND cycle_id <= ?3",
    )?;
    for (h, m) in pairs {
        del.execute(params![h, m, last])?;
    }
    tx.execute("DELETE FROM finding WHERE cycle_id <= ?1", [last])?;
    tx.execute("DELETE FROM status WHERE cycle_id <= ?1", [last])?;
    tx.execute("DELETE FROM cycle WHERE id <= ?1", [last])?;
    Ok(())
}

fn roll_up_hourly(tx: &Transaction<'_>, cut: i64, daily_cut: i64) -> Result<()> {
    let pairs = host_metric_pairs(tx)?;
    let mut roll = tx.prepare_cached(&format!(
        "INSERT INTO rollup (host_id, metric_id, period, start, n, vmin, vavg, vmax)
         SELECT host_id, metric_id, 86400, (start / 86400) * 86400, sum(n), min(vmin),
                CAST(round(sum(vavg * n) * 1.0 / sum(n)) AS INTEGER), max(vmax)
           FROM rollup WHERE host_id = ?1 AND metric_id = ?2 AND period = 3600 AND start < ?3
          GROUP BY (start / 86400) * 86400 {MERGE_ROLLUP}"
    ))?;
    let mut del = tx.prepare_cached(
        "DELETE FROM rollup WHERE host_id = ?1 AND metric_id = ?2
            AND ((period = 3600 AND start < ?3) OR (period = 86400 AND start < ?4))",
    )?;
    for (h, m) in pairs {
        roll.execute(params![h, m, cut])?;
        del.execute(params![h, m, cut, daily_cut])?;
    }
    Ok(())
}

fn host_metric_pairs(tx: &Transaction<'_>) -> Result<Vec<(i64, i64)>> {
    let mut st = tx.prepare_cached("SELECT h.id, m.id FROM host h CROSS JOIN metric m")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn meta_get(tx: &Transaction<'_>, key: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn meta_set(tx: &Transaction<'_>, key: &str, value: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The latest cycle, as snmp-extend and `status` show it.
#[derive(Debug, Clone)]
pub struct Latest {
    pub cycle_id: i64,
    pub time: i64,
    pub dom0: String,
    pub error: Option<String>,
    /// Hosts the cycle could not store whole (one line each).
    pub problems: Vec<String>,
    pub hosts: Vec<LatestHost>,
}

#[derive(Debug, Clone)]
pub struct LatestHost {
    /// The label shown (unique in the cycle).
    pub name: String,
    pub uuid: Option<String>,
    pub domid: Option<u32>,
    pub probe: String,
    pub probe_time: Option<i64>,
    /// When dom0 first saw the probe's latest run.
    pub seen_time: Option<i64>,
    pub status: Status,
    pub message: String,
    pub findings: Vec<LatestFinding>,
    /// The hypervisor's word for the domain (`running`, `paused`,
    /// `crashed`...), when it was known.
    pub domain_state: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LatestFinding {
    pub check_id: String,
    pub kind: String,
    pub target: String,
    pub status: Status,
    pub message: String,
}

/// The latest cycle with every host's summary and findings; `None` when
/// no cycle was ever recorded.
pub fn latest(conn: &Connection) -> Result<Option<Latest>> {
    type CycleRow = (i64, i64, String, Option<String>, Option<String>);
    let cycle: Option<CycleRow> = conn
        .query_row(
            "SELECT id, time, dom0, error, problems FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((cycle_id, time, dom0, error, problems)) = cycle else {
        return Ok(None);
    };
    let mut hosts = Vec::new();
    let mut by_host: HashMap<i64, usize> = HashMap::new();
    // A schema 3 database (until the collector migrates it) has no
    // domain states.
    let domain_state = if schema_version(conn)? >= DOMAIN_STATE_SCHEMA {
        "s.domain_state"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT h.id, s.label, h.uuid, s.domid, s.probe, s.probe_time, s.seen_time, s.status, s.message, {domain_state}
           FROM status s JOIN host h ON h.id = s.host_id
          WHERE s.cycle_id = ?1 ORDER BY (h.ident != 'dom0'), s.label"
    ))?;
    let rows = stmt.query_map([cycle_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            LatestHost {
                name: r.get(1)?,
                uuid: r.get(2)?,
                domid: r.get(3)?,
                probe: r.get(4)?,
                probe_time: r.get(5)?,
                seen_time: r.get(6)?,
                status: parse_status(&r.get::<_, String>(7)?),
                message: r.get(8)?,
                findings: Vec::new(),
                domain_state: r.get(9)?,
            },
        ))
    })?;
    for row in rows {
        let (id, h) = row?;
        by_host.insert(id, hosts.len());
        hosts.push(h);
    }
    let mut stmt = conn.prepare(
        "SELECT host_id, check_id, kind, target, status, message FROM finding WHERE cycle_id = ?1
          ORDER BY host_id, check_id",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            LatestFinding {
                check_id: r.get(1)?,
                kind: r.get(2)?,
                target: r.get(3)?,
                status: parse_status(&r.get::<_, String>(4)?),
                message: r.get(5)?,
            },
        ))
    })?;
    for row in rows {
        let (host_id, f) = row?;
        if let Some(&i) = by_host.get(&host_id) {
            hosts[i].findings.push(f);
        }
    }
    Ok(Some(Latest {
        cycle_id,
        time,
        dom0,
        error,
        problems: problems
            .map(|p| p.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        hosts,
    }))
}

/// The latest cycle's figures, as snmp-extend's `figures` serves them.
#[derive(Debug, Clone)]
pub struct LatestFigures {
    pub time: i64,
    pub dom0: String,
    /// Each host shown in the cycle whose run was current: its label and
    /// its checks' figures, or why the stored figures cannot be read.
    pub hosts: Vec<(String, std::result::Result<Vec<CheckFigures>, String>)>,
}

/// Every host's latest figures, for the hosts of the latest cycle; `None`
/// when no cycle was ever recorded.
pub fn latest_figures(conn: &Connection) -> Result<Option<LatestFigures>> {
    let version = schema_version(conn)?;
    if version < FIGURES_SCHEMA {
        return Err(Error::Refused(format!(
            "the database is at schema version {version}, which keeps no figures: they appear once host-collector's next cycle has migrated it"
        )));
    }
    let cycle: Option<(i64, i64, String)> = conn
        .query_row(
            "SELECT id, time, dom0 FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((cycle_id, time, dom0)) = cycle else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT s.label, h.figures FROM status s JOIN host h ON h.id = s.host_id
          WHERE s.cycle_id = ?1 AND h.figures IS NOT NULL ORDER BY (h.ident != 'dom0'), s.label",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut hosts = Vec::new();
    for row in rows {
        let (label, text) = row?;
        hosts.push((label, parse_figures(&text)));
    }
    Ok(Some(LatestFigures { time, dom0, hosts }))
}

/// A host's latest figures and thresholds (empty when its last run was
/// not current).
pub fn host_figures(conn: &Connection, host_id: i64) -> Result<Vec<CheckFigures>> {
    if schema_version(conn)? < FIGURES_SCHEMA {
        return Ok(Vec::new());
    }
    let text: Option<String> =
        conn.query_row("SELECT figures FROM host WHERE id = ?1", [host_id], |r| {
            r.get(0)
        })?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => parse_figures(&t).map_err(Error::Refused),
    }
}

fn parse_figures(text: &str) -> std::result::Result<Vec<CheckFigures>, String> {
    text.lines()
        .map(|l| CheckFigures::parse(l).map_err(|e| format!("stored figures unreadable: {e}")))
        .collect()
}

/// A status read back from the database; anything unexpected is unknown.
fn parse_status(s: &str) -> Status {
    s.parse().unwrap_or(Status::Unknown)
}

/// One row of a host's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub time: i64,
    /// 'raw', 'hourly' or 'daily'.
    pub resolution: &'static str,
    pub kind: String,
    pub target: String,
    pub metric: String,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

/// A host's figures since `since`, optionally of one check kind: raw rows
/// where they are still kept, rolled-up rows before that. `host` is found
/// as [`find_host`] does (a UUID, a label or a name).
pub fn history(
    conn: &Connection,
    host: &str,
    since: i64,
    kind: Option<&str>,
) -> Result<Vec<HistoryRow>> {
    let host_id = find_host(conn, host)?.id;
    let mut out = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT r.start, r.period, m.kind, m.target, m.name, r.vavg, r.vmin, r.vmax
           FROM rollup r JOIN metric m ON m.id = r.metric_id
          WHERE r.host_id = ?1 AND r.start >= ?2 AND (?3 IS NULL OR m.kind = ?3)
          ORDER BY r.start, m.kind, m.target, m.name",
    )?;
    let rows = stmt.query_map(params![host_id, since - 86400, kind], |r| {
        Ok(HistoryRow {
            time: r.get(0)?,
            resolution: if r.get::<_, i64>(1)? == 3600 {
                "hourly"
            } else {
                "daily"
            },
            kind: r.get(2)?,
            target: r.get(3)?,
            metric: r.get(4)?,
            value: from_stored(r.get(5)?),
            min: from_stored(r.get(6)?),
            max: from_stored(r.get(7)?),
        })
    })?;
    for r in rows {
        let r = r?;
        if r.time
            + if r.resolution == "hourly" {
                3600
            } else {
                86400
            }
            > since
        {
            out.push(r);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT c.time, m.kind, m.target, m.name, s.v
           FROM sample s JOIN cycle c ON c.id = s.cycle_id JOIN metric m ON m.id = s.metric_id
          WHERE s.host_id = ?1 AND c.time >= ?2 AND (?3 IS NULL OR m.kind = ?3)
          ORDER BY c.time, m.kind, m.target, m.name",
    )?;
    let rows = stmt.query_map(params![host_id, since, kind], |r| {
        let v = from_stored(r.get(4)?);
        Ok(HistoryRow {
            time: r.get(0)?,
            resolution: "raw",
            kind: r.get(1)?,
            target: r.get(2)?,
            metric: r.get(3)?,
            value: v,
            min: v,
            max: v,
        })
    })?;
    for r in rows {
        out.push(r?);
    }
    out.sort_by(|a, b| {
        (a.time, &a.kind, &a.target, &a.metric).cmp(&(b.time, &b.kind, &b.target, &b.metric))
    });
    Ok(out)
}
