//! What the collector makes of its guests: written by the real probe, stale,
//! gone or migrated, hostile, on the legacy path, with agents only, restored
//! or rebooted, or rewriting their run while dom0 reads it.

use crate::{now, run_probe};
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{add_domain, remove_domain, sample_run, write_run, write_run_v1};
use xsmon_xenstore::{Access, Perm, Store};

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

/// A guest that writes a new run while dom0 reads its area: dom0 reads a
/// chunked run's keys in more than one round of requests, so the chunks of
/// a run written in between could be read with the older run line (seen on
/// the Xen lab: "run seq 4 was rewritten with different content"). Here
/// one guest rewrites its run every millisecond, each with its seq in its
/// cpu message and in four chunks, while dom0 gathers 50 guests again and
/// again: every run dom0 reads is one the guest wrote whole, or (when it
/// kept changing under every re-read) an error saying so, never a mix.
/// Key layout 5: `run` read again after the chunks; layout 6: every chunk
/// names its run.
#[test]
fn a_run_rewritten_while_dom0_reads_it_is_never_read_half_old() {
    rewritten_while_read(xsmon_tests::write_run_v5, "kept changing");
    rewritten_while_read(write_run, "a chunk of another run");
}

fn rewritten_while_read(
    write: fn(&mut xsmon_xenstore::Client, u32, &xsmon_proto::layout::Run) -> anyhow::Result<()>,
    torn_says: &str,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let xs = xsmon_tests::Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let t = now();
    // Forty disks with long mount points: four chunks.
    let written_as = |seq: u64| {
        let mut run = sample_run(t, 40, Status::Ok);
        run.seq = seq;
        run.checks[0].message = format!("written as seq {seq}");
        for c in run.checks.iter_mut().filter(|c| c.kind == "disk") {
            c.target = format!("/srv/{}/{}", "a".repeat(60), c.id);
        }
        run
    };
    let chunks = xsmon_proto::layout::encode(&written_as(0))
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("chunk/"))
        .count();
    assert!(chunks >= 3, "{chunks} chunks");
    let all_checks = written_as(0).checks.len();
    for id in 1..=50 {
        add_domain(&mut c, id, &format!("vm{id:02}")).unwrap();
        write(&mut c, id, &written_as(0)).unwrap();
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
                write(&mut w, 1, &written_as(seq)).unwrap();
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
                    assert_eq!(run.checks.len(), all_checks, "a run read in part");
                    whole += 1;
                }
                host_collector::gather::Found::Invalid(why) => {
                    assert!(why.contains(torn_says), "{why}");
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

/// A layout 6 run whose second chunk stays of another run (a guest that
/// wrote it so, or a probe that keeps rewriting): read again, then
/// reported for that guest alone, naming the chunk; the guest beside it
/// is read whole.
#[test]
fn a_chunk_of_another_run_is_named_for_its_guest_alone() {
    let xs = xsmon_tests::Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let mut run = sample_run(now(), 40, Status::Ok);
    for c in run.checks.iter_mut().filter(|c| c.kind == "disk") {
        c.target = format!("/srv/{}/{}", "a".repeat(60), c.id);
    }
    for id in [1, 2] {
        add_domain(&mut c, id, &format!("vm{id:02}")).unwrap();
        write_run(&mut c, id, &run).unwrap();
    }
    let chunk1 = "/local/domain/1/data/xsmon/chunk/1";
    let torn = String::from_utf8(c.read(chunk1).unwrap())
        .unwrap()
        .replacen(&format!(" {} ", run.seq), &format!(" {} ", run.seq + 1), 1);
    c.write(chunk1, torn.as_bytes()).unwrap();
    let guests = host_collector::gather::gather(&mut c, false).unwrap();
    match &guests[0].found {
        host_collector::gather::Found::Invalid(why) => assert_eq!(
            why,
            &format!(
                "chunk/1: not headed by chunk/0's xsmon/6 {} {}: a chunk of another run",
                run.time, run.seq
            )
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&guests[1].found, host_collector::gather::Found::Run { run: r, .. } if *r == run),
        "{:?}",
        guests[1].found
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

/// An HVM guest's device model (QEMU in dom0): the toolstack lists it
/// under `/local/domain/0/device-model`, its pid in the domain's
/// `image/device-model-pid`. A device model whose process is gone is an
/// error for its guest, saying what stopped; one that runs, or a pid no
/// device model listing backs, is nothing.
#[test]
fn a_device_model_that_stopped_is_an_error_for_its_guest() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let proc = d.root.path().join("proc");
    for (domid, name, pid) in [
        (8, "hvm01", 4242u32),
        (9, "hvm02", 4243),
        (10, "pv01", 4244),
    ] {
        add_domain(&mut c, domid, name).unwrap();
        write_run(&mut c, domid, &sample_run(t, 1, Status::Ok)).unwrap();
        c.write(
            &format!("/local/domain/{domid}/image/device-model-pid"),
            pid.to_string().as_bytes(),
        )
        .unwrap();
        if domid != 10 {
            c.write(
                &format!("/local/domain/0/device-model/{domid}/state"),
                b"running".as_slice(),
            )
            .unwrap();
        }
        let p = proc.join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cmdline"),
            format!("/usr/libexec/xen-qemu-system-i386\0-xen-domid\0{domid}\0-no-shutdown\0"),
        )
        .unwrap();
    }
    // hvm02's QEMU is gone; pv01's pid has no device model listed for it.
    std::fs::remove_dir_all(proc.join("4243")).unwrap();
    std::fs::remove_dir_all(proc.join("4244")).unwrap();
    d.collect_at(Some(t + 5));
    let (_, status, msg) = d.host("hvm01");
    assert_eq!(status, "ok", "{msg}");
    let (_, status, msg) = d.host("pv01");
    assert_eq!(status, "ok", "{msg}");
    let (_, status, msg) = d.host("hvm02");
    assert_eq!(status, "error", "{msg}");
    assert!(
        msg.ends_with("; its device model (QEMU, pid 4243 in image/device-model-pid) is not running: the devices it served (emulated disks and NIC, qdisk disks) no longer answer; the domain must be restarted"),
        "{msg}"
    );
    // A pid reused by another program is not the device model.
    std::fs::write(proc.join("4242/cmdline"), b"/usr/sbin/sshd\0-D\0").unwrap();
    d.collect_at(Some(t + 10));
    let (_, status, msg) = d.host("hvm01");
    assert_eq!(status, "error", "{msg}");
    assert!(msg.contains("its device model (QEMU, pid 4242"), "{msg}");
}

/// A domain's start time (`/vm/<uuid>/start_time`) is read once: kept in
/// its host row (schema 9) and taken from there while the same domain (its
/// domid, its VM) runs in the same boot of dom0. A dom0 booted since, or a
/// new domain of the VM, reads it again.
#[test]
fn a_domains_start_time_is_read_once_per_domain() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let uuid = xsmon_tests::uuid_for("web01");
    let set_start = |c: &mut xsmon_xenstore::Client, at: &str| {
        c.write(&format!("/vm/{uuid}/start_time"), at.as_bytes())
            .unwrap();
    };
    add_domain(&mut c, 7, "web01").unwrap();
    set_start(&mut c, "1796000000.50");
    write_run(&mut c, 7, &sample_run(now(), 1, Status::Ok)).unwrap();
    let started = || -> Option<f64> {
        d.db()
            .query_row("SELECT started FROM host WHERE name = 'web01'", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    d.collect();
    assert_eq!(started(), Some(1_796_000_000.5));
    // The key moves (a toolstack never does that for one domain): the
    // start time known from the last cycle is kept, the key not read.
    set_start(&mut c, "1796000099.00");
    d.collect();
    assert_eq!(started(), Some(1_796_000_000.5), "read again");
    // dom0 booted after the row was stored: its domids started over, and
    // domain 7 may be another domain now.
    let stat = d.root.path().join("proc/stat");
    let text = std::fs::read_to_string(&stat).unwrap();
    let rebooted: String = text
        .lines()
        .map(|l| match l.strip_prefix("btime ") {
            Some(_) => format!("btime {}\n", now() + 5),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&stat, rebooted).unwrap();
    d.collect_at(Some(now() + 60));
    assert_eq!(
        started(),
        Some(1_796_000_099.0),
        "not read after dom0's boot"
    );
    // A new domain of the VM (a reboot): read for it.
    remove_domain(&mut c, 7).unwrap();
    add_domain(&mut c, 8, "web01").unwrap();
    set_start(&mut c, "1796000200.00");
    write_run(&mut c, 8, &sample_run(now() + 120, 1, Status::Ok)).unwrap();
    d.collect_at(Some(now() + 120));
    assert_eq!(
        started(),
        Some(1_796_000_200.0),
        "not read for the new domain"
    );
}
