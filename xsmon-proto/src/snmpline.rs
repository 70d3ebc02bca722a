//! # The SNMP line format, version 5
//!
//! This page is the contract between `snmp-extend` on each dom0 (which
//! prints it for snmpd's `extend`) and the central `poller` (which reads it
//! back over SNMP, from nsExtendOutputFull or line by line from
//! nsExtendOutLine). The printer and the parser below are the only code
//! that writes or reads it, and they are tested as a pair.
//!
//! One record per line; fields separated by single spaces. Every field is
//! escaped so that it holds only printable ASCII without spaces:
//!
//! | in the field | written as |
//! |---|---|
//! | `\` | `\\` |
//! | space | `\s` |
//! | any byte outside `!`..`~` (controls, newline, DEL, UTF-8 bytes) | `\xHH` (lower-case hex) |
//! | the empty field | `\e` |
//! | the field `-` alone | `\x2d` |
//!
//! so nothing a guest wrote can end a line, add a field or pose as another
//! record. Optional fields (numbers, the UUID) are written `-` when absent,
//! which no escaped field can be.
//!
//! Records (first field is the record type):
//!
//! ```text
//! xsmon 5 state <dom0> <cycle_time|-> <served_time>      first line of basic-monitoring
//! xsmon 5 cluster \e - <served_time>                     first line of list-cluster
//! xsmon 5 figures <dom0> <cycle_time|-> <served_time>    first line of figures
//! G <host> <domid|-> <uuid|-> <probe> <status> <probe_time|-> <seen_time|-> <domain|-> <message>
//! F <host> <check_id> <kind> <status> <target> <message>
//! M <host> <check_id> <kind> <status> <target> <values> <limits>
//! D <dom0> <guest_count>                                  list-cluster: one per dom0
//! E <scope> <message>                                     a failure of the serving side
//! END <records>                                           last line: records before it, header included
//! ```
//!
//! * `G`: one per host (every guest, and dom0 as `Domain-0`), so the poller
//!   can tell "all ok" from "missing". `host` is the label, unique in the
//!   output (`name`, or `name#domid` when several domains share a name;
//!   never `Domain-0` for a guest); `uuid` the VM's UUID; `probe` is
//!   `fresh`, `stale`, `missing`, `invalid`, `host` (dom0), `down` (should
//!   run on this dom0 and does not), `stopped` (not running, as the
//!   admin said), `starting` (version 5: a domain the toolstack created
//!   or restarted a short while ago, being built or booting, whose probe
//!   has not yet had time for its first run: not a silent probe),
//!   `renamed` (version 5: its config's name is one this VM had; the VM
//!   runs here under another name), or, for a guest configured as running no probe, `agent`
//!   (its guest agent's keys, check `agent`) or `none` (no agent either:
//!   what the hypervisor sees); `status` is `ok`, `warning`, `unknown` or `error`;
//!   `probe_time` the time the run claims (the guest's clock), `seen_time`
//!   when dom0 first saw that run (dom0's clock: what freshness is
//!   judged by); `domain` the hypervisor's word for the domain (`running`,
//!   `blocked`, `paused`, `crashed`, `dying`, `shutdown-<reason>` with
//!   reason `poweroff`, `reboot`, `suspend`, `crash`, `watchdog`,
//!   `soft_reset` or `unknown`), `-` when dom0 could not tell (no xl) or
//!   the host is not a running domain. A domain that is not running or
//!   blocked has `probe` `halted`: whatever its probe last wrote is not
//!   current. Its finding is an `F` record with check `domain`, kind `xen`.
//! * `F`: one per check that is not ok.
//! * `M`: figures (extend `xsmonFigures`, fetched only by the poller modes
//!   that show them): one per check of every host whose latest run is
//!   current, with all its figures and the thresholds it was graded by.
//!   `values` is the key layout's `name=number ...` and `limits` its
//!   `name=warning,error ...` (either threshold empty when unset), each
//!   escaped as one field; the parser applies the key layout's rules to
//!   both. dom0's hypervisor counters come as check `xen` (kind `xen`:
//!   `cpu_time_s`) and `vif<domid>.<n>` (`rx_bytes`, `tx_bytes`).
//! * `E`: scope `collector` (no recent cycle, or it could not read
//!   xenstore), `database` (unreadable), `store` (one guest's results
//!   could not be stored; the guest keeps its G line), `config` (config
//!   directory).
//! * `END`: a reader that does not find it knows the output was cut.
//!
//! Times are Unix seconds. A reader must refuse a first line with a version
//! it does not know (and say so) rather than guess.
//!
//! **Version 5** (xsmon 0.5) adds the probe words `starting` and
//! `renamed`; the records are those of version 4. **Version 4** (xsmon
//! 0.4) adds the `domain` field to `G`; the rest is
//! version 3. **Version 3** (xsmon 0.3) adds the `figures` output and its
//! `M` records; the state and cluster outputs are those of version 2.
//!
//! **Version 1** (xsmon 0.1) is read as well, so that a poller can be
//! upgraded before its dom0s: its `G` record has no `uuid` and no
//! `seen_time` (`G <host> <domid|-> <probe> <status> <probe_time|->
//! <message>`); everything else is the same. [`parse_all`] returns the
//! version in the header record.

