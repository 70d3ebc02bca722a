//! The site's state: one poll of the whole site, live or as `poller serve`
//! keeps it, with what the service remembers (since when each problem
//! stands, what changed). Every output reads a `Site`, never the engine.
//!
//! * `changes`: what changed between two cycles (pure: problems in,
//!   problems with their start and transitions out).
//! * `kept`: the site's database (xsmon-store's `site`) as every mode but
//!   the service reads it;
//! * `keeper`: the service's side, one cycle per transaction.

pub mod changes;
pub mod keeper;
pub mod kept;

use std::collections::HashMap;

use xsmon_store::site::Transition;

use crate::discover::Known;
use crate::poll::{Dom0Result, Polled};

/// What every output mode reads.
#[derive(Debug, Clone)]
pub struct Site {
    /// When the poll began.
    pub time: i64,
    pub known: Known,
    pub dom0s: Vec<Dom0Result>,
    /// dom0s polled but not read (a scoped read of the kept state leaves
    /// out those that answered and do not run the guest): counted only.
    pub others: usize,
    /// What the service remembers; `None` for a live poll.
    pub memory: Option<Memory>,
}

/// What the service remembers beside the last poll.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Since when each standing problem stands, by (dom0, host, check).
    pub since: HashMap<(String, String, String), i64>,
    /// The time `--changes-since` asked for, and the transitions since
    /// then, oldest first.
    pub changes_since: Option<i64>,
    pub changes: Vec<Transition>,
}

impl Memory {
    pub fn since_of(&self, dom0: &str, host: &str, check: &str) -> Option<i64> {
        self.since
            .get(&(dom0.to_string(), host.to_string(), check.to_string()))
            .copied()
    }
}

impl From<Polled> for Site {
    fn from(p: Polled) -> Site {
        Site {
            time: p.time,
            known: p.known,
            dom0s: p.dom0s,
            others: 0,
            memory: None,
        }
    }
}
