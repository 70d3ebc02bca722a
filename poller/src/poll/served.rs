//! Turning what one dom0 served over SNMP into its result: its guests and
//! findings, or the error finding that says why there are none. A dom0 that
//! does not answer, answers garbage or speaks an unknown format version
//! becomes an error finding itself, never a silent gap. Everything served
//! came from the network and is treated as hostile.

use serde::{Deserialize, Serialize};
use xsmon_proto::rawline::RawLine;
use xsmon_proto::snmpline::{parse_all, CheckFigures, Kind, Record};
use xsmon_proto::Status;

use crate::snmp::{FetchError, Served};

/// What one dom0 gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dom0Result {
    pub name: String,
    pub target: String,
    /// The error that kept us from its state, if any.
    pub error: Option<String>,
    pub cycle_time: Option<i64>,
    pub served_time: Option<i64>,
    pub extend_result: Option<i64>,
    pub guests: Vec<GuestState>,
    pub findings: Vec<RawLine>,
    pub elapsed_ms: u64,
    /// The SNMP line format version the dom0 served.
    pub format_version: Option<u32>,
    /// What it served, as served: the service keeps it, and a reader of the
    /// service's state reads it as this poll did.
    #[serde(skip)]
    pub served: Option<String>,
    /// Its figures as served, or why there are none (when they were asked).
    #[serde(skip)]
    pub served_figures: Option<Result<String, String>>,
}