use thiserror::Error;

use crate::check::Status;
pub use crate::text::{escape, unescape};
pub use crate::values::CheckFigures;

pub const VERSION: u32 = 5;
/// The oldest version [`parse_all`] still reads.
pub const OLDEST_READ: u32 = 1;

/// Does a `G` record's `probe` field say the guest is not reporting (its
/// probe is stale, silent, or sent data that broke the key layout)?
pub fn probe_is_silent(probe: &str) -> bool {
    matches!(probe, "stale" | "missing" | "invalid")
}

/// Does a `G` record's `probe` field say the domain exists but is not
/// running (paused, crashed, shut down, dying: version 4)? Its `F` record
/// with check `domain` says what the hypervisor sees; its probe's last
/// results are not current.
pub fn probe_is_halted(probe: &str) -> bool {
    probe == "halted"
}

/// Does a `G` record's `probe` field say the domain is starting (version
/// 5): created or restarted a short while ago, its probe's first run not
/// yet due? Not a silent probe; its status says whether anything else is
/// wrong (a crash that xl restarted is a warning).
pub fn probe_is_starting(probe: &str) -> bool {
    probe == "starting"
}

/// Does a `G` record's `probe` field say the guest should run on that dom0
/// and does not?
pub fn probe_is_down(probe: &str) -> bool {
    probe == "down"
}

/// What kind of output a header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    State,
    Cluster,
    Figures,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Header {
        /// The format version the output was written in.
        version: u32,
        kind: Kind,
        dom0: String,
        cycle_time: Option<i64>,
        served_time: i64,
    },
    Guest {
        host: String,
        domid: Option<u32>,
        /// `None` in version 1, or when the collector could not read it.
        uuid: Option<String>,
        probe: String,
        status: Status,
        probe_time: Option<i64>,
        /// `None` in version 1.
        seen_time: Option<i64>,
        /// The hypervisor's word for the domain (version 4): `running`,
        /// `blocked`, `paused`, `crashed`, `dying`, `shutdown-<reason>`;
        /// `None` when unknown, and in versions 1 to 3.
        domain: Option<String>,
        message: String,
    },
    Finding {
        host: String,
        check_id: String,
        kind: String,
        status: Status,
        target: String,
        message: String,
    },
    Dom0 {
        name: String,
        guests: u32,
    },
    Figures {
        host: String,
        figures: CheckFigures,
    },
    Error {
        scope: String,
        message: String,
    },
    End {
        records: u32,
    },
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Prints one record as a line (without the newline), in the version its
/// header says (the current one for every other record: a printer writes
/// only the current version; older ones are printed by tests only).
pub fn print(r: &Record) -> String {
    print_as(r, VERSION)
}

