//! The poller over 10,000 dom0 endpoints (10 real snmpd instances on
//! 1,000 loopback ports each, each serving a real collector database of 10
//! guests):
//!
//! 1. all 10,000 answering (wall time and peak RSS of the poller process);
//! 2. 10% dead (UDP sockets that never answer) with a 1 s timeout and 1
//!    retry;
//! 3. `json`, which also reads every dom0's figures (extend xsmonFigures),
//!    against `raw`, which does not;
//! 4. `poller serve` over every live endpoint and one more, whose guests'
//!    names no other dom0 serves: one site cycle (poll, figures of the
//!    dom0s that collected since, the state and history written), and a
//!    Nagios check of one of those guests read from the state it keeps,
//!    beside the same check polling every dom0 live; the bytes a
//!    transition takes in its log;
//! 5. the 2010 design's way, one `snmpget` process per dom0 one after
//!    another: 200 live and 5 dead endpoints measured, extrapolated to
//!    the 9,000 live and 1,000 dead (running them all would take hours).
//!
//!     cargo build --release --workspace && cargo bench -p xsmon-tests --bench poller
//!
//! XSMON_BENCH_DOM0S changes the number of endpoints (default 10000),
//! XSMON_BENCH_PPS the poller's packets-per-second cap (default: its own).
//! Prints figures; asserts nothing about speed.

use std::process::Command;
use std::time::Instant;

