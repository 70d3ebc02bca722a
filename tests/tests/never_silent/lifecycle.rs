//! A guest's life: crashed, configured but running nowhere, sharing a name
//! (or posing as Domain-0), its clock a year ahead.

use crate::{collect_ok, find, forget, now, served_guests};
use std::process::Command;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{
    add_domain, add_domain_vm, bin, remove_domain, sample_run, uuid_for, write_run, Snmpd,
    COMMUNITY,
};

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