impl Dom0Result {
    /// A dom0 not polled yet: nothing known.
    pub fn new(name: &str, target: &str) -> Dom0Result {
        Dom0Result {
            name: name.to_string(),
            target: target.to_string(),
            error: None,
            cycle_time: None,
            served_time: None,
            extend_result: None,
            guests: Vec::new(),
            findings: Vec::new(),
            elapsed_ms: 0,
            format_version: None,
            served: None,
            served_figures: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestState {
    /// The label the dom0 shows (`name`, or `name#domid` for a shared name).
    pub name: String,
    pub domid: Option<u32>,
    /// The VM's UUID (from dom0s serving format version 2).
    pub uuid: Option<String>,
    pub probe: String,
    pub status: Status,
    pub age: Option<i64>,
    pub message: String,
    /// The hypervisor's word for the domain (`running`, `paused`,
    /// `crashed`...: dom0s serving format version 4 with xl).
    pub domain_state: Option<String>,
    /// Reported `down` here, but running on another polled dom0: migrated.
    pub migrated: bool,
    /// Its latest figures, when the mode asked for them (extend
    /// xsmonFigures) and its run is current.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<CheckFigures>,
}

/// Why figures served are not shown with a state.
#[derive(Debug)]
enum Unshown {
    /// They belong to another collector cycle (the two reads straddled a
    /// cycle's end).
    OtherCycle(String),
    /// They could not be read.
    Unreadable(String),
}

fn absorb_figures(r: &mut Dom0Result, recs: Vec<Record>) -> Result<(), Unshown> {
    // A large dom0 serves ten thousand records for a thousand guests: look
    // each host up by name, not by walking the guests for every record.
    let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, g) in r.guests.iter().enumerate() {
        by_name.entry(g.name.clone()).or_insert(i);
    }
    let mut problems = Vec::new();
    for rec in recs {
        match rec {
            Record::Header { kind, .. } if kind != Kind::Figures => {
                return Err(Unshown::Unreadable(
                    "dom0 served something else than figures".into(),
                ))
            }
            // The state and the figures are two reads, and snmpd keeps each
            // extend's output for 5 s on its own: a cycle may end between
            // them. Another cycle's figures are not shown with this state
            // (a label may name another domain there).
            Record::Header {
                cycle_time: Some(t),
                ..
            } if r.cycle_time.is_some_and(|state| state != t) => {
                let d = t - r.cycle_time.unwrap_or(t);
                return Err(Unshown::OtherCycle(format!(
                    "they come from another collector cycle than the state ({} s {}: a cycle ended between the two reads); the next poll shows them",
                    d.abs(),
                    if d < 0 { "older" } else { "newer" }
                )));
            }
            Record::Figures { host, figures } => {
                if let Some(&i) = by_name.get(&host) {
                    r.guests[i].figures.push(figures);
                }
            }
            Record::Error { scope, message } => problems.push(format!("{scope}: {message}")),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Unshown::Unreadable(problems.join("; ")))
    }
}

/// Turns what polling one dom0 gave into its result: its state, or the
/// error finding that says why there is none.
pub fn read_outcome(r: &mut Dom0Result, outcome: Result<Served, FetchError>, now: i64) {
    match outcome {
        Err(e) => {
            let what = match e {
                FetchError::Timeout(_) => "unreachable",
                FetchError::Silent(_) => "stopped answering",
                FetchError::NoSuchExtend(_) => "not serving xsmon",
                FetchError::Protocol(_) => "SNMP error",
            };
            r.error = Some(format!("dom0 {what}: {e}"));
        }
        Ok(served) => read_served(r, served, now),
    }
    if let Some(e) = r.error.clone() {
        failed(r, e);
    }
}

/// A dom0 whose state could not be read: the error, and its finding first.
pub fn failed(r: &mut Dom0Result, error: String) {
    r.findings
        .insert(0, dom0_finding(&r.name, "snmp", error.clone()));
    r.error = Some(error);
}

/// What to make of figures from another collector cycle than the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherCycle {
    /// A one-shot poll: a warning says why the figures are missing.
    Warn,
    /// The service and the readers of its state: not shown, not kept, no
    /// finding (a race of two reads says nothing of the site); the
    /// service reads them again at its next poll.
    Skip,
}

/// Attaches a dom0's figures as served (or says why there are none, as a
/// warning: a graph with a gap must say why; see [`OtherCycle`]).
pub fn attach_figures(r: &mut Dom0Result, served: Result<String, String>, other: OtherCycle) {
    let outcome = served
        .clone()
        .map_err(Unshown::Unreadable)
        .and_then(|text| {
            let recs = parse_all(&text).map_err(|e| Unshown::Unreadable(e.to_string()))?;
            absorb_figures(r, recs)
        });
    let why = match outcome {
        Ok(()) => None,
        Err(Unshown::OtherCycle(why)) if other == OtherCycle::Skip => {
            tracing::debug!(dom0 = %r.name, %why, "figures of another cycle skipped");
            for g in &mut r.guests {
                g.figures.clear();
            }
            return;
        }
        Err(Unshown::OtherCycle(why) | Unshown::Unreadable(why)) => Some(why),
    };
    if let Some(why) = why {
        r.findings.push(RawLine {
            severity: "warning".into(),
            dom0: r.name.clone(),
            host: String::new(),
            check: "figures".into(),
            age: None,
            message: format!("figures unavailable: {why}"),
        });
    }
    r.served_figures = Some(served);
}

/// Reads what a dom0's snmp-extend served into `r`: its guests and
/// findings, or the error that makes it unreadable. Everything in `served`
/// came from the network and is treated as hostile.
pub fn read_served(r: &mut Dom0Result, served: Served, now: i64) {
    r.extend_result = served.result;
    let text = served.lines.join("\n") + "\n";
    match parse_all(&text) {
        Err(e) => r.error = Some(format!("dom0 served output this poller cannot read: {e}")),
        Ok(recs) => absorb(r, recs, now),
    }
    r.served = Some(text);
    if r.error.is_none()
        && r.extend_result.unwrap_or(0) != 0
        && !r.findings.iter().any(|f| f.host.is_empty())
    {
        r.findings.push(dom0_finding(
            &r.name,
            "snmp",
            format!(
                "snmp-extend exited with status {}",
                r.extend_result.unwrap_or(-1)
            ),
        ));
    }
}

fn dom0_finding(dom0: &str, check: &str, message: String) -> RawLine {
    RawLine {
        severity: "error".into(),
        dom0: dom0.to_string(),
        host: String::new(),
        check: check.to_string(),
        age: None,
        message,
    }
}

/// Turns a dom0's records into guest states and findings.
fn absorb(r: &mut Dom0Result, recs: Vec<Record>, now: i64) {
    let mut ages = std::collections::HashMap::new();
    for rec in recs {
        match rec {
            Record::Header {
                version,
                kind,
                cycle_time,
                served_time,
                dom0,
            } => {
                if kind != xsmon_proto::snmpline::Kind::State {
                    r.error = Some("dom0 served a cluster listing, not a state".into());
                    return;
                }
                r.format_version = Some(version);
                if version < xsmon_proto::snmpline::VERSION {
                    r.findings.push(RawLine {
                        severity: "info".into(),
                        dom0: r.name.clone(),
                        host: String::new(),
                        check: "version".into(),
                        age: None,
                        message: format!(
                            "serves SNMP line format version {version} (this poller reads {} to {}): upgrade xsmon on this dom0",
                            xsmon_proto::snmpline::OLDEST_READ,
                            xsmon_proto::snmpline::VERSION
                        ),
                    });
                }
                // Polled as one name, answering as another: an address
                // that points at the wrong dom0 would hide the right one.
                if !dom0.is_empty() && dom0 != r.name {
                    r.findings.push(RawLine {
                        severity: "warning".into(),
                        dom0: r.name.clone(),
                        host: String::new(),
                        check: "snmp".into(),
                        age: None,
                        message: format!(
                            "polled as {} at {}, but its collector calls itself {dom0}",
                            r.name, r.target
                        ),
                    });
                }
                r.cycle_time = cycle_time;
                r.served_time = Some(served_time);
            }
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
            } => {
                // dom0's own observation when it has one (version 2), the
                // guest's claim otherwise.
                let age = seen_time.or(probe_time).map(|t| (now - t).max(0));
                ages.insert(host.clone(), age);
                if xsmon_proto::snmpline::probe_is_down(&probe) {
                    r.findings.push(RawLine {
                        severity: "error".into(),
                        dom0: r.name.clone(),
                        host: host.clone(),
                        check: "running".into(),
                        age,
                        message: message.clone(),
                    });
                }
                if xsmon_proto::snmpline::probe_is_silent(&probe) {
                    r.findings.push(RawLine {
                        severity: "error".into(),
                        dom0: r.name.clone(),
                        host: host.clone(),
                        check: "probe".into(),
                        age,
                        message: message.clone(),
                    });
                }
                r.guests.push(GuestState {
                    name: host,
                    domid,
                    uuid,
                    probe,
                    status,
                    age,
                    message,
                    domain_state: domain,
                    migrated: false,
                    figures: Vec::new(),
                });
            }
            Record::Finding {
                host,
                check_id,
                status,
                message,
                ..
            } => r.findings.push(RawLine {
                severity: status.as_str().to_string(),
                dom0: r.name.clone(),
                age: ages.get(&host).copied().flatten(),
                host,
                check: check_id,
                message,
            }),
            Record::Error { scope, message } => {
                r.findings.push(dom0_finding(&r.name, &scope, message))
            }
            Record::Dom0 { .. } | Record::Figures { .. } | Record::End { .. } => {}
        }
    }
    // A guest not ok without any finding line still gets one.
    for g in &r.guests {
        let has = r.findings.iter().any(|f| f.host == g.name);
        if g.status != Status::Ok && !has {
            r.findings.push(RawLine {
                severity: g.status.as_str().to_string(),
                dom0: r.name.clone(),
                host: g.name.clone(),
                check: "summary".into(),
                age: g.age,
                message: g.message.clone(),
            });
        }
    }
}

