//! A VM's restarts: a domain of it ended and the toolstack started another
//! (a crash or a reboot with `on_crash`/`on_reboot` = `restart`, or
//! `coredump-restart`, `rename-restart`). Pure: judged from xl's log of the
//! VM ([`crate::xl_records`]), the VM's stored row and the restarts stored
//! within the window.
//!
//! What tells a restart, and how sure dom0 is of it:
//!
//! - xl's log names every domain it watched, each one's shutdown reason
//!   (crash, reboot, watchdog) and the domain it started next: the chain
//!   of them that leads to the domain running now, back to the one dom0
//!   last saw (or to the start of the log: dom0 may never have seen a
//!   domain created and crashed between two cycles), is a restart per link, its reason as Xen gave it. A Linux HVM guest's
//!   panic reaches Xen as a reboot unless it boots with
//!   `xen_legacy_crash`: dom0 then cannot tell it from a reboot, and says
//!   "reboot" as Xen did.
//! - Without xl's log of the VM (another toolstack), only a new domain
//!   whose probe reports another boot of its kernel is one, of an unknown
//!   reason. With a log that does not chain to the new domain, the VM was
//!   created afresh (`xl create` and `xl restore` start a new log): an
//!   admin's doing, no restart.
//!
//! Saves, restores and migrations are never restarts: xl logs them as a
//! suspend, and the kernel's boot goes on.
//!
//! A crash the toolstack restarted is a warning while it is within the
//! window (`restart_window_secs`): the guest runs again, but its kernel
//! died, and a poller that looks every few minutes must still see it.
//! `restart_loop_count` restarts of any reason within the window are a
//! restart loop, a warning of its own that says them all.

use xsmon_proto::{CheckResult, Status};
use xsmon_store::{HostRow, Restart};

use crate::config::LifecycleConfig;
use crate::gather::Guest;
use crate::words::{ago, local_time};
use crate::xl_records::{Reason, Shutdown};

/// The check ids and kind of the findings about restarts.
pub const CRASH_CHECK: &str = "restart";
pub const LOOP_CHECK: &str = "restarts";
pub const KIND: &str = "xen";

/// What a cycle concludes about a VM's restarts.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// Restarts learned in this cycle, to be stored.
    pub new: Vec<Restart>,
    /// A crash restarted within the window, or a restart loop.
    pub finding: Option<CheckResult>,
    /// Words for the guest's message about a restart learned now that is
    /// no finding (a reboot).
    pub note: Option<String>,
}

/// How the running domain `g` continues the VM dom0 knew as `prev`, by
/// xl's logs of the VM's names (`shutdowns`); `kernel_rebooted`: its
/// probe's run says another boot of its kernel in a new domain, and xl
/// keeps no log of the VM.
/// `recorded`: the VM's restarts stored within the window.
pub fn judge(
    prev: Option<&HostRow>,
    g: &Guest,
    shutdowns: &[&Shutdown],
    kernel_rebooted: bool,
    recorded: &[Restart],
    now: i64,
    cfg: &LifecycleConfig,
) -> Verdict {
    let domid = g.domid;
    let time = g
        .start_time
        .map(|t| t as i64)
        .filter(|t| *t <= now)
        .unwrap_or(now);
    let seen = prev.and_then(|p| p.domid);
    let links = if seen == Some(domid) {
        Vec::new()
    } else {
        chain(seen, domid, shutdowns)
    };
    let old = seen.filter(|d| *d != domid);
    let mut new: Vec<Restart> = match links.len() {
        // The last link's time is its new domain's start; xl's log has no
        // times, and the links before it are dated when dom0 learned them.
        1.. => links
            .iter()
            .map(|s| {
                let next = s.next_domid.unwrap_or(domid);
                Restart {
                    time: if next == domid { time } else { now },
                    old_domid: Some(s.domid),
                    new_domid: next,
                    reason: s.reason.as_str().to_string(),
                    action: s.action.clone(),
                }
            })
            .collect(),
        0 if kernel_rebooted => vec![Restart {
            time,
            old_domid: old,
            new_domid: domid,
            reason: "unknown".into(),
            action: None,
        }],
        0 => Vec::new(),
    };
    // A restart stored already (the same new domain) is not learned twice.
    new.retain(|r| !recorded.iter().any(|k| k.new_domid == r.new_domid));
    let window_start = now - cfg.restart_window_secs as i64;
    let within: Vec<&Restart> = recorded
        .iter()
        .chain(&new)
        .filter(|r| r.time >= window_start)
        .collect();
    let looped = loop_finding(&within, cfg);
    // The reboot that started this domain is said while it runs, beside a
    // crash's finding (which names its own domains), not beside a loop's
    // (which counts it). A crash is its finding; another boot of unknown
    // cause is the run's own note already ("rebooted or created again",
    // crate::continuity).
    let note = match within.last() {
        Some(r)
            if r.new_domid == domid
                && looped.is_none()
                && !is_crash(r)
                && r.reason != "unknown" =>
        {
            Some(restart_words(r))
        }
        _ => None,
    };
    let finding = looped.or_else(|| crash_finding(&within, cfg));
    Verdict { new, finding, note }
}

