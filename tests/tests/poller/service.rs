//! `poller serve` against a simulated site of its own (the tests here
//! change it): the state it keeps, read by every mode with the words of a
//! live poll; UNKNOWN when it is stale; since when, what changed, history;
//! SIGHUP; one service per state; /metrics scraped by a real Prometheus
//! that fires a shipped alert; the Grafana dashboard's queries evaluated.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nix::sys::signal::Signal;
use xsmon_tests::cluster::{Ailment, Behaviour, Dom0Spec, GuestSpec, SimCluster};
use xsmon_tests::service::{free_port, http_get, url_encode, wait_for, PollerService, Prometheus};

use crate::{guest, stdout};

pub(crate) struct Served {
    pub(crate) site: SimCluster,
    pub(crate) config: PathBuf,
    state: PathBuf,
    metrics_port: u16,
}

impl Served {
    pub(crate) fn new() -> Served {
        let specs = vec![
            Dom0Spec {
                name: "xen01".into(),
                behaviour: Behaviour::Normal,
                guests: vec![
                    guest("web01", Ailment::Healthy),
                    guest("db01", Ailment::FullDisk),
                ],
            },
            Dom0Spec {
                name: "xen02".into(),
                behaviour: Behaviour::Normal,
                guests: vec![
                    guest("mail01", Ailment::Healthy),
                    // Its .cfg under xen01: migrated, a note from the
                    // config directories' homes, kept or live.
                    GuestSpec {
                        name: "moved01".into(),
                        ailment: Ailment::Healthy,
                        cfg_under: Some("xen01".into()),
                    },
                ],
            },
        ];
        let site = SimCluster::build(specs, 3000, &|m| eprintln!("service site: {m}"))
            .expect("building the service's site");
        let state = site.dir().join("state").join("poller.db");
        let metrics_port = free_port().unwrap();
        let config = site.dir().join("serve.toml");
        let served = Served {
            config,
            state,
            metrics_port,
            site,
        };
        served.write_config("");
        served
    }

    /// The site's poller config, with the service's section and `extra`
    /// top-level lines. A poll every 2 s; the state stale after 10 s (two
    /// intervals, the default, leave a loaded machine no margin).
    fn write_config(&self, extra: &str) {
        self.write_config_with(extra, "");
    }

    /// The same, with `sections` (TOML tables) at its end.
    pub(crate) fn write_config_with(&self, extra: &str, sections: &str) {
        let base = std::fs::read_to_string(&self.site.poller_config).unwrap();
        xsmon_tests::write_private(
            &self.config,
            format!(
                "{extra}{base}\n[service]\ninterval_secs = 2\nstale_after_secs = 10\nstate = \"{}\"\nlisten = \"127.0.0.1:{}\"\n{sections}",
                self.state.display(),
                self.metrics_port
            ),
        )
        .unwrap();
    }

