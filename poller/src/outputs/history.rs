//! `poller history NAME`: a guest's or a dom0's transitions, one line
//! each, oldest first, escaped as every other output.

use std::fmt::Write as _;

use xsmon_store::site::Transition;

use super::tty_safe;
use crate::words;

/// One line per transition: when, where, what, from, to, the words then.
pub fn history(transitions: &[Transition]) -> String {
    let mut out = String::new();
    for t in transitions {
        let host = if t.host.is_empty() {
            "(dom0)".to_string()
        } else {
            tty_safe(&t.host)
        };
        let _ = writeln!(
            out,
            "{}  {}  {host}  {}  {} -> {}  {}",
            words::timestamp(t.time),
            tty_safe(&t.dom0),
            tty_safe(&t.check),
            tty_safe(&t.old),
            tty_safe(&t.new),
            tty_safe(&t.message)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_message_stays_on_its_line() {
        let t = Transition {
            time: 0,
            dom0: "xen01".into(),
            host: "web01".into(),
            check: "disk1".into(),
            old: "ok".into(),
            new: "error".into(),
            message: "/: 99% used\nxen02  db01  cpu  ok -> error  forged\x1b[2J".into(),
        };
        let text = history(&[t]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(
            text.contains("xen01  web01  disk1  ok -> error  /: 99% used"),
            "{text}"
        );
    }
}
