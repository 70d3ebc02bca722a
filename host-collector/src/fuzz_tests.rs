//! Fuzz target (scripts/fuzz): guest-written bytes driven through the
//! collector's real path, from the keys a pipelined read returns
//! ([`gather::decode_guest`]) through judging ([`judge::judge_all`]) to
//! the SNMP lines snmp-extend prints. Whatever the guests write: no panic,
//! and no forged line (the output has one line per record, and every
//! record parses back as the one printed, under its own guest's label).

use proptest::prelude::*;
use xsmon_proto::cluster::Cluster;
use xsmon_proto::snmpline::{parse_all, print_all, Kind, Record, VERSION};
use xsmon_store::HostRecord;

use crate::freshness::Rules;
use crate::gather::{decode_guest, Identity, Prefetched};
use crate::hypervisor::Hypervisor;
use crate::judge::{judge_all, Scene};

/// A value that is sometimes what the probe writes, sometimes anything.
fn value(good: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(good).prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~\n\t]{0,300}".prop_map(String::into_bytes),
    ]
}

fn check_keys() -> impl Strategy<Value = (String, Vec<(String, Vec<u8>)>)> {
    (
        prop_oneof!["[a-z0-9]{1,16}", ".{0,20}"],
        value(&["disk", "cpu", "net", "swap", "Disk!"]),
        value(&["ok", "warning", "error", "unknown", "fine"]),
        value(&["/", "/var/lib", "10.0.0.1", ""]),
        value(&["all fine", "full", ""]),
        value(&[
            "used_pct=97.5 inodes_pct=3",
            "rtt_ms=0.4",
            "x=NaN",
            "a=1e308 b=-0",
        ]),
        proptest::option::of(value(&[
            "used_pct=85,95",
            "used_pct=, rtt_ms=100,500",
            "x=1,2 x=3,4",
            "rtt_ms=100,inf",
        ])),
    )
        .prop_map(|(id, kind, status, target, message, values, limits)| {
            let mut fields = vec![
                (format!("check/{id}/kind"), kind),
                (format!("check/{id}/status"), status),
                (format!("check/{id}/target"), target),
                (format!("check/{id}/message"), message),
                (format!("check/{id}/values"), values),
            ];
            if let Some(l) = limits {
                fields.push((format!("check/{id}/limits"), l));
            }
            (id, fields)
        })
}

/// A chunked guest (layout versions 2 to 5): a run line and chunks, each
/// sometimes what the probe writes (six or seven escaped fields per check),
/// sometimes anything; run lines with and without the `resumed` (4) and
/// `boot` (5) fields, well formed or not, under any version.
fn guest_keys_v2() -> impl Strategy<Value = (Identity, Prefetched)> {
    (
        value(&["web01", "Domain-0", "DB | primary", ""]),
        value(&["/vm/12345678-1234-4234-8234-123456789abc", ""]),
        prop_oneof![
            value(&[
                "1795700000 7 1 guest-probe\\s0.2.0",
                "1 2 64 p",
                "x y z",
                "1795700000 7 2 p",
                "1795700000 7 1 - guest-probe\\s0.4.0",
                "1795700000 7 1 12,4400 guest-probe\\s0.4.0",
                "1795700000 7 1 - 0123456789abcdef0123456789abcdef guest-probe\\s0.5.0",
                "1795700000 7 1 12,4400 0123456789abcdef0123456789abcdef p",
                "1795700000 7 1 -1,-1 0123456789ABCDEF0123456789ABCDEF p",
                "1795700000 7 1 4294967296,99999999999999999999 - p",
                "1795700000 7 1 12, \\x0a p",
            ]),
            "[0-9]{1,10} [0-9]{1,3} [0-9] (-|[0-9,]{1,12}) (-|[0-9a-fA-F]{30,34}) [ -~]{0,12}"
                .prop_map(String::into_bytes),
        ],
        proptest::collection::vec(
            prop_oneof![
                value(&[
                    "cpu cpu ok \\e load\\s0.1 load_per_cpu=0.1",
                    "disk0 disk error / full\\x0aG\\sforged used_pct=99",
                    "a b c d e f g",
                    "cpu cpu ok \\e x \\e cpu cpu ok \\e y \\e",
                    "disk0 disk warning /var\\x27s 90% used_pct=90 used_pct=85,95",
                    "cpu cpu ok \\e x load_per_cpu=1 load_per_cpu=2,\\x0a",
                    "net0 net ok 10.0.0.1 m rtt_ms=0.4\\sloss_pct=0 rtt_ms=100,500\\sloss_pct=30,100",
                ]),
                "([a-z0-9\\\\]{1,8} ){5}[a-z0-9=.]{0,12}".prop_map(String::into_bytes),
            ],
            0..3,
        ),
        proptest::sample::select(vec!["2", "3", "4", "5"]),
    )
        .prop_map(|(name, vm, run, chunks, version)| {
            let mut p = Prefetched::default();
            p.values.insert("version".into(), version.as_bytes().to_vec());
            p.values.insert("run".into(), run);
            for (i, c) in chunks.into_iter().enumerate() {
                p.values.insert(format!("chunk/{i}"), c);
            }
            (
                Identity {
                    name: Ok(name),
                    vm: Ok(vm),
                },
                p,
            )
        })
}

