//! The poller over 500 dom0 endpoints (5 real snmpd instances on 100
//! loopback ports each, each serving a real collector database of 5
//! guests):
//!
//! 1. all 500 answering;
//! 2. 10% dead (UDP sockets that never answer) with a 1 s timeout and 1
//!    retry;
//! 3. the 2010 design's way, one `snmpget` process per dom0 one after
//!    another, measured in the same run: every live endpoint, and 5 dead
//!    ones whose cost is multiplied by 10 (running all 50 would take
//!    100 s of waiting for nothing).
//!
//!     cargo build --release --workspace && cargo bench -p xsmon-tests --bench poller
//!
//! Prints figures; asserts nothing about speed.

use std::process::Command;
use std::time::Instant;

use host_collector::gather::{Found, Guest};
use xsmon_proto::Status;
use xsmon_store as db;
use xsmon_tests::{
    bin_dir, extend_index, sample_run, snmp_command, store_cycle, Snmpd, COMMUNITY, NS_EXTEND,
};

fn main() {
    let poller = bin_dir().join("poller");
    let extend = bin_dir().join("snmp-extend");
    assert!(
        poller.exists() && extend.exists(),
        "build first: cargo build --release --workspace"
    );
    let dir = tempfile::tempdir().unwrap();
    let dbp = dir.path().join("dom0.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    {
        let mut conn = db::open_rw(&dbp).unwrap();
        let guests: Vec<Guest> = (1..=5)
            .map(|id| Guest {
                domid: id,
                uuid: None,
                uuid_problem: None,
                name: Some(format!("g{id}")),
                name_problem: None,
                found: Found::Run {
                    run: sample_run(now, 2, if id == 3 { Status::Error } else { Status::Ok }),
                    legacy: false,
                },
            })
            .collect();
        store_cycle(&mut conn, &guests, now).unwrap();
    }
    let conf = format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {}\n",
        extend.display(),
        dbp.display()
    );
    // 500 free loopback ports, in five blocks of 100.
    let ports: Vec<u16> = (0..500)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let _agents: Vec<Snmpd> = ports
        .chunks(100)
        .map(|chunk| Snmpd::start_multi(chunk, &conf).unwrap())
        .collect();
    // Fifty endpoints that never answer.
    let dead: Vec<std::net::UdpSocket> = (0..50)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();

    let write_config = |name: &str, live: usize, with_dead: bool| {
        let mut hosts: Vec<String> = ports[..live]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("\"d{i:03}=127.0.0.1:{p}\""))
            .collect();
        if with_dead {
            hosts.extend(
                dead.iter()
                    .enumerate()
                    .map(|(i, s)| format!("\"x{i:03}={}\"", s.local_addr().unwrap())),
            );
        }
        let p = dir.path().join(name);
        std::fs::write(&p, format!("hosts = [{}]\n[snmp]\ncommunity = \"{COMMUNITY}\"\ntimeout_ms = 1000\nretries = 1\n", hosts.join(", "))).unwrap();
        p
    };
    let all_live = write_config("live.toml", 500, false);
    let some_dead = write_config("dead.toml", 450, true);

    let time_poll = |cfg: &std::path::Path| {
        let t = Instant::now();
        let out = Command::new(&poller)
            .args(["json", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let took = t.elapsed().as_secs_f64();
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            took,
            j["summary"]["dom0s"].as_u64().unwrap(),
            j["summary"]["unreachable"].as_u64().unwrap(),
        )
    };
    // Warm snmpd's extend cache once (as a running site always is).
    time_poll(&all_live);
    let (t_live, n, u) = time_poll(&all_live);
    println!("poller, 500 dom0 endpoints (5 snmpd x 100 ports), concurrency 64:");
    println!("  all answering:                 {t_live:.2} s wall ({n} polled, {u} unreachable)");
    let (t_dead, n, u) = time_poll(&some_dead);
    println!("  10% dead, 1 s timeout, 1 retry: {t_dead:.2} s wall ({n} polled, {u} unreachable)");

    // The 2010 way: one snmpget per dom0, sequentially.
    let full = format!(
        "{NS_EXTEND}.3.1.2{}",
        extend_index("basicXenstoreMonitoring")
    );
    // The harness's snmpget: -t 1 -r 1, numeric OIDs, no MIBs.
    let snmpget = |target: &str| snmp_command("snmpget", None, target, &[&full]);
    let t = Instant::now();
    for p in &ports[..450] {
        snmpget(&format!("127.0.0.1:{p}")).unwrap();
    }
    let live_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for s in dead.iter().take(5) {
        assert!(snmpget(&s.local_addr().unwrap().to_string()).is_err());
    }
    let dead_secs = t.elapsed().as_secs_f64() * 10.0;
    let sequential = live_secs + dead_secs;
    println!(
        "  one snmpget per dom0, in sequence: {sequential:.1} s ({live_secs:.1} s for 450 live, {dead_secs:.1} s for 50 dead, extrapolated from 5)"
    );
    println!(
        "  ratio, sequential snmpget / poller, 10% dead: {:.0}x",
        sequential / t_dead
    );
}
