//! The poller against a simulated site: several dom0s in network
//! namespaces, each with real oxenstored, collector database and snmpd; one
//! down, one slow, one serving garbage; a shared config directory with a
//! migrated guest.

use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use xsmon_proto::rawline;
use xsmon_tests::cluster::{
    demo_specs, Ailment, Behaviour, Dom0Spec, GuestSpec, SimCluster, DEMO_FINDINGS,
};
use xsmon_tests::nagios::{parse_perfdata, Nagios, Perf};

fn guest(name: &str, ailment: Ailment) -> GuestSpec {
    GuestSpec {
        name: name.into(),
        ailment,
        cfg_under: None,
    }
}

/// The site, built once for all tests of this file (tests only read it).
fn site() -> &'static SimCluster {
    static SITE: OnceLock<SimCluster> = OnceLock::new();
    SITE.get_or_init(|| {
        // The demo's site (so the demo's scenario is tested here too), plus
        // a slow dom0 and one serving garbage.
        let mut specs = demo_specs();
        specs.push(Dom0Spec {
            name: "xen04".into(),
            behaviour: Behaviour::Slow(1500),
            guests: vec![guest("slow01", Ailment::Healthy)],
        });
        specs.push(Dom0Spec {
            name: "xen05".into(),
            behaviour: Behaviour::Garbage,
            guests: vec![guest("junk01", Ailment::Healthy)],
        });
        let site = SimCluster::build(specs, 3000, &|m| eprintln!("site: {m}"))
            .expect("building the simulated site");
        if !site.namespaces {
            eprintln!("NOTE: network namespaces unavailable; the dom0s run on loopback ports");
        }
        site
    })
}

