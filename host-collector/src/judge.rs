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
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{CheckResult, Status};
use xsmon_store::{HostRecord, HostRow, DOM0_IDENT, DOM0_NAME};

use crate::config::{Config, LifecycleConfig};
use crate::freshness;
use crate::gather::{Found, Guest};
use crate::hypervisor::Hypervisor;
use crate::scene::shutdowns_of;
pub use crate::scene::Scene;
use crate::words::{ago, local_time, when};

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
    // The running VMs dom0 knew, by host row: their names now.
    let running_as: HashMap<i64, String> = out
        .iter()
        .filter_map(|r| Some((r.row?, r.name.clone())))
        .collect();
    let renamed = crate::absent::Renamed {
        former: scene.former_names,
        running_as: &running_as,
    };
    for h in known
        .iter()
        .filter(|h| !claimed.contains(&h.id) && h.ident != DOM0_IDENT)
    {
        out.extend(crate::absent::judge_absent(
            h,
            &running_names,
            &renamed,
            scene,
        ));
    }
    out.extend(crate::absent::configured_never_seen(
        known,
        &running_names,
        &renamed,
        scene,
    ));
    make_labels_unique(&mut out);
    out
}

/// One running domain: what its probe says ([`judge_probe`]), then its
/// restarts.
fn judge_running(
    g: &Guest,
    ident: String,
    prev: Option<&HostRow>,
    scene: &Scene<'_>,
) -> HostRecord {
    let shutdowns = shutdowns_of(scene, &[g.name.as_deref(), prev.map(|h| h.name.as_str())]);
    let recorded = prev
        .and_then(|h| scene.restarts.get(&h.id))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // Another boot of its kernel in a new domain is a restart of unknown
    // cause only where xl keeps no log of the VM: with one, a new domain
    // xl's log does not chain to was created afresh (`xl create`, `xl
    // restore` start a new log), an admin's doing, not a restart.
    let logged = [g.name.as_deref(), prev.map(|h| h.name.as_str())]
        .into_iter()
        .flatten()
        .any(|n| scene.xl_logs.by_name.contains_key(n));
    let kernel_rebooted = match &g.found {
        Found::Run { run, .. } if !logged => crate::continuity::of(prev, g, run, None).rebooted(),
        _ => false,
    };
    let verdict = crate::restarts::judge(
        prev,
        g,
        &shutdowns,
        kernel_rebooted,
        recorded,
        scene.now,
        scene.lifecycle,
    );
    // xl's log told the restart into this domain: its words say it, and
    // the run's own "rebooted or created again" is not repeated.
    let restart_known = verdict
        .new
        .iter()
        .chain(recorded)
        .any(|r| r.new_domid == g.domid && r.reason != "unknown");
    let mut rec = judge_probe(g, ident, prev, scene, restart_known);
    if let Some(f) = verdict.finding {
        rec.status = rec.status.max(f.status);
        rec.message.push_str(&format!("; {}", f.message));
        rec.findings.push(f);
    }
    if let Some(note) = verdict.note {
        rec.message.push_str(&format!("; {note}"));
    }
    rec.restarts = verdict.new;
    rec
}

/// A running domain whose probe has not written yet, started a short
/// while ago: when its first run is due, and the words for it; `None`
/// once it is due, or when dom0 cannot tell the domain's start.
fn starting(g: &Guest, prev: Option<&HostRow>, now: i64, cfg: &LifecycleConfig) -> Option<String> {
    let started = start_of(g, prev)? as i64;
    let up = now - started;
    if !(0..cfg.first_run_secs as i64).contains(&up) {
        return None;
    }
    let due = started + cfg.first_run_secs as i64;
    let due = local_time(due, "%H:%M:%S").unwrap_or_else(|| due.to_string());
    let was = prev
        .and_then(|h| h.run_domid.or(h.domid))
        .filter(|d| *d != g.domid);
    Some(match was {
        Some(was) => format!(
            "a new domain of this VM (domain {was} -> {}) started {} ago (a boot, a restore or a migration): no probe run from it yet, the first due by {due}",
            g.domid,
            ago(up)
        ),
        None => format!(
            "started {} ago (domain {}): no probe run yet, the first due by {due}",
            ago(up),
            g.domid
        ),
    })
}

