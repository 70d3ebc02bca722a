//! The poller's database (`site-schema.sql`): the last state of the whole
//! site, since when each problem stands, and every change of state. Written
//! by `poller serve`, one cycle per transaction; read by every other mode of
//! the poller inside one read transaction, so a reader never sees half a
//! cycle (WAL: readers and the writer do not block each other).
//!
//! The store knows nothing of the poller's types: it keeps what each dom0
//! served, as served (the SNMP line format, xsmon-proto's contract), and a
//! reader parses it as a live poll would; the tables it indexes (guests,
//! problems, transitions) are its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};

use crate::{at, Error, Result};

mod read;
mod write;

pub use read::*;
pub use write::*;

/// The schema, current version, for a new database.
pub const SCHEMA: &str = include_str!("../../../site-schema.sql");
pub const SCHEMA_VERSION: i64 = 1;
/// The oldest schema a reader accepts (a reader keeps reading the old
/// version while the service it shares the host with is upgraded).
pub const OLDEST_READ: i64 = 1;

/// Migrations from version N to N+1 (the first takes 1 to 2). None yet.
const MIGRATIONS: &[&str] = &[];

/// The last cycle of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub time: i64,
    pub elapsed_ms: i64,
    pub interval_secs: i64,
    pub stale_after_secs: i64,
    /// JSON (the poller's): discovery's problems.
    pub problems: String,
}

/// A dom0 of the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dom0Row {
    pub name: String,
    pub target: String,
    pub error: Option<String>,
    pub elapsed_ms: i64,
    pub extend_result: Option<i64>,
    pub served_time: Option<i64>,
}

/// What a dom0 served, as served: its state's lines and its figures' (or
/// why there are none; `None`: never asked).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Served {
    pub state: String,
    pub figures: Option<std::result::Result<String, String>>,
}

/// A guest a dom0 reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRow {
    pub base: String,
    pub dom0: String,
    pub name: String,
    pub status: String,
    pub probe: String,
}

/// A problem that stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub dom0: String,
    pub host: String,
    pub check: String,
    pub severity: String,
    pub message: String,
    pub since: i64,
}

impl Problem {
    /// What identifies a problem from one cycle to the next.
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.dom0, &self.host, &self.check)
    }
}

/// A change of a problem's state (`old` or `new` is `ok` when it appeared
/// or cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub time: i64,
    pub dom0: String,
    pub host: String,
    pub check: String,
    pub old: String,
    pub new: String,
    pub message: String,
}

/// How long the transition log is kept: by age, and at most this many
/// rows (the oldest go first), so a flapping site cannot fill a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub secs: i64,
    pub max_transitions: i64,
}

/// The site's database, opened by the service (read-write) or a reader.
pub struct SiteDb {
    conn: Connection,
    path: PathBuf,
}

