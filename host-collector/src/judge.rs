//! Judge: every guest of a cycle, from what was observed (the guests'
//! xenstore areas, the agents' keys, the hypervisor, the shared config
//! directory) and the rows stored before, into the records a cycle stores.
//! Pure: nothing here reads or writes outside its arguments. Each concern
//! has its own module (the domain's state in `domstate`, freshness in
//! `freshness`, new domains in `continuity`, agents in `agent`); this one
//! puts them together for each guest, and for the guests that should run
//! here and do not.
//!
//! Identity: a guest is its VM (UUID); the name is what humans read. Two
//! running domains with one name are two hosts, shown as `name#domid`;
//! no guest is ever shown as `Domain-0`.

use std::collections::{HashMap, HashSet};

use xsmon_checks::Sys;
use xsmon_proto::cluster::Cluster;
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{CheckResult, Status};
use xsmon_store::{HostRecord, HostRow, DOM0_IDENT, DOM0_NAME};

use crate::config::Config;
use crate::freshness::{self, Rules};
use crate::gather::{Found, Guest};
use crate::glob::glob_match;
use crate::hypervisor::Hypervisor;
use crate::words::when;

/// Values of these names are kept in history; the rest are only shown.
const KEPT: &[&str] = &[
    "load_per_cpu",
    "iowait_pct",
    "steal_pct",
    "pages_per_s",
    "used_pct",
    "inodes_pct",
    "loss_pct",
    "rtt_ms",
    "offset_s",
];

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
}

impl Scene<'_> {
    /// The guests whose .cfg sits under this dom0, when the config
    /// directory has a folder for it (`None`: no statement of what should
    /// run here).
    fn configured_here(&self) -> Option<&[String]> {
        self.cluster.dom0s.get(self.dom0).map(Vec::as_slice)
    }

    fn has_config_here(&self, name: &str) -> bool {
        self.configured_here()
            .is_some_and(|g| g.binary_search_by(|x| x.as_str().cmp(name)).is_ok())
    }

    fn config_elsewhere(&self, name: &str) -> Option<&str> {
        self.cluster
            .homes_of(name)
            .into_iter()
            .find(|d| *d != self.dom0)
    }

    fn meant_stopped(&self, name: &str) -> bool {
        self.expect_stopped.iter().any(|p| glob_match(p, name))
    }
}

/// The identity of a running domain: its VM's UUID, else its name, else
/// its domid.
pub fn ident_of(g: &Guest) -> String {
    match (&g.uuid, &g.name) {
        (Some(u), _) => format!("uuid:{u}"),
        (None, Some(n)) => format!("name:{n}"),
        (None, None) => format!("domid:{}", g.domid),
    }
}

/// Judges every running guest, then every guest that should be running
/// here and is not. Never fails: whatever goes wrong for one guest is that
/// guest's finding.
pub fn judge_all(
    known: &[HostRow],
    guests: &[Guest],
    hv: &Hypervisor,
    scene: &Scene<'_>,
) -> Vec<HostRecord> {
    let by_ident: HashMap<&str, &HostRow> = known.iter().map(|h| (h.ident.as_str(), h)).collect();
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut idents: HashSet<String> = HashSet::new();
    let mut out: Vec<HostRecord> = Vec::with_capacity(guests.len() + 8);

    // How many running domains carry each name: a name shared (or equal
    // to dom0's) is shown as name#domid, for every domain carrying it.
    let mut name_count: HashMap<&str, usize> = HashMap::new();
    for g in guests {
        if let Some(n) = &g.name {
            *name_count.entry(n.as_str()).or_default() += 1;
        }
    }
    // Who each running domain is (in order: a host row is claimed once),
    // then its judgement, which is its own alone.
    let mut who = Vec::with_capacity(guests.len());
    for g in guests {
        let mut ident = ident_of(g);
        if !idents.insert(ident.clone()) {
            // Two running domains of one VM cannot happen on a sane host;
            // keep both visible rather than merge them.
            ident = format!("{ident}#{}", g.domid);
            idents.insert(ident.clone());
        }
        let prev = by_ident
            .get(ident.as_str())
            .copied()
            .or_else(|| {
                // A host first known by name (before its UUID was readable,
                // or from a version 1 database) is adopted by its UUID.
                let n = g.name.as_deref()?;
                g.uuid.as_ref()?;
                by_ident
                    .get(format!("name:{n}").as_str())
                    .copied()
                    .filter(|h| h.uuid.is_none())
            })
            .filter(|h| !claimed.contains(&h.id));
        if let Some(h) = prev {
            claimed.insert(h.id);
        }
        let shared = g
            .name
            .as_deref()
            .is_some_and(|n| n == DOM0_NAME || name_count.get(n).copied().unwrap_or(0) > 1);
        who.push((g, ident, prev, shared));
    }
    out.extend(crate::halves::in_two_halves(
        who,
        |(g, ident, prev, shared)| {
            let mut rec = judge_running(g, ident, prev, scene);
            if shared {
                rec.label = format!("{}#{}", rec.name, g.domid);
                rec.message.push_str(&format!(
                    " (shown as {}: another domain is also named {})",
                    rec.label, rec.name
                ));
            }
            crate::domstate::apply(
                &mut rec,
                g.domid,
                Some(g),
                hv,
                prev,
                scene.hypervisor,
                scene.now,
            );
            let state = hv.domains.get(&g.domid).map(|d| d.state);
            crate::devmodel::judge(&mut rec, g, state);
            rec
        },
    ));
    let running_names: HashSet<String> = guests.iter().filter_map(|g| g.name.clone()).collect();
    for h in known
        .iter()
        .filter(|h| !claimed.contains(&h.id) && h.ident != DOM0_IDENT)
    {
        out.extend(judge_absent(h, &running_names, scene));
    }
    out.extend(configured_never_seen(known, &running_names, scene));
    make_labels_unique(&mut out);
    out
}

