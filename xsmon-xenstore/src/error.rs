use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{XsErrno, PAYLOAD_MAX};

/// Everything a xenstore operation can fail with. Each variant names the
/// operation and the xenstore path involved, so a cron mail says what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to xenstore at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },

    #[error("no xenstore connection found (tried {tried}); is xenstored running, or are we in a Xen guest?")]
    NoConnection { tried: String },

    #[error("xenstore {op} {path}: {errno}")]
    Xs {
        op: &'static str,
        path: String,
        errno: XsErrno,
    },

    #[error("xenstore {op} {path}: no reply within {timeout:?}")]
    Timeout {
        op: &'static str,
        path: String,
        timeout: Duration,
    },

    #[error("xenstore {op} {path}: connection closed by xenstored")]
    Closed { op: &'static str, path: String },

    #[error("xenstore {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },

    #[error("xenstore {op} {path}: protocol error: {detail}")]
    Protocol {
        op: &'static str,
        path: String,
        detail: String,
    },

    #[error("xenstore {op} {path}: request of {len} bytes exceeds the protocol's limit of {PAYLOAD_MAX}")]
    RequestTooLarge {
        op: &'static str,
        path: String,
        len: usize,
    },

    #[error("xenstore {op} {path}: invalid path ({reason})")]
    InvalidPath {
        op: &'static str,
        path: String,
        reason: &'static str,
    },

    #[error("xenstore connection unusable after an earlier failure: {0}")]
    Poisoned(String),

    #[error("xenstore transaction still conflicting after {attempts} attempts")]
    TooManyConflicts { attempts: u32 },
}

impl Error {
    /// The daemon's error name, when the daemon answered with one.
    pub fn errno(&self) -> Option<&XsErrno> {
        match self {
            Error::Xs { errno, .. } => Some(errno),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(&XsErrno::Enoent)
    }

    pub fn is_conflict(&self) -> bool {
        self.errno() == Some(&XsErrno::Eagain)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
