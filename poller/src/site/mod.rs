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
    /// The consumers whose last push failed: (consumer, since, error).
    pub push_failures: Vec<(String, i64, String)>,
    /// The state databases the service set aside as damaged, oldest first
    /// (said until an admin removes them).
    pub set_aside: Vec<xsmon_store::damage::SetAside>,
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

impl Site {
    /// Which dom0s report each guest (by the name without `#domid`; not
    /// dom0 itself), as indices into `dom0s`.
    pub fn guest_index(&self) -> std::collections::BTreeMap<String, Vec<usize>> {
        let mut index: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, d) in self.dom0s.iter().enumerate() {
            // dom0's own line is the dom0's, not a guest's.
            for g in d.guests.iter().filter(|g| g.name != crate::poll::DOM0_HOST) {
                let at = index
                    .entry(crate::poll::base_name(&g.name).to_string())
                    .or_default();
                if at.last() != Some(&i) {
                    at.push(i);
                }
            }
        }
        index
    }

    /// What scoping the site many times needs, computed once (see
    /// `Scoper::scoped`).
    pub fn scoper(&self) -> Scoper<'_> {
        let mut homes: HashMap<&str, Vec<&str>> = HashMap::new();
        for (d, guests) in &self.known.cluster.dom0s {
            for g in guests {
                homes.entry(g.as_str()).or_default().push(d.as_str());
            }
        }
        Scoper {
            site: self,
            failed: (0..self.dom0s.len())
                .filter(|&i| self.dom0s[i].error.is_some())
                .collect(),
            homes,
        }
    }
}

/// Cuts a site into the part each scoped report needs, in time
/// proportional to that part (a push builds one per dom0 and per guest).
pub struct Scoper<'s> {
    site: &'s Site,
    failed: Vec<usize>,
    homes: HashMap<&'s str, Vec<&'s str>>,
}

impl Scoper<'_> {
    /// The dom0s at `shown` in full, those that could not be polled with
    /// their error only (a guest found nowhere may be on them), the others
    /// counted, and the config directories' homes of the guests shown: the
    /// report of a scope is the same as from the whole site, as from a
    /// scoped read of the kept state.
    pub fn scoped(&self, shown: &[usize]) -> Site {
        let site = self.site;
        let mut picked: Vec<usize> = shown.iter().chain(&self.failed).copied().collect();
        picked.sort_unstable();
        picked.dedup();
        let mut homes: Vec<(String, String)> = Vec::new();
        let dom0s: Vec<Dom0Result> = picked
            .iter()
            .map(|&i| {
                let d = &site.dom0s[i];
                if shown.contains(&i) {
                    for g in &d.guests {
                        let name = crate::poll::base_name(&g.name);
                        for home in self.homes.get(name).into_iter().flatten() {
                            homes.push((name.to_string(), home.to_string()));
                        }
                    }
                    d.clone()
                } else {
                    let mut stub = Dom0Result::new(&d.name, &d.target);
                    stub.error = d.error.clone();
                    stub
                }
            })
            .collect();
        Site {
            time: site.time,
            known: Known {
                cluster: cluster_of(homes),
                problems: Vec::new(),
            },
            others: site.dom0s.len() + site.others - dom0s.len(),
            dom0s,
            memory: None,
        }
    }
}

/// The config directories' cluster from (guest, dom0) pairs: whole, or as
/// much of it as a scoped report needs.
pub fn cluster_of(homes: Vec<(String, String)>) -> xsmon_proto::cluster::Cluster {
    let mut c = xsmon_proto::cluster::Cluster::default();
    for (guest, dom0) in homes {
        c.dom0s.entry(dom0).or_default().push(guest);
    }
    for guests in c.dom0s.values_mut() {
        guests.sort();
        guests.dedup();
    }
    c
}