/// A guest's name without the `#domid` a dom0 adds when several of its
/// domains share a name.
pub fn base_name(label: &str) -> &str {
    label.split_once('#').map_or(label, |(n, _)| n)
}

/// Is this dom0 in the scope of a check: the dom0 asked for, and among
/// dom0s the ones that report the guest asked for (either may be unset).
pub fn in_scope(r: &Dom0Result, only_dom0: Option<&str>, only_guest: Option<&str>) -> bool {
    only_dom0.is_none_or(|d| r.name == d)
        && only_guest.is_none_or(|g| r.guests.iter().any(|x| is_guest(&x.name, g)))
}

/// Does a dom0's label for a guest answer a question about `query`: the
/// label itself (`web01#7`) or the name it carries (`web01`)?
pub fn is_guest(label: &str, query: &str) -> bool {
    label == query || base_name(label) == query
}

/// The name dom0 itself has in the state (not counted as a guest).
pub const DOM0_HOST: &str = "Domain-0";

#[cfg(test)]
mod tests {
    use super::*;
    use xsmon_proto::snmpline::Kind;

    fn empty(name: &str) -> Dom0Result {
        Dom0Result::new(name, "10.0.0.1:161")
    }

    fn header(dom0: &str, kind: Kind) -> Record {
        Record::Header {
            version: xsmon_proto::snmpline::VERSION,
            kind,
            dom0: dom0.into(),
            cycle_time: Some(90),
            served_time: 100,
        }
    }

