//! Opening the database: the schema applied to a new one, the numbered
//! migrations run on an older one, and the versions read-only readers accept.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::*;

/// Migrations from version N to N+1 (the first entry takes version 1 to
/// 2). Each runs in one transaction with foreign keys off, as SQLite's
/// table-rebuild procedure requires.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/v2.sql"),
    include_str!("migrations/v3.sql"),
    include_str!("migrations/v4.sql"),
    include_str!("migrations/v5.sql"),
    include_str!("migrations/v6.sql"),
    include_str!("migrations/v7.sql"),
    include_str!("migrations/v8.sql"),
    include_str!("migrations/v9.sql"),
    include_str!("migrations/v10.sql"),
];

/// Opens (creating if needed) the database for writing, in WAL mode.
pub fn open_rw(path: &Path) -> Result<Connection> {
    let conn = open_wal(path)?;
    // A cycle's writes use about twenty distinct statements, and up to
    // sixteen shapes of sample INSERT; past the default cache of 16 every
    // one of them would be compiled again for every row.
    conn.set_prepared_statement_cache_capacity(64);
    keep_wal_files(&conn);
    migrate(&conn, path)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(at("setting up database", path))?;
    Ok(conn)
}

/// Opens (creating it and its directory if needed) a database for its
/// one writer: WAL (readers never wait for it), synchronous NORMAL, temp
/// storage in memory, a busy timeout of 10 s. The history and the
/// poller's site database both open so.
pub(crate) fn open_wal(path: &Path) -> Result<Connection> {
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
        c.pragma_update(None, "synchronous", "NORMAL")?;
        // Each host is written under a savepoint: its statement journal,
        // and the rollups' sorts, stay in memory rather than in a file
        // created in /var/tmp on every cycle.
        c.pragma_update(None, "temp_store", "MEMORY")
    };
    setup(&conn).map_err(at("setting up database", path))?;
    Ok(conn)
}

/// Keeps the `-wal` and `-shm` files when the connection closes (SQLite's
/// persistent WAL): the checkpoint on close still copies every page into
/// the database, but the next cycle overwrites the WAL in place instead of
/// creating it anew, and the removal of a thousand-guest cycle's WAL
/// (megabytes freed and allocated again, some 8 ms a cycle) is not paid.
/// snmp-extend's read-only connections find both files there, readable as
/// the database is (SQLite gives them its mode and owner), which is what a
/// read-only reader of a WAL database needs. Best effort: without it, the
/// files are removed as before.
pub(crate) fn keep_wal_files(conn: &Connection) {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: the handle is this open connection's; "main" is a
    // NUL-terminated name of its database; SQLITE_FCNTL_PERSIST_WAL takes
    // a pointer to an int, which lives across the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!(rc, "SQLite's persistent WAL is not available");
    }
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

pub(crate) fn user_version(conn: &Connection, path: &Path) -> Result<i64> {
    schema_version(conn).map_err(at("reading database", path))
}

/// The schema version of an open database (`PRAGMA user_version`).
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
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
