//! The Prometheus output and the shipped alert rules, checked by promtool.

use crate::{run, stdout, Sample};

pub(crate) fn promtool_check(text: &str) {
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

/// Every query of a Grafana dashboard: (panel title, PromQL expression).
pub(crate) fn dashboard_exprs(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
            }
        }
    }
    out
}

/// The Grafana dashboard shipped with the poller: in Grafana's current
/// dashboard schema, its variables query the site's labels, and every
/// metric it names is one the poller prints. (Its queries are evaluated by
/// a real Prometheus in the service's tests.)
#[test]
fn the_grafana_dashboard_names_only_metrics_the_poller_prints() {
    let path = xsmon_tests::repo_root().join("poller/grafana/xsmon-site.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(d["schemaVersion"], 39, "Grafana 10.4/11's dashboard schema");
    assert_eq!(d["uid"], "xsmon-site");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "dom0", "guest"]);
    let (out, _) = run(&["prometheus"]);
    let mut printed: std::collections::HashSet<String> = samples(&stdout(&out))
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    // Only from the service's state (a live poll cannot know since when);
    // the service's test evaluates the panel that names it on /metrics.
    printed.insert("xsmon_problem_since_timestamp_seconds".into());
    let exprs = dashboard_exprs(&d);
    let mut named = 0;
    for (title, expr) in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("xsmon_") {
                named += 1;
                assert!(
                    printed.contains(word),
                    "panel {title:?} names {word}, which `poller prometheus` does not print"
                );
            }
        }
    }
    assert!(named >= exprs.len(), "{exprs:?}");
}
