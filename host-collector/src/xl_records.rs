//! What xl and libxl keep of the domains they run, read once per cycle
//! (observe; judged in [`crate::restarts`] and [`crate::domstate`]):
//!
//! - xl's log of each domain it watches, `<xl_log_dir>/xl-<name>.log`: the
//!   xl that created a domain stays to watch it, and logs each shutdown
//!   with Xen's reason code, the action it took, and the domain it started
//!   next when that action restarts the VM. Seen on Debian's Xen 4.17 and
//!   4.20 (a kernel panic, then `xl reboot`):
//!
//!   ```text
//!   Waiting for domain cr01 (domid 1) to die [pid 234]
//!   Domain 1 has shut down, reason code 3 0x3
//!   Action for shutdown reason code 3 is restart
//!   Domain 1 needs to be cleaned up: destroying the domain
//!   Done. Rebooting now
//!   Waiting for domain cr01 (domid 3) to die [pid 234]
//!   Domain 3 has shut down, reason code 1 0x1
//!   Action for shutdown reason code 1 is restart
//!   ```
//!
//!   Each `xl create` (or `xl restore`) of the name starts a new log (the
//!   old one becomes `.log.1`): the file covers the watching xl's life. The
//!   log keeps the name the domain was created with (`xl rename` does not
//!   move it), and has no timestamps.
//! - libxl's config of each domain it built,
//!   `<libxl_dir>/userdata-d.<domid>.<uuid>.libxl-json` (mode 0600): its
//!   `on_crash` action, as the toolstack will apply it.
//!
//! Both are root's files written by the toolstack, and the names in them
//! the admin's; still, each read is bounded, and nothing here panics on
//! what it reads.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub use crate::hypervisor::Reason;

/// xl's log is read from its last 64 KiB: a restart adds about 220 bytes,
/// so the tail holds some 290 of them, far more than a window counts.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// libxl's config of a domain is a few KiB.
const LIBXL_JSON_MAX: u64 = 1 << 20;

/// One shutdown xl logged of a domain it watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    pub domid: u32,
    pub reason: Reason,
    /// What xl did, in xl.cfg's spelling (`restart`, `rename-restart`,
    /// `coredump-restart`, `destroy`, `preserve`...), once logged.
    pub action: Option<String>,
    /// The domain xl started next for the VM, once logged.
    pub next_domid: Option<u32>,
}

impl Shutdown {
    /// xl's action starts the VM again in a new domain.
    pub fn restarts(&self) -> bool {
        self.action
            .as_deref()
            .is_some_and(|a| a.ends_with("restart"))
    }
}

/// The shutdowns in the text of an xl log, oldest first. Lines it does not
/// know are skipped.
pub fn parse_log(text: &str) -> Vec<Shutdown> {
    let mut out: Vec<Shutdown> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(domid) = waiting_for(line) {
            if let Some(last) = out.last_mut() {
                if last.next_domid.is_none() && last.restarts() && last.domid != domid {
                    last.next_domid = Some(domid);
                }
            }
        } else if let Some((domid, code)) = shut_down(line) {
            out.push(Shutdown {
                domid,
                reason: Reason::from_code(Some(code)),
                action: None,
                next_domid: None,
            });
        } else if let Some((code, action)) = action_for(line) {
            if let Some(last) = out.last_mut() {
                if last.action.is_none() && last.reason == Reason::from_code(Some(code)) {
                    last.action = Some(action.replace('_', "-"));
                }
            }
        }
    }
    out
}

/// `Waiting for domain NAME (domid N) to die [pid P]` -> N.
fn waiting_for(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("Waiting for domain ")?;
    let (_, after) = rest.rsplit_once(" (domid ")?;
    let (domid, tail) = after.split_once(')')?;
    tail.starts_with(" to die").then_some(())?;
    domid.parse().ok()
}

/// `Domain N has shut down, reason code R 0xR` -> (N, R).
fn shut_down(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("Domain ")?;
    let (domid, rest) = rest.split_once(" has shut down, reason code ")?;
    let code = rest.split(' ').next()?;
    Some((domid.parse().ok()?, code.parse().ok()?))
}

