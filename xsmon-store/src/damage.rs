//! A damaged database, told apart from every other fault, and set aside.
//!
//! Damage is what SQLite calls corruption (`SQLITE_CORRUPT`: "database
//! disk image is malformed", a garbage or missing page) or a file that is
//! not a database at all (`SQLITE_NOTADB`: a wrong file in its place). A
//! full disk, a read-only filesystem, another writer's lock or a missing
//! permission are not damage: the file is fine and moving it would lose a
//! good history, so those stay errors as before.
//!
//! A damaged file is never deleted: it is renamed beside itself as
//! `NAME.damaged-YYYYMMDDTHHMMSSZ` (with its `-wal` and `-shm`, so what
//! they hold stays readable with it), and the program starts a new
//! database and goes on. The files set aside are what the programs report
//! (host-collector as a finding of dom0's, the poller as a site warning)
//! until an admin removes or moves them.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Is this error (or any error in its chain of sources) SQLite saying the
/// database is damaged?
pub fn is_damage(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = err.downcast_ref::<rusqlite::Error>() {
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A database set aside as damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub path: PathBuf,
    /// When it was set aside (Unix seconds), from its name.
    pub at: i64,
}

const MARK: &str = ".damaged-";

/// Renames the damaged database `db` (and its `-wal` and `-shm`) to
/// `db.damaged-<time>`; returns the new path. Nothing is deleted: a name
/// already taken gets a counter.
pub fn set_aside(db: &Path, now: i64) -> std::io::Result<PathBuf> {
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ");
    let base = format!("{}{MARK}{stamp}", db.display());
    let mut to = PathBuf::from(&base);
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    std::fs::rename(db, &to)?;
    for side in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{side}", db.display()));
        if from.exists() {
            std::fs::rename(&from, format!("{}{side}", to.display()))?;
        }
    }
    Ok(to)
}

/// The databases set aside beside `db`, oldest first.
pub fn kept_aside(db: &Path) -> Vec<SetAside> {
    let (Some(dir), Some(name)) = (db.parent(), db.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}{MARK}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<SetAside> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let rest = file.strip_prefix(&prefix)?;
            if rest.ends_with("-wal") || rest.ends_with("-shm") {
                return None;
            }
            let stamp = rest.get(..16)?;
            let at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
                .ok()?
                .and_utc()
                .timestamp();
            Some(SetAside {
                path: dir.join(&file),
                at,
            })
        })
        .collect();
    found.sort_by(|a, b| (a.at, &a.path).cmp(&(b.at, &b.path)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_corruption_and_a_wrong_file_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5au8; 8192]).unwrap();
        let e = rusqlite::Connection::open(&garbage)
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_err();
        assert!(is_damage(&e), "{e}");
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(!is_damage(&busy));
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(!is_damage(&full));
        let ro = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        assert!(!is_damage(&ro));
        // Found through the store's own error, as the programs see it.
        let wrapped = crate::Error::Query(e);
        assert!(is_damage(&wrapped));
    }

    #[test]
    fn a_damaged_file_is_renamed_with_its_wal_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.db");
        std::fs::write(&db, "x").unwrap();
        std::fs::write(dir.path().join("history.db-wal"), "w").unwrap();
        let at = 1_796_565_600; // 2026-12-06T14:00:00Z
        let to = set_aside(&db, at).unwrap();
        assert_eq!(to, dir.path().join("history.db.damaged-20261206T140000Z"));
        assert!(!db.exists());
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "x");
        assert!(dir
            .path()
            .join("history.db.damaged-20261206T140000Z-wal")
            .exists());
        // The same second again: a second name, nothing overwritten.
        std::fs::write(&db, "y").unwrap();
        let again = set_aside(&db, at).unwrap();
        assert_eq!(
            again,
            dir.path().join("history.db.damaged-20261206T140000Z.1")
        );
        let kept = kept_aside(&db);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept.iter().all(|k| k.at == at));
        assert!(kept_aside(&dir.path().join("other.db")).is_empty());
    }
}
