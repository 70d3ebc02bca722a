//! guest-probe end to end: the real binary on fixture /proc trees, real
//! ICMP, and real oxenstored.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use xsmon_proto::layout::{self, XenstoreSource};
use xsmon_proto::Status;
use xsmon_tests::{add_domain, bin, probe_root, Netns, Xenstored};
use xsmon_xenstore::Store;

fn probe(args: &[&str]) -> Output {
    Command::new(bin("guest-probe"))
        .args(args)
        .env_remove("XENSTORED_PATH")
        .output()
        .unwrap()
}

fn ok_json(root: &Path, state: &Path, config: &Path) -> Json {
    let out = probe(&[
        "--root",
        root.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check<'a>(j: &'a Json, id: &str) -> &'a Json {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {j}"))
}

fn value(c: &Json, name: &str) -> f64 {
    c["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {c}"))["value"]
        .as_f64()
        .unwrap()
}

/// Makes the state file look as if it was written `secs` ago.
fn age_state(state: &Path, secs: u64) {
    let text = std::fs::read_to_string(state).unwrap();
    let now_ms: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("time_ms "))
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(
        state,
        text.replace(
            &format!("time_ms {now_ms}"),
            &format!("time_ms {}", now_ms - secs * 1000),
        ),
    )
    .unwrap();
}

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("probe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn xen_guest_interval_figures_from_two_samples() {
    let a = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let b = probe_root("xen-guest", "b", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("probe.state");
    let cfg = config(tmp.path(), "[cpu]\nfirst_sample_ms = 100\n");

    let first = ok_json(a.path(), &state, &cfg);
    let cpu = check(&first, "cpu");
    assert!(
        cpu["message"].as_str().unwrap().contains("first run"),
        "{cpu}"
    );

    // Sample b, "300 s later": the fixture adds 60000 ticks of which 18000
    // steal and 15000 iowait, and 600000 pages swapped.
    age_state(&state, 300);
    let second = ok_json(b.path(), &state, &cfg);
    let cpu = check(&second, "cpu");
    assert!((value(cpu, "steal_pct") - 30.0).abs() < 0.01, "{cpu}");
    assert!((value(cpu, "iowait_pct") - 25.0).abs() < 0.01, "{cpu}");
    assert_eq!(value(cpu, "cpus"), 2.0);
    assert!((value(cpu, "load_per_cpu") - 4.375).abs() < 0.001);
    assert_eq!(cpu["status"], "error");
    assert!(!cpu["message"].as_str().unwrap().contains("first run"));

    let swap = check(&second, "swap");
    let rate = value(swap, "pages_per_s");
    assert!((1990.0..=2010.0).contains(&rate), "{swap}");
    assert_eq!(swap["status"], "error");
    assert!((value(swap, "used_pct") - 94.66).abs() < 0.1, "{swap}");
}

#[test]
fn linux_host_samples_give_sane_figures() {
    let a = probe_root("linux-host", "a", &["127.0.0.1"]).unwrap();
    let b = probe_root("linux-host", "b", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("probe.state");
    let cfg = config(tmp.path(), "[cpu]\nfirst_sample_ms = 100\n");
    ok_json(a.path(), &state, &cfg);
    age_state(&state, 2);
    let j = ok_json(b.path(), &state, &cfg);
    let cpu = check(&j, "cpu");
    assert_ne!(cpu["status"], "unknown", "{cpu}");
    let iowait = value(cpu, "iowait_pct");
    assert!((0.0..=100.0).contains(&iowait));
    let swap = check(&j, "swap");
    assert_eq!(swap["status"], "ok", "{swap}");
    assert!(swap["message"].as_str().unwrap().contains("no swap space"));
    // The host fixture's only real filesystem is the root (ext4 on vda).
    let disks: Vec<&Json> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "disk")
        .collect();
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!(disks[0]["target"], "/");
}

#[test]
fn disks_skip_pseudo_snapshot_and_bind_mounts() {
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "[disk]\nexclude = [\"/var\"]\n[[disk.mount]]\npath = \"/srv/data\"\nused_pct = { warning = 0, error = 100 }\n");
    let j = ok_json(root.path(), &tmp.path().join("s"), &cfg);
    let targets: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "disk")
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    // Not: /proc /sys /dev /run (pseudo), /proc/xen (xenfs), the .snapshot
    // NFS mount, /srv/export (bind mount of /srv/data's device), /var
    // (excluded by the config).
    assert_eq!(
        targets,
        vec!["/", "/srv/data", "/mnt/netapp", "/mnt/with space"]
    );
    // The per-mount threshold applies to that mount only.
    let data = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "/srv/data")
        .unwrap();
    assert_eq!(data["status"], "warning");
    assert_eq!(check(&j, "disk0")["status"], "ok");
}