/// `Action for shutdown reason code R is ACTION` -> (R, ACTION).
fn action_for(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix("Action for shutdown reason code ")?;
    let (code, action) = rest.split_once(" is ")?;
    let action = action.trim();
    let word = !action.is_empty()
        && action.len() <= 32
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-');
    word.then(|| Some((code.parse().ok()?, action)))?
}

/// xl's logs of the domains a cycle looks at, by the name in the file's
/// name. A log that is missing is simply absent (another toolstack, or
/// xl's logs elsewhere); one that cannot be read is said in `problems`.
#[derive(Debug, Default)]
pub struct XlLogs {
    pub by_name: HashMap<String, Vec<Shutdown>>,
    pub problems: Vec<String>,
}

impl XlLogs {
    /// The shutdowns xl logged under any of `names`.
    pub fn of<'a>(&'a self, names: &[&str]) -> impl Iterator<Item = &'a Shutdown> + 'a {
        let found: Vec<&'a Vec<Shutdown>> =
            names.iter().filter_map(|n| self.by_name.get(*n)).collect();
        found.into_iter().flatten()
    }
}

/// Reads xl's log of each of `names` (each once; a name that could not be
/// a file's is skipped).
pub fn read_logs<'a>(dir: &Path, names: impl IntoIterator<Item = &'a str>) -> XlLogs {
    let mut logs = XlLogs::default();
    for name in names {
        if logs.by_name.contains_key(name) || !xsmon_proto::cluster::valid_name(name) {
            continue;
        }
        let path = dir.join(format!("xl-{name}.log"));
        match read_tail(&path, LOG_TAIL_BYTES) {
            Ok(Some(text)) => {
                logs.by_name.insert(name.to_string(), parse_log(&text));
            }
            Ok(None) => {}
            Err(e) => logs
                .problems
                .push(format!("cannot read xl's log {}: {e}", path.display())),
        }
    }
    logs
}

/// The last `max` bytes of a file, from its first whole line; `None` when
/// it does not exist.
fn read_tail(path: &Path, max: u64) -> std::io::Result<Option<String>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    f.take(max).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // A tail cut inside a line starts at the next one.
    let text = if start > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    Ok(Some(text.to_string()))
}