/// One running domain.
fn judge_running(
    g: &Guest,
    ident: String,
    prev: Option<&HostRow>,
    scene: &Scene<'_>,
) -> HostRecord {
    let now = scene.now;
    let name = g
        .name
        .clone()
        .unwrap_or_else(|| format!("domid-{}", g.domid));
    let mut rec = HostRecord::new(ident, name.clone(), name.clone(), "running");
    rec.row = prev.map(|h| h.id);
    rec.uuid = g.uuid.clone();
    rec.domid = Some(g.domid);
    rec.started = g.start_time;
    rec.config = scene.has_config_here(&name);
    match prev {
        None => rec.events.push((
            "new",
            format!("{name} appeared (domain {}, {})", g.domid, rec.ident),
        )),
        Some(h) if h.state != "running" => rec.events.push((
            "back",
            format!(
                "{name} is running here again as domain {} (was {})",
                g.domid, h.state
            ),
        )),
        Some(_) => {}
    }
    if let Some(problem) = &g.name_problem {
        rec.probe = "invalid";
        rec.message = format!("domain {}: {problem}", g.domid);
        return rec;
    }
    match &g.found {
        Found::Nothing if scene.without_probe.lists(&name) => {
            // Without the probe, dom0 cannot tell a reboot from a restore,
            // and the count does not guess.
            crate::agent::judge(&mut rec, g, scene.without_probe);
        }
        Found::Nothing => {
            rec.message = match prev.and_then(|h| h.run) {
                Some(r) => format!(
                    "probe not reporting since {} (no results in xenstore)",
                    when(r.seen, now)
                ),
                None => "probe not reporting: no results in xenstore".to_string(),
            };
            if let Some(hint) = crate::agent::unlisted_hint(g) {
                rec.message.push_str(&format!("; {hint}"));
            }
            // What dom0 knows of a new domain with no run yet: not whether
            // it rebooted or resumed.
            if let Some(was) = prev
                .and_then(|h| h.run.and(h.run_domid))
                .filter(|d| *d != g.domid)
            {
                rec.message.push_str(&format!(
                    "; a new domain of the same VM (domain {was} -> {}), no run from it yet",
                    g.domid
                ));
            }
        }
        Found::Invalid(why) => {
            rec.probe = "invalid";
            rec.message = format!("guest wrote invalid results, ignored: {why}");
        }
        Found::Run { run, legacy } => {
            let prev_cycle = prev.filter(|h| h.state == "running").map(|h| h.last_seen);
            let continuity = crate::continuity::of(prev, g, run, scene.config_elsewhere(&name));
            // Counted on evidence only: another boot of its kernel.
            rec.rebooted = continuity.rebooted();
            rec.run_boot = run.boot.as_ref().map(|b| b.as_str().to_string());
            let seen = freshness::observe_instance(
                run,
                prev.and_then(|h| h.run),
                prev_cycle,
                now,
                scene.rules,
                continuity.new_domain,
                continuity.note,
            );
            rec.probe_time = Some(run.time);
            rec.probe_seq = Some(run.seq);
            rec.run = Some(seen.run);
            if seen.stale {
                rec.probe = "stale";
                rec.message = format!(
                    "probe not reporting since {}: dom0 has seen no new run (seq {})",
                    when(seen.run.seen, now),
                    run.seq
                );
                return rec;
            }
            rec.probe = "fresh";
            rec.latest.extend(run.checks.iter().map(CheckFigures::of));
            let checks: Vec<CheckResult> =
                run.checks.iter().chain(&seen.findings).cloned().collect();
            rec.status = checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(Status::Unknown);
            rec.findings = checks
                .iter()
                .filter(|c| c.status != Status::Ok)
                .cloned()
                .collect();
            rec.message = if run.checks.is_empty() {
                "probe reported no checks".into()
            } else {
                summary(&checks)
            };
            for n in &seen.notes {
                rec.message.push_str(&format!("; {n}"));
            }
            if *legacy {
                rec.message.push_str(" (from the legacy shared path)");
            }
            rec.figures = kept_figures(&checks);
        }
    }
    if let Some(p) = &g.uuid_problem {
        rec.message.push_str(&format!(" (identified by name: {p})"));
    }
    rec
}

