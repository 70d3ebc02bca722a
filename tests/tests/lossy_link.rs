//! The poller on an imperfect network: a dom0 (real snmpd serving a real
//! 240-line state) inside a network namespace whose nftables drop UDP
//! packets at random, 10% each way. A dom0 that answers at all is read
//! whole: 100 polls, no false finding. And a dom0 that answers, then goes
//! silent mid-read, is reported as such, not as unreachable.
//!
//! No traffic leaves the machine: the namespace hangs off a veth pair on a
//! private /24 that exists only here.

use std::process::{Command, Output};

use xsmon_proto::rawline;
use xsmon_proto::Status;
use xsmon_tests::netns::Netns;
use xsmon_tests::{bin, sample_run, store_cycle, Snmpd, COMMUNITY};

/// A history database whose latest state serves about 240 lines: dom0 and
/// 119 guests, each with one failing disk (a G and an F line each).
fn big_state(path: &std::path::Path) -> usize {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let guests: Vec<host_collector::gather::Guest> = (1..=119)
        .map(|id| host_collector::gather::Guest {
            found: host_collector::gather::Found::Run {
                run: sample_run(now, 1, Status::Error),
                legacy: false,
            },
            ..host_collector::gather::Guest::named(id, &format!("guest{id:03}"))
        })
        .collect();
    let mut conn = xsmon_store::open_rw(path).unwrap();
    store_cycle(&mut conn, &guests, now).unwrap();
    let out = Command::new(bin("snmp-extend"))
        .args(["basic-monitoring", "--db"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A namespace with real snmpd serving the 240-line state; `None` (and a
/// note) where namespaces cannot be created.
fn dom0_in_namespace() -> Option<(Netns, tempfile::TempDir, Snmpd)> {
    if !Netns::available() {
        eprintln!("SKIPPED: network namespaces are unavailable here");
        return None;
    }
    let ns = Netns::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let lines = big_state(&db);
    assert!((240..=245).contains(&lines), "{lines} lines");
    let snmpd = Snmpd::start_on(
        &ns.ns_ip,
        Some(&ns.name),
        &format!(
            "extend basicXenstoreMonitoring {} basic-monitoring --db {} --max-age 999999999\n",
            bin("snmp-extend").display(),
            db.display()
        ),
    )
    .unwrap();
    Some((ns, dir, snmpd))
}

fn nft(ns: &Netns, rule: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", rule])
        .output()
        .expect("nft (Debian's nftables) is installed by scripts/install-deps");
    assert!(
        out.status.success(),
        "nft {rule}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn poll(target: &str, dir: &std::path::Path) -> Output {
    let cfg = dir.join("poller.toml");
    std::fs::write(&cfg, "[snmp]\ntimeout_ms = 1000\nretries = 1\n").unwrap();
    Command::new(bin("poller"))
        .args(["raw", "--config", cfg.to_str().unwrap(), "-c", COMMUNITY])
        .arg(format!("--host=bench={target}"))
        .output()
        .unwrap()
}

/// The findings of a raw output without their ages (which move on).
fn findings(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut r = rawline::parse(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            r.age = None;
            rawline::print(&r)
        })
        .collect()
}

#[test]
fn ten_percent_loss_each_way_gives_no_false_finding_in_100_polls() {
    let Some((ns, dir, snmpd)) = dom0_in_namespace() else {
        return;
    };
    let target = snmpd.target();
    let reference = findings(&poll(&target, dir.path()));
    assert_eq!(
        reference.len(),
        119,
        "one finding per failing disk: {reference:#?}"
    );
    assert!(!reference.iter().any(|l| l.contains(" snmp ")));

    nft(&ns, "add table inet lossy");
    for chain in ["input", "output"] {
        nft(
            &ns,
            &format!("add chain inet lossy {chain} {{ type filter hook {chain} priority 0; }}"),
        );
        nft(
            &ns,
            &format!("add rule inet lossy {chain} meta l4proto udp numgen random mod 100 < 10 counter drop"),
        );
    }
    // Four pollers at a time: 100 polls in a few seconds.
    let mut bad = Vec::new();
    for round in 0..25 {
        let outs: Vec<Output> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| poll(&target, dir.path())))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (k, o) in outs.iter().enumerate() {
            if findings(o) != reference {
                bad.push(format!(
                    "poll {}: {}",
                    round * 4 + k,
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.contains(" snmp "))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    let dropped = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "nft", "list", "table", "inet", "lossy",
        ])
        .output()
        .unwrap();
    let counters = String::from_utf8_lossy(&dropped.stdout);
    eprintln!("nftables after 100 polls:\n{counters}");
    assert!(counters.contains("counter packets"), "{counters}");
    assert!(
        bad.is_empty(),
        "{} of 100 polls differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn a_dom0_that_goes_silent_mid_read_is_not_called_unreachable() {
    let Some((ns, dir, snmpd)) = dom0_in_namespace() else {
        return;
    };
    // The agent's answers pass until 6000 bytes have gone out, then none.
    nft(&ns, "add table inet cut");
    nft(
        &ns,
        "add chain inet cut output { type filter hook output priority 0; }",
    );
    nft(
        &ns,
        &format!(
            "add rule inet cut output udp sport {} quota over 6000 bytes drop",
            snmpd.port()
        ),
    );
    let out = poll(&snmpd.target(), dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("error bench \\e snmp "))
        .unwrap_or_else(|| panic!("no snmp finding in:\n{text}"));
    assert!(line.contains("stopped\\sanswering"), "{line}");
    assert!(line.contains("went\\ssilent\\smid-read"), "{line}");
    assert!(!line.contains("unreachable"), "{line}");

    // And one that answers nothing at all is unreachable.
    nft(&ns, "flush chain inet cut output");
    nft(&ns, "add rule inet cut output udp sport 1-65535 drop");
    let out = poll(&snmpd.target(), dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("error bench \\e snmp ") && l.contains("unreachable")),
        "{text}"
    );
}