impl SiteDb {
    /// Opens (creating if needed) the database for the service, in WAL
    /// mode, and brings its schema up to date.
    pub fn open_rw(path: &Path) -> Result<SiteDb> {
        let conn = crate::schema::open_wal(path)?;
        // Readers are other users (Nagios's, an admin's): they cannot make
        // the -wal and -shm files in a directory that is not theirs, so the
        // files stay when the service stops (SQLite's persistent WAL).
        crate::schema::keep_wal_files(&conn);
        // ...but not at the size of the biggest cycle (the first, which
        // writes every dom0's lines): cut back after each checkpoint.
        conn.pragma_update(None, "journal_size_limit", 8 << 20)
            .map_err(at("setting up database", path))?;
        migrate(&conn, path)?;
        Ok(SiteDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the database read-only. `None` when there is none: no service
    /// keeps the site's state.
    pub fn open_ro(path: &Path) -> Result<Option<SiteDb>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(at("opening database read-only", path))?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(at("opening database", path))?;
        let version = version(&conn, path)?;
        if !(OLDEST_READ..=SCHEMA_VERSION).contains(&version) {
            return Err(Error::Refused(format!(
                "site database {} has schema version {version}, this poller reads versions {OLDEST_READ} to {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(Some(SiteDb {
            conn,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A consistent view of one cycle: every read inside it sees the same
    /// committed cycle, whatever the service writes meanwhile.
    pub fn snapshot(&mut self) -> Result<Snapshot<'_>> {
        let tx = self
            .conn
            .transaction()
            .map_err(at("reading database", &self.path))?;
        Ok(Snapshot { tx })
    }
}

/// A read transaction over one cycle (see `SiteDb::snapshot`).
pub struct Snapshot<'c> {
    tx: Transaction<'c>,
}

fn version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(at("reading database", path))
}

/// Creates the schema in an empty database, or migrates an older one, one
/// version per transaction. A database newer than this program is refused.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let v = version(conn, path)?;
    if v > SCHEMA_VERSION {
        return Err(Error::Refused(format!(
            "site database {} has schema version {v}, newer than this poller's ({SCHEMA_VERSION})",
            path.display()
        )));
    }
    if v == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(at("applying the site schema to", path))?;
        return Ok(());
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip((v - 1) as usize) {
        let to = i + 2;
        tracing::info!("migrating {} to site schema version {to}", path.display());
        conn.execute_batch(&format!("BEGIN; {m}; PRAGMA user_version = {to}; COMMIT;"))
            .map_err(|source| {
                let _ = conn.execute_batch("ROLLBACK");
                Error::Sqlite {
                    what: "migrating to the next site schema version",
                    path: path.to_path_buf(),
                    source,
                }
            })?;
    }
    Ok(())
}

/// The name without the `#domid` a dom0 adds when several of its domains
/// share a name.
pub fn base_name(label: &str) -> &str {
    label.split_once('#').map_or(label, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(time: i64) -> Cycle {
        Cycle {
            time,
            elapsed_ms: 5,
            interval_secs: 60,
            stale_after_secs: 120,
            problems: "[]".into(),
        }
    }

    fn row(name: &str, error: Option<&str>) -> Dom0Row {
        Dom0Row {
            name: name.into(),
            target: format!("{name}:161"),
            error: error.map(String::from),
            elapsed_ms: 3,
            extend_result: Some(0),
            served_time: Some(100),
        }
    }

    fn guest(dom0: &str, name: &str) -> GuestRow {
        GuestRow {
            base: base_name(name).into(),
            dom0: dom0.into(),
            name: name.into(),
            status: "ok".into(),
            probe: "fresh".into(),
        }
    }

    fn transition(time: i64, host: &str) -> Transition {
        Transition {
            time,
            dom0: "xen01".into(),
            host: host.into(),
            check: "disk1".into(),
            old: "ok".into(),
            new: "error".into(),
            message: "full".into(),
        }
    }

    #[test]
    fn a_cycle_writes_what_changed_and_a_scoped_read_loads_its_dom0s_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poller.db");
        let mut db = SiteDb::open_rw(&path).unwrap();
        let keep = Keep {
            secs: 86400,
            max_transitions: 2,
        };
        let first = [
            ServedChange {
                name: "xen01".into(),
                state: Some(("xen01 state".into(), vec![guest("xen01", "web01#7")])),
                figures: Some(Ok("xen01 figures".into())),
            },
            ServedChange {
                name: "xen02".into(),
                state: Some(("xen02 state".into(), vec![guest("xen02", "db01")])),
                figures: Some(Err("timeout".into())),
            },
        ];
        let dom0s = [row("xen01", None), row("xen02", None)];
        let t1 = [transition(100, "web01#7"), transition(100, "other")];
        let c1 = cycle(100);
        db.write_cycle(&write(&c1, &dom0s, &first, &t1), keep)
            .unwrap();
        // The next cycle: xen02 unreachable, nothing served changed.
        let c2 = cycle(160);
        let dom0s2 = [row("xen01", None), row("xen02", Some("unreachable"))];
        let t2 = [transition(160, "web01#7")];
        db.write_cycle(&write(&c2, &dom0s2, &[], &t2), keep)
            .unwrap();

        let mut ro = SiteDb::open_ro(&path).unwrap().unwrap();
        let snap = ro.snapshot().unwrap();
        assert_eq!(snap.cycle().unwrap().unwrap(), c2);
        let (all, others) = snap.dom0s(Scope::Guest("web01")).unwrap();
        assert_eq!((all.len(), others), (2, 0));
        let (x1, s1) = &all[0];
        assert_eq!((x1.name.as_str(), x1.error.as_deref()), ("xen01", None));
        assert_eq!(
            s1.as_ref().unwrap(),
            &Served {
                state: "xen01 state".into(),
                figures: Some(Ok("xen01 figures".into())),
            },
            "kept from the first cycle"
        );
        let (x2, s2) = &all[1];
        assert_eq!(x2.error.as_deref(), Some("unreachable"));
        assert!(s2.is_none(), "xen02 does not run web01, and failed: a stub");
        let (by_label, _) = snap.dom0s(Scope::Guest("web01#7")).unwrap();
        assert!(by_label[0].1.is_some());
        let (db01, _) = snap.dom0s(Scope::Guest("db01")).unwrap();
        assert_eq!(
            db01[0].1.as_ref().unwrap().figures,
            Some(Err("timeout".into())),
            "xen02, failed now, still has the guest in its index: in full"
        );
        let (one, others) = snap.dom0s(Scope::Dom0("xen01")).unwrap();
        assert_eq!((one.len(), others), (1, 0));
        // The log keeps the newest two; a guest's history by its name.
        let h = snap.transitions(Some("web01"), i64::MIN).unwrap();
        assert_eq!(h.iter().map(|t| t.time).collect::<Vec<_>>(), [160]);
        assert_eq!(snap.transitions(None, i64::MIN).unwrap().len(), 2);
        assert!(snap.knows("xen02").unwrap() && snap.knows("web01").unwrap());
        assert!(!snap.knows("nosuch").unwrap());
    }

    #[test]
    fn the_log_is_cut_by_age_then_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = SiteDb::open_rw(&dir.path().join("poller.db")).unwrap();
        let keep = Keep {
            secs: 1000,
            max_transitions: 3,
        };
        let old = [transition(100, "old01")];
        db.write_cycle(&write(&cycle(100), &[], &[], &old), keep)
            .unwrap();
        // 1,100 s later: the first is past its age; of the four new ones,
        // the three newest stay.
        let new: Vec<Transition> = (0..4).map(|i| transition(1200, &format!("g{i}"))).collect();
        db.write_cycle(&write(&cycle(1200), &[], &[], &new), keep)
            .unwrap();
        let snap = db.snapshot().unwrap();
        let hosts: Vec<String> = snap
            .transitions(None, i64::MIN)
            .unwrap()
            .into_iter()
            .map(|t| t.host)
            .collect();
        assert_eq!(hosts, ["g1", "g2", "g3"]);
    }

    fn write<'a>(
        cycle: &'a Cycle,
        dom0s: &'a [Dom0Row],
        changed: &'a [ServedChange],
        transitions: &'a [Transition],
    ) -> CycleWrite<'a> {
        CycleWrite {
            cycle,
            dom0s,
            changed,
            homes: None,
            problems: &[],
            transitions,
        }
    }
}
