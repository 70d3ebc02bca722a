//! The history database: `schema.sql` at the top of the repository is the
//! contract; this module applies it, writes one cycle per transaction,
//! rolls old figures up, and answers the queries of `status`, `history`
//! and snmp-extend.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use xsmon_proto::cluster::Cluster;
use xsmon_proto::{CheckResult, Status};

/// The schema, version 1.
pub const SCHEMA: &str = include_str!("../../schema.sql");
pub const SCHEMA_VERSION: i64 = 1;
/// dom0's own row in `host`.
pub const DOM0_NAME: &str = "Domain-0";

/// Migrations from version N to N+1, applied in order after SCHEMA
/// created version 1. Empty while there is only version 1.
const MIGRATIONS: &[&str] = &[];

/// Opens (creating if needed) the database for writing, in WAL mode.
pub fn open_rw(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let conn =
        Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn).with_context(|| format!("applying the schema to {}", path.display()))?;
    Ok(conn)
}

/// Opens the database read-only, failing fast if it is busy (for snmpd's
/// extend, which must answer in milliseconds).
pub fn open_ro(path: &Path, busy: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening database {} read-only", path.display()))?;
    conn.busy_timeout(busy)?;
    // A reader answers one query and exits: a small page cache keeps its
    // memory low (snmpd runs it every poll).
    conn.pragma_update(None, "cache_size", -256)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .with_context(|| format!("reading database {}", path.display()))?;
    if version != SCHEMA_VERSION {
        anyhow::bail!(
            "database {} has schema version {version}, expected {SCHEMA_VERSION}",
            path.display()
        );
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA}; PRAGMA user_version = 1; COMMIT;"
        ))?;
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
            i + 2
        ))?;
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        anyhow::bail!(
            "database schema version {version} is newer than this program ({SCHEMA_VERSION})"
        );
    }
    Ok(())
}

/// One host's state in one cycle.
#[derive(Debug, Clone)]
pub struct HostRecord {
    pub name: String,
    pub domid: Option<u32>,
    /// 'fresh', 'stale', 'missing', 'invalid' or 'host' (dom0 itself).
    pub probe: &'static str,
    pub probe_time: Option<i64>,
    pub probe_seq: Option<u64>,
    pub status: Status,
    pub message: String,
    /// The checks that are not ok.
    pub findings: Vec<CheckResult>,
    /// (kind, target, name, value) figures to keep.
    pub figures: Vec<(String, String, String, f64)>,
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

/// The last time a host's probe reported a run, if ever.
pub fn last_probe_time(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT max(s.probe_time) FROM status s JOIN host h ON h.id = s.host_id
              WHERE h.name = ?1 AND s.probe IN ('fresh', 'stale')",
            [name],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// Writes a whole cycle in one transaction: either all of it is there
/// afterwards, or none of it.
pub fn write_cycle(
    conn: &mut Connection,
    c: &CycleRecord,
    cluster: &Cluster,
    keep: Keep,
) -> Result<i64> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO cycle (time, duration_ms, dom0, guests, error) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.time, c.duration_ms, c.dom0, c.hosts.len() as i64, c.error],
    )?;
    let cycle_id = tx.last_insert_rowid();
    // A cycle that could not read xenstore knows nothing about guests:
    // they are neither gone nor present.
    if c.error.is_none() {
        record_departures(&tx, c, cluster)?;
    }
    let mut metrics = MetricIds::default();
    for h in &c.hosts {
        let host_id = upsert_host(&tx, h, c.time)?;
        tx.prepare_cached(
            "INSERT INTO status (cycle_id, host_id, domid, probe, probe_time, probe_seq, status, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            cycle_id,
            host_id,
            h.domid,
            h.probe,
            h.probe_time,
            h.probe_seq.map(|s| s as i64),
            h.status.as_str(),
            h.message
        ])?;
        for f in &h.findings {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO finding (cycle_id, host_id, check_id, kind, target, status, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![cycle_id, host_id, f.id, f.kind, f.target, f.status.as_str(), f.message])?;
        }
        for (kind, target, name, value) in &h.figures {
            let metric_id = metrics.get(&tx, kind, target, name)?;
            tx.prepare_cached("INSERT OR REPLACE INTO sample (host_id, metric_id, cycle_id, v) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![host_id, metric_id, cycle_id, to_stored(*value)])?;
        }
    }
    apply_retention(&tx, c.time, keep)?;
    tx.commit()?;
    Ok(cycle_id)
}

