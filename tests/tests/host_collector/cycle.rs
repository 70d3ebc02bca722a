//! The cycle as a whole: overlapping runs, an unreachable xenstore, a kill
//! in the middle, the schema it applies and the Prometheus textfile it writes.

use crate::now;
use std::path::{Path, PathBuf};
use std::process::Command;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{add_domain, sample_run, write_run};

#[test]
fn overlapping_runs_do_not_interleave() {
    let d = Dom0::new("");
    let mut first = d.cmd(&[
        "collect",
        "--xenstore",
        d.xs.socket().to_str().unwrap(),
        "--root",
        d.root.path().to_str().unwrap(),
    ]);
    first.env("XSMON_TEST_HOLD_LOCK_MS", "2000");
    let mut child = first.spawn().unwrap();
    // Wait until the first run holds the lock.
    let lock = PathBuf::from(format!(
        "{}.lock",
        d.dir.path().join("history.db").display()
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !lock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = d.collect_at(None);
    assert_eq!(second.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another collect holds"));
    assert!(child.wait().unwrap().success());
}

#[test]
fn unreachable_xenstore_is_recorded_and_fails() {
    let mut d = Dom0::new("");
    d.xs.kill();
    let out = d.collect_at(None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read xenstore"), "{err}");
    let e: Option<String> = d
        .db()
        .query_row(
            "SELECT error FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(e.unwrap().contains("xenstore"));
}

#[test]
fn kill_9_mid_cycle_never_leaves_half_a_cycle() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    for id in 1..=150 {
        add_domain(&mut c, id, &format!("g{id:03}")).unwrap();
        write_run(&mut c, id, &sample_run(t, 6, Status::Ok)).unwrap();
    }
    d.collect();
    let mut killed = 0;
    for i in 0..25u64 {
        let mut child = d
            .cmd(&[
                "collect",
                "--xenstore",
                d.xs.socket().to_str().unwrap(),
                "--root",
                d.root.path().to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        // Kill at a different point of the cycle each time.
        std::thread::sleep(std::time::Duration::from_millis(2 + (i * 7) % 60));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed > 0);
    let db = d.db();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Every committed cycle is whole: as many status rows as it says.
    let broken: i64 = db
        .query_row(
            "SELECT count(*) FROM cycle c WHERE c.guests != (SELECT count(*) FROM status s WHERE s.cycle_id = c.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(broken, 0);
    let cycles: i64 = db
        .query_row("SELECT count(*) FROM cycle", [], |r| r.get(0))
        .unwrap();
    assert!(cycles >= 1);
    // And the database still takes the next cycle.
    d.collect();
}

#[test]
fn schema_file_is_what_the_program_applies() {
    let d = Dom0::new("");
    d.collect();
    let db = d.db();
    let v: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, xsmon_store::SCHEMA_VERSION);
    // Every table and view of schema.sql exists in the database.
    let schema =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.sql"))
            .unwrap();
    for line in schema
        .lines()
        .filter(|l| l.starts_with("CREATE TABLE") || l.starts_with("CREATE VIEW"))
    {
        let name = line.split_whitespace().nth(2).unwrap();
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{name}");
    }
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn prometheus_textfile_passes_promtool() {
    let d = Dom0::new("");
    let prom = d.dir.path().join("xsmon.prom");
    let cfg = d.dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("prometheus_textfile = \"{}\"\n{text}", prom.display()),
    )
    .unwrap();
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    write_run(&mut c, 1, &sample_run(now(), 2, Status::Error)).unwrap();
    add_domain(&mut c, 2, "silent").unwrap();
    d.collect();
    let metrics = std::fs::read_to_string(&prom).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(metrics.contains("xsmon_check_value{dom0=\"xen01\",guest=\"web01\",kind=\"disk\",target=\"/\",metric=\"used_pct\"} 97\n"), "{metrics}");
    assert!(metrics.contains("xsmon_check_status{dom0=\"xen01\",guest=\"web01\",check=\"disk0\",kind=\"disk\",target=\"/\"} 2\n"), "{metrics}");
    assert!(
        metrics.contains("xsmon_guest_probe_stale{dom0=\"xen01\",guest=\"silent\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsmon_collector_xenstore_ok{dom0=\"xen01\"} 1\n"),
        "{metrics}"
    );
}
