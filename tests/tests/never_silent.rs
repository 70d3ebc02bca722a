//! Never silent: the ways a guest could drop out of the report while it
//! still looked complete, each tried against Xen's real oxenstored, the
//! real host-collector, snmp-extend (and snmpd plus the poller where the
//! line must reach Nagios) and a real SQLite history.

use std::process::Command;

use xsmon_proto::snmpline::Record;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{
    add_domain, add_domain_vm, bin, remove_domain, sample_run, uuid_for, write_run, write_run_v1,
    Snmpd, COMMUNITY,
};
use xsmon_xenstore::Store;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `G` record as the tests look at it.
#[derive(Debug, Clone)]
struct G {
    host: String,
    uuid: Option<String>,
    probe: String,
    status: Status,
    message: String,
}

/// The G records snmp-extend serves for this dom0 (the output must parse).
fn served_guests(d: &Dom0) -> Vec<G> {
    d.served_records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Guest {
                host,
                uuid,
                probe,
                status,
                message,
                ..
            } => Some(G {
                host,
                uuid,
                probe,
                status,
                message,
            }),
            _ => None,
        })
        .collect()
}

fn find<'a>(gs: &'a [G], host: &str) -> &'a G {
    gs.iter()
        .find(|g| g.host == host)
        .unwrap_or_else(|| panic!("no G line for {host} in {gs:#?}"))
}