/// The `on_crash` action libxl keeps for domain `domid` of VM `uuid`, in
/// xl.cfg's spelling (`preserve`, `restart`, `coredump-restart`...);
/// `None` when its config is not there or does not say.
pub fn on_crash(dir: &Path, domid: u32, uuid: &str) -> Option<String> {
    let uuid_ok = !uuid.is_empty()
        && uuid.len() <= 36
        && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !uuid_ok {
        return None;
    }
    let path = dir.join(format!("userdata-d.{domid}.{uuid}.libxl-json"));
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    f.take(LIBXL_JSON_MAX).read_to_string(&mut text).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let action = json.get("on_crash")?.as_str()?;
    let word = !action.is_empty()
        && action.len() <= 32
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-');
    word.then(|| action.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xl's log of a PV guest on the lab's Xen 4.20: three crashes xl
    /// restarted, an `xl reboot`, then `xl shutdown` (destroyed).
    const LAB_LOG: &str = "Waiting for domain fact01 (domid 1) to die [pid 234]
Domain 1 has shut down, reason code 3 0x3
Action for shutdown reason code 3 is restart
Domain 1 needs to be cleaned up: destroying the domain
Done. Rebooting now
Waiting for domain fact01 (domid 3) to die [pid 234]
Domain 3 has shut down, reason code 3 0x3
Action for shutdown reason code 3 is restart
Domain 3 needs to be cleaned up: destroying the domain
Done. Rebooting now
Waiting for domain fact01 (domid 4) to die [pid 234]
Domain 4 has shut down, reason code 3 0x3
Action for shutdown reason code 3 is restart
Domain 4 needs to be cleaned up: destroying the domain
Done. Rebooting now
Waiting for domain fact01 (domid 5) to die [pid 234]
Domain 5 has shut down, reason code 1 0x1
Action for shutdown reason code 1 is restart
Domain 5 needs to be cleaned up: destroying the domain
Done. Rebooting now
Waiting for domain fact01 (domid 6) to die [pid 234]
Domain 6 has shut down, reason code 0 0x0
Action for shutdown reason code 0 is destroy
Domain 6 needs to be cleaned up: destroying the domain
";

    fn sd(domid: u32, reason: Reason, action: &str, next: Option<u32>) -> Shutdown {
        Shutdown {
            domid,
            reason,
            action: Some(action.into()),
            next_domid: next,
        }
    }

    #[test]
    fn the_labs_log_reads_as_its_shutdowns_and_their_next_domains() {
        assert_eq!(
            parse_log(LAB_LOG),
            vec![
                sd(1, Reason::Crash, "restart", Some(3)),
                sd(3, Reason::Crash, "restart", Some(4)),
                sd(4, Reason::Crash, "restart", Some(5)),
                sd(5, Reason::Reboot, "restart", Some(6)),
                sd(6, Reason::Poweroff, "destroy", None),
            ]
        );
    }

    #[test]
    fn a_restart_in_progress_has_no_next_domain_yet() {
        let log = "Waiting for domain cr01 (domid 7) to die [pid 9]\n\
                   Domain 7 has shut down, reason code 3 0x3\n\
                   Action for shutdown reason code 3 is coredump_restart\n\
                   Domain 7 needs to be cleaned up: destroying the domain\n";
        let s = parse_log(log);
        assert_eq!(s, vec![sd(7, Reason::Crash, "coredump-restart", None)]);
        assert!(s[0].restarts());
    }

    #[test]
    fn lines_it_does_not_know_and_broken_ones_are_skipped() {
        let log = "Domain x has shut down, reason code 3 0x3\n\
                   Domain 9 has shut down, reason code\n\
                   Action for shutdown reason code 3 is $(reboot)\n\
                   libxl: error: something else\n\
                   Waiting for domain a (domid 2) to die\n\
                   Domain 4 has been shut down, reason code 0\n\
                   Domain 4294967296 has shut down, reason code 3 0x3\n";
        assert_eq!(parse_log(log), Vec::new());
        // An action for another reason code than the shutdown's is not its.
        let log = "Domain 2 has shut down, reason code 3 0x3\nAction for shutdown reason code 1 is restart\n";
        assert_eq!(parse_log(log)[0].action, None);
    }

    #[test]
    fn logs_are_read_by_name_bounded_and_missing_ones_are_absent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xl-cr01.log"), LAB_LOG).unwrap();
        // A long log: only its tail is read, from a whole line.
        let mut long = "Waiting for domain big (domid 1) to die [pid 2]\n".repeat(2_000);
        long.push_str("Domain 1 has shut down, reason code 4 0x4\nAction for shutdown reason code 4 is restart\nWaiting for domain big (domid 8) to die [pid 2]\n");
        std::fs::write(dir.path().join("xl-big.log"), &long).unwrap();
        let logs = read_logs(
            dir.path(),
            ["cr01", "big", "none01", "../etc/passwd", "cr01"],
        );
        assert_eq!(logs.by_name["cr01"].len(), 5);
        assert_eq!(
            logs.by_name["big"],
            vec![sd(1, Reason::Watchdog, "restart", Some(8))]
        );
        assert!(!logs.by_name.contains_key("none01"));
        assert!(logs.problems.is_empty(), "{:?}", logs.problems);
        assert_eq!(logs.of(&["none01", "cr01"]).count(), 5);
    }

    #[test]
    fn on_crash_is_read_from_libxls_config_of_the_domain() {
        let dir = tempfile::tempdir().unwrap();
        let uuid = "461bc299-9ba4-41e4-89ba-c2999ba461e4";
        std::fs::write(
            dir.path().join(format!("userdata-d.7.{uuid}.libxl-json")),
            r#"{ "c_info": { "name": "cr01" }, "on_reboot": "restart", "on_crash": "coredump_restart" }"#,
        )
        .unwrap();
        assert_eq!(
            on_crash(dir.path(), 7, uuid).as_deref(),
            Some("coredump-restart")
        );
        assert_eq!(on_crash(dir.path(), 8, uuid), None);
        assert_eq!(on_crash(dir.path(), 7, "../../x"), None);
        std::fs::write(
            dir.path().join(format!("userdata-d.9.{uuid}.libxl-json")),
            "{ broken",
        )
        .unwrap();
        assert_eq!(on_crash(dir.path(), 9, uuid), None);
    }
}
