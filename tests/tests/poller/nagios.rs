//! The shipped Nagios definitions, run by a real Nagios, and the
//! performance data it records.

use crate::site;
use std::time::Duration;
use xsmon_tests::nagios::{parse_perfdata, Nagios, Perf};

#[test]
fn the_shipped_nagios_definitions_pass_nagios_and_their_command_runs() {
    let repo = xsmon_tests::repo_root();
    let defs = repo.join("poller/nagios/xsmon.cfg");
    let nagios = Nagios::new(&[&defs]).unwrap();
    let out = nagios.verify().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Total Errors:   0"),
        "nagios4 -v:\n{text}"
    );

    // The command a per-dom0 service expands to, with this site's config.
    let cfg = std::fs::read_to_string(&defs).unwrap();
    let line = cfg
        .lines()
        .skip_while(|l| !l.contains("check_xsmon_dom0"))
        .find_map(|l| l.trim().strip_prefix("command_line"))
        .unwrap()
        .trim()
        .replace(
            "/usr/local/bin/poller",
            xsmon_tests::bin("poller").to_str().unwrap(),
        )
        .replace(
            "/etc/xsmon/poller.toml",
            site().poller_config.to_str().unwrap(),
        )
        .replace("$ARG1$", "xen01");
    let argv: Vec<&str> = line.split_whitespace().collect();
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("XSMON CRITICAL - 3 errors"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The real Nagios 4 runs the shipped service definitions against the
/// site with performance data processing on, and writes what it got into
/// its service perfdata file: that file, not the poller's stdout, is
/// what PNP4Nagios or a Graphite/InfluxDB bridge graphs.
#[test]
fn nagios_records_a_scoped_checks_performance_data() {
    let s = site();
    let repo = xsmon_tests::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let defs = std::fs::read_to_string(repo.join("poller/nagios/xsmon.cfg"))
        .unwrap()
        .replace(
            "/usr/local/bin/poller",
            xsmon_tests::bin("poller").to_str().unwrap(),
        )
        .replace("/etc/xsmon/poller.toml", s.poller_config.to_str().unwrap());
    std::fs::write(dir.path().join("xsmon.cfg"), defs).unwrap();
    let nagios = Nagios::new(&[&dir.path().join("xsmon.cfg")]).unwrap();
    let recorded = nagios
        .run_until_recorded(
            &["xsmon all guests", "xsmon dom0 xen01", "xsmon guest web01"],
            Duration::from_secs(90),
        )
        .unwrap();
    let service = |name: &str| -> (String, Vec<Perf>) {
        let r = recorded.iter().find(|r| r.service == name).unwrap();
        (r.state.clone(), parse_perfdata(&r.perfdata).unwrap())
    };
    let find = |perf: &[Perf], label: &str| -> f64 {
        perf.iter()
            .find(|p| p.label == label)
            .unwrap_or_else(|| panic!("no {label} in {perf:?}"))
            .value
    };

    // The guest: counts, then each of its figures, with its own thresholds.
    let (state, perf) = service("xsmon guest web01");
    assert_eq!(state, "OK", "{perf:?}");
    assert_eq!(find(&perf, "guests"), 1.0);
    let mem = perf.iter().find(|p| p.label == "mem_used").unwrap();
    assert_eq!(
        (mem.value.round(), mem.uom.as_str(), mem.fields.clone()),
        (
            30.0,
            "%",
            vec!["90".into(), "97".into(), "0".into(), "100".into()]
        ),
        "the fixture's 30% in use, with the probe's memory thresholds"
    );
    let root = perf.iter().find(|p| p.label == "disk_/_used").unwrap();
    assert_eq!(
        (root.uom.as_str(), &root.fields[..2]),
        ("%", &["85".to_string(), "95".to_string()][..])
    );
    let cpu = perf.iter().find(|p| p.label == "cpu_load_per_cpu").unwrap();
    assert_eq!(cpu.uom, "");
    assert_eq!(cpu.fields.len(), 3, "warn;crit;min: {cpu:?}");
    for label in [
        "cpu_iowait",
        "cpu_steal",
        "swap_pages_per_s",
        "swap_used",
        "swap_used_bytes",
        "mem_available_bytes",
    ] {
        find(&perf, label);
    }
    let rtt = perf
        .iter()
        .find(|p| p.label.starts_with("net_") && p.label.ends_with("_rtt"))
        .unwrap_or_else(|| panic!("no gateway rtt in {perf:?}"));
    assert_eq!(rtt.uom, "ms");
    // Every label once: a graph per label.
    let mut labels = std::collections::HashSet::new();
    assert!(perf.iter().all(|p| labels.insert(p.label.clone())));

    // The dom0: its own memory and disks.
    let (_, perf) = service("xsmon dom0 xen01");
    let mem = perf.iter().find(|p| p.label == "mem_used").unwrap();
    assert_eq!((mem.uom.as_str(), mem.fields.len()), ("%", 4), "{mem:?}");
    assert!(perf.iter().any(|p| p.label.starts_with("disk_")));

    // The whole site keeps its counts only (figures are never fetched).
    let (state, perf) = service("xsmon all guests");
    assert_eq!(state, "CRITICAL");
    assert!(
        perf.iter().all(|p| !p.label.contains('_')
            || p.label.starts_with("guests_")
            || p.label.starts_with("dom0s_")),
        "{perf:?}"
    );
}
