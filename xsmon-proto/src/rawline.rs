//! # `poller raw` line format, version 1
//!
//! The poller's output for scripts and Nagios-style parsers: one line per
//! finding, no decoration, nothing else. This page is the contract; the
//! printer and parser below are tested as a pair.
//!
//! ```text
//! <severity> <dom0> <host> <check> <age> <message>
//! ```
//!
//! * `severity`: `error`, `warning`, `unknown` (a check that could not run)
//!   or `info` (e.g. a guest running on another dom0 than its config says);
//! * `dom0`: the dom0 the finding came from (or is about);
//! * `host`: the guest (`Domain-0` for dom0 itself), or empty when the
//!   finding is about the dom0's SNMP endpoint (unreachable, garbage);
//! * `check`: the check id (`cpu`, `disk2`, `net0`, ...), or `probe` (the
//!   guest's probe is stale, silent or sent invalid data), `snmp` (the dom0
//!   could not be polled), `collector` / `database` (dom0's own failures),
//!   `config` (the shared config directory), `migrated`;
//! * `age`: seconds since the guest's probe last reported, `-` if unknown;
//! * `message`: one line for a human.
//!
//! Fields are separated by single spaces and escaped exactly as in the SNMP
//! line format ([`crate::snmpline::escape`]: `\\`, `\s`, `\xHH`, empty =
//! `\e`), so every line splits into exactly six fields and nothing a guest
//! wrote can add a line or a field.

use crate::snmpline::{escape, unescape};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawLine {
    pub severity: String,
    pub dom0: String,
    pub host: String,
    pub check: String,
    pub age: Option<i64>,
    pub message: String,
}

pub fn print(l: &RawLine) -> String {
    format!(
        "{} {} {} {} {} {}",
        escape(&l.severity),
        escape(&l.dom0),
        escape(&l.host),
        escape(&l.check),
        l.age.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        escape(&l.message)
    )
}

pub fn parse(line: &str) -> Result<RawLine, String> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 6 {
        return Err(format!("{} fields, expected 6", f.len()));
    }
    Ok(RawLine {
        severity: unescape(f[0])?,
        dom0: unescape(f[1])?,
        host: unescape(f[2])?,
        check: unescape(f[3])?,
        age: if f[4] == "-" {
            None
        } else {
            Some(
                f[4].parse()
                    .map_err(|_| format!("age {:?} is not a number", f[4]))?,
            )
        },
        message: unescape(f[5])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn example() {
        let l = RawLine {
            severity: "error".into(),
            dom0: "xen01".into(),
            host: "web01".into(),
            check: "disk0".into(),
            age: Some(61),
            message: "/ (ext4) 97% used of 20.0 GiB".into(),
        };
        assert_eq!(
            print(&l),
            r"error xen01 web01 disk0 61 /\s(ext4)\s97%\sused\sof\s20.0\sGiB"
        );
        assert_eq!(parse(&print(&l)).unwrap(), l);
        assert!(parse("error xen01").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(sev in "[a-z]{1,8}", dom0 in any::<String>(), host in any::<String>(),
                      check in any::<String>(), age in proptest::option::of(any::<i64>()), message in any::<String>()) {
            let l = RawLine { severity: sev, dom0, host, check, age, message };
            let text = print(&l);
            prop_assert!(!text.contains('\n'));
            prop_assert_eq!(parse(&text).unwrap(), l);
        }

        /// Fuzz target (scripts/fuzz): any line a script feeds back, or a
        /// printed line with bytes changed, never makes the parser panic,
        /// and what it accepts prints back to a line it reads the same.
        #[test]
        fn fuzz_raw_line_parser(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..120), cut in any::<usize>()) {
            let mangled = {
                let good = print(&RawLine { severity: "error".into(), dom0: "xen01".into(), host: "web01".into(), check: "disk0".into(), age: Some(5), message: "full".into() });
                let at = cut % (good.len() + 1);
                let mut b = good.into_bytes();
                b.splice(at..at, bytes);
                String::from_utf8_lossy(&b).into_owned()
            };
            for input in [text, mangled] {
                if let Ok(l) = parse(&input) {
                    let again = print(&l);
                    prop_assert!(!again.contains('\n'));
                    prop_assert_eq!(parse(&again).unwrap(), l);
                }
            }
        }
    }
}
