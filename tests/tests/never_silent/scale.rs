//! Sizes and failures: 4,000 domains, a failure that costs one guest alone,
//! an old database migrated, more figures than Nagios keeps.

use crate::{collect_ok, find, now, served_guests};
use std::process::Command;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{
    add_domain, bin, sample_run, uuid_for, write_run, write_run_v1, Snmpd, COMMUNITY,
};
use xsmon_xenstore::Store;

#[test]
fn a_dom0_with_4000_domains_is_collected() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    const N: u32 = 4000;
    for id in 1..=N {
        add_domain(&mut c, id, &format!("vm{id:05}")).unwrap();
        if id % 100 == 0 {
            write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
        }
    }
    // The listing really is beyond the protocol's 4096 bytes.
    let listing: usize = c
        .directory_trusted("/local/domain", 1 << 20)
        .unwrap()
        .iter()
        .map(|n| n.len() + 1)
        .sum();
    assert!(listing > 4096 * 4, "{listing}");
    collect_ok(&d, t + 60);
    let rows: i64 = d
        .db()
        .query_row(
            "SELECT guests FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, i64::from(N) + 1);
    let gs = served_guests(&d);
    assert_eq!(gs.len(), N as usize + 1);
    assert_eq!(find(&gs, "vm04000").probe, "fresh");
    assert_eq!(find(&gs, "vm03999").probe, "missing");
}

#[test]
fn each_per_guest_failure_costs_that_guest_alone() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let names = ["good", "widelist", "badvm", "unstorable", "badname", "late"];
    for (i, n) in names.iter().enumerate() {
        add_domain(&mut c, i as u32 + 1, n).unwrap();
        write_run(&mut c, i as u32 + 1, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    // Identity: a vm link that names no UUID.
    c.write("/local/domain/3/vm", b"/vm/not-a-uuid\nG forged")
        .unwrap();
    // Name: a control character in the toolstack's name.
    c.write("/local/domain/5/name", b"bad\x1bname").unwrap();
    collect_ok(&d, t + 60);
    // Store: SQLite refuses this guest's figures from now on.
    d.db()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON sample
               WHEN NEW.host_id = (SELECT id FROM host WHERE name = 'unstorable')
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    for id in 1..=6 {
        write_run(&mut c, id, &sample_run(t + 300, 2, Status::Ok)).unwrap();
    }
    // Guest 2 still writes layout version 1, whose check listing it controls.
    write_run_v1(&mut c, 2, &sample_run(t + 300, 2, Status::Ok)).unwrap();
    // Read: a check listing longer than a guest may have (the strict
    // 4096-byte bound holds for listings a guest controls).
    for i in 0..80 {
        c.write(
            &format!(
                "/local/domain/2/data/xsmon/check/{}{i:02}/kind",
                "x".repeat(60)
            ),
            b"disk",
        )
        .unwrap();
    }
    collect_ok(&d, t + 360);

    let (text, ok) = d.served();
    assert!(ok, "{text}");
    let gs = served_guests(&d);
    assert_eq!(
        gs.len(),
        7,
        "dom0 and six guests, each with its line: {gs:#?}"
    );
    for fine in ["good", "late"] {
        assert_eq!(find(&gs, fine).probe, "fresh", "{fine}");
    }
    let wide = find(&gs, "widelist");
    assert_eq!(wide.probe, "invalid");
    assert!(wide.message.contains("exceeds"), "{}", wide.message);
    let badvm = find(&gs, "badvm");
    assert_eq!(badvm.probe, "fresh");
    assert!(
        badvm.message.contains("does not name a VM UUID"),
        "{}",
        badvm.message
    );
    assert!(!text.contains("\nG forged"), "{text}");
    let unstorable = find(&gs, "unstorable");
    assert_eq!(unstorable.status, Status::Error);
    assert!(
        unstorable.message.contains("injected failure"),
        "{}",
        unstorable.message
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("E store ") && l.contains("unstorable")),
        "{text}"
    );
    let badname = find(&gs, "domid-5");
    assert_eq!(badname.probe, "invalid");
    // The others' figures of this cycle are stored.
    let stored: i64 = d
        .db()
        .query_row(
            "SELECT count(DISTINCT s.host_id) FROM sample s
              WHERE s.cycle_id = (SELECT max(id) FROM cycle)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 4, "dom0, good, late and badvm");
}