/// The links of xl's restarts that lead to domain `new`, oldest first:
/// walked back from it through the shutdowns whose action started the
/// next domain, until the domain dom0 last saw (`seen`: restarts before
/// it were learned then) or the start of xl's log. dom0 may never have
/// seen the domains in between: a VM created and crashed between two
/// cycles, its start in xl's log.
fn chain<'a>(seen: Option<u32>, new: u32, shutdowns: &[&'a Shutdown]) -> Vec<&'a Shutdown> {
    let mut links: Vec<&'a Shutdown> = Vec::new();
    let last = shutdowns.last().copied();
    let mut at = new;
    // Each link leads back to another domain; the bound stops links that
    // loop.
    for _ in 0..shutdowns.len() {
        if Some(at) == seen {
            break;
        }
        let link = shutdowns.iter().rev().copied().find(|s| {
            s.restarts()
                && (s.next_domid == Some(at)
                    // xl logs the domain it started once it has built it:
                    // the last restart in its log with no next domain yet
                    // is the one being built, the domain running now.
                    || (s.next_domid.is_none()
                        && at == new
                        && last.is_some_and(|l| std::ptr::eq(l, *s))))
        });
        match link {
            Some(l) if l.domid != at => {
                links.push(l);
                at = l.domid;
            }
            _ => break,
        }
    }
    links.reverse();
    links
}

fn is_crash(r: &Restart) -> bool {
    matches!(r.reason.as_str(), "crash" | "watchdog")
}

/// `on_crash = "restart"` words, when xl's log said its action.
fn action_words(r: &Restart) -> String {
    let key = if r.reason == "watchdog" {
        "on_watchdog"
    } else if is_crash(r) {
        "on_crash"
    } else {
        "on_reboot"
    };
    match &r.action {
        Some(a) => format!(", {key} = \"{a}\" as xl's log says"),
        None => String::new(),
    }
}

fn clock(t: i64) -> String {
    local_time(t, "%H:%M:%S").unwrap_or_else(|| t.to_string())
}

fn domains(r: &Restart) -> String {
    match r.old_domid {
        Some(old) => format!("domain {old} -> {}", r.new_domid),
        None => format!("domain {}", r.new_domid),
    }
}

/// One restart in words, for the guest's message.
pub fn restart_words(r: &Restart) -> String {
    let at = clock(r.time);
    match r.reason.as_str() {
        "crash" => format!(
            "crashed and restarted by the toolstack ({}, at {at}{})",
            domains(r),
            action_words(r)
        ),
        "watchdog" => format!(
            "its watchdog fired and the toolstack restarted it ({}, at {at}{})",
            domains(r),
            action_words(r)
        ),
        "reboot" => format!(
            "rebooted ({}, at {at}): Xen's reason is reboot, asked by `xl reboot` or by the guest's own kernel (dom0 cannot tell which; a Linux HVM guest's panic without xen_legacy_crash says reboot too)",
            domains(r)
        ),
        "soft_reset" => format!("soft-reset by the toolstack ({}, at {at})", domains(r)),
        _ => format!(
            "restarted ({}, at {at}): another boot of its kernel in a new domain; dom0 has no log of why",
            domains(r)
        ),
    }
}

/// A crash the toolstack restarted, within the window.
fn crash_finding(within: &[&Restart], cfg: &LifecycleConfig) -> Option<CheckResult> {
    let crashes: Vec<&&Restart> = within.iter().filter(|r| is_crash(r)).collect();
    let last = crashes.last()?;
    let message = if crashes.len() == 1 {
        restart_words(last)
    } else {
        format!(
            "crashed {} times in the last {}, restarted by the toolstack each time (the last: {})",
            crashes.len(),
            ago(cfg.restart_window_secs as i64),
            restart_words(last)
        )
    };
    Some(finding(CRASH_CHECK, message, crashes.len()))
}

