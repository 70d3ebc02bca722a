//! Guests that are not running here this cycle, and configs under this
//! dom0 with no running guest: down (it should run here), stopped (as the
//! admin said), migrated, retired, forgotten; restarting (its domain ended
//! and xl's log says xl is starting it again); renamed (the config is
//! named after a name its VM had). Pure, as [`crate::judge`].

use std::collections::{HashMap, HashSet};

use xsmon_proto::Status;
use xsmon_store::{FormerName, HostRecord, HostRow};

use crate::scene::{shutdowns_of, Scene};
use crate::words::when;

/// The names running VMs had before their current ones.
pub(crate) struct Renamed<'a> {
    pub(crate) former: &'a [FormerName],
    pub(crate) running_as: &'a HashMap<i64, String>,
}

impl Renamed<'_> {
    /// A config named `name` under this dom0 whose VM runs here under
    /// another name: the words for it.
    fn words(&self, name: &str, now: i64) -> Option<String> {
        let f = self
            .former
            .iter()
            .rev()
            .find(|f| f.name == name && self.running_as.contains_key(&f.host_id))?;
        let now_as = &self.running_as[&f.host_id];
        (now_as != name).then(|| {
            format!(
                "{name}.cfg: this VM runs here as {now_as} since {}: rename the config or remove it",
                when(f.until, now)
            )
        })
    }
}

/// A config whose VM runs here under another name: a warning of its
/// own, never a guest that should run.
fn renamed_record(rec: &mut HostRecord, words: String) {
    rec.probe = "renamed";
    rec.status = Status::Warning;
    rec.message = words;
}

/// A known guest that is not running here this cycle: reported as down
/// while it should run here, as stopped when the admin said so, or no
/// longer listed (migrated, config removed, forgotten).
pub(crate) fn judge_absent(
    h: &HostRow,
    running_names: &HashSet<String>,
    renamed: &Renamed<'_>,
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

    // Its domain ended and xl's log says xl is starting it again, with no
    // new domain yet: restarting, not down, while a creation may last.
    if matches!(h.state.as_str(), "running" | "restarting") {
        let shutdowns = shutdowns_of(scene, &[Some(h.name.as_str())]);
        let ending = h
            .domid
            .and_then(|d| crate::restarts::restarting(d, &shutdowns));
        if let Some(s) = ending {
            if now - h.last_seen <= scene.hypervisor.creation_secs as i64 {
                let words = crate::restarts::restarting_words(s);
                rec.state = "restarting";
                rec.probe = "starting";
                rec.status = Status::Warning;
                if was_running {
                    rec.events
                        .push(("restarting", format!("{}: {words}", h.name)));
                }
                rec.message = words;
                return Some(rec);
            }
        }
    }

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
        } else if let Some(words) = renamed.words(&h.name, now) {
            renamed_record(&mut rec, words);
        } else if let Some(domid) = suspended_last(h, scene) {
            saved(&mut rec, h, domid, scene, format!(
                "its config is under {}: `xl restore` its image, or move the config to the dom0 it runs on",
                scene.dom0
            ));
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
        "running" | "gone" | "restarting" => {}
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
    } else if let Some(domid) = suspended_last(h, scene) {
        saved(
            &mut rec,
            h,
            domid,
            scene,
            format!(
                "`xl restore` its image; `host-collector forget {}` if it is gone for good",
                h.uuid.as_deref().unwrap_or(&h.name)
            ),
        );
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
pub(crate) fn configured_never_seen(
    known: &[HostRow],
    running_names: &HashSet<String>,
    renamed: &Renamed<'_>,
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
            } else if let Some(words) = renamed.words(n, scene.now) {
                renamed_record(&mut rec, words);
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

/// The domain `h` last ran in, when xl's log of its name says it was
/// suspended (`xl save`, `xl migrate` away) and nothing after.
fn suspended_last(h: &HostRow, scene: &Scene<'_>) -> Option<u32> {
    let domid = h.domid?;
    let shutdowns = shutdowns_of(scene, &[Some(h.name.as_str())]);
    let last = shutdowns.iter().rev().find(|s| s.domid == domid)?;
    (last.reason == crate::xl_records::Reason::Suspend).then_some(domid)
}

/// A guest saved or migrated away, as xl's log says: no finding for
/// `saved_secs` after dom0 last saw it (a restore comes within it), then
/// down, saying the save.
fn saved(rec: &mut HostRecord, h: &HostRow, domid: u32, scene: &Scene<'_>, then: String) {
    let now = scene.now;
    let since = when(h.last_seen, now);
    if now - h.last_seen <= scene.hypervisor.saved_secs as i64 {
        rec.probe = "stopped";
        rec.status = Status::Ok;
        rec.message = format!(
            "saved or migrated away (domain {domid} suspended, as xl's log says; last seen here {since}): not running while saved"
        );
    } else {
        down(
            rec,
            format!(
                "not running since {since}: saved or migrated away (domain {domid} suspended, as xl's log says) and not restored here; {then}"
            ),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xl_records::{Reason, Shutdown, XlLogs};
    use xsmon_proto::cluster::Cluster;

    const NOW: i64 = 1_795_700_000;

    fn row(last_seen: i64) -> HostRow {
        HostRow {
            id: 1,
            ident: "uuid:0001".into(),
            uuid: Some("0001".into()),
            name: "save01".into(),
            last_seen,
            domid: Some(7),
            state: "running".into(),
            config: true,
            run: None,
            run_domid: None,
            run_boot: None,
            xen: None,
            reboots: 0,
            started: None,
        }
    }

    /// judge_absent of a guest last seen `ago` s before, its config under
    /// xen01, xl's log of its name holding `reason` for domain 7.
    fn judged(ago: i64, reason: Reason) -> HostRecord {
        let mut cluster = Cluster::default();
        cluster.dom0s.insert("xen01".into(), vec!["save01".into()]);
        let mut logs = XlLogs::default();
        logs.by_name.insert(
            "save01".into(),
            vec![Shutdown {
                domid: 7,
                reason,
                action: None,
                next_domid: None,
            }],
        );
        let scene = Scene {
            dom0: "xen01",
            cluster: &cluster,
            expect_stopped: &[],
            now: NOW,
            rules: crate::freshness::Rules {
                stale_after: 600,
                skew_max: 600,
            },
            hypervisor: &Default::default(),
            without_probe: &Default::default(),
            lifecycle: &Default::default(),
            xl_logs: &logs,
            restarts: &Default::default(),
            former_names: &[],
        };
        let renamed = Renamed {
            former: &[],
            running_as: &HashMap::new(),
        };
        judge_absent(&row(NOW - ago), &HashSet::new(), &renamed, &scene).unwrap()
    }

    #[test]
    fn a_guest_saved_as_xls_log_says_is_no_finding_until_saved_secs() {
        let r = judged(20, Reason::Suspend);
        assert_eq!((r.status, r.probe), (Status::Ok, "stopped"));
        assert!(
            r.message.starts_with(
                "saved or migrated away (domain 7 suspended, as xl's log says; last seen here "
            ) && r.message.ends_with("): not running while saved"),
            "{}",
            r.message
        );
        let r = judged(700, Reason::Suspend);
        assert_eq!((r.status, r.probe), (Status::Error, "down"));
        assert!(
            r.message.contains(": saved or migrated away (domain 7 suspended, as xl's log says) and not restored here; its config is under xen01: `xl restore` its image, or move the config to the dom0 it runs on"),
            "{}",
            r.message
        );
        // Any other shutdown is down at once.
        let r = judged(20, Reason::Poweroff);
        assert_eq!((r.status, r.probe), (Status::Error, "down"));
    }
}
