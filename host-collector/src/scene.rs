//! What a cycle judges guests against: this dom0's name and config, the
//! shared config directory, the time, and what the toolstack keeps (xl's
//! logs, the restarts and former names stored). Shared by
//! [`crate::judge`] (running guests) and [`crate::absent`] (the others).

use std::collections::HashMap;

use xsmon_proto::cluster::Cluster;
use xsmon_store::{FormerName, Restart};

use crate::config::LifecycleConfig;
use crate::freshness::Rules;
use crate::glob::glob_match;
use crate::xl_records::{Shutdown, XlLogs};

/// What a cycle judges guests against.
pub struct Scene<'a> {
    pub dom0: &'a str,
    pub cluster: &'a Cluster,
    /// Names (with `*` wildcards) of guests meant to be stopped.
    pub expect_stopped: &'a [String],
    pub now: i64,
    pub rules: Rules,
    pub hypervisor: &'a crate::config::HypervisorConfig,
    /// Guests that do not run the probe, and how their agents are judged.
    pub without_probe: &'a crate::agent::WithoutProbe,
    /// Domains starting, being built, restarted.
    pub lifecycle: &'a LifecycleConfig,
    /// xl's logs of the domains, by name.
    pub xl_logs: &'a XlLogs,
    /// Each VM's restarts stored within the restart window, by host row.
    pub restarts: &'a HashMap<i64, Vec<Restart>>,
    /// The names VMs had before their current ones.
    pub former_names: &'a [FormerName],
}

impl Scene<'_> {
    /// The guests whose .cfg sits under this dom0, when the config
    /// directory has a folder for it (`None`: no statement of what should
    /// run here).
    pub(crate) fn configured_here(&self) -> Option<&[String]> {
        self.cluster.dom0s.get(self.dom0).map(Vec::as_slice)
    }

    pub(crate) fn has_config_here(&self, name: &str) -> bool {
        self.configured_here()
            .is_some_and(|g| g.binary_search_by(|x| x.as_str().cmp(name)).is_ok())
    }

    pub(crate) fn config_elsewhere(&self, name: &str) -> Option<&str> {
        self.cluster
            .homes_of(name)
            .into_iter()
            .find(|d| *d != self.dom0)
    }

    pub(crate) fn meant_stopped(&self, name: &str) -> bool {
        self.expect_stopped.iter().any(|p| glob_match(p, name))
    }
}

/// The shutdowns xl logged of a VM: under its current name and the one
/// dom0 knew it by (`xl rename` leaves xl's log under the old name).
pub(crate) fn shutdowns_of<'a>(scene: &Scene<'a>, names: &[Option<&str>]) -> Vec<&'a Shutdown> {
    let names: Vec<&str> = names.iter().flatten().copied().collect();
    scene.xl_logs.of(&names).collect()
}