#[test]
fn a_version_1_database_is_migrated_and_history_follows_the_vm() {
    let d = Dom0::new("");
    let path = d.dir.path().join("history.db");
    let t = now();
    {
        let v1 = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store/schema-v1.sql"),
        )
        .unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&v1).unwrap();
        db.execute_batch(&format!(
            "PRAGMA user_version = 1;
             INSERT INTO cycle (id, time, duration_ms, dom0, guests) VALUES (1, {t0}, 5, 'xen01', 2);
             INSERT INTO host (id, name, first_seen, last_seen, domid, state) VALUES
                (1, 'Domain-0', {t0}, {t0}, 0, 'running'), (2, 'web01', {t0}, {t0}, 3, 'running');
             INSERT INTO status VALUES (1, 1, 0, 'host', NULL, NULL, 'ok', 'fine'),
                                       (1, 2, 3, 'fresh', {t0}, 4, 'ok', 'fine');
             INSERT INTO metric (id, kind, target, name) VALUES (1, 'cpu', '', 'load_per_cpu');
             INSERT INTO sample VALUES (2, 1, 1, 1234);",
            t0 = t - 600
        ))
        .unwrap();
    }
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 3, "web01").unwrap();
    write_run(&mut c, 3, &sample_run(t, 1, Status::Ok)).unwrap();
    collect_ok(&d, t + 60);
    let db = d.db();
    let (id, ident): (i64, String) = db
        .query_row("SELECT id, ident FROM host WHERE name = 'web01'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((id, ident), (2, format!("uuid:{}", uuid_for("web01"))));
    let v: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, xsmon_store::SCHEMA_VERSION);

    // Renamed by its admin: same VM, same history.
    c.write("/local/domain/3/name", b"web01-renamed").unwrap();
    write_run(&mut c, 3, &sample_run(t + 300, 1, Status::Ok)).unwrap();
    collect_ok(&d, t + 360);
    let out = d
        .cmd(&[
            "history",
            "web01-renamed",
            "--since",
            "2h",
            "--check",
            "cpu",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        csv.contains(",1.234,"),
        "the v1 sample is still this VM's:\n{csv}"
    );
    assert_eq!(
        csv.lines().filter(|l| l.contains("load_per_cpu")).count(),
        3,
        "{csv}"
    );
}

/// A guest with as many checks as the key layout allows (100: 97
/// filesystems) has more figures than Nagios keeps of a plugin's output.
/// Through the real snmpd, `poller nagios --guest` keeps its first line
/// within budget with every item whole, the figures with thresholds first,
/// and says how many it left out rather than letting Nagios cut one in half;
/// the real Nagios 4 records every item whole.
#[test]
fn a_guest_with_too_many_figures_for_nagios_is_told_not_cut() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 3, "big01").unwrap();
    let t = now();
    write_run(&mut c, 3, &sample_run(t, 97, Status::Ok)).unwrap();
    collect_ok(&d, t + 10);
    let db = d.dir.path().join("history.db");
    let extend = bin("snmp-extend");
    let snmpd = Snmpd::start(&format!(
        "extend basicXenstoreMonitoring {0} basic-monitoring --db {1} --max-age 999999999\nextend xsmonFigures {0} figures --db {1} --max-age 999999999\n",
        extend.display(),
        db.display()
    ))
    .unwrap();
    let empty = d.dir.path().join("poller.toml");
    std::fs::write(&empty, "").unwrap();
    let args = [
        "nagios".to_string(),
        "--guest".into(),
        "big01".into(),
        "--config".into(),
        empty.display().to_string(),
        "-c".into(),
        COMMUNITY.into(),
        format!("--host=xen01={}", snmpd.target()),
    ];
    let out = Command::new(bin("poller")).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let first = text.lines().next().unwrap();
    assert!(first.len() <= 6000, "{} bytes", first.len());
    let (status, perf) = first.split_once(" | ").unwrap();
    let items: Vec<&str> = perf.split(' ').collect();
    for item in &items {
        let (label, rest) = item.rsplit_once("'=").unwrap_or_else(|| panic!("{item}"));
        assert!(label.starts_with('\''), "{item}");
        let fields: Vec<&str> = rest.split(';').collect();
        assert!(fields.len() <= 5, "{item}");
        let v = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
        assert!(v.parse::<f64>().is_ok(), "{item}");
    }
    // 97 disks x (used, inodes) and the other checks: over 200 figures.
    let left_out: usize = status
        .split("performance data: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no note of what was left out: {status}"));
    let figures = items.len() - 7; // the 7 counts come first
    assert!(
        left_out > 0 && figures + left_out > 200,
        "{figures} + {left_out}"
    );
    assert!(status.contains(&format!(
        "{left_out} of {} figures left out",
        figures + left_out
    )));

    // What Nagios itself records of that check: every item, whole.
    let nagios_dir = tempfile::tempdir().unwrap();
    let objects = nagios_dir.path().join("big.cfg");
    xsmon_tests::write_private(
        &objects,
        format!(
            "define command {{\n command_name xsmon-true\n command_line /bin/true\n}}\n\
             define command {{\n command_name check_big\n command_line {} {}\n}}\n\
             define host {{\n use linux-server\n host_name xen-cluster\n address 127.0.0.1\n check_command xsmon-true\n}}\n\
             define service {{\n use generic-service\n host_name xen-cluster\n service_description xsmon guest big01\n check_command check_big\n}}\n",
            bin("poller").display(),
            args.join(" ")
        ),
    )
    .unwrap();
    let nagios = xsmon_tests::nagios::Nagios::new(&[&objects]).unwrap();
    let recorded = nagios
        .run_until_recorded(&["xsmon guest big01"], std::time::Duration::from_secs(60))
        .unwrap();
    let perf = xsmon_tests::nagios::parse_perfdata(&recorded[0].perfdata).unwrap();
    assert_eq!(recorded[0].state, "OK");
    assert_eq!(perf.len(), items.len(), "Nagios kept every item");
}