    #[test]
    fn figures_of_another_cycle_than_the_state_are_not_shown() {
        let guest = |name: &str| Record::Guest {
            host: name.into(),
            domid: Some(3),
            uuid: None,
            probe: "fresh".into(),
            status: Status::Ok,
            probe_time: Some(40),
            seen_time: None,
            domain: None,
            message: "all ok".into(),
        };
        let figures = |cycle: i64| {
            vec![
                Record::Header {
                    version: xsmon_proto::snmpline::VERSION,
                    kind: Kind::Figures,
                    dom0: "xen01".into(),
                    cycle_time: Some(cycle),
                    served_time: 100,
                },
                Record::Figures {
                    host: "web01".into(),
                    figures: CheckFigures {
                        check_id: "mem".into(),
                        kind: "mem".into(),
                        status: Status::Ok,
                        target: String::new(),
                        values: Vec::new(),
                        limits: Vec::new(),
                    },
                },
            ]
        };
        let mut r = empty("xen01");
        absorb(
            &mut r,
            vec![header("xen01", Kind::State), guest("web01")],
            100,
        );
        assert_eq!(r.cycle_time, Some(90));
        // The same cycle: attached.
        assert!(absorb_figures(&mut r, figures(90)).is_ok());
        assert_eq!(r.guests[0].figures.len(), 1);
        // A later cycle than the state's (one ended between the reads):
        // not attached, and said.
        let mut r2 = empty("xen01");
        absorb(
            &mut r2,
            vec![header("xen01", Kind::State), guest("web01")],
            100,
        );
        let Err(Unshown::OtherCycle(why)) = absorb_figures(&mut r2, figures(390)) else {
            panic!("figures of another cycle taken");
        };
        assert!(r2.guests[0].figures.is_empty());
        assert_eq!(
            why,
            "they come from another collector cycle than the state (300 s newer: a cycle ended between the two reads); the next poll shows them"
        );
        // A one-shot poll says it; the service skips them, keeps nothing
        // and says nothing (a race of two reads), and reads them again.
        let text = xsmon_proto::snmpline::print_all(&figures(390));
        let mut said = r2.clone();
        attach_figures(&mut said, Ok(text.clone()), OtherCycle::Warn);
        assert!(said
            .findings
            .iter()
            .any(|f| f.message == format!("figures unavailable: {why}")));
        assert!(said.served_figures.is_some());
        let mut skipped = r2.clone();
        attach_figures(&mut skipped, Ok(text), OtherCycle::Skip);
        assert!(skipped.findings.is_empty(), "{:?}", skipped.findings);
        assert!(skipped.served_figures.is_none());
        assert!(skipped.guests[0].figures.is_empty());
        // Figures that cannot be read are a warning either way.
        let mut bad = r2.clone();
        attach_figures(&mut bad, Err("timeout".into()), OtherCycle::Skip);
        assert_eq!(bad.findings.len(), 1);
    }

