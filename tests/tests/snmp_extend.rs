//! snmp-extend behind Debian's real snmpd: the collector's real database,
//! read back with snmpget/snmpwalk (numeric OIDs).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xsmon_proto::snmpline::{parse_all, Record};
use xsmon_proto::Status;
use xsmon_tests::{
    add_domain, bin, extend_index, parse_snmp_output, probe_root, sample_run, write_run, Snmpd,
    Xenstored, NS_EXTEND,
};

/// A dom0 with `guests` guests collected into a database at `db`.
fn collected_db(db: &Path, guests: u32, xs: &Xenstored) {
    let mut c = xs.client().unwrap();
    let now = now();
    for id in 1..=guests {
        add_domain(&mut c, id, &format!("guest{id:03}")).unwrap();
        // Every 10th guest has a full disk; guest 2 never reports.
        if id != 2 {
            let st = if id % 10 == 0 {
                Status::Error
            } else {
                Status::Ok
            };
            write_run(&mut c, id, &sample_run(now, 2, st)).unwrap();
        }
    }
    collect(db, xs);
}

/// One collection cycle of the dom0 in `xs` into `db`.
fn collect(db: &Path, xs: &Xenstored) {
    let root = probe_root("linux-host", "a", &[]).unwrap();
    let cfg = db.with_extension("toml");
    std::fs::write(
        &cfg,
        format!(
            "db = \"{}\"\ndom0_name = \"xen01\"\nconfig_dirs = []\nxl = \"/nonexistent\"\n",
            db.display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("host-collector"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "collect",
            "--xenstore",
            xs.socket().to_str().unwrap(),
        ])
        .args(["--root", root.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn extend_conf(db: &Path, cluster_dir: &Path) -> String {
    let bin = bin("snmp-extend");
    format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {}\nextend listXenCluster {} list-cluster --dir {}\n",
        bin.display(),
        db.display(),
        bin.display(),
        cluster_dir.display()
    )
}

/// The lines of an extend's output, read line by line from nsExtendOutLine
/// with GETBULK (snmpbulkwalk), as the poller does.
fn out_lines(snmpd: &Snmpd, name: &str) -> Vec<String> {
    let oid = format!("{NS_EXTEND}.4.1.2{}", extend_index(name));
    let text =
        xsmon_tests::snmp_command("snmpbulkwalk", None, &snmpd.target(), &["-Cr50", &oid]).unwrap();
    parse_snmp_output(&text)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn result_of(snmpd: &Snmpd, name: &str) -> String {
    let oid = format!("{NS_EXTEND}.3.1.4{}", extend_index(name));
    parse_snmp_output(&snmpd.get(&[&oid]).unwrap()).remove(0).1
}

/// Records without the header's served time (which differs run to run).
fn comparable(recs: Vec<Record>) -> Vec<Record> {
    recs.into_iter()
        .map(|r| match r {
            Record::Header {
                version,
                kind,
                dom0,
                cycle_time,
                ..
            } => Record::Header {
                version,
                kind,
                dom0,
                cycle_time,
                served_time: 0,
            },
            r => r,
        })
        .collect()
}

#[test]
fn basic_monitoring_over_snmp_matches_the_program_line_for_line() {
    let xs = Xenstored::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    collected_db(&db, 12, &xs);
    let snmpd = Snmpd::start(&extend_conf(&db, dir.path())).unwrap();

    let lines = out_lines(&snmpd, "basicXenstoreMonitoring");
    let over_snmp = parse_all(&(lines.join("\n") + "\n")).unwrap();
    let direct = Command::new(bin("snmp-extend"))
        .args(["basic-monitoring", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(direct.status.success());
    let direct = parse_all(&String::from_utf8(direct.stdout).unwrap()).unwrap();
    assert_eq!(comparable(over_snmp.clone()), comparable(direct));

    // 12 guests and dom0, one G line each; the silent guest and the full
    // disk are there; nsExtendResult says the state was served.
    let g: Vec<&Record> = over_snmp
        .iter()
        .filter(|r| matches!(r, Record::Guest { .. }))
        .collect();
    assert_eq!(g.len(), 13);
    assert!(over_snmp.iter().any(|r| matches!(r, Record::Guest { host, probe, status: Status::Error, .. } if host == "guest002" && probe == "missing")));
    assert!(over_snmp.iter().any(|r| matches!(r, Record::Finding { host, target, status: Status::Error, .. } if host == "guest010" && target == "/")));
    assert_eq!(result_of(&snmpd, "basicXenstoreMonitoring"), "INTEGER: 0");
}

#[test]
fn two_hundred_guests_are_read_whole_through_the_line_table() {
    let xs = Xenstored::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    collected_db(&db, 200, &xs);
    let snmpd = Snmpd::start(&extend_conf(&db, dir.path())).unwrap();
    let lines = out_lines(&snmpd, "basicXenstoreMonitoring");
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    // Far more than one Ethernet-sized (1472-byte) SNMP response holds.
    assert!(total > 10_000, "only {total} bytes: not a large output");
    let recs = parse_all(&(lines.join("\n") + "\n")).unwrap();
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(r, Record::Guest { .. }))
            .count(),
        201
    );
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(r, Record::Finding { .. }))
            .count(),
        20
    );
}

#[test]
fn list_cluster_over_snmp() {
    let dir = tempfile::tempdir().unwrap();
    let auto = dir.path().join("auto");
    for (dom0, guests) in [
        ("srxen01", vec!["www01", "www02"]),
        ("srxen09", vec!["ldap", "mail", "test"]),
    ] {
        std::fs::create_dir_all(auto.join(dom0)).unwrap();
        for g in guests {
            std::fs::write(auto.join(dom0).join(format!("{g}.cfg")), "").unwrap();
        }
    }
    std::fs::write(auto.join("srxen09/README"), "not a cfg").unwrap();
    let snmpd = Snmpd::start(&extend_conf(&dir.path().join("none.db"), &auto)).unwrap();
    let recs = parse_all(&(out_lines(&snmpd, "listXenCluster").join("\n") + "\n")).unwrap();
    assert_eq!(
        recs[1..],
        [
            Record::Dom0 {
                name: "srxen01".into(),
                guests: 2
            },
            Record::Dom0 {
                name: "srxen09".into(),
                guests: 3
            }
        ]
    );
    assert_eq!(result_of(&snmpd, "listXenCluster"), "INTEGER: 0");
}

/// Runs basic-monitoring directly and returns (exit code, records, time).
fn serve(db: &Path) -> (i32, Vec<Record>, Duration) {
    let t = Instant::now();
    let out = Command::new(bin("snmp-extend"))
        .args(["basic-monitoring", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let took = t.elapsed();
    (
        out.status.code().unwrap(),
        parse_all(&String::from_utf8(out.stdout).unwrap()).unwrap(),
        took,
    )
}

fn error_message(recs: &[Record]) -> String {
    recs.iter()
        .find_map(|r| match r {
            Record::Error { scope, message } => Some(format!("{scope}: {message}")),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no E line in {recs:?}"))
}

#[test]
fn missing_locked_or_corrupt_database_is_an_error_line_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    // Missing.
    let (code, recs, _) = serve(&dir.path().join("missing.db"));
    assert_eq!(code, 1);
    assert!(error_message(&recs).contains("missing.db"));

    // Corrupt: not a database at all.
    let bad = dir.path().join("corrupt.db");
    std::fs::write(&bad, vec![0x42u8; 8192]).unwrap();
    let (code, recs, _) = serve(&bad);
    assert_eq!(code, 1);
    assert!(error_message(&recs).starts_with("database: "), "{recs:?}");

    // Locked: a writer holding the database in exclusive locking mode.
    let xs = Xenstored::start().unwrap();
    let db = dir.path().join("history.db");
    collected_db(&db, 3, &xs);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE host SET last_seen = last_seen;",
    )
    .unwrap();
    let (code, recs, took) = serve(&db);
    assert_eq!(code, 1);
    assert!(error_message(&recs).contains("database"), "{recs:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    conn.execute_batch("COMMIT;").unwrap();
    drop(conn);
    let (code, _, _) = serve(&db);
    assert_eq!(code, 0);

    // And through snmpd, the failure reaches nsExtendResult.
    let snmpd = Snmpd::start(&extend_conf(&dir.path().join("missing.db"), dir.path())).unwrap();
    assert_eq!(result_of(&snmpd, "basicXenstoreMonitoring"), "INTEGER: 1");
}

#[test]
fn a_collector_that_stopped_is_reported() {
    let xs = Xenstored::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    collected_db(&db, 2, &xs);
    let out = Command::new(bin("snmp-extend"))
        .args([
            "basic-monitoring",
            "--db",
            db.to_str().unwrap(),
            "--max-age",
            "0",
        ])
        .output()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let out2 = Command::new(bin("snmp-extend"))
        .args([
            "basic-monitoring",
            "--db",
            db.to_str().unwrap(),
            "--max-age",
            "0",
        ])
        .output()
        .unwrap();
    let recs = parse_all(&String::from_utf8(out2.stdout).unwrap()).unwrap();
    assert!(
        error_message(&recs).contains("last collection cycle is"),
        "{recs:?}"
    );
    // The state is still served beside the error.
    assert!(recs.iter().any(|r| matches!(r, Record::Guest { .. })));
    assert!(out.status.success() && out2.status.success());
}

/// The database as snmpd's extend user reads it (docs/snmpd.md): written
/// by root, its directory and files readable by the reader's group only,
/// nothing writable by the reader. The collector keeps the `-wal` and
/// `-shm` files after it closes (persistent WAL), and a read-only reader
/// of another user sees each cycle as the collector stored it.
#[test]
fn another_user_reads_each_cycle_read_only_beside_the_kept_wal() {
    use std::os::unix::fs::PermissionsExt;
    let xs = Xenstored::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("xsmon");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("history.db");
    collected_db(&db, 3, &xs);
    for kept in ["history.db-wal", "history.db-shm"] {
        assert!(data.join(kept).exists(), "{kept} removed on close");
    }
    // As docs/snmpd.md has the admin do it, with nogroup for snmpd's
    // group; the reader's program copied where that user may run it.
    let extend = dir.path().join("snmp-extend");
    std::fs::copy(bin("snmp-extend"), &extend).unwrap();
    let share = |path: &Path, mode: u32| {
        std::os::unix::fs::chown(path, None, Some(65534)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    share(&data, 0o750);
    for f in ["history.db", "history.db-wal", "history.db-shm"] {
        share(&data.join(f), 0o640);
    }
    let read_as_nobody = || {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&extend)
            .args(["basic-monitoring", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = parse_all(&String::from_utf8(out.stdout).unwrap()).unwrap();
        let status_of = |name: &str| {
            recs.iter()
                .find_map(|r| match r {
                    Record::Guest { host, status, .. } if host == name => Some(*status),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no line for {name} in {recs:?}"))
        };
        (status_of("guest001"), status_of("guest003"))
    };
    assert_eq!(read_as_nobody(), (Status::Ok, Status::Ok));
    // The next cycle: guest001's disk fills up. The reader sees it, through
    // the files the collector kept and the reader cannot write.
    let mut c = xs.client().unwrap();
    write_run(&mut c, 1, &sample_run(now(), 2, Status::Error)).unwrap();
    collect(&db, &xs);
    assert_eq!(read_as_nobody(), (Status::Error, Status::Ok));
}

/// `figures` through the real snmpd: every current host's checks with
/// their figures and thresholds, nothing for a guest that never reported;
/// and during an upgrade, a database the collector has not migrated yet
/// still serves the state while its figures say why there are none.
#[test]
fn figures_are_served_and_an_unmigrated_database_still_serves_the_state() {
    let xs = Xenstored::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    collected_db(&db, 3, &xs);
    let extend = bin("snmp-extend");
    let snmpd = Snmpd::start(&format!(
        "extend xsmonFigures {} figures --db {}\n",
        extend.display(),
        db.display()
    ))
    .unwrap();
    let recs = parse_all(&(out_lines(&snmpd, "xsmonFigures").join("\n") + "\n")).unwrap();
    let hosts_with_figures: std::collections::BTreeSet<String> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Figures { host, .. } => Some(host.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        hosts_with_figures.into_iter().collect::<Vec<_>>(),
        ["Domain-0", "guest001", "guest003"],
        "guest002 never reported: no figures"
    );
    let dom0_mem = recs
        .iter()
        .find_map(|r| match r {
            Record::Figures { host, figures } if host == "Domain-0" && figures.kind == "mem" => {
                Some(figures)
            }
            _ => None,
        })
        .unwrap();
    assert!(dom0_mem.values.iter().any(|v| v.name == "used_pct"));
    let limit = dom0_mem.limit_of("used_pct").unwrap();
    assert_eq!((limit.warning, limit.error), (Some(90.0), Some(97.0)));

    // The same database as xsmon 0.2 left it (schema 2: no host.figures).
    let old = dir.path().join("old.db");
    std::fs::copy(&db, &old).unwrap();
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch("PRAGMA journal_mode = DELETE; ALTER TABLE host DROP COLUMN figures; PRAGMA user_version = 2;")
        .unwrap();
    drop(conn);
    let run = |cmd: &str| {
        Command::new(&extend)
            .args([cmd, "--db", old.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let state = run("basic-monitoring");
    assert!(
        state.status.success(),
        "{}",
        String::from_utf8_lossy(&state.stdout)
    );
    let recs = parse_all(&String::from_utf8_lossy(&state.stdout)).unwrap();
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(r, Record::Guest { .. }))
            .count(),
        4
    );
    let figures = run("figures");
    assert_eq!(figures.status.code(), Some(1));
    let text = String::from_utf8_lossy(&figures.stdout);
    assert!(
        text.contains("schema\\sversion\\s2") && text.contains("next\\scycle"),
        "{text}"
    );
}