fn print_as(r: &Record, version: u32) -> String {
    let e = |s: &str| escape(s);
    match r {
        Record::Header {
            version,
            kind,
            dom0,
            cycle_time,
            served_time,
        } => {
            let k = match kind {
                Kind::State => "state",
                Kind::Cluster => "cluster",
                Kind::Figures => "figures",
            };
            format!(
                "xsmon {version} {k} {} {} {served_time}",
                e(dom0),
                opt(*cycle_time)
            )
        }
        Record::Guest {
            host,
            domid,
            probe,
            status,
            probe_time,
            message,
            ..
        } if version == 1 => format!(
            "G {} {} {} {} {} {}",
            e(host),
            opt(*domid),
            e(probe),
            status,
            opt(*probe_time),
            e(message)
        ),
        Record::Guest {
            host,
            domid,
            uuid,
            probe,
            status,
            probe_time,
            seen_time,
            message,
            ..
        } if version <= 3 => format!(
            "G {} {} {} {} {} {} {} {}",
            e(host),
            opt(*domid),
            uuid.as_deref().map(escape).unwrap_or_else(|| "-".into()),
            e(probe),
            status,
            opt(*probe_time),
            opt(*seen_time),
            e(message)
        ),
        Record::Guest {
            host,
            domid,
            uuid,
            probe,
            status,
            probe_time,
            seen_time,
            domain,
            message,
        } => format!(
            "G {} {} {} {} {} {} {} {} {}",
            e(host),
            opt(*domid),
            uuid.as_deref().map(escape).unwrap_or_else(|| "-".into()),
            e(probe),
            status,
            opt(*probe_time),
            opt(*seen_time),
            domain.as_deref().map(escape).unwrap_or_else(|| "-".into()),
            e(message)
        ),
        Record::Finding {
            host,
            check_id,
            kind,
            status,
            target,
            message,
        } => format!(
            "F {} {} {} {status} {} {}",
            e(host),
            e(check_id),
            e(kind),
            e(target),
            e(message)
        ),
        Record::Dom0 { name, guests } => format!("D {} {guests}", e(name)),
        Record::Figures { host, figures } => format!("M {} {}", e(host), figures.print()),
        Record::Error { scope, message } => format!("E {} {}", e(scope), e(message)),
        Record::End { records } => format!("END {records}"),
    }
}

/// Prints a whole output: the records given (header first), then `END`.
/// The records are written in the version the header names.
pub fn print_all(records: &[Record]) -> String {
    let version = match records.first() {
        Some(Record::Header { version, .. }) => *version,
        _ => VERSION,
    };
    let mut out = String::new();
    for r in records {
        out.push_str(&print_as(r, version));
        out.push('\n');
    }
    out.push_str(&print(&Record::End {
        records: records.len() as u32,
    }));
    out.push('\n');
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty output")]
    Empty,
    #[error("not xsmon output (first line {0:?})")]
    NotXsmon(String),
    #[error(
        "unsupported format version {0} (this reader knows versions {OLDEST_READ} to {VERSION})"
    )]
    Version(String),
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("output cut short: no END line after {0} records")]
    Truncated(usize),
    #[error("END says {said} records, {seen} were read")]
    Count { said: u32, seen: usize },
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse::<T>()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

fn opt_num<T: std::str::FromStr>(s: &str, what: &str) -> Result<Option<T>, String> {
    if s == "-" {
        Ok(None)
    } else {
        num(s, what).map(Some)
    }
}

/// An optional escaped field: `-` is absent (no escaped field is `-`).
fn opt_field(s: &str) -> Result<Option<String>, String> {
    if s == "-" {
        Ok(None)
    } else {
        unescape(s).map(Some)
    }
}

fn status(s: &str) -> Result<Status, String> {
    s.parse::<Status>()
}

/// Parses one line (not the header) of the current version.
pub fn parse_line(line: &str) -> Result<Record, String> {
    parse_line_as(line, VERSION)
}