/// A known guest that is not running here this cycle: reported as down
/// while it should run here, as stopped when the admin said so, or no
/// longer listed (migrated, config removed, forgotten).
fn judge_absent(
    h: &HostRow,
    running_names: &HashSet<String>,
    scene: &Scene<'_>,
) -> Option<HostRecord> {
    let now = scene.now;
    let mut rec = HostRecord::new(h.ident.clone(), h.name.clone(), h.name.clone(), "gone");
    rec.row = Some(h.id);
    rec.uuid = h.uuid.clone();
    rec.listed = false;
    let config_here = scene.has_config_here(&h.name);
    let elsewhere = scene.config_elsewhere(&h.name);
    let was_running = h.state == "running";
    let since = when(h.last_seen, now);

    // Its config here is answered by another VM of that name (recreated
    // with a new UUID): the old one is retired, not down. Without a config
    // saying one VM of that name belongs here, a second VM of the same name
    // proves nothing (XAPI allows duplicate names): it stays reported.
    if running_names.contains(&h.name) && config_here {
        rec.state = if h.state == "forgotten" {
            "forgotten"
        } else {
            "retired"
        };
        if rec.state != h.state {
            rec.events.push((
                "retired",
                format!(
                    "{} ({}) replaced by another domain of that name",
                    h.name, h.ident
                ),
            ));
        }
        return Some(rec);
    }
    if config_here {
        rec.listed = true;
        rec.state = if h.state == "absent" {
            "absent"
        } else {
            "gone"
        };
        if was_running {
            rec.events.push((
                "gone",
                format!("{} is no longer running on this dom0", h.name),
            ));
        }
        if scene.meant_stopped(&h.name) {
            stopped(&mut rec);
        } else {
            down(&mut rec, format!(
                "not running (last seen here {since}) but its config is under {}: it should run here",
                scene.dom0
            ));
        }
        return Some(rec);
    }
    if let Some(other) = elsewhere {
        rec.state = "migrated";
        if h.state != "migrated" {
            rec.events.push((
                "migrated",
                format!("{} left this dom0; its config is now under {other}", h.name),
            ));
        }
        return Some(rec);
    }
    match h.state.as_str() {
        "running" | "gone" => {}
        // migrated, retired, forgotten, absent without a config: settled.
        other => {
            rec.state = match other {
                "migrated" => "migrated",
                "forgotten" => "forgotten",
                _ => "retired",
            };
            if rec.state != other {
                rec.events
                    .push(("retired", format!("{}: its config was removed", h.name)));
            }
            return Some(rec);
        }
    }
    if h.config && scene.configured_here().is_some() {
        // It had a config here and the admin removed it: retired.
        rec.state = "retired";
        rec.events.push((
            "retired",
            format!("{} stopped and its config was removed", h.name),
        ));
        return Some(rec);
    }
    if was_running {
        rec.events.push((
            "gone",
            format!("{} is no longer running on this dom0", h.name),
        ));
    }
    rec.listed = true;
    if scene.meant_stopped(&h.name) {
        stopped(&mut rec);
    } else {
        down(&mut rec, format!(
            "not running since {since}: crashed, destroyed or shut down; `host-collector forget {}` if it is gone for good",
            h.uuid.as_deref().unwrap_or(&h.name)
        ));
    }
    Some(rec)
}

/// Guests with a config under this dom0 that this collector never saw at
/// all (no host row of that name).
fn configured_never_seen(
    known: &[HostRow],
    running_names: &HashSet<String>,
    scene: &Scene<'_>,
) -> Vec<HostRecord> {
    let Some(here) = scene.configured_here() else {
        return Vec::new();
    };
    let known_names: HashSet<&str> = known.iter().map(|h| h.name.as_str()).collect();
    here.iter()
        .filter(|n| !running_names.contains(*n) && !known_names.contains(n.as_str()))
        .map(|n| {
            let mut rec = HostRecord::new(format!("name:{n}"), n.clone(), n.clone(), "absent");
            if scene.meant_stopped(n) {
                stopped(&mut rec);
            } else {
                down(
                    &mut rec,
                    format!(
                    "not running: its config is under {} but this collector has never seen it run",
                    scene.dom0
                ),
                );
            }
            rec
        })
        .collect()
}