#[test]
fn a_missing_proc_file_makes_that_check_unknown_and_the_others_run() {
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    std::fs::remove_file(root.path().join("proc/vmstat")).unwrap();
    std::fs::remove_file(root.path().join("proc/self/mountinfo")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "[cpu]\nfirst_sample_ms = 100\n");
    let j = ok_json(root.path(), &tmp.path().join("s"), &cfg);
    let swap = check(&j, "swap");
    assert_eq!(swap["status"], "unknown");
    assert!(
        swap["message"].as_str().unwrap().contains("proc/vmstat"),
        "{swap}"
    );
    assert_eq!(check(&j, "disk0")["status"], "unknown");
    assert_ne!(check(&j, "cpu")["status"], "unknown");
    assert_eq!(check(&j, "net0")["status"], "ok");
}

#[test]
fn gateways_reachable_unreachable_in_parallel() {
    let ns = Netns::create().expect("network namespaces are needed for this test (run as root)");
    let root = probe_root("xen-guest", "a", &[&ns.ns_ip]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Loopback and the namespace's address answer; an unused address on the
    // namespace's /24 and a second one do not.
    let unused2 = ns.unused_ip.replace(".99", ".98");
    let cfg = config(
        tmp.path(),
        &format!("[net]\ngateways = [\"127.0.0.1\", \"{}\", \"{unused2}\"]\ntimeout_ms = 1000\ncount = 3\n", ns.unused_ip),
    );
    let start = Instant::now();
    let j = ok_json(root.path(), &tmp.path().join("s"), &cfg);
    let took = start.elapsed();
    let nets: Vec<&Json> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "net")
        .collect();
    let by_target = |t: &str| {
        nets.iter()
            .find(|c| c["target"] == t)
            .unwrap_or_else(|| panic!("no {t} in {nets:?}"))
    };
    assert_eq!(by_target("127.0.0.1")["status"], "ok");
    assert_eq!(
        by_target(&ns.ns_ip)["status"],
        "ok",
        "{:?}",
        by_target(&ns.ns_ip)
    );
    assert!(value(by_target(&ns.ns_ip), "rtt_ms") < 100.0);
    for dead in [ns.unused_ip.as_str(), unused2.as_str()] {
        let c = by_target(dead);
        assert_eq!(c["status"], "error", "{c}");
        assert_eq!(value(c, "loss_pct"), 100.0);
        assert!(c["message"].as_str().unwrap().contains("unreachable"));
    }
    // Pinged together: one timeout (plus the first-run sample), not one per
    // gateway. The precise figure is in the bench.
    assert!(took < Duration::from_millis(2800), "took {took:?}");

    // With -v, the log names the echoes a gateway left unanswered (a loss
    // after a restore is told from its log: the first echoes or the last).
    let out = probe(&[
        "-v",
        "--root",
        root.path().to_str().unwrap(),
        "--state-file",
        tmp.path().join("s").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| {
            l.contains("echoes without a reply") && l.contains(&format!("gateway={}", ns.unused_ip))
        })
        .unwrap_or_else(|| panic!("no line for {} in:\n{log}", ns.unused_ip));
    assert!(
        line.contains("sent=3 received=0 unanswered=[1, 2, 3]") && line.contains("resumed=false"),
        "{line}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("echoes without a reply") && l.contains("gateway=127.0.0.1")),
        "{log}"
    );
}

#[test]
fn mac_convention_finds_the_gateway() {
    let ns = Netns::create().expect("network namespaces are needed for this test (run as root)");
    let root = probe_root("xen-guest", "a", &[]).unwrap();
    // eth0's MAC is 00:16:ac:13:0a:05, i.e. 172.19.10.5; the rule for that
    // network names the namespace's address as its gateway.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &format!(
            "[net]\nmac_rules = [{{ network = \"172.19.10.0/24\", gateway = \"{}\" }}]\n",
            ns.ns_ip
        ),
    );
    let j = ok_json(root.path(), &tmp.path().join("s"), &cfg);
    let net0 = check(&j, "net0");
    assert_eq!(net0["target"], ns.ns_ip.as_str());
    assert_eq!(net0["status"], "ok", "{net0}");
}