use host_collector::gather::{Found, Guest};
use xsmon_proto::Status;
use xsmon_store as db;
use xsmon_tests::{
    bin_dir, extend_index, measure, sample_run, snmp_command, store_cycle, Snmpd, COMMUNITY,
    NS_EXTEND,
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
    fill_store(&dbp, "g", now);
    let conf = extend_conf(&extend, &dbp);
    // One more dom0, serving guests of names no other dom0 serves (every
    // endpoint above serves the same g1..g10 from one database): the
    // service polls it too, and a check of one of its guests is a check
    // of a guest that runs on one dom0 of the site, as at a real site.
    let solo_db = dir.path().join("solo.db");
    fill_store(&solo_db, "solo", now);
    let solo_port = (32_000u16..33_000)
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port for the solo dom0");
    let _solo = Snmpd::start_multi(&[solo_port], &extend_conf(&extend, &solo_db)).unwrap();
    let total: usize = std::env::var("XSMON_BENCH_DOM0S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let per_agent = 500.min(total);
    // Free loopback ports below the kernel's ephemeral range (so that no
    // socket opened meanwhile takes one), one block per snmpd.
    let ports: Vec<u16> = (12_000u16..32_000)
        .filter(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .take(total)
        .collect();
    assert_eq!(ports.len(), total, "not enough free ports");
    let _agents: Vec<Snmpd> = ports
        .chunks(per_agent)
        .map(|chunk| Snmpd::start_multi(chunk, &conf).unwrap())
        .collect();
    // A tenth of the endpoints never answer.
    let n_dead = total / 10;
    let dead: Vec<std::net::UdpSocket> = (0..n_dead)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();

    let write_config = |name: &str, live: usize, with_dead: bool| {
        let mut hosts: Vec<String> = ports[..live]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("\"d{i:05}=127.0.0.1:{p}\""))
            .collect();
        if with_dead {
            hosts.extend(
                dead.iter()
                    .enumerate()
                    .map(|(i, s)| format!("\"x{i:05}={}\"", s.local_addr().unwrap())),
            );
        }
        let p = dir.path().join(name);
        let pps = std::env::var("XSMON_BENCH_PPS")
            .map(|v| format!("max_packets_per_s = {v}\n"))
            .unwrap_or_default();
        xsmon_tests::write_private(&p, format!("hosts = [{}]\n[snmp]\ncommunity = \"{COMMUNITY}\"\ntimeout_ms = 1000\nretries = 1\n{pps}", hosts.join(", "))).unwrap();
        p
    };
    let all_live = write_config("live.toml", total, false);
    let some_dead = write_config("dead.toml", total - n_dead, true);

    let check = |cfg: &std::path::Path| {
        let out = Command::new(&poller)
            .args(["json", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            j["summary"]["dom0s"].as_u64().unwrap(),
            j["summary"]["unreachable"].as_u64().unwrap(),
        )
    };
    let time_poll = |cfg: &std::path::Path| {
        let m = measure(&poller, &["raw", "--config", cfg.to_str().unwrap()]).unwrap();
        eprintln!("    (poller: {:.2} s wall, {:.2} s CPU)", m.wall_s, m.cpu_s);
        (m.wall_s, m.max_rss_kib as f64 / 1024.0)
    };
    // Warm every snmpd's extend cache once (as a running site always is).
    let (n, u) = check(&all_live);
    println!("poller, {total} dom0 endpoints ({} snmpd x {per_agent} ports), defaults (16384 in flight, 20000 packets/s):", ports.chunks(per_agent).count());
    println!("  warm-up: {n} polled, {u} unreachable");
    let mut runs: Vec<(f64, f64)> = (0..3).map(|_| time_poll(&all_live)).collect();
    runs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let (t_live, rss_live) = runs[1];
    println!("  all answering:                  {t_live:.2} s wall (median of 3), peak RSS {rss_live:.0} MiB");
    let (n, u) = check(&some_dead);
    let mut runs: Vec<(f64, f64)> = (0..3).map(|_| time_poll(&some_dead)).collect();
    runs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let (t_dead, rss_dead) = runs[1];
    // What the poller itself says it did (-v).
    let out = Command::new(&poller)
        .args(["raw", "-vv", "--config", some_dead.to_str().unwrap()])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("polled") || l.contains("first request"))
    {
        println!("  poller -vv: {}", l.split("engine: ").last().unwrap_or(l));
    }
    println!("  10% dead, 1 s timeout, 1 retry: {t_dead:.2} s wall (median of 3), peak RSS {rss_dead:.0} MiB ({n} polled, {u} unreachable)");
    // Here the simulated dom0s (their snmpd) share the 2 cores with the
    // poller; on a site they are other machines. The same polls with the
    // poller scheduled ahead of them (nice -10) show the engine's own cost.
    let niced = |cfg: &std::path::Path| {
        let t = Instant::now();
        let out = Command::new("nice")
            .args(["-n", "-10"])
            .arg(&poller)
            .args(["raw", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.code().is_some());
        t.elapsed().as_secs_f64()
    };
    let mut a: Vec<f64> = (0..3).map(|_| niced(&all_live)).collect();
    let mut d: Vec<f64> = (0..3).map(|_| niced(&some_dead)).collect();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    d.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "  poller at nice -10 (ahead of the simulated dom0s): all answering {:.2} s, 10% dead {:.2} s (medians of 3)",
        a[1], d[1]
    );

    // The modes that show figures read a second extend from every dom0.
    let mut j: Vec<f64> = (0..3)
        .map(|_| {
            measure(&poller, &["json", "--config", all_live.to_str().unwrap()])
                .unwrap()
                .wall_s
        })
        .collect();
    j.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "  json (state and figures of every dom0), all answering: {:.2} s (median of 3; raw, which reads no figures: {t_live:.2} s)",
        j[1]
    );

    site_cycle_and_scoped_checks(&poller, dir.path(), &all_live, solo_port, total, t_live);
    transition_log_bytes(dir.path());

    // The 2010 way: one snmpget per dom0, sequentially.
    let full = format!(
        "{NS_EXTEND}.3.1.2{}",
        extend_index("basicXenstoreMonitoring")
    );
    // The harness's snmpget: -t 1 -r 1, numeric OIDs, no MIBs.
    let snmpget = |target: &str| snmp_command("snmpget", None, target, &[&full]);
    let sample = 200.min(total - n_dead);
    let t = Instant::now();
    for p in &ports[..sample] {
        snmpget(&format!("127.0.0.1:{p}")).unwrap();
    }
    let live_secs = t.elapsed().as_secs_f64() * (total - n_dead) as f64 / sample as f64;
    let t = Instant::now();
    for s in dead.iter().take(5) {
        assert!(snmpget(&s.local_addr().unwrap().to_string()).is_err());
    }
    let dead_secs = t.elapsed().as_secs_f64() * n_dead as f64 / 5.0;
    let sequential = live_secs + dead_secs;
    println!(
        "  one snmpget per dom0, in sequence: {sequential:.0} s ({live_secs:.0} s for {} live from {sample} measured, {dead_secs:.0} s for {n_dead} dead from 5)",
        total - n_dead
    );
    println!(
        "  ratio, sequential snmpget / poller, 10% dead: {:.0}x",
        sequential / t_dead
    );
}