    #[test]
    fn a_dom0_answering_under_another_name_is_a_warning() {
        let mut r = empty("xen01");
        absorb(&mut r, vec![header("xen07", Kind::State)], 100);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].severity, "warning");
        assert!(r.findings[0].message.contains("calls itself xen07"));
    }

    #[test]
    fn a_cluster_listing_instead_of_a_state_is_an_error() {
        let mut r = empty("xen01");
        absorb(&mut r, vec![header("", Kind::Cluster)], 100);
        assert!(r.error.as_deref().unwrap().contains("cluster listing"));
    }

    #[test]
    fn a_sick_guest_without_finding_lines_still_gets_one() {
        let mut r = empty("xen01");
        let g = Record::Guest {
            host: "web01".into(),
            domid: Some(3),
            uuid: None,
            probe: "fresh".into(),
            status: Status::Unknown,
            probe_time: Some(40),
            seen_time: None,
            domain: None,
            message: "1 unknown: check could not run".into(),
        };
        absorb(&mut r, vec![header("xen01", Kind::State), g], 100);
        assert_eq!(r.findings.len(), 1);
        let f = &r.findings[0];
        assert_eq!(
            (
                f.severity.as_str(),
                f.host.as_str(),
                f.check.as_str(),
                f.age
            ),
            ("unknown", "web01", "summary", Some(60))
        );
    }

    /// Noise, and real messages with bytes changed (so the decoders get
    /// past their first checks).
    fn hostile_packet() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let v2c = crate::ber::v2c_message(
            b"public",
            &crate::ber::tlv(
                crate::ber::TAG_RESPONSE,
                &[
                    crate::ber::integer(7),
                    crate::ber::integer(0),
                    crate::ber::integer(0),
                    crate::ber::sequence(&[&crate::ber::sequence(&[
                        &crate::ber::oid(&[1, 3, 6, 1, 4, 1, 8072, 1, 3, 2, 4, 1, 2, 1, 98, 1]),
                        &crate::ber::octets(b"G web01 1 - fresh ok - - fine"),
                    ])]),
                ]
                .concat(),
            ),
        );
        let v3 = crate::usm::discovery(9);
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (
                proptest::sample::select(vec![v2c, v3]),
                proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
            )
                .prop_map(|(mut m, edits)| {
                    for (at, b) in edits {
                        let n = m.len();
                        m[at % n] = b;
                    }
                    m
                }),
        ]
    }

    fn served_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("xsmon 2 state xen01 90 100".to_string()),
            Just("xsmon 1 state xen07 - 100".to_string()),
            "G [a-z#0-9\\\\]{1,12} (-|[0-9]{1,3}) (-|[a-f0-9-]{8}) (fresh|down|stale|host|x) (ok|error|warning|bad) (-|[0-9]{1,4}) (-|[0-9]{1,4}) [ -~]{0,30}",
            "G [a-z]{1,6} 3 fresh ok 40 [ -~]{0,20}",
            "F [a-z]{1,6} [a-z0-9]{1,5} disk (ok|error|warning) \\\\e [ -~]{0,30}",
            "E (collector|store|x) [ -~]{0,30}",
            "END [0-9]{1,2}",
            any::<String>(),
        ]
    }

    fn figure_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            8 => "M (g1|g2|[a-z#0-9]{1,8}) [a-z0-9.]{1,6} (disk|cpu|net|xen) (ok|error) (\\\\e|([a-z/.'=|\"$<>~`&]|\\\\x0a|\\\\x27|\\\\s|\\\\xc3\\\\xa9){1,30}) (\\\\e|[a-z_]{1,8}=-?[0-9]{1,4}(\\.[0-9]{1,2})?(\\\\s[a-z_]{1,8}=[0-9]{1,3}){0,3}) (\\\\e|[a-z_]{1,8}=[0-9]{0,3},[0-9]{0,3})",
            1 => "E (collector|store) [!-~]{0,20}",
            1 => any::<String>(),
        ]
    }

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): a dom0 serving hostile figures.
        /// Whatever it serves, the poller does not panic, and the
        /// performance data it makes of it is one well-formed item per
        /// figure: a label without a quote, `=`, space or control
        /// character, then a number.
        #[test]
        fn fuzz_hostile_figures(
            names in proptest::collection::vec("(g1|g2|[a-z#0-9]{1,8})", 1..4),
            lines in proptest::collection::vec(figure_line(), 0..12),
            garbage in proptest::option::of(proptest::prelude::any::<String>()),
        ) {
            let mut r = Dom0Result::new("xen01", "10.0.0.1:161");
            for name in names {
                r.guests.push(GuestState {
                    name, domid: None, uuid: None, probe: "fresh".into(), status: Status::Ok,
                    age: None, message: String::new(), domain_state: None, migrated: false, figures: Vec::new(),
                });
            }
            // A well-framed output (header, lines, END), or garbage.
            let text = garbage.unwrap_or_else(|| {
                format!("xsmon 3 figures xen01 90 100\n{}\nEND {}\n", lines.join("\n"), lines.len() + 1)
                    .replace("\n\nEND", "\nEND")
            });
            if let Ok(recs) = parse_all(&text) {
                let _ = absorb_figures(&mut r, recs);
            }
            for g in &r.guests {
                for item in crate::perfdata::of_host(&g.figures, "") {
                    let (label, rest) = item.rsplit_once("'=").unwrap();
                    let label = label.strip_prefix('\'').unwrap();
                    proptest::prop_assert!(label.bytes().all(|b| b.is_ascii_graphic() && !b"'=|\"`$&<>~".contains(&b)), "{}", item);
                    let value = rest.split(';').next().unwrap().trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
                    proptest::prop_assert!(value.parse::<f64>().is_ok(), "{}", item);
                }
            }
        }

        /// Fuzz target (scripts/fuzz): a hostile or broken dom0. Any UDP
        /// payload given to the SNMP decoder, any varbinds in a GETBULK
        /// answer, and any lines served as the extend's output never make
        /// the poller panic; every finding it draws from them is about the
        /// dom0 polled, and prints as exactly one raw line that parses back.
        #[test]
        fn fuzz_hostile_dom0_replies(
            packet in hostile_packet(),
            varbinds in proptest::collection::vec(
                (proptest::collection::vec(0u64..6, 0..3), proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40))),
                0..8,
            ),
            lines in proptest::collection::vec(served_line(), 0..12),
            result in proptest::option::of(-3i64..3),
        ) {
            let _ = crate::ber::decode_v2c(&packet);
            let _ = crate::ber::peek_v2c_req_id(&packet);
            if let Ok(m) = crate::usm::parse(&packet) {
                let _ = crate::usm::plain_pdu(&m);
                // Key derivation stretches a password over 1 MiB: once.
                static ENGINE: std::sync::OnceLock<crate::usm::Engine> = std::sync::OnceLock::new();
                let mut engine = ENGINE
                    .get_or_init(|| crate::usm::Engine::new(&crate::usm::User::new("u", "a", "p", Default::default(), Default::default()), b"e", 1, 1))
                    .clone();
                let _ = crate::usm::open(&packet, &m, &mut engine);
            }
            let base = [1u64, 3, 6, 1, 4, 1, 8072, 1, 3, 2, 4, 1, 2, 5];
            let batch = varbinds
                .into_iter()
                .map(|(tail, v)| {
                    let mut oid = base.to_vec();
                    oid.extend(tail);
                    (oid, v)
                })
                .collect();
            let mut got = Vec::new();
            let _ = crate::snmp::take_lines("t", &base, &base, batch, &mut got);
            let mut r = Dom0Result::new("xen01", "10.0.0.1:161");
            read_served(&mut r, Served { lines, result }, 1000);
            if let Some(e) = &r.error {
                proptest::prop_assert!(!e.contains('\n'));
            }
            for f in &r.findings {
                proptest::prop_assert_eq!(&f.dom0, "xen01");
                let line = xsmon_proto::rawline::print(f);
                proptest::prop_assert_eq!(line.lines().count(), 1);
                proptest::prop_assert_eq!(&xsmon_proto::rawline::parse(&line).unwrap(), f);
            }
        }
    }
}