#[test]
fn no_gateway_at_all_is_unknown_not_ok() {
    let root = probe_root("xen-guest", "a", &[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let j = ok_json(root.path(), &tmp.path().join("s"), Path::new("/dev/null"));
    let net0 = check(&j, "net0");
    assert_eq!(net0["status"], "unknown");
    assert!(net0["message"].as_str().unwrap().contains("no gateway"));
}

fn write_run(xs: &Xenstored, root: &Path, state: &Path, cfg: &Path, domid: u32) -> Output {
    probe(&[
        "--root",
        root.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--xenstore",
        xs.socket().to_str().unwrap(),
        "--domain-path",
        &format!("/local/domain/{domid}"),
    ])
}

#[test]
fn results_are_written_to_xenstore_and_replaced_each_run() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    add_domain(&mut c, 7, "web01").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("s");
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let cfg = config(
        tmp.path(),
        "[cpu]\nfirst_sample_ms = 100\n[net]\ngateways = [\"127.0.0.2\"]\ntimeout_ms = 300\n",
    );
    let out = write_run(&xs, root.path(), &state, &cfg, 7);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let base = "/local/domain/7/data/xsmon".to_string();
    let run = layout::decode(&mut XenstoreSource {
        client: &mut c,
        base: base.clone(),
    })
    .unwrap()
    .unwrap();
    assert_eq!(run.seq, 1);
    assert!(run.probe.starts_with("guest-probe "));
    let now = chrono_now();
    assert!(
        (now - run.time).abs() < 60,
        "time {} vs now {now}",
        run.time
    );
    let ids: Vec<&str> = run.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["cpu", "swap", "mem", "disk0", "disk1", "disk2", "disk3", "disk4", "net0", "net1"]
    );
    assert!(
        run.checks.iter().all(|c| c.status != Status::Unknown),
        "{:?}",
        run.checks
    );

    // The stock xenstore tool reads the same tree: layout version 6, two
    // keys (version, one chunk), the run line with the kernel's boot id at
    // the head of the chunk, the thresholds inside it.
    let ls = xs.tool("xenstore-ls").arg(&base).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("version = \"6\""), "{ls}");
    assert_eq!(
        run.boot.as_ref().map(|b| b.as_str()),
        Some("3f2504e04f8941d39a0c0305e82c3301"),
        "the fixture's /proc/sys/kernel/random/boot_id"
    );
    let chunk = String::from_utf8(c.read(&format!("{base}/chunk/0")).unwrap()).unwrap();
    assert!(chunk.contains("used_pct=85,95"), "{chunk}");
    assert!(
        chunk.starts_with(&format!("xsmon/6 {} {} 1 ", run.time, run.seq))
            && chunk.contains(" 3f2504e04f8941d39a0c0305e82c3301 guest-probe"),
        "{chunk}"
    );
    assert!(!ls.contains("run = \"") && ls.contains("chunk"), "{ls}");
    assert_eq!(c.directory(&format!("{base}/chunk")).unwrap(), ["0"]);

    // Second run in layout version 1 (for dom0s not upgraded yet), with one
    // gateway fewer: seq counts on across the versions, net1 is gone.
    let cfg = config(
        tmp.path(),
        "[cpu]\nfirst_sample_ms = 100\n[net]\ntimeout_ms = 300\n[xenstore]\nlayout = 1\n",
    );
    let out = write_run(&xs, root.path(), &state, &cfg, 7);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = layout::decode(&mut XenstoreSource {
        client: &mut c,
        base,
    })
    .unwrap()
    .unwrap();
    assert_eq!(run.seq, 2);
    assert!(!run.checks.iter().any(|c| c.id == "net1"));
    let ls = xs
        .tool("xenstore-ls")
        .arg("/local/domain/7/data/xsmon")
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("version = \"1\""), "{ls}");
    assert!(ls.contains("target = \"/mnt/with space\""), "{ls}");
    // The guest owns what it wrote (inherited from its data directory).
    let perms = c.get_perms("/local/domain/7/data/xsmon/seq").unwrap();
    assert_eq!(perms[0].domid, 7);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn fifty_filesystems_and_eight_gateways_fit_within_xen_default_quotas() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    add_domain(&mut c, 9, "bigguest").unwrap();
    let root = probe_root("xen-guest", "a", &[]).unwrap();
    // 50 ext4 filesystems, each its own device and mount point.
    let mut mi = String::new();
    for i in 0..50 {
        let point = format!("srv/vol{i:02}");
        std::fs::create_dir_all(root.path().join(&point)).unwrap();
        mi.push_str(&format!(
            "{} 1 202:{} / /{point} rw,relatime shared:1 - ext4 /dev/xvd{i} rw\n",
            100 + i,
            100 + i
        ));
    }
    std::fs::write(root.path().join("proc/self/mountinfo"), mi).unwrap();
    let gws: Vec<String> = (1..=8).map(|i| format!("\"127.0.0.{i}\"")).collect();
    let tmp = tempfile::tempdir().unwrap();
    let probe_in_layout = |layout: u32| {
        let cfg = config(
            tmp.path(),
            &format!(
                "[cpu]\nfirst_sample_ms = 100\n[net]\ngateways = [{}]\ntimeout_ms = 500\n[xenstore]\nlayout = {layout}\n",
                gws.join(", ")
            ),
        );
        let out = write_run(&xs, root.path(), &tmp.path().join("s"), &cfg, 9);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // Count what was really written, the way xenstored's quota counts it:
    // every node, directories included.
    fn count(c: &mut xsmon_xenstore::Client, path: &str, max_value: &mut usize) -> usize {
        *max_value = (*max_value).max(c.read(path).unwrap().len());
        1 + c
            .directory(path)
            .unwrap()
            .iter()
            .map(|n| count(c, &format!("{path}/{n}"), max_value))
            .sum::<usize>()
    }
    // Layout version 1: 7 entries per check (its node, 5 keys, limits).
    probe_in_layout(1);
    let mut max_value = 0;
    let n = count(&mut c, "/local/domain/9/data/xsmon", &mut max_value);
    // cpu, swap, mem, 50 disks and 8 gateways: 61 checks.
    assert_eq!(n, layout::entries_for(61));
    assert!(n < 1000, "{n} entries");
    assert!(max_value <= 2048, "largest value {max_value} bytes");
    // Layout versions 2 to 5: the same run in a handful of entries.
    for version in [2, 3, 4, 5] {
        probe_in_layout(version);
        let mut max_value = 0;
        let n = count(&mut c, "/local/domain/9/data/xsmon", &mut max_value);
        let chunks = c
            .directory("/local/domain/9/data/xsmon/chunk")
            .unwrap()
            .len();
        assert_eq!(
            n,
            4 + chunks,
            "BASE, version, run, chunk and its {chunks} chunks"
        );
        assert!(chunks <= 12, "layout {version}: {chunks} chunks");
        assert!(max_value <= 2048, "largest value {max_value} bytes");
        assert_eq!(
            c.read("/local/domain/9/data/xsmon/version").unwrap(),
            version.to_string().as_bytes()
        );
    }
    // Layout version 6: one entry fewer (no `run`), every chunk in quota.
    probe_in_layout(6);
    let mut max_value = 0;
    let n = count(&mut c, "/local/domain/9/data/xsmon", &mut max_value);
    let chunks = c
        .directory("/local/domain/9/data/xsmon/chunk")
        .unwrap()
        .len();
    assert_eq!(
        n,
        3 + chunks,
        "BASE, version, chunk and its {chunks} chunks"
    );
    assert!((2..=12).contains(&chunks), "layout 6: {chunks} chunks");
    assert!(max_value <= 2048, "largest value {max_value} bytes");
    let written = layout::decode(&mut XenstoreSource {
        client: &mut c,
        base: "/local/domain/9/data/xsmon".into(),
    })
    .unwrap()
    .unwrap();
    assert_eq!(written.checks.len(), 61);
}