/// Parses one line (not the header) of output written in `version`.
pub fn parse_line_as(line: &str, version: u32) -> Result<Record, String> {
    let f: Vec<&str> = line.split(' ').collect();
    let want = |n: usize| {
        if f.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{} record with {} fields, expected {n}",
                f[0],
                f.len()
            ))
        }
    };
    match f[0] {
        "G" if version == 1 => {
            want(7)?;
            Ok(Record::Guest {
                host: unescape(f[1])?,
                domid: opt_num(f[2], "domid")?,
                uuid: None,
                probe: unescape(f[3])?,
                status: status(f[4])?,
                probe_time: opt_num(f[5], "probe time")?,
                seen_time: None,
                domain: None,
                message: unescape(f[6])?,
            })
        }
        "G" if version >= 4 => {
            want(10)?;
            Ok(Record::Guest {
                host: unescape(f[1])?,
                domid: opt_num(f[2], "domid")?,
                uuid: opt_field(f[3])?,
                probe: unescape(f[4])?,
                status: status(f[5])?,
                probe_time: opt_num(f[6], "probe time")?,
                seen_time: opt_num(f[7], "seen time")?,
                domain: opt_field(f[8])?,
                message: unescape(f[9])?,
            })
        }
        "G" => {
            want(9)?;
            Ok(Record::Guest {
                host: unescape(f[1])?,
                domid: opt_num(f[2], "domid")?,
                uuid: if f[3] == "-" {
                    None
                } else {
                    Some(unescape(f[3])?)
                },
                probe: unescape(f[4])?,
                status: status(f[5])?,
                probe_time: opt_num(f[6], "probe time")?,
                seen_time: opt_num(f[7], "seen time")?,
                domain: None,
                message: unescape(f[8])?,
            })
        }
        "F" => {
            want(7)?;
            Ok(Record::Finding {
                host: unescape(f[1])?,
                check_id: unescape(f[2])?,
                kind: unescape(f[3])?,
                status: status(f[4])?,
                target: unescape(f[5])?,
                message: unescape(f[6])?,
            })
        }
        "M" if version >= 3 => {
            want(8)?;
            let rest = line.splitn(3, ' ').nth(2).unwrap_or("");
            Ok(Record::Figures {
                host: unescape(f[1])?,
                figures: CheckFigures::parse(rest)?,
            })
        }
        "D" => {
            want(3)?;
            Ok(Record::Dom0 {
                name: unescape(f[1])?,
                guests: num(f[2], "guest count")?,
            })
        }
        "E" => {
            want(3)?;
            Ok(Record::Error {
                scope: unescape(f[1])?,
                message: unescape(f[2])?,
            })
        }
        "END" => {
            want(2)?;
            Ok(Record::End {
                records: num(f[1], "record count")?,
            })
        }
        other => Err(format!(
            "unknown record type {:?}",
            crate::text::clean(other, 20)
        )),
    }
}

fn parse_header(line: &str) -> Result<Record, ParseError> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.first() != Some(&"xsmon") {
        return Err(ParseError::NotXsmon(crate::text::clean(line, 60)));
    }
    let version = match f.get(1).map(|v| v.parse::<u32>()) {
        Some(Ok(v)) if (OLDEST_READ..=VERSION).contains(&v) => v,
        _ => {
            return Err(ParseError::Version(crate::text::clean(
                f.get(1).copied().unwrap_or(""),
                20,
            )))
        }
    };
    let bad = |problem: String| ParseError::Line { line: 1, problem };
    if f.len() != 6 {
        return Err(bad(format!("header with {} fields, expected 6", f.len())));
    }
    let kind = match f[2] {
        "state" => Kind::State,
        "cluster" => Kind::Cluster,
        "figures" if version >= 3 => Kind::Figures,
        k => {
            return Err(bad(format!(
                "unknown output kind {:?}",
                crate::text::clean(k, 20)
            )))
        }
    };
    let dom0 = unescape(f[3]).map_err(bad)?;
    Ok(Record::Header {
        version,
        kind,
        dom0,
        cycle_time: opt_num(f[4], "cycle time").map_err(bad)?,
        served_time: num(f[5], "served time").map_err(bad)?,
    })
}