/// `poller serve` over every live endpoint: its cycles (the first reads
/// every dom0's figures, the next only those of dom0s that collected since:
/// none here), then a scoped check from the state it kept, against the
/// same check polling live.
fn site_cycle_and_scoped_checks(
    poller: &std::path::Path,
    dir: &std::path::Path,
    live_config: &std::path::Path,
    solo_port: u16,
    total: usize,
    t_poll: f64,
) {
    let state = dir.join("poller.db");
    let config = dir.join("serve.toml");
    xsmon_tests::write_private(
        &config,
        format!(
            "{}[service]\ninterval_secs = 1\nstale_after_secs = 86400\nstate = \"{}\"\n",
            std::fs::read_to_string(live_config).unwrap().replacen(
                "hosts = [",
                &format!("hosts = [\"solo=127.0.0.1:{solo_port}\", "),
                1
            ),
            state.display()
        ),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let mut child = Command::new(poller)
        .args(["serve", "-v", "--config", config.to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Cycles follow each other at once (each takes longer than the 1 s
    // interval): wait for six, by the service's own log.
    let cycles = |text: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.contains("site polled"))
            .filter_map(|l| l.rsplit("ms=").next()?.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    let ms = loop {
        let ms = cycles(&std::fs::read_to_string(&log).unwrap_or_default());
        if ms.len() >= 6 || Instant::now() > deadline {
            break ms;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(
        ms.len() >= 6,
        "poller serve did not complete 6 cycles: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mut steady = ms[1..].to_vec();
    steady.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = steady[steady.len() / 2];
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", state.display())).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  site cycle, {total} dom0s: {median:.0} ms median of {} (poll, state and history written; the first, which also read every dom0's figures: {:.0} ms); {:.2}x the poll of the site ({:.0} ms); peak RSS {:.0} MiB; state {:.1} MiB",
        steady.len(),
        ms[0],
        median / (t_poll * 1000.0),
        t_poll * 1000.0,
        rss_kib as f64 / 1024.0,
        db_bytes as f64 / 1048576.0
    );
    // A scoped check, as Nagios runs it: a process per check.
    let timed = |args: &[&str], n: usize| -> (f64, String) {
        let mut t: Vec<f64> = Vec::new();
        let mut first = String::new();
        for _ in 0..n {
            let s = Instant::now();
            let out = Command::new(poller).args(args).output().unwrap();
            t.push(s.elapsed().as_secs_f64() * 1000.0);
            if first.is_empty() {
                first = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
            }
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (t[t.len() / 2], first)
    };
    // The service's config lists the 10,000 loopback endpoints one by one
    // (a site's names its config directories): a check reads the state
    // with a config of its own, as small as a site's.
    let reader = dir.join("reader.toml");
    xsmon_tests::write_private(
        &reader,
        format!("[service]\nstate = \"{}\"\n", state.display()),
    )
    .unwrap();
    let r = reader.to_str().unwrap();
    let c = config.to_str().unwrap();
    let (kept, said) = timed(&["nagios", "--guest", "solo3", "--config", r], 21);
    let (kept_big, _) = timed(&["nagios", "--guest", "solo3", "--config", c], 5);
    let dom0 = format!("d{:05}", total / 2);
    let (kept_dom0, _) = timed(&["nagios", "--dom0", &dom0, "--config", r], 21);
    let (kept_everywhere, _) = timed(&["nagios", "--guest", "g3", "--config", r], 5);
    let (live, said_live) = timed(&["nagios", "--guest", "solo3", "--live", "--config", c], 3);
    println!(
        "  scoped check from the state: {kept:.1} ms median of 21 (`poller nagios --guest solo3`, a guest on one of the {} dom0s, a process each; {kept_big:.1} ms with the service's config of {} static hosts to parse); polling every dom0 live: {live:.0} ms (median of 3): {:.0}x; `--dom0 {dom0}`: {kept_dom0:.1} ms; a guest that all {total} other dom0s serve too: {kept_everywhere:.0} ms",
        total + 1,
        total + 1,
        live / kept
    );
    assert_eq!(
        said.split(" | ").next(),
        said_live.split(" | ").next(),
        "the same words from the state and live"
    );
}

/// The bytes a transition takes in the site's database: 100,000 of them
/// written in cycles of 1,000 (as a site of 100,000 guests each changing
/// once would), the file measured after a checkpoint.
fn transition_log_bytes(dir: &std::path::Path) {
    use xsmon_store::site::{Cycle, CycleWrite, Keep, SiteDb, Transition};
    let path = dir.join("transitions.db");
    let mut db = SiteDb::open_rw(&path).unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    let keep = Keep {
        secs: i64::MAX / 4,
        max_transitions: i64::MAX / 4,
    };
    let n = 100_000;
    for c in 0..n / 1000 {
        let time = 1_800_000_000 + c as i64 * 60;
        let transitions: Vec<Transition> = (0..1000)
            .map(|i| Transition {
                time,
                dom0: format!("xen{:05}", (c * 1000 + i) / 10),
                host: format!("guest{:06}", c * 1000 + i),
                check: "disk2".into(),
                old: "ok".into(),
                new: "error".into(),
                message: "/srv/data (xfs) 97% used of 1.0 TiB, inodes 3% used".into(),
            })
            .collect();
        let cycle = Cycle {
            time,
            elapsed_ms: 0,
            interval_secs: 60,
            stale_after_secs: 120,
            problems: "[]".into(),
        };
        db.write_cycle(
            &CycleWrite {
                cycle: &cycle,
                dom0s: &[],
                changed: &[],
                homes: None,
                problems: &[],
                transitions: &transitions,
            },
            keep,
        )
        .unwrap();
    }
    drop(db);
    let bytes = std::fs::metadata(&path).unwrap().len() - empty;
    let per = bytes as f64 / n as f64;
    println!(
        "  transition log: {per:.0} bytes a transition ({n} written, indexes included); the default cap of 5,000,000 rows: {:.0} MiB",
        per * 5e6 / 1048576.0
    );
}

/// A collector database of ten guests named PREFIX1..PREFIX10, the third
/// in error.
fn fill_store(path: &std::path::Path, prefix: &str, now: i64) {
    let mut conn = db::open_rw(path).unwrap();
    let guests: Vec<Guest> = (1..=10)
        .map(|id| Guest {
            found: Found::Run {
                run: sample_run(now, 2, if id == 3 { Status::Error } else { Status::Ok }),
                legacy: false,
            },
            ..Guest::named(id, &format!("{prefix}{id}"))
        })
        .collect();
    store_cycle(&mut conn, &guests, now).unwrap();
}

/// snmpd's extend lines serving a collector database.
fn extend_conf(extend: &std::path::Path, db: &std::path::Path) -> String {
    format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {}\nextend xsmonFigures {} figures --db {} --max-age 999999999\n",
        extend.display(),
        db.display(),
        extend.display(),
        db.display()
    )
}