#[test]
fn legacy_shared_path_is_written_when_configured() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    add_domain(&mut c, 3, "old").unwrap();
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "[cpu]\nfirst_sample_ms = 100\n[xenstore]\nlegacy = true\nlegacy_name = \"oldguest\"\n",
    );
    let out = write_run(&xs, root.path(), &tmp.path().join("s"), &cfg, 3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let legacy = format!("{}/oldguest", layout::LEGACY_ROOT);
    let a = layout::decode(&mut XenstoreSource {
        client: &mut c,
        base: legacy,
    })
    .unwrap()
    .unwrap();
    let b = layout::decode(&mut XenstoreSource {
        client: &mut c,
        base: "/local/domain/3/data/xsmon".into(),
    })
    .unwrap()
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn exit_codes_and_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let bad = config(tmp.path(), "[disk]\nused_pct = \"lots\"\n");
    let out = probe(&[
        "--config",
        bad.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--print",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probe.toml") && err.contains("line 2"),
        "{err}"
    );

    let out = probe(&[
        "--config",
        "/dev/null",
        "--root",
        root.path().to_str().unwrap(),
        "--state-file",
        tmp.path().join("s").to_str().unwrap(),
        "--xenstore",
        "/nonexistent/xenstored/socket",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/xenstored/socket"), "{err}");

    let out = probe(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("xenstore"));
}

#[test]
fn a_machine_without_xenstore_fails_before_any_check_runs() {
    // A copied binary tried by hand on a machine that is no Xen guest: the
    // connection error comes first; no check runs (the CPU check would
    // write its state file) and no ping is sent.
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("probe.state");
    let cfg = config(dir.path(), "[cpu]\nfirst_sample_ms = 100\n");
    let out = probe(&[
        "--root",
        root.path().to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--xenstore",
        "/nonexistent/xenstored/socket",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/xenstored/socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state.exists(), "a check ran before the connection failed");
    // --print needs no xenstore: the checks run (and keep their state).
    let out = probe(&[
        "--root",
        root.path().to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--print",
    ]);
    assert!(out.status.success());
    assert!(state.exists());
}