/// Parses a whole output. The records come back header first, without the
/// `END` line, which is checked: a missing or wrong `END` is an error (the
/// output was cut), as is any malformed line.
pub fn parse_all(text: &str) -> Result<Vec<Record>, ParseError> {
    let mut lines = text.lines();
    let first = lines.next().ok_or(ParseError::Empty)?;
    let header = parse_header(first.trim_end_matches('\r'))?;
    let version = match header {
        Record::Header { version, .. } => version,
        _ => VERSION,
    };
    let mut out = vec![header];
    for (i, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        match parse_line_as(line, version).map_err(|problem| ParseError::Line {
            line: i + 2,
            problem,
        })? {
            Record::End { records } => {
                if records as usize != out.len() {
                    return Err(ParseError::Count {
                        said: records,
                        seen: out.len(),
                    });
                }
                return Ok(out);
            }
            r => out.push(r),
        }
    }
    Err(ParseError::Truncated(out.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckResult, Limit, Value};
    use crate::layout::round3;
    use proptest::prelude::*;

    fn header() -> Record {
        Record::Header {
            version: VERSION,
            kind: Kind::State,
            dom0: "xen01".into(),
            cycle_time: Some(1_764_097_260),
            served_time: 1_764_097_300,
        }
    }

    #[test]
    fn escaping_leaves_only_printable_ascii() {
        assert_eq!(escape("a b\\c"), "a\\sb\\\\c");
        assert_eq!(escape(""), "\\e");
        assert_eq!(escape("-"), "\\x2d");
        assert_eq!(unescape("\\x2d").unwrap(), "-");
        assert_eq!(escape("x\ny"), "x\\x0ay");
        assert_eq!(escape("caf\u{e9}"), "caf\\xc3\\xa9");
        assert_eq!(unescape("caf\\xc3\\xa9").unwrap(), "caf\u{e9}");
        assert!(unescape("\\q").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unescape("a b").is_err());
        assert!(unescape("\\xff").is_err());
    }

    #[test]
    fn a_newline_cannot_forge_a_line() {
        let evil = "ok\nG victim - - fresh ok - - all fine\nEND 2";
        let text = print_all(&[
            header(),
            Record::Guest {
                host: "evil".into(),
                domid: Some(7),
                uuid: Some("evil\nuuid".into()),
                probe: "fresh".into(),
                status: Status::Error,
                probe_time: None,
                seen_time: Some(3),
                domain: None,
                message: evil.into(),
            },
        ]);
        assert_eq!(text.lines().count(), 3);
        let recs = parse_all(&text).unwrap();
        assert_eq!(recs.len(), 2);
        match &recs[1] {
            Record::Guest { host, message, .. } => {
                assert_eq!(host, "evil");
                assert_eq!(message, evil);
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_uuid_that_is_a_dash_is_not_read_as_absent() {
        for uuid in [None, Some("-".to_string()), Some("--".to_string())] {
            let g = Record::Guest {
                host: "h".into(),
                domid: None,
                uuid: uuid.clone(),
                probe: "fresh".into(),
                status: Status::Ok,
                probe_time: None,
                seen_time: None,
                domain: None,
                message: "m".into(),
            };
            let line = print(&g);
            assert_eq!(parse_line(&line).unwrap(), g, "{line}");
        }
    }

    #[test]
    fn cut_or_wrong_outputs_are_errors() {
        let text = print_all(&[
            header(),
            Record::Dom0 {
                name: "xen02".into(),
                guests: 4,
            },
        ]);
        let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_all(&cut), Err(ParseError::Truncated(2)));
        assert!(
            matches!(parse_all("xsmon 6 state x - 1\nEND 1\n"), Err(ParseError::Version(v)) if v == "6")
        );
        assert!(matches!(
            parse_all("xsmon 0 state x - 1\nEND 1\n"),
            Err(ParseError::Version(_))
        ));
        let cluster = Record::Header {
            version: VERSION,
            kind: Kind::Cluster,
            dom0: String::new(),
            cycle_time: None,
            served_time: 9,
        };
        assert_eq!(print(&cluster), "xsmon 5 cluster \\e - 9");
        assert!(matches!(parse_all("hello\n"), Err(ParseError::NotXsmon(_))));
        assert!(matches!(parse_all(""), Err(ParseError::Empty)));
        let extra = text.replace("END 2", "END 5");
        assert_eq!(
            parse_all(&extra),
            Err(ParseError::Count { said: 5, seen: 2 })
        );
        let bad = text.replace("D xen02 4", "D xen02 four");
        assert!(matches!(
            parse_all(&bad),
            Err(ParseError::Line { line: 2, .. })
        ));
        let bad = text.replace("D xen02 4", "Q what");
        assert!(matches!(
            parse_all(&bad),
            Err(ParseError::Line { line: 2, .. })
        ));
    }

    #[test]
    fn version_4_carries_the_domain_state_and_version_3_is_still_read() {
        let g = Record::Guest {
            host: "web01".into(),
            domid: Some(7),
            uuid: None,
            probe: "halted".into(),
            status: Status::Error,
            probe_time: Some(90),
            seen_time: Some(95),
            domain: Some("crashed".into()),
            message: "crashed".into(),
        };
        let line = print(&g);
        assert_eq!(line, "G web01 7 - halted error 90 95 crashed crashed");
        assert_eq!(parse_line(&line), Ok(g.clone()));
        // A domain word that is literally '-' stays a word.
        let mut dash = g.clone();
        if let Record::Guest { domain, .. } = &mut dash {
            *domain = Some("-".into());
        }
        assert_eq!(parse_line(&print(&dash)), Ok(dash));
        // A version 3 dom0: no domain field.
        let v3 = "xsmon 3 state xen01 100 160\nG web01 7 - fresh ok 90 95 all\\s5\\schecks\\sok\nEND 2\n";
        let recs = parse_all(v3).unwrap();
        assert!(matches!(
            &recs[1],
            Record::Guest { domain: None, probe, .. } if probe == "fresh"
        ));
        // A version 3 G line (9 fields) in a version 4 output is an error.
        let short = "xsmon 4 state xen01 100 160\nG web01 7 - fresh ok 90 95 all\nEND 2\n";
        assert!(parse_all(short).is_err());
    }

    #[test]
    fn version_4_output_is_read_and_starting_is_a_version_5_word() {
        // A version 4 dom0's output (a poller upgraded first): the same
        // records.
        let v4 = "xsmon 4 state xen01 100 160\nG web01 7 - fresh ok 90 95 running all\\s5\\schecks\\sok\nEND 2\n";
        let recs = parse_all(v4).unwrap();
        assert!(matches!(recs[0], Record::Header { version: 4, .. }));
        assert!(matches!(&recs[1], Record::Guest { domain: Some(d), .. } if d == "running"));
        // Version 5: a starting guest, printed and read back.
        let g = Record::Guest {
            host: "web01".into(),
            domid: Some(9),
            uuid: None,
            probe: "starting".into(),
            status: Status::Ok,
            probe_time: None,
            seen_time: None,
            domain: Some("blocked".into()),
            message: "started 4 s ago".into(),
        };
        let text = print_all(&[header(), g.clone()]);
        assert!(text.starts_with("xsmon 5 state "), "{text}");
        assert_eq!(parse_all(&text).unwrap()[1], g);
        assert!(probe_is_starting("starting") && !probe_is_silent("starting"));
        assert!(!probe_is_down("renamed") && !probe_is_silent("renamed"));
    }

    #[test]
    fn version_1_output_is_still_read() {
        let v1 =
            "xsmon 1 state xen01 100 160\nG web01 7 fresh ok 90 all\\s5\\schecks\\sok\nEND 2\n";
        let recs = parse_all(v1).unwrap();
        assert!(matches!(recs[0], Record::Header { version: 1, .. }));
        assert_eq!(
            recs[1],
            Record::Guest {
                host: "web01".into(),
                domid: Some(7),
                uuid: None,
                probe: "fresh".into(),
                status: Status::Ok,
                probe_time: Some(90),
                seen_time: None,
                domain: None,
                message: "all 5 checks ok".into(),
            }
        );
        // And printed back in version 1, byte for byte.
        assert_eq!(print_all(&recs), v1);
        // A version 2 G line in a version 1 output is an error, not a guess.
        assert!(parse_all("xsmon 1 state x - 1\nG a 1 - fresh ok - - m\nEND 2\n").is_err());
    }

    #[test]
    fn figures_carry_values_and_limits_and_refuse_what_the_layout_refuses() {
        let mut c = CheckResult::new("disk2", "disk", "/srv/my data\nG forged");
        c.status = Status::Warning;
        c.value("used_pct", 91.25)
            .value("size_bytes", 1e12)
            .value("nan", f64::NAN);
        c.limit("used_pct", Some(85.0), Some(95.0))
            .limit("inodes_pct", None, Some(99.0));
        let rec = Record::Figures {
            host: "web 01".into(),
            figures: CheckFigures::of(&c),
        };
        let line = print(&rec);
        assert_eq!(
            line,
            "M web\\s01 disk2 disk warning /srv/my\\sdata\\x0aG\\sforged used_pct=91.25\\ssize_bytes=1000000000000 used_pct=85,95\\sinodes_pct=,99"
        );
        let back = parse_line(&line).unwrap();
        let Record::Figures { host, figures } = back else {
            panic!("{back:?}")
        };
        assert_eq!(host, "web 01");
        assert_eq!(figures.values.len(), 2, "the NaN is left out");
        assert_eq!(figures.limit_of("inodes_pct").unwrap().warning, None);
        // Values and limits obey the key layout's rules.
        for bad in [
            "M h c disk ok \\e used_pct=inf \\e",
            "M h c disk ok \\e \\e used_pct=1",
            "M h c disk ok \\e USED=1 \\e",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
        // An M record is not part of version 2.
        assert!(parse_line_as("M h c disk ok \\e \\e \\e", 2).is_err());
        assert!(parse_all("xsmon 2 figures x - 1\nEND 1\n").is_err());
    }

    fn any_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Ok),
            Just(Status::Warning),
            Just(Status::Unknown),
            Just(Status::Error)
        ]
    }

    fn any_record() -> impl Strategy<Value = Record> {
        let s = || any::<String>();
        prop_oneof![
            (
                (
                    s(),
                    proptest::option::of(any::<u32>()),
                    proptest::option::of(s()),
                    proptest::option::of(s())
                ),
                s(),
                any_status(),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                s()
            )
                .prop_map(
                    |(
                        (host, domid, uuid, domain),
                        probe,
                        status,
                        probe_time,
                        seen_time,
                        message,
                    )| {
                        Record::Guest {
                            host,
                            domid,
                            uuid,
                            probe,
                            status,
                            probe_time,
                            seen_time,
                            domain,
                            message,
                        }
                    }
                ),
            (s(), s(), s(), any_status(), s(), s()).prop_map(
                |(host, check_id, kind, status, target, message)| Record::Finding {
                    host,
                    check_id,
                    kind,
                    status,
                    target,
                    message
                }
            ),
            (s(), any::<u32>()).prop_map(|(name, guests)| Record::Dom0 { name, guests }),
            (
                s(),
                (s(), "[a-z]{1,8}", any_status(), s()),
                proptest::collection::btree_map("[a-z][a-z0-9_]{0,12}", -1.0e9f64..1.0e9, 0..6),
                proptest::collection::btree_map(
                    "[a-z][a-z0-9_]{0,12}",
                    (
                        proptest::option::of(-1.0e6f64..1.0e6),
                        proptest::option::of(-1.0e6f64..1.0e6)
                    ),
                    0..4
                ),
            )
                .prop_map(
                    |(host, (check_id, kind, status, target), values, limits)| Record::Figures {
                        host,
                        figures: CheckFigures {
                            check_id,
                            kind,
                            status,
                            target,
                            values: values
                                .into_iter()
                                .map(|(name, v)| Value {
                                    name,
                                    value: round3(v)
                                })
                                .collect(),
                            limits: limits
                                .into_iter()
                                .map(|(name, (w, e))| Limit {
                                    name,
                                    warning: w.map(round3),
                                    error: e.map(round3),
                                })
                                .collect(),
                        },
                    }
                ),
            (s(), s()).prop_map(|(scope, message)| Record::Error { scope, message }),
        ]
    }

    proptest! {
        #[test]
        fn fields_round_trip(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(e.bytes().all(|b| (b'!'..=b'~').contains(&b)));
            prop_assert_eq!(unescape(&e).unwrap(), s);
        }

        #[test]
        fn outputs_round_trip(recs in proptest::collection::vec(any_record(), 0..20), dom0 in "[a-z0-9.-]{1,20}") {
            let mut all = vec![Record::Header { version: VERSION, kind: Kind::State, dom0, cycle_time: None, served_time: 5 }];
            all.extend(recs);
            let text = print_all(&all);
            prop_assert_eq!(text.lines().count(), all.len() + 1);
            prop_assert_eq!(parse_all(&text).unwrap(), all);
        }

        /// Fuzz target (scripts/fuzz): garbage, garbage after a valid
        /// header of either version, and a valid output with bytes spliced
        /// in never make the parser panic; whatever it accepts has exactly
        /// one record per line and prints back to the same records.
        #[test]
        fn fuzz_snmp_line_parser(
            text in any::<String>(),
            recs in proptest::collection::vec(any_record(), 0..6),
            bytes in proptest::collection::vec(any::<u8>(), 0..60),
            cut in any::<usize>(),
        ) {
            let mut all = vec![header()];
            all.extend(recs);
            let good = print_all(&all);
            let at = cut % (good.len() + 1);
            let mut b = good.into_bytes();
            b.splice(at..at, bytes);
            let mangled = String::from_utf8_lossy(&b).into_owned();
            for input in [
                text.clone(),
                format!("xsmon 1 state x - 1\n{text}"),
                format!("xsmon 2 state x - 1\n{text}"),
                format!("xsmon 3 figures x - 1\n{text}"),
                mangled,
            ] {
                if let Ok(parsed) = parse_all(&input) {
                    let lines = input.lines().take_while(|l| !l.starts_with("END ")).count();
                    prop_assert_eq!(parsed.len(), lines);
                    prop_assert_eq!(parse_all(&print_all(&parsed)).unwrap(), parsed);
                }
            }
        }
    }
}
