//! host-collector end to end: real oxenstored, guests written by the real
//! guest-probe or raw writes (hostile cases), real SQLite.

use std::path::{Path, PathBuf};
use std::process::Command;

use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{
    add_domain, bin, probe_root, remove_domain, sample_run, write_run, write_run_v1,
};
use xsmon_xenstore::{Access, Perm, Store};

fn now() -> i64 {
    chrono_now()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn run_probe(d: &Dom0, domid: u32, config: &str) {
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.toml"),
        format!("[cpu]\nfirst_sample_ms = 100\n{config}"),
    )
    .unwrap();
    let out = Command::new(bin("guest-probe"))
        .args(["--root", root.path().to_str().unwrap()])
        .args(["--config", tmp.path().join("p.toml").to_str().unwrap()])
        .args(["--state-file", tmp.path().join("s").to_str().unwrap()])
        .args(["--xenstore", d.xs.socket().to_str().unwrap()])
        .args(["--domain-path", &format!("/local/domain/{domid}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn guests_written_by_the_real_probe_are_collected() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    add_domain(&mut c, 2, "db01").unwrap();
    add_domain(&mut c, 3, "quiet").unwrap();
    run_probe(&d, 1, "");
    // db01's /srv/data crosses a (low) threshold: a warning with a finding.
    run_probe(
        &d,
        2,
        "[[disk.mount]]\npath = \"/srv/data\"\nused_pct = { warning = 0.0, error = 100.0 }\n",
    );
    d.collect();

    let (probe, status, msg) = d.host("web01");
    assert_eq!((probe.as_str(), status.as_str()), ("fresh", "ok"), "{msg}");
    assert!(msg.starts_with("all 9 checks ok"), "{msg}");
    let (_, status, msg) = d.host("db01");
    assert_eq!(status, "warning");
    assert!(msg.contains("/srv/data"), "{msg}");
    let (probe, status, msg) = d.host("quiet");
    assert_eq!((probe.as_str(), status.as_str()), ("missing", "error"));
    assert_eq!(msg, "probe not reporting: no results in xenstore");
    // dom0 itself, with the unavailable hypervisor figures said out loud.
    let (probe, _, msg) = d.host("Domain-0");
    assert_eq!(probe, "host");
    assert!(
        msg.contains("domain states and CPU time unavailable"),
        "{msg}"
    );

    let db = d.db();
    let findings: i64 = db
        .query_row(
            "SELECT count(*) FROM finding f JOIN host h ON h.id = f.host_id WHERE h.name = 'db01' AND f.target = '/srv/data'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(findings, 1);
    let samples: i64 = db
        .query_row(
            "SELECT count(*) FROM sample s JOIN host h ON h.id = s.host_id WHERE h.name = 'web01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(samples >= 10, "{samples} samples");
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // The human status view shows the same.
    let out = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dom0 xen01")
            && text.contains("quiet")
            && text.contains("probe not reporting"),
        "{text}"
    );
}

#[test]
fn a_stale_guest_is_an_error_with_its_last_time() {
    let d = Dom0::new("stale_after_secs = 600");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 4, "sleepy").unwrap();
    let t = now();
    write_run(&mut c, 4, &sample_run(t, 2, Status::Ok)).unwrap();
    assert!(d.collect_at(Some(t + 60)).status.success());
    assert_eq!(d.host("sleepy").0, "fresh");
    // Eleven minutes later the guest has not written again.
    let out = d.collect_at(Some(t + 660));
    assert!(out.status.success());
    let (probe, status, msg) = d.host("sleepy");
    assert_eq!((probe.as_str(), status.as_str()), ("stale", "error"));
    assert!(
        msg.starts_with("probe not reporting since ") && msg.contains("11 min ago"),
        "{msg}"
    );

    // Then the guest's results vanish entirely: still "since" its last run.
    c.rm("/local/domain/4/data/xsmon").unwrap();
    assert!(d.collect_at(Some(t + 960)).status.success());
    let (probe, _, msg) = d.host("sleepy");
    assert_eq!(probe, "missing");
    assert!(msg.contains("since") && msg.contains("16 min ago"), "{msg}");
}

#[test]
fn gone_and_migrated_guests_are_recorded() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    for (id, name) in [(1, "stays"), (2, "leaves"), (3, "moves")] {
        add_domain(&mut c, id, name).unwrap();
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    d.cfg_file("xen01", "stays");
    d.cfg_file("xen01", "leaves");
    d.cfg_file("xen02", "moves");
    assert!(d.collect_at(Some(t)).status.success());
    remove_domain(&mut c, 2).unwrap();
    remove_domain(&mut c, 3).unwrap();
    assert!(d.collect_at(Some(t + 300)).status.success());

    let db = d.db();
    let state = |n: &str| -> String {
        db.query_row("SELECT state FROM host WHERE name = ?1", [n], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(state("stays"), "running");
    assert_eq!(state("leaves"), "gone");
    assert_eq!(state("moves"), "migrated");
    let detail: String = db
        .query_row(
            "SELECT detail FROM event WHERE kind = 'migrated'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("xen02"), "{detail}");
    let news: i64 = db
        .query_row("SELECT count(*) FROM event WHERE kind = 'new'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(news, 4, "three guests and dom0 appeared once each");

    // The guest comes back.
    add_domain(&mut c, 9, "leaves").unwrap();
    assert!(d.collect_at(Some(t + 600)).status.success());
    assert_eq!(state("leaves"), "running");
    let back: i64 = db
        .query_row("SELECT count(*) FROM event WHERE kind = 'back'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(back, 1);
}

#[test]
fn hostile_guests_get_an_error_and_do_not_affect_others() {
    let d = Dom0::new("legacy = true");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let names = [
        "good", "newline", "notutf8", "huge", "manykeys", "forger", "victim", "fakename",
    ];
    for (i, n) in names.iter().enumerate() {
        add_domain(&mut c, i as u32 + 1, n).unwrap();
    }
    // Layout version 1 (one key per field), where the hostile values below
    // go; a dom0 reads both versions.
    for id in 1..=5 {
        write_run_v1(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    // A newline that would forge a line for another guest, written with the
    // stock tool as a guest's shell script would.
    let st =
        d.xs.tool("xenstore-write")
            .args([
                "/local/domain/2/data/xsmon/check/cpu/message",
                "ok\nvictim ok all fine",
            ])
            .status()
            .unwrap();
    assert!(st.success());
    c.write(
        "/local/domain/3/data/xsmon/check/cpu/target",
        b"\xff\xfe\xfd",
    )
    .unwrap();
    // A value at the daemon's size limit, far over the layout's 256 bytes.
    c.write(
        "/local/domain/4/data/xsmon/check/cpu/message",
        &vec![b'A'; 2048],
    )
    .unwrap();
    // 10,000 keys under one guest (dom0 can write past a guest's quota).
    for i in 0..10_000 {
        c.write(
            &format!("/local/domain/5/data/xsmon/check/x{i}/status"),
            b"ok",
        )
        .unwrap();
    }
    // Guest 6 writes into the legacy shared path under guest 7's name.
    let forged = format!("{}/victim", xsmon_proto::layout::LEGACY_ROOT);
    write_legacy(&mut c, &forged, t);
    c.set_perms(&forged, &[Perm::new(6, Access::None)]).unwrap();
    // Guest 8 puts a `name` of its own among its results: ignored, the
    // toolstack's name stands.
    write_run(&mut c, 8, &sample_run(t, 1, Status::Ok)).unwrap();
    c.write("/local/domain/8/data/xsmon/name", b"good").unwrap();

    let out = d.collect();
    assert!(out.status.success());
    let l = d.latest();
    let get = |n: &str| {
        l.iter()
            .find(|h| h.0 == n)
            .unwrap_or_else(|| panic!("{n} missing from {l:?}"))
            .clone()
    };
    assert_eq!(get("good").2, "ok");
    assert_eq!(get("fakename").2, "ok");
    assert_eq!(l.iter().filter(|h| h.0 == "good").count(), 1);
    for (n, expect) in [
        ("newline", "control character"),
        ("notutf8", "not valid UTF-8"),
        ("huge", "more than the 256 allowed"),
        ("manykeys", "check"),
        ("victim", "forged"),
    ] {
        let (_, probe, status, msg) = get(n);
        assert_eq!(
            (probe.as_str(), status.as_str()),
            ("invalid", "error"),
            "{n}: {msg}"
        );
        assert!(msg.contains(expect), "{n}: {msg}");
        assert!(!msg.contains('\n'));
    }
    // Nothing a guest wrote made it into the database unchecked.
    let db = d.db();
    let bad: i64 = db
        .query_row(
            "SELECT count(*) FROM status WHERE instr(message, char(10)) > 0 OR instr(message, char(13)) > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad, 0);
}

fn write_legacy(c: &mut xsmon_xenstore::Client, base: &str, t: i64) {
    for (k, v) in xsmon_proto::layout::encode(&sample_run(t, 1, Status::Ok)).unwrap() {
        c.write(&format!("{base}/{k}"), &v).unwrap();
    }
}

#[test]
fn legacy_path_owned_by_the_guest_is_accepted() {
    let d = Dom0::new("legacy = true");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 5, "oldstyle").unwrap();
    let base = format!("{}/oldstyle", xsmon_proto::layout::LEGACY_ROOT);
    write_legacy(&mut c, &base, now());
    c.set_perms(&base, &[Perm::new(5, Access::None)]).unwrap();
    d.collect();
    let (probe, status, msg) = d.host("oldstyle");
    assert_eq!((probe.as_str(), status.as_str()), ("fresh", "ok"));
    assert!(msg.contains("legacy"), "{msg}");
}

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
fn old_figures_roll_up_and_history_shows_them() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    // Ten days of cycles, one every hour (enough to cross the 7-day raw
    // retention), each with a fresh run.
    let start = (now() / 3600) * 3600 - 10 * 86400;
    for h in 0..240 {
        let t = start + h * 3600;
        write_run(&mut c, 1, &sample_run(t, 1, Status::Ok)).unwrap();
        let out = d.collect_at(Some(t + 60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = d.db();
    let last = start + 239 * 3600 + 60;
    let oldest_cycle: i64 = db
        .query_row("SELECT min(time) FROM cycle", [], |r| r.get(0))
        .unwrap();
    assert!(
        last - oldest_cycle <= 7 * 86400 + 3600,
        "raw rows older than 7 days remain"
    );
    let hourly: i64 = db
        .query_row(
            "SELECT count(DISTINCT start) FROM rollup WHERE period = 3600",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((60..=80).contains(&hourly), "{hourly} hourly rollups");
    let (n, vavg): (i64, i64) = db
        .query_row(
            "SELECT r.n, r.vavg FROM rollup r JOIN metric m ON m.id = r.metric_id JOIN host h ON h.id = r.host_id
              WHERE h.name = 'web01' AND m.kind = 'disk' AND m.name = 'used_pct' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, vavg), (1, 40_000));

    let out = d
        .cmd(&[
            "history", "web01", "--since", "12d", "--check", "disk", "--format", "csv",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("time,resolution,check,target,metric,value,min,max\n"));
    assert!(csv.contains(",hourly,disk,/,used_pct,40,40,40"), "{csv}");
    assert!(csv.contains(",raw,disk,/,used_pct,40,40,40"), "{csv}");
    assert!(!csv.contains(",cpu,"), "--check disk shows disks only");
    let out = d
        .cmd(&["history", "web01", "--since", "2h", "--format", "json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["metric"] == "steal_pct"));
    let out = d.cmd(&["history", "nobody"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
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

#[test]
fn status_and_history_columns_line_up_for_long_names() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let long = "a-guest-with-a-very-long-name-that-fills-sixty-four-characters-x";
    assert_eq!(long.len(), 64);
    add_domain(&mut c, 1, long).unwrap();
    add_domain(&mut c, 2, "web").unwrap();
    for id in [1, 2] {
        write_run(&mut c, id, &sample_run(t, 2, Status::Error)).unwrap();
    }
    assert!(d.collect_at(Some(t + 60)).status.success());
    let out = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The STATUS column starts at the same place on the header and on every
    // host line.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("HOST")
                || l.starts_with(long)
                || l.starts_with("web ")
                || l.starts_with("Domain-0")
        })
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    let col = |l: &str, word: &str| {
        l.find(word)
            .unwrap_or_else(|| panic!("{word} not in {l:?}"))
    };
    let at = col(lines[0], "STATUS");
    for l in &lines[1..] {
        let probe_end = l
            .find(" fresh ")
            .or_else(|| l.find(" host "))
            .unwrap_or_else(|| panic!("{l:?}"));
        let status_at = l[probe_end + 1..]
            .find(' ')
            .map(|i| probe_end + 1 + i)
            .unwrap();
        let status_start = status_at + l[status_at..].find(|c: char| c != ' ').unwrap();
        assert_eq!(status_start, at, "{text}");
    }
    // history: the header's columns are the rows' columns.
    let out = d
        .cmd(&["history", long, "--check", "disk"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.lines();
    let head = it.next().unwrap();
    let value_end = head.find("VALUE").unwrap() + "VALUE".len();
    let rows: Vec<&str> = it.collect();
    assert!(rows.len() >= 2, "{text}");
    for row in rows {
        // VALUE, MIN and MAX are right-aligned, 12 wide, last: each row's
        // VALUE ends where the header's does.
        assert_eq!(row.len() - (1 + 12 + 1 + 12), value_end, "{text}");
    }
}

/// A run whose figures move with time `t` (so that a chart has something
/// to show), graded by thresholds the "guest" reports, as guest-probe
/// does: load and memory swing daily, the root filesystem fills up past
/// its warning threshold, the gateway's rtt stays far below its own.
fn varying_run(t: i64, seq: u64, progress: f64) -> xsmon_proto::layout::Run {
    use xsmon_proto::CheckResult;
    let day = (t % 86400) as f64 / 86400.0 * std::f64::consts::TAU;
    let mut checks = Vec::new();
    let graded = |c: &mut CheckResult, name: &str, v: f64, w: f64, e: f64| {
        c.value(name, v).limit(name, Some(w), Some(e));
        let s = if v >= e {
            Status::Error
        } else if v >= w {
            Status::Warning
        } else {
            Status::Ok
        };
        c.status = c.status.worst(s);
    };
    let mut cpu = CheckResult::new("cpu", "cpu", "");
    graded(&mut cpu, "load_per_cpu", 0.6 + 0.5 * day.sin(), 2.0, 4.0);
    // iowait jitters from one run to the next, so that the hourly rollups
    // of the oldest days have a min and a max apart (a visible band).
    let jitter = if (t / 1800) % 2 == 0 { 2.0 } else { -2.0 };
    graded(
        &mut cpu,
        "iowait_pct",
        6.0 + 3.0 * (3.0 * day).sin() + jitter,
        20.0,
        40.0,
    );
    graded(&mut cpu, "steal_pct", 1.0, 10.0, 25.0);
    cpu.message = "cpu".into();
    checks.push(cpu);
    let mut mem = CheckResult::new("mem", "mem", "");
    graded(&mut mem, "used_pct", 55.0 + 20.0 * day.cos(), 90.0, 97.0);
    mem.message = "mem".into();
    checks.push(mem);
    let mut disk = CheckResult::new("disk0", "disk", "/");
    let filled = 60.0 + 30.0 * progress;
    graded(&mut disk, "used_pct", filled, 85.0, 95.0);
    disk.message = "disk".into();
    checks.push(disk);
    let mut net = CheckResult::new("net0", "net", "192.0.2.1");
    graded(&mut net, "rtt_ms", 0.8 + 0.3 * day.sin(), 100.0, 500.0);
    graded(&mut net, "loss_pct", 0.0, 20.0, 60.0);
    net.message = "net".into();
    checks.push(net);
    xsmon_proto::layout::Run {
        probe: "guest-probe 0.3.0".into(),
        time: t,
        seq,
        checks,
        resumed: None,
        boot: None,
    }
}

#[test]
fn history_is_drawn_as_charts_with_thresholds_bands_and_gaps() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    // 8.5 days of cycles every 30 minutes (past the 7-day raw retention,
    // so the oldest days are hourly rollups of two runs each, with a min
    // and a max), with the probe silent for 6 hours twice: once in the
    // rolled-up days, once in the raw ones.
    let cycles = 17 * 24;
    let start = (now() / 1800) * 1800 - cycles * 1800;
    let silent = |t: i64| {
        let h = (t - start) / 3600;
        (24..30).contains(&h) || (180..186).contains(&h)
    };
    let mut seq = 0;
    for i in 0..cycles {
        let t = start + i * 1800;
        if !silent(t) {
            seq += 1;
            let progress = i as f64 / cycles as f64;
            write_run(&mut c, 1, &varying_run(t, seq, progress)).unwrap();
        }
        let out = d.collect_at(Some(t + 60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let plot = |file: &str| {
        let path = tmp.path().join(file);
        let out = d
            .cmd(&[
                "history",
                "web01",
                "--since",
                "9d",
                "--plot",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (out, path)
    };

    // PNG: the size says the panel count; the pixels say what is drawn.
    let (out, png_path) = plot("web01.png");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Seven figures; loss_pct is 0 throughout: named in the header, not
    // drawn.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("6 panels"), "{said}");
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1100, 56 + 18 + 6 * 190));
    let step = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks(step)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    assert!(count([31, 94, 168]) > 5000, "figure lines");
    assert!(count([230, 140, 0]) > 1000, "warning thresholds");
    assert!(count([200, 30, 30]) > 1000, "error thresholds");
    assert!(count([228, 228, 228]) > 10000, "grey gaps");
    // The rollup band: the figure's blue, light (18% over white).
    let band = buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| {
            (205..=222).contains(&p[0])
                && (218..=233).contains(&p[1])
                && (232..=245).contains(&p[2])
        })
        .count();
    assert!(band > 300, "rollup band: {band} pixels");
    // Copy it where a person can look at it (the demo draws one too).
    if let Ok(dir) = std::env::var("XSMON_KEEP_CHART") {
        std::fs::copy(&png_path, Path::new(&dir).join("web01.png")).unwrap();
    }

    // SVG: the captions, the thresholds the guest reported, a band for
    // the rollups, and rtt's thresholds named rather than drawn (they would
    // flatten a line near 1 ms).
    let (out, svg_path) = plot("web01.svg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for text in [
        "web01:",
        "cpu: load_per_cpu",
        "mem: used_pct   warning 90   error 97",
        "disk /: used_pct   warning 85   error 95",
        "net 192.0.2.1: rtt_ms   warning 100 (off scale)   error 500 (off scale)",
        "0 throughout: net 192.0.2.1: loss_pct",
        // Asked for 9 days, it has 8.5: the chart starts with its history.
        "(its history starts there)",
        "<polygon",
    ] {
        assert!(svg.contains(text), "no {text:?} in the SVG");
    }

    // What cannot be drawn says why.
    let (out, _) = plot("web01.gif");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}

/// A guest that writes a new run while dom0 reads its area: dom0 reads a
/// chunked run's `run` line, then its chunks, in two rounds of requests,
/// so the chunks of a run written in between could be read under the
/// older `run` line (seen on the Xen lab: "run seq 4 was rewritten with
/// different content"). Here one guest rewrites its run every
/// millisecond, each with its seq in its cpu message, while dom0 gathers
/// 50 guests again and again: every run dom0 reads is one the guest wrote
/// whole, or (when it kept changing under every re-read) an error saying
/// so, never a mix.
#[test]
fn a_run_rewritten_while_dom0_reads_it_is_never_read_half_old() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let xs = xsmon_tests::Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let t = now();
    let written_as = |seq: u64| {
        let mut run = sample_run(t, 3, Status::Ok);
        run.seq = seq;
        run.checks[0].message = format!("written as seq {seq}");
        run
    };
    for id in 1..=50 {
        add_domain(&mut c, id, &format!("vm{id:02}")).unwrap();
        write_run(&mut c, id, &written_as(0)).unwrap();
    }
    let stop = AtomicBool::new(false);
    // Stops the writer however the reading ends (a failed assertion too:
    // the scope waits for the writer).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (whole, kept_changing) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut w = xs.client().unwrap();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                write_run(&mut w, 1, &written_as(seq)).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            seq
        });
        let stopping = StopOnDrop(&stop);
        let (mut whole, mut kept_changing) = (0, 0);
        for _ in 0..150 {
            let guests = host_collector::gather::gather(&mut c, false).unwrap();
            let g = guests.iter().find(|g| g.domid == 1).unwrap();
            match &g.found {
                host_collector::gather::Found::Run { run, .. } => {
                    assert_eq!(
                        run.checks[0].message,
                        format!("written as seq {}", run.seq),
                        "a run read half old"
                    );
                    whole += 1;
                }
                host_collector::gather::Found::Invalid(why) => {
                    assert!(why.contains("kept changing"), "{why}");
                    kept_changing += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        drop(stopping);
        let writes = writer.join().unwrap();
        assert!(writes > 150, "the writer wrote only {writes} runs");
        (whole, kept_changing)
    });
    assert!(
        whole > kept_changing,
        "{whole} whole runs read, {kept_changing} kept changing"
    );
}

/// Guest agents' keys through real oxenstored: the rfc schema of
/// xen-guest-agent for a guest listed in `[without_probe]`, and the hint for
/// one that is not listed and has an agent (XAPI's keys).
#[test]
fn guest_agents_of_both_schemas_and_the_hint_for_unlisted_guests() {
    let d = Dom0::new("[without_probe]\nguests = [\"win*\"]");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 5, "win01").unwrap();
    add_domain(&mut c, 6, "app07").unwrap();
    for (k, v) in [
        ("data/xen-guest-agent", "0.5.0-dev"),
        ("data/os/name", "Debian"),
        ("data/os/version", "12.0.0"),
        ("data/os/class", "unix"),
        ("data/os/unix/kernel-version", "6.1.0-57-amd64"),
        ("data/net/2", "00:16:0a:4d:00:16"),
        ("data/net/2/ipv4/10_77_0_22", ""),
    ] {
        c.write(&format!("/local/domain/5/{k}"), v.as_bytes())
            .unwrap();
    }
    c.write(
        "/local/domain/6/data/os_name",
        b"Windows Server 2022".as_slice(),
    )
    .unwrap();
    assert!(d.collect().status.success());
    let (probe, status, msg) = d.host("win01");
    assert_eq!((probe.as_str(), status.as_str()), ("agent", "ok"), "{msg}");
    assert_eq!(
        msg,
        "guest agent (xen-guest-agent 0.5.0-dev): Debian 12.0.0, kernel 6.1.0-57-amd64, 10.77.0.22"
    );
    let (probe, status, msg) = d.host("app07");
    assert_eq!(
        (probe.as_str(), status.as_str()),
        ("missing", "error"),
        "{msg}"
    );
    assert_eq!(
        msg,
        "probe not reporting: no results in xenstore; a guest agent writes here (XAPI's keys): list it in [without_probe] to be monitored through it"
    );
}

/// The real probe writes its kernel's boot id (key layout 5); dom0 tells a
/// restore (the same boot in a new domain, whichever run it reads first)
/// from a reboot (another boot), and counts only the latter.
#[test]
fn the_boot_id_tells_a_restore_from_a_reboot_through_the_real_programs() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let uuid = xsmon_tests::uuid_for("web01");
    xsmon_tests::add_domain_vm(&mut c, 3, "web01", Some(&uuid)).unwrap();
    let t = now();
    let mut run = sample_run(t, 7, Status::Ok);
    run.boot = xsmon_proto::layout::BootId::from_kernel("3f2504e0-4f89-41d3-9a0c-0305e82c3301");
    write_run(&mut c, 3, &run).unwrap();
    assert!(d.collect_at(Some(t + 10)).status.success());
    let reboots = |d: &Dom0| -> u64 {
        d.db()
            .query_row("SELECT reboots FROM host WHERE name = 'web01'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as u64
    };
    // Restored into domain 4: its probe wrote twice there (the second run
    // does not say it resumed) before the next cycle.
    remove_domain(&mut c, 3).unwrap();
    xsmon_tests::add_domain_vm(&mut c, 4, "web01", Some(&uuid)).unwrap();
    run.seq = 2;
    run.time = t + 300;
    write_run(&mut c, 4, &run).unwrap();
    assert!(d.collect_at(Some(t + 310)).status.success());
    let (_, status, msg) = d.host("web01");
    assert_eq!(status, "ok", "{msg}");
    assert!(
        msg.contains("restored or migrated within this dom0 since the last cycle (domain 3 -> 4; the same boot of its kernel)"),
        "{msg}"
    );
    assert_eq!(reboots(&d), 0);
    // Rebooted into domain 5: another boot id.
    remove_domain(&mut c, 4).unwrap();
    xsmon_tests::add_domain_vm(&mut c, 5, "web01", Some(&uuid)).unwrap();
    run.seq = 1;
    run.time = t + 600;
    run.boot = xsmon_proto::layout::BootId::from_kernel("9b2504e0-4f89-41d3-9a0c-0305e82c3302");
    write_run(&mut c, 5, &run).unwrap();
    assert!(d.collect_at(Some(t + 610)).status.success());
    let (_, _, msg) = d.host("web01");
    assert!(
        msg.contains("rebooted or created again (domain 4 -> 5: another boot of its kernel)"),
        "{msg}"
    );
    assert_eq!(reboots(&d), 1);
}