fn collect_ok(d: &Dom0, t: i64) {
    let out = d.collect_at(Some(t));
    assert!(
        out.status.success(),
        "collect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn forget(d: &Dom0, guest: &str) -> std::process::Output {
    d.cmd(&["forget", guest]).output().unwrap()
}

#[test]
fn a_crashed_guest_is_reported_until_it_runs_again_or_is_forgotten() {
    let d = Dom0::new("");
    // This site keeps no config folder for this dom0: only the collector's
    // own memory says what ran here.
    std::fs::remove_dir(d.dir.path().join("auto/xen01")).unwrap();
    let mut c = d.xs.client().unwrap();
    let t = now();
    for (id, name) in [(1, "steady"), (2, "crashy")] {
        add_domain(&mut c, id, name).unwrap();
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    collect_ok(&d, t + 60);
    assert_eq!(find(&served_guests(&d), "crashy").probe, "fresh");

    // The domain crashes and is destroyed: its xenstore home is gone.
    remove_domain(&mut c, 2).unwrap();
    collect_ok(&d, t + 360);
    let gs = served_guests(&d);
    let crashy = find(&gs, "crashy");
    assert_eq!(
        (crashy.probe.as_str(), crashy.status),
        ("down", Status::Error)
    );
    assert!(
        crashy.message.contains("not running since") && crashy.message.contains("forget"),
        "{}",
        crashy.message
    );
    assert_eq!(crashy.uuid.as_deref(), Some(uuid_for("crashy").as_str()));
    assert_eq!(find(&gs, "steady").probe, "fresh");

    // What Nagios sees: `poller raw` through the real snmpd has an error
    // line for it and exits 2.
    let snmpd = Snmpd::start(&format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {} --max-age 999999999\n",
        bin("snmp-extend").display(),
        d.dir.path().join("history.db").display()
    ))
    .unwrap();
    let empty = d.dir.path().join("poller.toml");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(bin("poller"))
        .args(["raw", "--config", empty.to_str().unwrap(), "-c", COMMUNITY])
        .arg(format!("--host=xen01={}", snmpd.target()))
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{raw}");
    let line = raw
        .lines()
        .find(|l| l.starts_with("error xen01 crashy running "))
        .unwrap_or_else(|| panic!("no line for crashy in:\n{raw}"));
    assert!(line.contains("not\\srunning\\ssince"), "{line}");

    // Still reported a cycle later; forgetting a running guest is refused.
    collect_ok(&d, t + 660);
    assert_eq!(find(&served_guests(&d), "crashy").probe, "down");
    let refused = forget(&d, "steady");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is running here"));
    let ok = forget(&d, "crashy");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    collect_ok(&d, t + 960);
    assert!(!served_guests(&d).iter().any(|g| g.host == "crashy"));

    // It comes back (same VM, new domid): fresh, and history follows it.
    add_domain(&mut c, 7, "crashy").unwrap();
    write_run(&mut c, 7, &sample_run(t + 1200, 1, Status::Ok)).unwrap();
    collect_ok(&d, t + 1260);
    assert_eq!(find(&served_guests(&d), "crashy").probe, "fresh");
    let db = d.db();
    let rows: i64 = db
        .query_row(
            "SELECT count(*) FROM host WHERE ident = ?1",
            [format!("uuid:{}", uuid_for("crashy"))],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "one VM, one host row across its two domains");
}

#[test]
fn a_configured_guest_that_runs_nowhere_is_an_error_unless_meant_stopped() {
    let d = Dom0::new("expect_stopped = [\"spare*\"]");
    let mut c = d.xs.client().unwrap();
    let t = now();
    for g in ["web", "never", "spare1", "old"] {
        d.cfg_file("xen01", g);
    }
    for (id, name) in [(1, "web"), (2, "old")] {
        add_domain(&mut c, id, name).unwrap();
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    collect_ok(&d, t + 60);
    let gs = served_guests(&d);
    let never = find(&gs, "never");
    assert_eq!(
        (never.probe.as_str(), never.status),
        ("down", Status::Error)
    );
    assert!(
        never.message.contains("never seen it run"),
        "{}",
        never.message
    );
    let spare = find(&gs, "spare1");
    assert_eq!(
        (spare.probe.as_str(), spare.status),
        ("stopped", Status::Ok)
    );

    // `old` is shut down: its config still says it should run here.
    remove_domain(&mut c, 2).unwrap();
    collect_ok(&d, t + 360);
    let old = served_guests(&d);
    let old = find(&old, "old");
    assert_eq!(old.probe, "down");
    assert!(old.message.contains("should run here"), "{}", old.message);
    // Its config is removed: retired, no longer listed, and the event says so.
    std::fs::remove_file(d.dir.path().join("auto/xen01/old.cfg")).unwrap();
    collect_ok(&d, t + 660);
    assert!(!served_guests(&d).iter().any(|g| g.host == "old"));
    let retired: i64 = d
        .db()
        .query_row(
            "SELECT count(*) FROM event WHERE kind = 'retired' AND detail LIKE 'old %'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(retired, 1);
}

#[test]
fn a_guest_named_domain_0_and_shared_names_are_separate_hosts() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    add_domain(&mut c, 3, "Domain-0").unwrap();
    add_domain_vm(
        &mut c,
        4,
        "web",
        Some("11111111-2222-4333-8444-555555555555"),
    )
    .unwrap();
    add_domain_vm(
        &mut c,
        5,
        "web",
        Some("66666666-7777-4888-8999-aaaaaaaaaaaa"),
    )
    .unwrap();
    for id in [3, 4, 5] {
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    collect_ok(&d, t + 60);
    let gs = served_guests(&d);
    let labels: Vec<&str> = gs.iter().map(|g| g.host.as_str()).collect();
    assert_eq!(labels, ["Domain-0", "Domain-0#3", "web#4", "web#5"]);
    assert_eq!(find(&gs, "Domain-0").probe, "host");
    for l in ["Domain-0#3", "web#4", "web#5"] {
        let g = find(&gs, l);
        assert_eq!((g.probe.as_str(), g.status), ("fresh", Status::Ok), "{g:?}");
        assert!(g.message.contains("another domain is also named"), "{g:?}");
    }
    let hosts: i64 = d
        .db()
        .query_row("SELECT count(*) FROM host", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hosts, 4, "dom0 and three guests, each its own row");
    // A name several VMs have is refused by history, their UUIDs work.
    let amb = d.cmd(&["history", "web"]).output().unwrap();
    assert!(!amb.status.success());
    assert!(String::from_utf8_lossy(&amb.stderr).contains("name one by its UUID"));
    let one = d
        .cmd(&[
            "history",
            "66666666-7777-4888-8999-aaaaaaaaaaaa",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert!(String::from_utf8_lossy(&one.stdout).lines().count() > 1);

    // One of them shuts down: the other is plain `web` again, and the one
    // that left is not confused with it.
    remove_domain(&mut c, 4).unwrap();
    collect_ok(&d, t + 360);
    let gs = served_guests(&d);
    assert_eq!(
        find(&gs, "web").uuid.as_deref(),
        Some("66666666-7777-4888-8999-aaaaaaaaaaaa")
    );
    let gone = gs
        .iter()
        .find(|g| g.uuid.as_deref() == Some("11111111-2222-4333-8444-555555555555"))
        .unwrap_or_else(|| panic!("the stopped web is still listed: {}", d.served().0));
    assert_eq!(
        (gone.host.as_str(), gone.probe.as_str()),
        ("web#11111111", "down")
    );
}

#[test]
fn a_guest_clock_a_year_ahead_goes_stale_by_dom0s_clock() {
    let d = Dom0::new("stale_after_secs = 600");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let year = 365 * 86400;
    add_domain(&mut c, 4, "future").unwrap();
    write_run(&mut c, 4, &sample_run(t + year, 1, Status::Ok)).unwrap();
    collect_ok(&d, t + 60);
    let (text, _) = d.served();
    let gs = served_guests(&d);
    let g = find(&gs, "future");
    assert_eq!((g.probe.as_str(), g.status), ("fresh", Status::Warning));
    assert!(
        text.lines()
            .any(|l| l.starts_with("F future clock clock warning") && l.contains("ahead")),
        "{text}"
    );
    // Two hours later the probe has not written again: stale, whatever
    // time its last run claims.
    collect_ok(&d, t + 7200);
    let gs = served_guests(&d);
    let g = find(&gs, "future");
    assert_eq!((g.probe.as_str(), g.status), ("stale", Status::Error));
    assert!(
        g.message.contains("dom0 has seen no new run"),
        "{}",
        g.message
    );
}

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
    std::fs::write(
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