/// A layout version 6 guest: `chunk/0` headed by the run line (well formed
/// or not), then checks; sometimes a second chunk, headed by the same run
/// or another one, or by nothing; sometimes a `version` that says
/// otherwise.
fn guest_keys_v6() -> impl Strategy<Value = (Identity, Prefetched)> {
    (
        value(&["web01", "DB | primary", ""]),
        prop_oneof![
            value(&[
                "xsmon/6 1795700000 7 1 - 0123456789abcdef0123456789abcdef guest-probe\\s0.5.0",
                "xsmon/6 1795700000 7 2 12,4400 - p",
                "xsmon/6 1795700000 7 0 - - p",
                "xsmon/6 1795700000 7 65 - - p",
                "xsmon/6 1 2 1 - - x\x0aG\\svictim",
                "xsmon/6 1 2",
                "xsmon/6",
            ]),
            "xsmon/6 [0-9]{1,10} [0-9]{1,3} [0-9]{1,2} (-|[0-9,?]{1,12}) (-|[0-9a-f]{30,34}) [ -~]{0,12}"
                .prop_map(String::into_bytes),
        ],
        proptest::collection::vec(
            value(&[
                "cpu cpu ok \\e load\\s0.1 load_per_cpu=0.1 load_per_cpu=4,8",
                "disk0 disk error / full\\x0aG\\sforged used_pct=99 \\e",
                "net0 net ok 10.0.0.1 m rtt_ms=0.4 rtt_ms=100,500",
                "a b c",
            ]),
            0..3,
        ),
        proptest::option::of(value(&[
            "xsmon/6 1795700000 7 swap swap ok \\e s \\e \\e",
            "xsmon/6 1795700000 8 swap swap ok \\e s \\e \\e",
            "swap swap ok \\e s \\e \\e",
        ])),
        proptest::option::of(value(&["6", "3", "x"])),
    )
        .prop_map(|(name, head, checks, second, version)| {
            let mut first = head;
            for c in checks {
                first.push(b' ');
                first.extend(c);
            }
            let mut p = Prefetched::default();
            p.values.insert("chunk/0".into(), first);
            if let Some(c) = second {
                p.values.insert("chunk/1".into(), c);
            }
            if let Some(v) = version {
                p.values.insert("version".into(), v);
            }
            (
                Identity {
                    name: Ok(name),
                    vm: Ok(b"/vm/12345678-1234-4234-8234-123456789abc".to_vec()),
                },
                p,
            )
        })
}

fn guest_keys() -> impl Strategy<Value = (Identity, Prefetched)> {
    prop_oneof![
        guest_keys_v1(),
        guest_keys_v2(),
        guest_keys_v3(),
        guest_keys_v6()
    ]
}

/// A layout version 3 guest as the probe frames it (one chunk of checks in
/// sevens), with hostile free text and limits that are sometimes valid,
/// sometimes not: the path by which a guest's thresholds reach the figures
/// dom0 serves.
fn guest_keys_v3() -> impl Strategy<Value = (Identity, Prefetched)> {
    use xsmon_proto::snmpline::escape;
    let check = (
        "(cpu|swap|disk[0-9]|net[0-9])",
        "(cpu|swap|disk|net)",
        "(ok|warning|error)",
        prop_oneof![3 => "[ -~]{0,20}", 1 => any::<String>()],
        prop_oneof![3 => "[ -~]{0,20}", 1 => any::<String>()],
        "([a-z]{1,6}=-?[0-9]{1,3}(\\.[0-9])?)?( _[a-z]{1,6}=[0-9]{1,3}){0,2}",
        prop_oneof![
            3 => "([a-z]{1,6}=[0-9]{0,3},[0-9]{0,3})?( _[a-z]{1,6}=[0-9]{0,3},[0-9]{0,3}){0,2}",
            1 => any::<String>()
        ],
    );
    ("(web|db)0[0-9]", proptest::collection::vec(check, 1..5)).prop_map(|(name, checks)| {
        let chunk: Vec<String> = checks
            .into_iter()
            .enumerate()
            .map(|(i, (id, kind, status, target, message, values, limits))| {
                [
                    format!("{id}x{i}"),
                    kind,
                    status,
                    target,
                    message,
                    values,
                    limits,
                ]
                .iter()
                .map(|f| escape(f.trim_end()))
                .collect::<Vec<_>>()
                .join(" ")
            })
            .collect();
        let mut p = Prefetched::default();
        p.values.insert("version".into(), b"3".to_vec());
        p.values
            .insert("run".into(), b"1795700000 7 1 guest-probe\\s0.3.0".to_vec());
        p.values
            .insert("chunk/0".into(), chunk.join(" ").into_bytes());
        (
            Identity {
                name: Ok(name.into_bytes()),
                vm: Ok(b"/vm/12345678-1234-4234-8234-123456789abc".to_vec()),
            },
            p,
        )
    })
}

