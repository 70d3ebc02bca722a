//! `snmp-extend basic-monitoring` for a dom0 with 200 guests: wall time and
//! peak RSS per run (what snmpd waits for), over 50 runs of the release
//! binary. The database is the collector's real one, filled in-process.
//!
//!     cargo build --release --workspace && cargo bench -p xsmon-tests --bench snmp_extend
//!
//! Prints figures; asserts nothing about speed.

use std::process::{Command, Stdio};
use std::time::Instant;

use host_collector::gather::{Found, Guest};
use xsmon_proto::Status;
use xsmon_store as db;
use xsmon_tests::{bin_dir, measure, sample_run, store_cycle};

fn main() {
    let exe = bin_dir().join("snmp-extend");
    assert!(
        exe.exists(),
        "build first: cargo build --release --workspace"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let mut conn = db::open_rw(&path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A day of history before the measured state, so the database is not tiny.
    for cycle in 0..288 {
        let t = now - (287 - cycle) * 300;
        let guests: Vec<Guest> = (1..=200)
            .map(|id| Guest {
                found: Found::Run {
                    run: sample_run(
                        t,
                        3,
                        if id % 10 == 0 {
                            Status::Error
                        } else {
                            Status::Ok
                        },
                    ),
                    legacy: false,
                },
                ..Guest::named(id, &format!("guest{id:03}"))
            })
            .collect();
        store_cycle(&mut conn, &guests, t).unwrap();
    }
    drop(conn);
    let runs = 50;
    let mut walls = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(&exe)
            .args(["basic-monitoring", "--db", path.to_str().unwrap()])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        walls.push(t.elapsed().as_secs_f64());
        assert!(out.status.success());
        bytes = out.stdout.len();
    }
    // Peak RSS through GNU time (a forked child's own figure would include
    // this large bench process's pages).
    let rss = (0..5)
        .map(|_| {
            measure(&exe, &["basic-monitoring", "--db", path.to_str().unwrap()])
                .unwrap()
                .max_rss_kib
        })
        .max()
        .unwrap();
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "snmp-extend basic-monitoring, 200 guests (a day of history in the database), {runs} runs:"
    );
    println!(
        "  wall per run: median {:.2} ms, p90 {:.2} ms, max {:.2} ms; output {bytes} bytes",
        walls[runs / 2] * 1000.0,
        walls[runs * 9 / 10] * 1000.0,
        walls[runs - 1] * 1000.0
    );
    println!("  peak RSS of any run: {:.1} MiB", rss as f64 / 1024.0);
}