fn down(rec: &mut HostRecord, message: String) {
    rec.probe = "down";
    rec.status = Status::Error;
    rec.message = message;
}

fn stopped(rec: &mut HostRecord) {
    rec.probe = "stopped";
    rec.status = Status::Ok;
    rec.message = "not running, as intended (expect_stopped in the collector's config)".into();
}

/// Labels are unique in a cycle: a guest that is not running and shares
/// its label with an earlier host gets `#` and the first 8 characters of
/// its UUID (or its row id).
fn make_labels_unique(out: &mut [HostRecord]) {
    let mut used: HashSet<String> = HashSet::from([DOM0_NAME.to_string()]);
    for rec in out.iter_mut().filter(|r| r.listed) {
        if used.contains(&rec.label) {
            let tag = rec
                .uuid
                .as_deref()
                .map(|u| u[..8.min(u.len())].to_string())
                .or_else(|| rec.domid.map(|d| d.to_string()))
                .or_else(|| rec.row.map(|r| format!("h{r}")))
                .unwrap_or_else(|| "new".into());
            let mut label = format!("{}#{tag}", rec.name);
            let mut n = 2;
            while used.contains(&label) {
                label = format!("{}#{tag}-{n}", rec.name);
                n += 1;
            }
            rec.label = label;
        }
        used.insert(rec.label.clone());
    }
}

/// "all 7 checks ok", or "1 error, 2 warnings: <worst finding>".
pub fn summary(checks: &[CheckResult]) -> String {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let (e, u, w) = (
        count(Status::Error),
        count(Status::Unknown),
        count(Status::Warning),
    );
    if e + u + w == 0 {
        return format!("all {} checks ok", checks.len());
    }
    let mut parts = Vec::new();
    for (n, word) in [(e, "error"), (u, "unknown"), (w, "warning")] {
        if n > 0 {
            parts.push(format!(
                "{n} {word}{}",
                if n > 1 && word != "unknown" { "s" } else { "" }
            ));
        }
    }
    let worst = checks
        .iter()
        .max_by_key(|c| c.status)
        .map(|c| c.message.as_str())
        .unwrap_or("");
    format!("{}: {worst}", parts.join(", "))
}

fn kept_figures(checks: &[CheckResult]) -> Vec<(String, String, String, f64)> {
    let mut out = Vec::new();
    for c in checks {
        for v in c.values.iter().filter(|v| KEPT.contains(&v.name.as_str())) {
            out.push((c.kind.clone(), c.target.clone(), v.name.clone(), v.value));
        }
    }
    out
}

/// dom0 itself: memory and disks, with the probe's threshold machinery.
pub fn dom0_record(
    sys: &Sys,
    cfg: &Config,
    hv: &Hypervisor,
    known: &[HostRow],
    now: i64,
) -> HostRecord {
    let mut checks = vec![xsmon_checks::memory::check(sys, &cfg.dom0.memory)];
    checks.extend(xsmon_checks::disk::checks(sys, &cfg.dom0.disk));
    let mut rec = HostRecord::new(
        DOM0_IDENT.to_string(),
        DOM0_NAME.to_string(),
        DOM0_NAME.to_string(),
        "running",
    );
    let prev = known.iter().find(|h| h.ident == DOM0_IDENT);
    rec.row = prev.map(|h| h.id);
    if rec.row.is_none() {
        rec.events
            .push(("new", format!("{DOM0_NAME} appeared (dom0 itself)")));
    }
    rec.domid = Some(0);
    rec.probe = "host";
    rec.status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    rec.message = summary(&checks);
    rec.findings = checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .cloned()
        .collect();
    rec.figures = kept_figures(&checks);
    rec.latest = checks.iter().map(CheckFigures::of).collect();
    if !hv.unavailable.is_empty() {
        rec.message
            .push_str(&format!(" ({})", hv.unavailable.join("; ")));
    }
    crate::domstate::apply(&mut rec, 0, None, hv, prev, &cfg.hypervisor, now);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, status: Status, msg: &str) -> CheckResult {
        let mut r = CheckResult::new(id, "disk", "");
        r.status = status;
        r.message = msg.into();
        r
    }

    #[test]
    fn summaries() {
        assert_eq!(summary(&[c("a", Status::Ok, "")]), "all 1 checks ok");
        let s = summary(&[
            c("a", Status::Warning, "w"),
            c("b", Status::Error, "full"),
            c("c", Status::Error, "x"),
        ]);
        assert!(s.starts_with("2 errors, 1 warning: "), "{s}");
    }
}