fn upsert_host(tx: &Transaction<'_>, h: &HostRecord, now: i64) -> Result<i64> {
    let existing: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, state FROM host WHERE name = ?1")?
        .query_row([&h.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match existing {
        Some((id, state)) => {
            tx.prepare_cached(
                "UPDATE host SET last_seen = ?2, domid = ?3, state = 'running' WHERE id = ?1",
            )?
            .execute(params![id, now, h.domid])?;
            if state != "running" {
                event(
                    tx,
                    now,
                    id,
                    "back",
                    &format!("{} is running here again (was {state})", h.name),
                )?;
            }
            Ok(id)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO host (name, first_seen, last_seen, domid, state) VALUES (?1, ?2, ?2, ?3, 'running')",
            )?
            .execute(params![h.name, now, h.domid])?;
            let id = tx.last_insert_rowid();
            event(
                tx,
                now,
                id,
                "new",
                &format!("{} appeared (domain {})", h.name, opt(h.domid)),
            )?;
            Ok(id)
        }
    }
}

/// Guests that were running and are not any more: migrated when the shared
/// config directory puts them under another dom0, gone otherwise.
fn record_departures(tx: &Transaction<'_>, c: &CycleRecord, cluster: &Cluster) -> Result<()> {
    let running: Vec<(i64, String)> = tx
        .prepare("SELECT id, name FROM host WHERE state = 'running' AND name != ?1")?
        .query_map([DOM0_NAME], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, name) in running {
        if c.hosts.iter().any(|h| h.name == name) {
            continue;
        }
        let elsewhere: Vec<&str> = cluster
            .homes_of(&name)
            .into_iter()
            .filter(|d| *d != c.dom0)
            .collect();
        let (state, detail) = match elsewhere.first() {
            Some(other) => (
                "migrated",
                format!("{name} left this dom0; its config is now under {other}"),
            ),
            None => ("gone", format!("{name} is no longer running on this dom0")),
        };
        tx.execute(
            "UPDATE host SET state = ?2 WHERE id = ?1",
            params![id, state],
        )?;
        event(tx, c.time, id, state, &detail)?;
    }
    Ok(())
}

fn event(tx: &Transaction<'_>, time: i64, host_id: i64, kind: &str, detail: &str) -> Result<()> {
    tx.prepare_cached("INSERT INTO event (time, host_id, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![time, host_id, kind, detail])?;
    Ok(())
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

#[derive(Default)]
struct MetricIds(HashMap<(String, String, String), i64>);

impl MetricIds {
    fn get(&mut self, tx: &Transaction<'_>, kind: &str, target: &str, name: &str) -> Result<i64> {
        let key = (kind.to_string(), target.to_string(), name.to_string());
        if let Some(id) = self.0.get(&key) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO metric (kind, target, name) VALUES (?1, ?2, ?3)")?
            .execute(params![kind, target, name])?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM metric WHERE kind = ?1 AND target = ?2 AND name = ?3")?
            .query_row(params![kind, target, name], |r| r.get(0))?;
        self.0.insert(key, id);
        Ok(id)
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
    pub hosts: Vec<LatestHost>,
}

#[derive(Debug, Clone)]
pub struct LatestHost {
    pub name: String,
    pub domid: Option<u32>,
    pub probe: String,
    pub probe_time: Option<i64>,
    pub status: Status,
    pub message: String,
    pub findings: Vec<LatestFinding>,
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
    let cycle: Option<(i64, i64, String, Option<String>)> = conn
        .query_row(
            "SELECT id, time, dom0, error FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((cycle_id, time, dom0, error)) = cycle else {
        return Ok(None);
    };
    let mut hosts = Vec::new();
    let mut by_host: HashMap<i64, usize> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT h.id, h.name, s.domid, s.probe, s.probe_time, s.status, s.message
           FROM status s JOIN host h ON h.id = s.host_id
          WHERE s.cycle_id = ?1 ORDER BY (h.name != 'Domain-0'), h.name",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            LatestHost {
                name: r.get(1)?,
                domid: r.get(2)?,
                probe: r.get(3)?,
                probe_time: r.get(4)?,
                status: parse_status(&r.get::<_, String>(5)?),
                message: r.get(6)?,
                findings: Vec::new(),
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
        hosts,
    }))
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
/// where they are still kept, rolled-up rows before that.
pub fn history(
    conn: &Connection,
    host: &str,
    since: i64,
    kind: Option<&str>,
) -> Result<Vec<HistoryRow>> {
    let host_id: Option<i64> = conn
        .query_row("SELECT id FROM host WHERE name = ?1", [host], |r| r.get(0))
        .optional()?;
    let Some(host_id) = host_id else {
        anyhow::bail!("no history for {host:?}: not a host this collector has seen");
    };
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
