//! dom0's history database set aside as damaged (see
//! `xsmon_store::damage`): the finding dom0 carries while a file set aside
//! stays beside the database, so the loss of history is seen from the
//! poller and not only in a log; removing or moving the file clears it.

use xsmon_proto::{CheckResult, Status};
use xsmon_store::damage::SetAside;

use crate::words::when;

/// The check's id and kind in dom0's findings.
pub const CHECK: &str = "history";

/// The warning for the databases set aside, if any (the latest named).
pub fn check(kept: &[SetAside], now: i64) -> Option<CheckResult> {
    let last = kept.last()?;
    let path = last.path.display();
    let mut c = CheckResult::new(CHECK, CHECK, path.to_string());
    c.status = Status::Warning;
    c.message = format!(
        "history database damaged: set aside as {path} at {}, a new one started; \
         the history before then is only in that file (`sqlite3 {path} .recover` reads what is left). \
         Remove or move it to clear this",
        when(last.at, now)
    );
    if kept.len() > 1 {
        c.message
            .push_str(&format!(" ({} damaged files set aside in all)", kept.len()));
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_file_set_aside_is_named_with_how_to_clear_it() {
        assert!(check(&[], 0).is_none());
        let at = 1_796_565_600;
        let kept = |n: &str| SetAside {
            path: format!("/var/lib/xsmon/history.db.damaged-{n}").into(),
            at,
        };
        let c = check(&[kept("20261206T140000Z")], at + 7200).unwrap();
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.message.starts_with("history database damaged: set aside as /var/lib/xsmon/history.db.damaged-20261206T140000Z at "),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("(2 h ago), a new one started"),
            "{}",
            c.message
        );
        assert!(
            c.message.ends_with("Remove or move it to clear this"),
            "{}",
            c.message
        );
        let two = check(&[kept("a"), kept("b")], at).unwrap();
        assert!(
            two.message.contains("history.db.damaged-b"),
            "{}",
            two.message
        );
        assert!(
            two.message.ends_with("(2 damaged files set aside in all)"),
            "{}",
            two.message
        );
    }
}