    pub(crate) fn poller(&self, args: &[&str]) -> Output {
        std::process::Command::new(xsmon_tests::bin("poller"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("TZ", "UTC")
            .output()
            .unwrap()
    }
}

/// Ages ("(41s ago)" in words, a raw line's fifth field) differ between
/// two polls a second apart: everything else must not.
fn without_ages(text: &str) -> String {
    if let Some(lines) = text
        .lines()
        .map(xsmon_proto::rawline::parse)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|l| !l.is_empty())
    {
        return lines
            .into_iter()
            .map(|mut l| {
                l.age = None;
                xsmon_proto::rawline::print(&l) + "\n"
            })
            .collect();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" ago") {
        let head = &rest[..i];
        let digits_from = head
            .rfind(|c: char| !(c.is_ascii_digit() || "smhd".contains(c)))
            .map_or(0, |j| j + 1);
        out.push_str(&head[..digits_from]);
        out.push_str("N ago");
        rest = &rest[i + 4..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn the_service_keeps_the_site_and_every_mode_reads_it() {
    let mut served = Served::new();
    let mut service = PollerService::start(&served.config).unwrap();
    // Until the first cycle is kept, a reader polls live (no state file
    // yet) or says UNKNOWN (a state without a poll): wait for the report
    // that says it is the service's.
    wait_for("the first kept cycle", Duration::from_secs(30), || {
        let o = served.poller(&["report", "--color", "never"]);
        Ok(stdout(&o)
            .contains("(as xsmon-poller polled the site at ")
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    let first = served.poller(&["nagios", "--guest", "db01"]);
    assert_eq!(code(&first), 2, "{}", stdout(&first));

    // The same words and performance data as a live poll, scoped or not.
    for args in [
        &["nagios", "--guest", "db01"][..],
        &["nagios", "--dom0", "xen02"],
        &["nagios"],
        &["raw"],
        &["raw", "--guest", "moved01"],
        &["raw", "--dom0", "xen02"],
    ] {
        let kept = served.poller(args);
        let mut live_args = args.to_vec();
        live_args.push("--live");
        let live = served.poller(&live_args);
        assert_eq!(
            code(&kept),
            code(&live),
            "{args:?}: {}{}\n{}",
            stdout(&kept),
            String::from_utf8_lossy(&kept.stderr),
            service.log()
        );
        assert_eq!(
            without_ages(&stdout(&kept)),
            without_ages(&stdout(&live)),
            "{args:?}: from the state, then live"
        );
        assert!(
            !stdout(&kept).is_empty(),
            "{args:?}: nothing said, exit {}; live: {}{}\n{}",
            code(&kept),
            stdout(&live),
            String::from_utf8_lossy(&live.stderr),
            service.log()
        );
    }
    let moved = stdout(&served.poller(&["raw", "--guest", "moved01"]));
    assert!(
        moved.starts_with("info xen02 moved01 migrated ")
            && moved
                .contains(" runs\\son\\sxen02,\\sits\\sconfig\\sis\\sunder\\sxen01\\s(migrated)\n"),
        "{moved}"
    );
    let kept_db01 = stdout(&served.poller(&["nagios", "--guest", "db01"]));
    assert!(
        kept_db01.starts_with("XSMON CRITICAL - 1 error, 0 warnings; 1 guests on 2 dom0s | "),
        "{kept_db01}"
    );
    assert!(
        kept_db01.contains("'disk_/srv/data_used'=100%;85;95;0;100"),
        "the guest's figures: {kept_db01}"
    );

    // The report says since when each problem stands.
    let report = stdout(&served.poller(&["report", "--color", "never"]));
    let disk_line = report
        .lines()
        .find(|l| l.contains("db01") && l.contains("disk2"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(disk_line.contains("; since "), "{disk_line}");
    assert!(
        report.contains("(as xsmon-poller polled the site at "),
        "{report}"
    );

    // A dom0 drops off: a transition, in the report's changes, its
    // history, and the since of its problem; its guests' problems stand.
    served.site.dom0s[1].snmpd = None;
    let history = wait_for(
        "xen02's drop in its history",
        Duration::from_secs(30),
        || {
            let o = served.poller(&["history", "xen02"]);
            let text = stdout(&o);
            Ok(text.contains("snmp  ok -> error").then_some(text))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    let line = history
        .lines()
        .find(|l| l.contains("snmp  ok -> error"))
        .unwrap();
    assert!(
        line.contains("  xen02  (dom0)  snmp  ok -> error  dom0 unreachable: "),
        "{line}"
    );
    let changes = stdout(&served.poller(&["report", "--color", "never", "--changes-since", "10m"]));
    let section = changes
        .split("CHANGES since ")
        .nth(1)
        .unwrap_or_else(|| panic!("{changes}"));
    assert!(
        section.contains(" xen02 (dom0) snmp: ok -> error: dom0 unreachable"),
        "{changes}"
    );
    // db01's problem began at the first cycle: it is in the history once.
    let db01 = stdout(&served.poller(&["history", "db01"]));
    assert_eq!(
        db01.lines()
            .filter(|l| l.contains("disk2  ok -> error"))
            .count(),
        1,
        "{db01}"
    );
    assert!(
        db01.lines().all(|l| l.contains("  xen01  db01  ")),
        "{db01}"
    );
    let none = served.poller(&["history", "nosuch01"]);
    assert_eq!(code(&none), 3);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains(
            "no history for \"nosuch01\": the site's state knows no dom0 or guest of that name"
        ),
        "{none:?}"
    );

    // SIGHUP: the config is read again (a dom0 added), the service goes on.
    served.write_config("hosts = [\"xen09=127.0.0.1:9\"]\n");
    service.signal(Signal::SIGHUP).unwrap();
    wait_for("xen09 polled after SIGHUP", Duration::from_secs(30), || {
        let text = stdout(&served.poller(&["raw"]));
        Ok(text.contains("xen09").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\nrunning: {}\n{}", service.is_running(), service.log()));
    assert!(
        service.log().contains("config reloaded"),
        "{}",
        service.log()
    );

    // serve answers no scoped question.
    let scoped = served.poller(&["serve", "--guest", "web01"]);
    assert_eq!(code(&scoped), 3);
    assert!(
        String::from_utf8_lossy(&scoped.stderr).contains(
            "`poller serve` polls the whole site: --dom0, --guest, --live and --changes-since are for the other modes"
        ),
        "{scoped:?}"
    );
    // One service per state.
    let second = served.poller(&["serve"]);
    assert_eq!(code(&second), 3);
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(
        why.contains("another `poller serve` keeps the site's state"),
        "{why}"
    );

    // /metrics: the same series as `poller prometheus`, which promtool
    // accepts.
    let (status, metrics) = http_get(served.metrics_port, "/metrics").unwrap();
    assert_eq!(status, 200, "{metrics}");
    crate::prometheus::promtool_check(&metrics);
    assert!(
        metrics.contains("xsmon_guest_status{dom0=\"xen01\",guest=\"db01\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xsmon_up{dom0=\"xen02\"} 0\n"),
        "{metrics}"
    );

    // Stopped: every reader says the state is stale, as UNKNOWN, soon.
    let status = service.stop().unwrap();
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
    let stale = wait_for("the state called stale", Duration::from_secs(30), || {
        let o = served.poller(&["nagios", "--guest", "web01"]);
        Ok((code(&o) == 3).then_some(stdout(&o)))
    })
    .unwrap();
    assert!(
        stale.starts_with("XSMON UNKNOWN - the site's state is ")
            && stale.contains(" old (its last poll began at ")
            && stale.contains("; xsmon-poller polls every 2 s): is xsmon-poller running? (--live polls the dom0s now)"),
        "{stale}"
    );
    let live = served.poller(&["nagios", "--guest", "web01", "--live"]);
    assert_eq!(code(&live), 0, "{}", stdout(&live));
}

/// The shipped rules with `for` cut to 1 s (and their group renamed), so an
/// alert fires within a test; nothing else of them changed.
fn rules_firing_at_once(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(
        xsmon_tests::repo_root().join("poller/prometheus/xsmon-alerts.yml"),
    )
    .unwrap();
    assert!(
        shipped.contains("for: 10m"),
        "the shipped rules changed: adapt this test"
    );
    let fast = shipped
        .replace("for: 10m", "for: 1s")
        .replace("for: 5m", "for: 1s")
        .replace("  - name: xsmon\n", "  - name: xsmon-for-1s\n");
    let path = dir.join("xsmon-alerts-for-1s.yml");
    xsmon_tests::write_private(&path, fast).unwrap();
    path
}

/// The alerts of a rule group, as (alert name, guest label, state).
fn alerts_of(rules: &serde_json::Value, group: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for g in rules["groups"].as_array().into_iter().flatten() {
        if g["name"] != group {
            continue;
        }
        for r in g["rules"].as_array().into_iter().flatten() {
            for a in r["alerts"].as_array().into_iter().flatten() {
                out.push((
                    r["name"].as_str().unwrap_or("").to_string(),
                    a["labels"]["guest"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn prometheus_scrapes_the_service_and_fires_a_shipped_alert() {
    let served = Served::new();
    let service = PollerService::start(&served.config).unwrap();
    wait_for("/metrics served", Duration::from_secs(30), || {
        Ok((http_get(served.metrics_port, "/metrics")?.0 == 200).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    let shipped = xsmon_tests::repo_root().join("poller/prometheus/xsmon-alerts.yml");
    let fast = rules_firing_at_once(served.site.dir());
    let prom = Prometheus::start(
        &format!("127.0.0.1:{}", served.metrics_port),
        &[shipped, fast],
    )
    .unwrap();
    // The target is up, and db01's error fires the alert (the copy with
    // `for: 1s`) and is pending under the shipped rules' `for: 10m`.
    let rules = wait_for(
        "XsmonGuestError firing for db01",
        Duration::from_secs(60),
        || {
            let rules = prom.api("/api/v1/rules?type=alert")?;
            let fired = alerts_of(&rules, "xsmon-for-1s").contains(&(
                "XsmonGuestError".into(),
                "db01".into(),
                "firing".into(),
            ));
            Ok(fired.then_some(rules))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.logs()));
    assert!(
        alerts_of(&rules, "xsmon").contains(&(
            "XsmonGuestError".into(),
            "db01".into(),
            "pending".into()
        )),
        "{rules}"
    );
    // Only db01 is in error: no alert for a healthy guest.
    assert!(
        alerts_of(&rules, "xsmon-for-1s")
            .iter()
            .all(|(name, guest, _)| name != "XsmonGuestError" || guest == "db01"),
        "{rules}"
    );
    let alerts = prom.api("/api/v1/alerts").unwrap();
    let firing = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "XsmonGuestError" && a["state"] == "firing")
        .unwrap_or_else(|| panic!("{alerts}"));
    assert_eq!(
        firing["annotations"]["summary"], "guest db01 on xen01 is in error",
        "{firing}"
    );

    // The Grafana dashboard: every query parses and evaluates on this
    // Prometheus, and returns data for this site.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(xsmon_tests::repo_root().join("poller/grafana/xsmon-site.json"))
            .unwrap(),
    )
    .unwrap();
    let exprs = crate::prometheus::dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 6, "{exprs:?}");
    for (title, expr) in exprs {
        let q = expr
            .replace("$dom0", ".+")
            .replace("$guest", ".+")
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h");
        let data = prom
            .api(&format!("/api/v1/query?query={}", url_encode(&q)))
            .unwrap_or_else(|e| panic!("panel {title:?}: {e}"));
        assert!(
            !data["result"].as_array().is_none_or(|r| r.is_empty()),
            "panel {title:?}: {q} returns nothing on a site with an error and a dom0 up: {data}"
        );
    }
}

/// A service whose polls fail (here: nothing left to poll after a reload)
/// says why to every reader, once its state is stale, instead of "is it
/// running?".
#[test]
fn a_service_whose_polls_fail_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poller.toml");
    let first_state = dir.path().join("poller.db");
    let state = std::cell::RefCell::new(first_state);
    let write = |hosts: &str| {
        xsmon_tests::write_private(
            &config,
            format!(
                "hosts = [{hosts}]\n[snmp]\ntimeout_ms = 100\nretries = 0\n[service]\ninterval_secs = 1\nstale_after_secs = 3\nstate = \"{}\"\n",
                state.borrow().display()
            ),
        )
        .unwrap()
    };
    let poller = |args: &[&str]| {
        std::process::Command::new(xsmon_tests::bin("poller"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    write("\"xen09=127.0.0.1:9\"");
    let mut service = PollerService::start(&config).unwrap();
    // The service's own cycle: until one is kept, a reader polls live, and
    // its xen09 line would say nothing of the service (under load, the
    // service had not polled yet when the config below changed).
    wait_for("a kept cycle", Duration::from_secs(30), || {
        Ok(stdout(&poller(&["report", "--color", "never"]))
            .contains("(as xsmon-poller polled the site at ")
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    // Nothing to poll any more: every cycle fails, and readers are told.
    write("");
    service.signal(Signal::SIGHUP).unwrap();
    let said = wait_for("the failure said", Duration::from_secs(30), || {
        let o = poller(&["nagios"]);
        let text = stdout(&o);
        Ok((code(&o) == 3 && text.contains("polls fail")).then_some(text))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    assert!(
        said.starts_with("XSMON UNKNOWN - the site's state is ")
            && said.contains(" old: xsmon-poller's polls fail since ")
            && said.contains(": no dom0 to poll: give --config-dir, --principal or --host (or set them in the config) (--live polls the dom0s now)"),
        "{said}"
    );
    // A service that never polled says the same from its first failure.
    service.stop().unwrap();
    *state.borrow_mut() = dir.path().join("second.db");
    write("");
    let service = PollerService::start(&config).unwrap();
    let said = wait_for("the first failure said", Duration::from_secs(30), || {
        let text = stdout(&poller(&["nagios"]));
        Ok(text.contains("polls fail").then_some(text))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    assert!(
        said.starts_with("XSMON UNKNOWN - the site's state (")
            && said.contains("second.db) has no poll yet: xsmon-poller's polls fail since ")
            && said.contains(": no dom0 to poll: "),
        "{said}"
    );
}
