//! Reading: the hosts the collector knows, finding one by name or UUID,
//! the latest cycle (snmp-extend, `status`), the latest figures, history.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::Status;

use crate::schema::schema_version;
use crate::*;

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
    /// The domain `run` was read from (`None` in rows written before
    /// schema 5).
    pub run_domid: Option<u32>,
    /// The guest kernel's boot id `run` carried (key layout 5; `None`
    /// before it, or in rows written before schema 6).
    pub run_boot: Option<String>,
    /// What the hypervisor said of it last cycle.
    pub xen: Option<XenSeen>,
    /// New domains of this VM taken for reboots (see `schema.sql`).
    pub reboots: u64,
    /// When the toolstack created domain `domid` (schema 9; `None` before,
    /// or when it could not be read).
    pub started: Option<f64>,
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
    /// More counters read then (per-vCPU CPU time, vif drops), by name.
    pub counters: BTreeMap<String, f64>,
}

impl XenSeen {
    /// `counters` as stored: `name=value` pairs separated by spaces.
    pub fn print_counters(&self) -> String {
        self.counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The stored form back; a pair that does not parse is dropped (its
    /// rate is then missing for one cycle).
    pub fn parse_counters(text: &str) -> BTreeMap<String, f64> {
        text.split(' ')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                let v: f64 = v.parse().ok()?;
                (!k.is_empty() && v.is_finite()).then(|| (k.to_string(), v))
            })
            .collect()
    }
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
/// The restarts of each VM (by host row id) since `since`, oldest first
/// (none from a database older than schema 10).
pub fn restarts_since(conn: &Connection, since: i64) -> Result<HashMap<i64, Vec<Restart>>> {
    let mut out: HashMap<i64, Vec<Restart>> = HashMap::new();
    if schema_version(conn)? < RESTART_SCHEMA {
        return Ok(out);
    }
    let mut st = conn.prepare_cached(
        "SELECT host_id, time, old_domid, new_domid, reason, action
           FROM restart WHERE time >= ?1 ORDER BY time, new_domid",
    )?;
    let rows = st.query_map([since], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Restart {
                time: r.get(1)?,
                old_domid: r.get(2)?,
                new_domid: r.get(3)?,
                reason: r.get(4)?,
                action: r.get(5)?,
            },
        ))
    })?;
    for row in rows {
        let (host, restart) = row?;
        out.entry(host).or_default().push(restart);
    }
    Ok(out)
}

/// A name a VM had before its current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormerName {
    pub host_id: i64,
    pub name: String,
    /// When dom0 first saw the VM under a later name.
    pub until: i64,
}

/// Every former name of every VM (none before schema 10).
pub fn former_names(conn: &Connection) -> Result<Vec<FormerName>> {
    if schema_version(conn)? < RESTART_SCHEMA {
        return Ok(Vec::new());
    }
    let mut st =
        conn.prepare_cached("SELECT host_id, name, until FROM former_name ORDER BY until")?;
    let rows = st.query_map([], |r| {
        Ok(FormerName {
            host_id: r.get(0)?,
            name: r.get(1)?,
            until: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn hosts(conn: &Connection) -> Result<Vec<HostRow>> {
    // A read-only reader (`status`, `history`) may meet a database the
    // collector has not migrated yet: the columns it lacks read as unset.
    let version = schema_version(conn)?;
    let xen = if version >= DOMAIN_STATE_SCHEMA {
        "xen_state, xen_since, cpu_time_ms, cpu_at"
    } else {
        "NULL, NULL, NULL, NULL"
    };
    let since_5 = if version >= COUNTERS_SCHEMA {
        "xen_counters, reboots, run_domid"
    } else {
        "NULL, 0, NULL"
    };
    let since_6 = if version >= BOOT_SCHEMA {
        "run_boot"
    } else {
        "NULL"
    };
    let since_9 = if version >= STARTED_SCHEMA {
        "started"
    } else {
        "NULL"
    };
    let mut st = conn.prepare(&format!(
        "SELECT id, ident, uuid, name, last_seen, domid, state, config,
                run_seq, run_digest, run_time, run_seen, {xen}, {since_5}, {since_6}, {since_9}
           FROM host ORDER BY id"
    ))?;
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
                counters: XenSeen::parse_counters(
                    r.get::<_, Option<String>>(16)?.as_deref().unwrap_or(""),
                ),
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
            run_domid: r.get(18)?,
            run_boot: r.get(19)?,
            xen,
            reboots: r.get::<_, i64>(17)?.max(0) as u64,
            started: r.get(20)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        // The cycles in the range first (cycle_time), then each one's
        // figures of this host: a seek per cycle in a key that starts with
        // the cycle (schema 7). On an older database not yet migrated the
        // same query still reads right, by the old key.
        "SELECT c.time, m.kind, m.target, m.name, s.v
           FROM cycle c CROSS JOIN sample s ON s.cycle_id = c.id JOIN metric m ON m.id = s.metric_id
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` and `history` run `hosts` on a read-only connection,
    /// possibly before the collector has migrated the database: a
    /// version 4 host table (no xen_counters, reboots, run_domid) still
    /// reads, and the current one reads its new columns.
    #[test]
    fn hosts_reads_a_database_not_yet_migrated_to_5() {
        let v4 = rusqlite::Connection::open_in_memory().unwrap();
        v4.execute_batch(
            "CREATE TABLE host (id INTEGER PRIMARY KEY, ident TEXT, uuid TEXT, name TEXT,
                 first_seen INTEGER, last_seen INTEGER, domid INTEGER, state TEXT,
                 config INTEGER NOT NULL DEFAULT 0, run_seq INTEGER, run_digest INTEGER,
                 run_time INTEGER, run_seen INTEGER, figures TEXT, xen_state TEXT,
                 xen_since INTEGER, cpu_time_ms INTEGER, cpu_at INTEGER);
             INSERT INTO host (ident, name, first_seen, last_seen, domid, state, run_seq, run_digest, run_time, run_seen)
             VALUES ('uuid:x', 'web01', 1, 2, 7, 'running', 3, 9, 2, 2);
             PRAGMA user_version = 4;",
        )
        .unwrap();
        let old = hosts(&v4).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!((old[0].run_domid, old[0].reboots), (None, 0));
        assert_eq!(old[0].run.map(|r| r.seq), Some(3));

        let dir = tempfile::tempdir().unwrap();
        let conn = crate::open_rw(&dir.path().join("h.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO host (ident, name, first_seen, last_seen, domid, state, run_seq, run_digest, run_time, run_seen, run_domid, reboots)
             VALUES ('uuid:x', 'web01', 1, 2, 7, 'running', 3, 9, 2, 2, 7, 2);",
        )
        .unwrap();
        let now = hosts(&conn).unwrap();
        assert_eq!((now[0].run_domid, now[0].reboots), (Some(7), 2));
        assert_eq!(now[0].run_boot, None);
        conn.execute_batch("UPDATE host SET run_boot = '0f1e2d3c4b5a69788796a5b4c3d2e1f0'")
            .unwrap();
        assert_eq!(
            hosts(&conn).unwrap()[0].run_boot.as_deref(),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
    }
}