fn guest_keys_v1() -> impl Strategy<Value = (Identity, Prefetched)> {
    (
        value(&["web01", "Domain-0", "web01", "db", ""]),
        value(&["/vm/12345678-1234-4234-8234-123456789abc", "/vm/x", ""]),
        proptest::option::of(value(&["1", "2"])),
        value(&["guest-probe 0.2.0"]),
        value(&["1795700000", "-5", "99999999999999999999"]),
        value(&["7", "0", "18446744073709551615"]),
        proptest::collection::vec(check_keys(), 0..5),
    )
        .prop_map(|(name, vm, version, probe, time, seq, checks)| {
            let mut p = Prefetched::default();
            if let Some(v) = version {
                p.values.insert("version".into(), v);
            }
            p.values.insert("probe".into(), probe);
            p.values.insert("time".into(), time);
            p.values.insert("seq".into(), seq);
            let ids = checks.iter().map(|(id, _)| id.clone()).collect();
            p.lists.insert("check".into(), Ok(ids));
            for (_, fields) in checks {
                p.values.extend(fields);
            }
            (
                Identity {
                    name: Ok(name),
                    vm: Ok(vm),
                },
                p,
            )
        })
}

fn records(hosts: &[HostRecord]) -> Vec<Record> {
    let mut out = vec![Record::Header {
        version: VERSION,
        kind: Kind::State,
        dom0: "xen01".into(),
        cycle_time: Some(1),
        served_time: 2,
    }];
    for h in hosts.iter().filter(|h| h.listed) {
        out.push(Record::Guest {
            host: h.label.clone(),
            domid: h.domid,
            uuid: h.uuid.clone(),
            probe: h.probe.to_string(),
            status: h.status,
            probe_time: h.probe_time,
            seen_time: h.run.map(|r| r.seen),
            domain: None,
            message: h.message.clone(),
        });
        for f in &h.findings {
            out.push(Record::Finding {
                host: h.label.clone(),
                check_id: f.id.clone(),
                kind: f.kind.clone(),
                status: f.status,
                target: f.target.clone(),
                message: f.message.clone(),
            });
        }
        // And the figures output's records (a separate output in real
        // life; one parse here checks them all the same).
        for figures in &h.latest {
            out.push(Record::Figures {
                host: h.label.clone(),
                figures: figures.clone(),
            });
        }
    }
    out
}

proptest! {
    #[test]
    fn fuzz_guest_data_through_gathering(guests in proptest::collection::vec(guest_keys(), 1..4)) {
        let decoded: Vec<_> = guests
            .into_iter()
            .enumerate()
            .map(|(i, (identity, mut p))| decode_guest(i as u32 + 1, identity, &mut p))
            .collect();
        let cluster = Cluster::default();
        let scene = Scene {
            dom0: "xen01",
            cluster: &cluster,
            expect_stopped: &[],
            now: 1_795_700_060,
            rules: Rules { stale_after: 600, skew_max: 600 },
            hypervisor: &Default::default(),
            without_probe: &Default::default(),
            lifecycle: &Default::default(),
            xl_logs: &Default::default(),
            restarts: &Default::default(),
            former_names: &[],
        };
        let hosts = judge_all(&[], &decoded, &Hypervisor::default(), &scene);
        prop_assert_eq!(hosts.iter().filter(|h| h.listed).count(), decoded.len());
        let mut labels: Vec<&str> = hosts.iter().map(|h| h.label.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        prop_assert_eq!(labels.len(), hosts.len(), "labels are unique");
        prop_assert!(!labels.contains(&"Domain-0"));
        let recs = records(&hosts);
        let text = print_all(&recs);
        prop_assert_eq!(text.lines().count(), recs.len() + 1);
        prop_assert_eq!(parse_all(&text).unwrap(), recs);
    }
}