/// When domain `g` started, for its first run's due time: libxl's
/// `/vm/<uuid>/start_time`, or, where that is missing (a domain
/// live-migrated here has none: seen on Xen 4.20), a bound dom0 knows: a
/// new domain of a VM whose last run came from another domain started
/// after dom0 first saw that run. The bound stays the same from cycle to
/// cycle until a run comes from the new domain, and it is never stored as
/// the domain's start.
fn start_of(g: &Guest, prev: Option<&HostRow>) -> Option<f64> {
    g.start_time.or_else(|| {
        let h = prev?;
        let run = h.run?;
        (h.run_domid? != g.domid).then_some(run.seen as f64)
    })
}

/// One running domain, by what its probe wrote. `restart_known`: the
/// toolstack's restart into this domain is known (its words say it; the
/// run's own "rebooted" is not repeated).
fn judge_probe(
    g: &Guest,
    ident: String,
    prev: Option<&HostRow>,
    scene: &Scene<'_>,
    restart_known: bool,
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
            if let Some(words) = starting(g, prev, now, scene.lifecycle) {
                rec.probe = "starting";
                rec.status = Status::Ok;
                rec.message = words;
                return rec;
            }
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
            let mut continuity = crate::continuity::of(prev, g, run, scene.config_elsewhere(&name));
            if restart_known && continuity.rebooted() {
                // The restart's own words say it.
                continuity.note = None;
            }
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
    set_aside: &[xsmon_store::damage::SetAside],
    now: i64,
) -> HostRecord {
    let mut checks = vec![xsmon_checks::memory::check(sys, &cfg.dom0.memory)];
    checks.extend(xsmon_checks::disk::checks(sys, &cfg.dom0.disk));
    checks.extend(crate::damaged::check(set_aside, now));
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
    fn a_migrated_domain_without_a_start_time_starts_after_its_vms_last_run() {
        // The VM's row: its last run came from domain `run_domid`, first
        // seen by dom0 at 900.
        let row = |domid: u32, run_domid: u32| HostRow {
            id: 1,
            ident: "uuid:0001".into(),
            uuid: Some("0001".into()),
            name: "pvh01".into(),
            last_seen: 950,
            domid: Some(domid),
            state: "running".into(),
            config: true,
            run: Some(xsmon_store::SeenRun {
                seq: 7,
                digest: 1,
                time: 899,
                seen: 900,
            }),
            run_domid: Some(run_domid),
            run_boot: None,
            xen: None,
            reboots: 0,
            started: None,
        };
        let mut g = Guest::named(24, "pvh01");
        // libxl's start time, when there is one.
        g.start_time = Some(500.0);
        assert_eq!(start_of(&g, Some(&row(1, 1))), Some(500.0));
        // None (a live migration's new domain): after the last run of
        // domain 1 was seen, at the first cycle and the next ones alike.
        g.start_time = None;
        assert_eq!(start_of(&g, Some(&row(1, 1))), Some(900.0));
        assert_eq!(start_of(&g, Some(&row(24, 1))), Some(900.0));
        // A run from this domain: nothing to bound; no row: none either.
        assert_eq!(start_of(&g, Some(&row(24, 24))), None);
        assert_eq!(start_of(&g, None), None);
        // So it is starting, not silent, until its first run is due.
        let cfg = LifecycleConfig::default();
        let words = starting(&g, Some(&row(1, 1)), 921, &cfg).unwrap();
        assert!(
            words.starts_with("a new domain of this VM (domain 1 -> 24) started 21 s ago (a boot, a restore or a migration): no probe run from it yet, the first due by "),
            "{words}"
        );
        // ... and silent once it is due.
        assert_eq!(starting(&g, Some(&row(24, 1)), 900 + 421, &cfg), None);
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