/// `restart_loop_count` restarts or more within the window.
fn loop_finding(within: &[&Restart], cfg: &LifecycleConfig) -> Option<CheckResult> {
    let n = within.len();
    if cfg.restart_loop_count == 0 || n < cfg.restart_loop_count as usize {
        return None;
    }
    let mut kinds: Vec<(usize, &str)> = Vec::new();
    for word in ["crash", "watchdog", "reboot", "soft_reset", "unknown"] {
        let count = within.iter().filter(|r| r.reason == word).count();
        if count > 0 {
            kinds.push((count, word));
        }
    }
    let kinds = kinds
        .iter()
        .map(|(c, w)| {
            let (one, many) = match *w {
                "crash" => ("crash", "crashes"),
                "watchdog" => ("watchdog reset", "watchdog resets"),
                "reboot" => ("reboot", "reboots"),
                "soft_reset" => ("soft reset", "soft resets"),
                _ => ("restart of unknown cause", "restarts of unknown cause"),
            };
            format!("{c} {}", if *c > 1 { many } else { one })
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Restarts learned in one cycle share its time: said once, counted.
    let mut times: Vec<(String, usize)> = Vec::new();
    for t in within.iter().map(|r| clock(r.time)) {
        match times.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => times.push((t, 1)),
        }
    }
    let times = times
        .iter()
        .map(|(t, n)| {
            if *n > 1 {
                format!("{t} ({n})")
            } else {
                t.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(finding(
        LOOP_CHECK,
        format!(
            "restarted {n} times in the last {} ({kinds}; at {times}): a restart loop (restart_loop_count = {})",
            ago(cfg.restart_window_secs as i64),
            cfg.restart_loop_count
        ),
        n,
    ))
}

fn finding(id: &str, message: String, count: usize) -> CheckResult {
    let mut c = CheckResult::new(id, KIND, "");
    c.status = Status::Warning;
    c.message = message;
    c.values.push(xsmon_proto::Value {
        name: "restarts".into(),
        value: count as f64,
    });
    c
}

/// The shutdown of domain `domid` that xl logged as a restart it has not
/// finished yet (no next domain in its log): the VM is being restarted.
pub fn restarting<'a>(domid: u32, shutdowns: &[&'a Shutdown]) -> Option<&'a Shutdown> {
    shutdowns
        .iter()
        .rev()
        .find(|s| s.domid == domid)
        .filter(|s| s.restarts() && s.next_domid.is_none())
        .copied()
}

/// Words for a VM whose domain ended and that xl is starting again.
pub fn restarting_words(s: &Shutdown) -> String {
    let action = s.action.as_deref().unwrap_or("restart");
    match s.reason {
        Reason::Crash => format!(
            "crashed (domain {}) and the toolstack is starting it again (on_crash = \"{action}\" as xl's log says); no new domain yet",
            s.domid
        ),
        Reason::Watchdog => format!(
            "its watchdog fired (domain {}) and the toolstack is starting it again (on_watchdog = \"{action}\" as xl's log says); no new domain yet",
            s.domid
        ),
        _ => format!(
            "shut down to {} (domain {}) and the toolstack is starting it again; no new domain yet",
            s.reason.as_str(),
            s.domid
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xl_records::parse_log;

    const NOW: i64 = 1_796_000_000;

    fn row(domid: u32) -> HostRow {
        HostRow {
            id: 1,
            ident: "uuid:x".into(),
            uuid: None,
            name: "cr01".into(),
            last_seen: NOW - 300,
            domid: Some(domid),
            state: "running".into(),
            config: true,
            run: None,
            run_domid: None,
            run_boot: None,
            started: None,
            xen: None,
            reboots: 0,
        }
    }

    fn dom(domid: u32, start_time: Option<f64>) -> Guest {
        Guest {
            start_time,
            ..Guest::named(domid, "cr01")
        }
    }

    fn log(text: &str) -> Vec<Shutdown> {
        parse_log(text)
    }

    const TWO_CRASHES_AND_A_REBOOT: &str = "Waiting for domain cr01 (domid 1) to die [pid 2]
Domain 1 has shut down, reason code 3 0x3
Action for shutdown reason code 3 is restart
Waiting for domain cr01 (domid 3) to die [pid 2]
Domain 3 has shut down, reason code 3 0x3
Action for shutdown reason code 3 is restart
Waiting for domain cr01 (domid 4) to die [pid 2]
Domain 4 has shut down, reason code 1 0x1
Action for shutdown reason code 1 is restart
Waiting for domain cr01 (domid 5) to die [pid 2]
";

    fn cfg() -> LifecycleConfig {
        LifecycleConfig::default()
    }

    #[test]
    fn one_crash_that_xl_restarted_is_a_warning_that_says_so() {
        let s = log(TWO_CRASHES_AND_A_REBOOT);
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(
            Some(&row(1)),
            &dom(3, Some((NOW - 4) as f64)),
            &refs,
            false,
            &[],
            NOW,
            &cfg(),
        );
        assert_eq!(v.new.len(), 1);
        assert_eq!((v.new[0].old_domid, v.new[0].new_domid), (Some(1), 3));
        assert_eq!(v.new[0].reason, "crash");
        assert_eq!(v.new[0].time, NOW - 4);
        let f = v.finding.expect("a crash is a finding");
        assert_eq!((f.id.as_str(), f.status), (CRASH_CHECK, Status::Warning));
        assert!(
            f.message
                .starts_with("crashed and restarted by the toolstack (domain 1 -> 3, at ")
                && f.message
                    .ends_with(", on_crash = \"restart\" as xl's log says)"),
            "{}",
            f.message
        );
        assert_eq!(v.note, None);
    }

    #[test]
    fn three_restarts_between_two_cycles_are_a_loop_naming_each_kind() {
        let s = log(TWO_CRASHES_AND_A_REBOOT);
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(Some(&row(1)), &dom(5, None), &refs, false, &[], NOW, &cfg());
        assert_eq!(
            v.new
                .iter()
                .map(|r| (r.old_domid, r.new_domid, r.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (Some(1), 3, "crash"),
                (Some(3), 4, "crash"),
                (Some(4), 5, "reboot")
            ]
        );
        let f = v.finding.unwrap();
        assert_eq!(f.id, LOOP_CHECK);
        assert!(
            f.message
                .starts_with("restarted 3 times in the last 60 min (2 crashes, 1 reboot; at ")
                && f.message
                    .ends_with("): a restart loop (restart_loop_count = 3)"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_reboot_is_a_note_never_a_crash_and_counts_toward_a_loop() {
        let s = log(TWO_CRASHES_AND_A_REBOOT);
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(Some(&row(4)), &dom(5, None), &refs, false, &[], NOW, &cfg());
        assert_eq!(v.finding, None);
        let note = v.note.unwrap();
        assert!(note.starts_with("rebooted (domain 4 -> 5, at "), "{note}");
        assert!(!note.contains("crash") || note.contains("panic without xen_legacy_crash"));
        // Two restarts stored within the hour: this one makes three.
        let stored = |d: u32, reason: &str| Restart {
            time: NOW - 600,
            old_domid: Some(d - 1),
            new_domid: d,
            reason: reason.into(),
            action: Some("restart".into()),
        };
        let v = judge(
            Some(&row(4)),
            &dom(5, None),
            &refs,
            false,
            &[stored(3, "reboot"), stored(4, "reboot")],
            NOW,
            &cfg(),
        );
        assert_eq!(v.finding.unwrap().id, LOOP_CHECK);
        // A crash stored within the hour: its finding, and the reboot
        // that started this domain said beside it.
        let v = judge(
            Some(&row(4)),
            &dom(5, None),
            &refs,
            false,
            &[stored(4, "crash")],
            NOW,
            &cfg(),
        );
        assert_eq!(v.finding.unwrap().id, CRASH_CHECK);
        assert!(v.note.unwrap().starts_with("rebooted (domain 4 -> 5, at "));
        // Stored two hours ago: outside the window.
        let mut old = stored(3, "crash");
        old.time = NOW - 7200;
        let v = judge(
            Some(&row(4)),
            &dom(5, None),
            &refs,
            false,
            &[old],
            NOW,
            &cfg(),
        );
        assert_eq!(v.finding, None);
    }

    #[test]
    fn a_crash_stays_a_warning_within_the_window_and_is_learned_once() {
        let stored = Restart {
            time: NOW - 1800,
            old_domid: Some(1),
            new_domid: 3,
            reason: "crash".into(),
            action: Some("restart".into()),
        };
        // The next cycles: the same domain 3, nothing new.
        let v = judge(
            Some(&row(3)),
            &dom(3, None),
            &[],
            false,
            std::slice::from_ref(&stored),
            NOW,
            &cfg(),
        );
        assert!(v.new.is_empty());
        assert_eq!(v.finding.unwrap().id, CRASH_CHECK);
        // Its probe's first run says another boot: the restart is known.
        let v = judge(
            Some(&row(1)),
            &dom(3, None),
            &[],
            true,
            std::slice::from_ref(&stored),
            NOW,
            &cfg(),
        );
        assert!(v.new.is_empty());
        // After the window: nothing.
        let v = judge(
            Some(&row(3)),
            &dom(3, None),
            &[],
            false,
            &[stored],
            NOW + 3600,
            &cfg(),
        );
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn without_xls_log_only_another_boot_is_a_restart_and_saves_never_are() {
        // A restore: xl's log of the new xl is empty; the probe resumed.
        let v = judge(Some(&row(1)), &dom(9, None), &[], false, &[], NOW, &cfg());
        assert_eq!(v, Verdict::default());
        // A suspend in xl's log (xl save) is no restart either.
        let s = log("Domain 1 has shut down, reason code 2 0x2\nAction for shutdown reason code 2 is destroy\n");
        let refs: Vec<&Shutdown> = s.iter().collect();
        assert_eq!(
            judge(Some(&row(1)), &dom(9, None), &refs, false, &[], NOW, &cfg()),
            Verdict::default()
        );
        // Another boot of its kernel, no log: a restart of unknown cause.
        let v = judge(Some(&row(1)), &dom(9, None), &[], true, &[], NOW, &cfg());
        assert_eq!(v.new[0].reason, "unknown");
        assert_eq!(v.note, None, "the run's own note says it");
        assert!(restart_words(&v.new[0]).contains("dom0 has no log of why"));
    }

    #[test]
    fn a_domain_xl_is_still_building_is_its_restart() {
        // The cycle runs while xl builds domain 8: its log has the
        // crash's action, not yet the domain it started.
        let s = log("Waiting for domain cr01 (domid 7) to die [pid 9]\nDomain 7 has shut down, reason code 3 0x3\nAction for shutdown reason code 3 is restart\nDomain 7 needs to be cleaned up: destroying the domain\nDone. Rebooting now\n");
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(Some(&row(7)), &dom(8, None), &refs, false, &[], NOW, &cfg());
        assert_eq!(
            v.new
                .iter()
                .map(|r| (r.old_domid, r.new_domid))
                .collect::<Vec<_>>(),
            vec![(Some(7), 8)]
        );
        assert_eq!(v.finding.unwrap().id, CRASH_CHECK);
        // An older restart with no next domain logged is no link of it:
        // only the last one is being built.
        let s = log("Domain 5 has shut down, reason code 3 0x3\nAction for shutdown reason code 3 is restart\nDomain 7 has shut down, reason code 1 0x1\nAction for shutdown reason code 1 is restart\n");
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(Some(&row(5)), &dom(8, None), &refs, false, &[], NOW, &cfg());
        assert_eq!(
            v.new
                .iter()
                .map(|r| (r.old_domid, r.new_domid, r.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![(Some(7), 8, "reboot")]
        );
    }

    #[test]
    fn restarts_dom0_never_saw_the_start_of_are_restarts() {
        // Domain 14 was created (a new xl log) and crashed before any
        // cycle saw it; dom0 last saw domain 13.
        let s = log("Waiting for domain hvm01 (domid 14) to die [pid 9]\nDomain 14 has shut down, reason code 3 0x3\nAction for shutdown reason code 3 is restart\nWaiting for domain hvm01 (domid 15) to die [pid 9]\n");
        let refs: Vec<&Shutdown> = s.iter().collect();
        let v = judge(
            Some(&row(13)),
            &dom(15, None),
            &refs,
            false,
            &[],
            NOW,
            &cfg(),
        );
        assert_eq!(
            v.new
                .iter()
                .map(|r| (r.old_domid, r.new_domid))
                .collect::<Vec<_>>(),
            vec![(Some(14), 15)]
        );
        // A VM first seen running its first domain: nothing.
        let fresh = log("Waiting for domain hvm01 (domid 14) to die [pid 9]\n");
        let refs: Vec<&Shutdown> = fresh.iter().collect();
        assert_eq!(
            judge(None, &dom(14, None), &refs, false, &[], NOW, &cfg()),
            Verdict::default()
        );
    }

    #[test]
    fn a_restart_without_its_new_domain_yet_is_being_restarted() {
        let s = log("Waiting for domain cr01 (domid 7) to die [pid 9]\nDomain 7 has shut down, reason code 3 0x3\nAction for shutdown reason code 3 is restart\n");
        let refs: Vec<&Shutdown> = s.iter().collect();
        let r = restarting(7, &refs).unwrap();
        assert_eq!(
            restarting_words(r),
            "crashed (domain 7) and the toolstack is starting it again (on_crash = \"restart\" as xl's log says); no new domain yet"
        );
        assert!(restarting(6, &refs).is_none());
        let done = log(TWO_CRASHES_AND_A_REBOOT);
        let refs: Vec<&Shutdown> = done.iter().collect();
        assert!(restarting(1, &refs).is_none());
    }
}
