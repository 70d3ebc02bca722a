//! xsmon's history store: `schema.sql` at the top of the repository is the
//! contract; this crate is the only code that touches it. It applies the
//! schema (and migrates older databases), writes one cycle per transaction
//! with every host isolated from the others, rolls old figures up, and
//! answers the queries of `status`, `history`, `forget` and snmp-extend.
//!
//! Used by host-collector (writes) and snmp-extend (reads), so that neither
//! program depends on the other.

use std::path::{Path, PathBuf};

use thiserror::Error;

pub mod damage;
mod read;
mod retention;
mod schema;
pub mod site;
mod write;

pub use read::*;
pub use retention::apply_retention;
pub use schema::{open_ro, open_rw};
pub use write::*;

/// The schema, current version, for a new database.
pub const SCHEMA: &str = include_str!("../../schema.sql");
pub const SCHEMA_VERSION: i64 = 10;
/// The oldest schema a read-only reader accepts: during an upgrade,
/// snmp-extend and `status` keep serving a database the collector has not
/// migrated yet (version 3 only added `host.figures`).
pub const OLDEST_READ: i64 = 2;
/// The first schema that keeps each host's latest figures (`host.figures`).
const FIGURES_SCHEMA: i64 = 3;
/// The first schema with the hypervisor's view (`status.domain_state`).
const DOMAIN_STATE_SCHEMA: i64 = 4;
/// The first schema with `host.xen_counters`, `reboots` and `run_domid`.
const COUNTERS_SCHEMA: i64 = 5;
/// The first schema with `host.run_boot`.
const BOOT_SCHEMA: i64 = 6;
/// The first schema with `host.started`.
const STARTED_SCHEMA: i64 = 9;
/// The first schema with the tables `restart` and `former_name`.
const RESTART_SCHEMA: i64 = 10;
/// dom0's own row in `host`: its ident and the name shown for it. No guest
/// ident can equal `dom0` (guest idents start with `uuid:`, `name:` or
/// `domid:`), and no guest is shown as `Domain-0` (see host-collector).
pub const DOM0_IDENT: &str = "dom0";
pub const DOM0_NAME: &str = "Domain-0";

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

/// A value as stored: times 1000, as an integer.
pub fn to_stored(v: f64) -> i64 {
    (v * 1000.0).round().clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

pub fn from_stored(v: i64) -> f64 {
    v as f64 / 1000.0
}