fn run(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = site().poller(args).output().unwrap();
    (out, t.elapsed())
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn raw_mode_lists_every_finding_once_in_order() {
    let (out, took) = run(&["raw"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<rawline::RawLine> = text
        .lines()
        .map(|l| rawline::parse(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let keys: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l.severity.as_str(),
                l.dom0.as_str(),
                l.host.as_str(),
                l.check.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        {
            // The demo's findings, and the garbage dom0 (the slow one is
            // healthy), in raw order: errors by dom0 before notes.
            let mut want = DEMO_FINDINGS.to_vec();
            let notes = want.iter().position(|f| f.0 == "info").unwrap();
            want.insert(notes, ("error", "xen05", "", "snmp"));
            want
        },
        "{text}"
    );
    let msg = |i: usize| lines[i].message.as_str();
    assert!(msg(1).contains("pages/s"), "{}", msg(1));
    assert!(
        msg(2).starts_with("/srv/data (xfs) 100% used"),
        "{}",
        msg(2)
    );
    assert!(msg(3).contains("unreachable"), "{}", msg(3));
    assert!(
        msg(4).starts_with("probe not reporting since") && lines[4].age.unwrap() >= 3600,
        "{:?}",
        lines[4]
    );
    assert!(
        msg(5).starts_with("dom0 unreachable") && msg(5).contains("no answer"),
        "{}",
        msg(5)
    );
    assert!(
        msg(6).contains("cannot read") && msg(6).contains("not xsmon output"),
        "{}",
        msg(6)
    );
    assert!(msg(7).contains("its config is under xen01"), "{}", msg(7));
    // Polled together: the slow dom0 (1.5 s) and the dead one (3 s timeout)
    // overlap instead of adding up.
    assert!(took < Duration::from_millis(4500), "took {took:?}");
}

#[test]
fn report_mode_groups_errors_warnings_and_sums_up() {
    let (out, _) = run(&["report", "--color", "never"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ERRORS (7)");
    assert_eq!(lines[1], "  dom0 xen01");
    assert!(
        lines[2].trim_start().starts_with("app01") && lines[2].contains(" ago]"),
        "{}",
        lines[2]
    );
    let headers: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("  dom0") || !l.starts_with(' '))
        .collect();
    assert_eq!(
        headers,
        vec![
            &"ERRORS (7)",
            &"  dom0 xen01",
            &"  dom0 xen02",
            &"  dom0 xen03",
            &"  dom0 xen05",
            &"",
            &"NOTES (1)",
            &"  dom0 xen02",
            &"",
            &lines[lines.len() - 1]
        ]
    );
    assert_eq!(
        lines[lines.len() - 1],
        "5 dom0s polled, 2 unreachable; 8 guests: 4 ok, 0 warning, 3 error, 1 stale"
    );
    assert!(!text.contains('\x1b'), "no colour when piped");
    let (coloured, _) = run(&["report", "--color", "always"]);
    assert!(stdout(&coloured).contains("\x1b[1;31mERRORS (7)\x1b[0m"));
}

#[test]
fn nagios_mode_exit_codes_and_scopes() {
    let (out, _) = run(&["nagios"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("XSMON CRITICAL - 7 errors, 0 warnings; 8 guests on 5 dom0s (2 unreachable) (1 stale) | "),
        "{first}"
    );
    assert!(
        first.contains("'dom0s_unreachable'=2;;1;0") && first.contains("'guests_stale'=1;;1;0"),
        "{first}"
    );
    assert_eq!(
        text.lines().count(),
        8,
        "status line and 7 long-output lines:\n{text}"
    );
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("ERROR xen01/app01 cpu: "));

    // One dom0, healthy (and slow): OK.
    let (out, _) = run(&["nagios", "--dom0", "xen04"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("XSMON OK - 1 guests ok on 1 dom0s | "));
    // One guest: its own state only, not other dom0s' troubles.
    let (out, _) = run(&["nagios", "--guest", "web01"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (out, _) = run(&["nagios", "--guest", "db01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("ERROR xen01/db01 disk2: /srv/data"));
    // A guest on no dom0 that answered, while some could not be polled:
    // UNKNOWN, not OK.
    let (out, _) = run(&["nagios", "--guest", "nosuch"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("XSMON UNKNOWN - nosuch is not on any dom0 that answered, and xen03, xen05 could not be polled"));
    // Nothing to poll at all: UNKNOWN with the reason.
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["nagios", "--config", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).starts_with("XSMON UNKNOWN - no dom0 to poll"));
}

#[test]
fn json_mode_has_everything() {
    let (out, _) = run(&["json"]);
    assert_eq!(out.status.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["dom0s"].as_array().unwrap().len(), 5);
    assert_eq!(j["summary"]["guests"], 8);
    let xen02 = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "xen02")
        .unwrap();
    assert_eq!(
        xen02["guests"].as_array().unwrap().len(),
        5,
        "4 guests and Domain-0"
    );
    assert!(xen02["error"].is_null());
    let xen03 = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "xen03")
        .unwrap();
    assert!(xen03["error"].as_str().unwrap().contains("unreachable"));
    // Figures come along in json: every check of a current run, none for
    // a guest whose probe went silent.
    let guest = |d: &serde_json::Value, name: &str| {
        d["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
            .clone()
    };
    let mail01 = guest(xen02, "mail01");
    let mem = mail01["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "mem")
        .unwrap_or_else(|| panic!("{mail01}"));
    assert!(mem["values"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "used_pct"));
    assert_eq!(mem["limits"][0]["error"], 97.0);
    assert!(guest(xen02, "old01").get("figures").is_none());
}

#[test]
fn principal_discovery_finds_the_same_dom0s() {
    let s = site();
    let principal = &s.dom0s[0].target;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    // No config directory here: the principal's listXenCluster names the
    // dom0s; addresses come from the site's config.
    let text = std::fs::read_to_string(&s.poller_config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("config_dirs"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, format!("principals = [\"{principal}\"]\n{text}")).unwrap();
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["json", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<&str> = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["xen01", "xen02", "xen03", "xen04", "xen05"]);
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_mode_passes_promtool() {
    let (out, _) = run(&["prometheus"]);
    let text = stdout(&out);
    promtool_check(&text);
    assert!(text.contains("xsmon_up{dom0=\"xen01\"} 1\n"), "{text}");
    assert!(text.contains("xsmon_up{dom0=\"xen03\"} 0\n"), "{text}");
    assert!(
        text.contains("xsmon_guest_probe_stale{dom0=\"xen02\",guest=\"old01\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("xsmon_check_status{dom0=\"xen01\",guest=\"db01\",check=\"disk2\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("xsmon_guest_report_age_seconds{dom0=\"xen01\",guest=\"web01\"} "),
        "{text}"
    );
    // The figures, with the thresholds the guest graded them by.
    let full = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("xsmon_figure{dom0=\"xen01\",guest=\"db01\",kind=\"disk\",target=\"/srv/data\",name=\"used_pct\"} ")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(full.parse::<f64>().unwrap() >= 99.0, "{full}");
    assert!(
        text.contains("xsmon_figure_threshold{dom0=\"xen01\",guest=\"db01\",kind=\"disk\",target=\"/srv/data\",name=\"used_pct\",level=\"error\"} 95\n"),
        "{text}"
    );
}

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

#[test]
fn snmpv3_with_auth_and_privacy() {
    // A dom0 whose snmpd grants access only to an SNMPv3 user (SHA, AES).
    let s = site();
    let xen01 = s.dom0s.iter().find(|d| d.name == "xen01").unwrap();
    let conf = format!(
        "createUser xsmonv3 SHA \"auth-pass-123\" AES \"priv-pass-123\"\nrouser xsmonv3 priv\nextend basicXenstoreMonitoring {} basic-monitoring --db {}\n",
        xsmon_tests::bin("snmp-extend").display(),
        xen01.db.display()
    );
    let snmpd = xsmon_tests::Snmpd::start(&conf).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pass: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "hosts = [\"xen01={}\"]\n[snmp]\nversion = \"3\"\ntimeout_ms = 1000\nretries = 0\nv3_user = \"xsmonv3\"\nv3_auth_password = \"{pass}\"\nv3_priv_password = \"priv-pass-123\"\n",
                snmpd.target()
            ),
        )
        .unwrap();
        p
    };
    let good = write("good.toml", "auth-pass-123");
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["raw", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("error xen01 db01 disk2 ")),
        "{text}"
    );
    assert!(!text.contains(" snmp "), "{text}");

    // A wrong passphrase is an error line for that dom0, not a silent gap.
    let bad = write("bad.toml", "wrong-pass-456");
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["raw", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(text.starts_with("error xen01 \\e snmp - "), "{text}");
}

/// A sample of the exposition format: (name, labels, value).
type Sample = (String, Vec<(String, String)>, f64);

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").unwrap();
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

#[test]
fn prometheus_alert_rules_pass_promtool_on_the_sites_metrics() {
    let rules = xsmon_tests::repo_root().join("poller/prometheus/xsmon-alerts.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The series: what `poller prometheus` printed for the simulated site,
    // held steady for 20 minutes.
    let (out, _) = run(&["prometheus"]);
    let text = stdout(&out);
    let all = samples(&text);
    let mut yaml = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = l.rsplit_once(' ').unwrap();
        yaml.push_str(&format!(
            "      - series: '{}'\n        values: '{}x20'\n",
            series.replace('\'', "''"),
            value
        ));
    }
    // What each rule must fire, read off the same samples, with the
    // annotation its template makes.
    type Expect = (
        &'static str,
        fn(&str, &[(String, String)], f64) -> bool,
        &'static str,
    );
    let rules_expected: [Expect; 5] = [
        (
            "XsmonDom0Unreadable",
            |n, _, v| n == "xsmon_up" && v == 0.0,
            "xsmon cannot read dom0 {dom0} over SNMP",
        ),
        (
            "XsmonGuestError",
            |n, l, v| {
                n == "xsmon_guest_status"
                    && v == 2.0
                    && !l.iter().any(|(k, x)| k == "guest" && x == "Domain-0")
            },
            "guest {guest} on {dom0} is in error",
        ),
        (
            "XsmonDom0Error",
            |n, l, v| {
                n == "xsmon_guest_status"
                    && v == 2.0
                    && l.iter().any(|(k, x)| k == "guest" && x == "Domain-0")
            },
            "dom0 {dom0} itself is in error (memory or disk)",
        ),
        (
            "XsmonProbeSilent",
            |n, _, v| n == "xsmon_guest_probe_stale" && v == 1.0,
            "the probe of guest {guest} on {dom0} is not reporting",
        ),
        (
            "XsmonGuestShouldRun",
            |n, _, v| n == "xsmon_guest_down" && v == 1.0,
            "guest {guest} should run on {dom0} and does not",
        ),
    ];
    yaml.push_str("    alert_rule_test:\n");
    let mut fired: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (alert, selects, summary) in rules_expected {
        yaml.push_str(&format!(
            "      - eval_time: 15m\n        alertname: {alert}\n        exp_alerts:\n"
        ));
        for (_, labels, _) in all.iter().filter(|(n, l, v)| selects(n, l, *v)) {
            let mut s = summary.to_string();
            yaml.push_str("          - exp_labels:\n              severity: critical\n");
            for (k, val) in labels {
                yaml.push_str(&format!(
                    "              {k}: '{}'\n",
                    val.replace('\'', "''")
                ));
                s = s.replace(&format!("{{{k}}}"), val);
            }
            yaml.push_str(&format!(
                "            exp_annotations:\n              summary: '{}'\n",
                s.replace('\'', "''")
            ));
            fired.push((alert.to_string(), labels.clone()));
        }
        if !fired.iter().any(|(a, _)| a == alert) {
            yaml.push_str("          []\n");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("xsmon-alerts-test.yml");
    std::fs::write(&test, &yaml).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n--- test ---\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And what the scenario says must be among them (or not).
    let has = |alert: &str, pairs: &[(&str, &str)]| {
        fired.iter().any(|(a, l)| {
            a == alert
                && pairs
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    };
    assert!(has("XsmonDom0Unreadable", &[("dom0", "xen03")]), "{yaml}");
    assert!(
        has("XsmonProbeSilent", &[("dom0", "xen02"), ("guest", "old01")]),
        "{yaml}"
    );
    assert!(
        has("XsmonGuestError", &[("dom0", "xen01"), ("guest", "db01")]),
        "{yaml}"
    );
    // moved01's config is under xen01 while it runs on xen02: migrated, so
    // no "should run" alert for it anywhere.
    assert!(
        !has("XsmonGuestShouldRun", &[("guest", "moved01")]),
        "{yaml}"
    );
    assert!(
        text.contains("xsmon_guest_down{dom0=\"xen02\",guest=\"moved01\"} 0\n"),
        "{text}"
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
