//! `poller serve`'s push at each cycle, to real consumers: Debian's Nagios
//! 4 through its command file, Debian's Icinga 2 through its REST API (TLS,
//! an API user with one permission); the objects `poller nagios-objects`
//! and `poller icinga2-objects` generate, checked by each tool and loaded;
//! a dom0 down is one alert; a push that fails is said.

use std::time::Duration;

use xsmon_tests::service::{wait_for, PollerService};

use crate::service::{code, Served};
use crate::stdout;

/// The service pushes every result into a real Nagios's command file at
/// each cycle: the generated objects pass `nagios4 -v`, each guest's and
/// dom0's service takes the words of `poller nagios --guest/--dom0`, and a
/// dom0 that goes down is one alert (its guests' results stand until
/// their freshness runs out, their hosts' parent is down).
#[test]
fn nagios_takes_the_pushed_results_and_a_dom0_down_is_one_alert() {
    let mut served = Served::new();
    let objects = served.site.dir().join("xsmon-objects.cfg");
    let generated = served.poller(&["nagios-objects", "--live"]);
    assert_eq!(code(&generated), 0, "{generated:?}");
    std::fs::write(&objects, &generated.stdout).unwrap();
    let text = stdout(&generated);
    assert!(
        text.contains("    host_name               moved01\n"),
        "{text}"
    );
    assert!(
        text.contains("    parents                 xen02\n"),
        "{text}"
    );
    let nagios = xsmon_tests::nagios::Nagios::new(&[&objects]).unwrap();
    let verified = nagios.verify().unwrap();
    assert!(
        verified.status.success(),
        "nagios4 -v refuses the generated objects:\n{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let running = nagios.start().unwrap();
    served.write_config_with(
        "",
        &format!(
            "[push]\nnagios_command_file = \"{}\"\n",
            running.command_file().display()
        ),
    );
    let service = PollerService::start(&served.config).unwrap();
    let find = |host: &str, service: &str| {
        running
            .status()
            .into_iter()
            .find(|s| s.host == host && s.service == service)
    };
    let db01 = wait_for("db01 CRITICAL in Nagios", Duration::from_secs(60), || {
        Ok(find("db01", "xsmon").filter(|s| s.state == 2))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.log(), running.log()));
    let words = stdout(&served.poller(&["nagios", "--guest", "db01"]));
    // Nagios's status file writes a result's ';' as ':' (as it does for an
    // active check's).
    assert_eq!(
        db01.output,
        words
            .lines()
            .next()
            .unwrap()
            .split(" | ")
            .next()
            .unwrap()
            .replace(';', ":"),
        "Nagios shows the words of `poller nagios --guest db01`"
    );
    assert_eq!(find("web01", "xsmon").map(|s| s.state), Some(0));
    assert_eq!(find("xen02", "").map(|s| s.state), Some(0));
    // Pushes that work leave no `push` warning.
    let raw = stdout(&served.poller(&["raw"]));
    assert!(!raw.contains(" push "), "{raw}");
    // xen02 goes down: its host DOWN, one alert.
    let alerts = |log: &str| log.lines().filter(|l| l.contains(" ALERT: ")).count();
    let before = alerts(&running.log());
    served.site.dom0s[1].snmpd = None;
    wait_for("xen02 DOWN in Nagios", Duration::from_secs(60), || {
        Ok(find("xen02", "").filter(|s| s.state == 1).map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.log(), running.log()));
    // Two more pushes, then count.
    let pushes = |log: &str| log.matches("pushed to Nagios").count();
    let seen = pushes(&service.log());
    wait_for("two more pushes", Duration::from_secs(60), || {
        Ok((pushes(&service.log()) >= seen + 2).then_some(()))
    })
    .unwrap();
    let log = running.log();
    let new: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ALERT: "))
        .skip(before)
        .collect();
    assert_eq!(new.len(), 1, "one alert for a dom0 down: {new:#?}");
    assert!(new[0].contains("HOST ALERT: xen02;DOWN;HARD"), "{new:#?}");
}

/// A push Nagios does not take (here: no Nagios) is said by the report and
/// the Nagios check of the whole site, never dropped in silence.
#[test]
fn a_push_that_fails_is_a_warning_of_the_whole_site() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poller.toml");
    let command_file = dir.path().join("no-nagios").join("nagios.cmd");
    xsmon_tests::write_private(
        &config,
        format!(
            "hosts = [\"xen09=127.0.0.1:9\"]\n[snmp]\ntimeout_ms = 100\nretries = 0\n[service]\ninterval_secs = 1\nstate = \"{}\"\n[push]\nnagios_command_file = \"{}\"\n",
            dir.path().join("poller.db").display(),
            command_file.display()
        ),
    )
    .unwrap();
    let service = PollerService::start(&config).unwrap();
    let raw = wait_for("the push warning", Duration::from_secs(30), || {
        let o = std::process::Command::new(xsmon_tests::bin("poller"))
            .args(["raw", "--config"])
            .arg(&config)
            .output()?;
        let text = stdout(&o);
        Ok(text.contains(" push ").then_some(text))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    let line = raw
        .lines()
        .find(|l| l.contains(" push "))
        .map(xsmon_proto::rawline::parse)
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            line.severity.as_str(),
            line.dom0.as_str(),
            line.host.as_str()
        ),
        ("warning", "", "")
    );
    assert!(
        line.message.starts_with("results not pushed to Nagios since ")
            && line.message.contains(&format!(
                ": Nagios's command file {}: No such file or directory (os error 2) (is Nagios running, with check_external_commands=1?); xsmon-poller tries again at each poll",
                command_file.display()
            )),
        "{}",
        line.message
    );
}

/// The service pushes every result to a real Icinga 2 over its API: the
/// generated objects pass `icinga2 daemon -C` and load; each guest's and
/// dom0's service takes the words of `poller nagios --guest/--dom0` with
/// their performance data apart, from an API user whose only permission is
/// `actions/process-check-result`; a dom0 that goes down makes its guests
/// unreachable (one alert); a result for a host Icinga 2 has no object for
/// is a push warning that names the fix.
#[test]
fn icinga2_takes_the_pushed_results_over_its_api() {
    use xsmon_tests::icinga2::{Icinga2, PUSH_PASSWORD};
    let mut served = Served::new();
    let objects = served.site.dir().join("xsmon-icinga2.conf");
    let generated = served.poller(&["icinga2-objects", "--live"]);
    assert_eq!(code(&generated), 0, "{generated:?}");
    std::fs::write(&objects, &generated.stdout).unwrap();
    let text = stdout(&generated);
    assert!(
        text.contains("object Dependency \"xsmon-runs-on-xen02\" {\n  parent_host_name = \"xen02\"\n  child_host_name = \"moved01\"\n"),
        "{text}"
    );
    let checked = Icinga2::check(&objects).unwrap();
    // 4 guests and 2 dom0s: a host and a service each.
    assert!(checked.contains("Instantiated 6 Hosts."), "{checked}");
    assert!(checked.contains("Instantiated 6 Services."), "{checked}");
    assert!(
        checked.contains("Instantiated 4 Dependencies."),
        "{checked}"
    );
    let icinga = Icinga2::start(&objects).unwrap();
    served.write_config_with(
        "",
        &format!(
            "[push]\nicinga2_url = \"{}\"\nicinga2_user = \"xsmon\"\nicinga2_password = \"{PUSH_PASSWORD}\"\nicinga2_ca = \"{}\"\n",
            icinga.url(),
            icinga.ca().display()
        ),
    );
    let service = PollerService::start(&served.config).unwrap();
    let state_of = |name: &str| -> Option<serde_json::Value> {
        let a = icinga.object("services", name).ok()?;
        (a["last_check_result"]["check_source"] == "xsmon-poller").then_some(a)
    };
    let db01 = wait_for("db01 CRITICAL in Icinga 2", Duration::from_secs(60), || {
        Ok(state_of("db01!xsmon").filter(|a| a["state"] == 2.0))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.log(), icinga.log()));
    let words = stdout(&served.poller(&["nagios", "--guest", "db01"]));
    let (first, long) = words.trim_end().split_once('\n').unwrap_or((&words, ""));
    let (text, perf) = first.split_once(" | ").unwrap();
    let output = db01["last_check_result"]["output"].as_str().unwrap();
    assert_eq!(
        output.trim_end(),
        format!("{text}\n{long}").trim_end(),
        "Icinga 2 shows the words of `poller nagios --guest db01`"
    );
    let pushed_perf: Vec<String> = db01["last_check_result"]["performance_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        pushed_perf.join(" "),
        perf,
        "its performance data, item by item"
    );
    // Each guest's result is its own request: db01's processed says
    // nothing of web01's (seen under load: not there yet).
    wait_for("web01 OK in Icinga 2", Duration::from_secs(60), || {
        Ok(state_of("web01!xsmon").filter(|a| a["state"] == 0.0))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.log(), icinga.log()));
    let raw = stdout(&served.poller(&["raw"]));
    assert!(
        !raw.contains(" push "),
        "pushes that work leave no warning: {raw}"
    );
    // xen02 goes down: its host DOWN, its guests unreachable.
    served.site.dom0s[1].snmpd = None;
    wait_for("xen02 DOWN in Icinga 2", Duration::from_secs(60), || {
        let h = icinga.object("hosts", "xen02")?;
        Ok((h["state"] == 1.0).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.log(), icinga.log()));
    // Its guests' results stand (no new alert for them); when their own
    // check runs (as it does once no result comes within the freshness;
    // forced here), Icinga 2 holds them unreachable behind xen02: their
    // notifications wait on the dom0's.
    for guest in ["mail01", "moved01"] {
        icinga
            .action(
                "reschedule-check",
                &serde_json::json!({"type": "Host", "filter": "host.name == g", "filter_vars": {"g": guest}, "force": true}),
            )
            .unwrap();
        let h = wait_for(
            &format!("{guest}'s own check"),
            Duration::from_secs(30),
            || {
                let h = icinga.object("hosts", guest)?;
                Ok((h["last_check_result"]["check_source"] != "xsmon-poller").then_some(h))
            },
        )
        .unwrap();
        assert_eq!(
            h["last_check_result"]["vars_after"]["reachable"], false,
            "{guest} behind a dom0 down: {h}"
        );
        assert!(
            h["last_check_result"]["output"]
                .as_str()
                .is_some_and(|o| o.starts_with("no result from xsmon-poller for 66 s")),
            "{h}"
        );
    }
    // A guest Icinga 2 has no object for: the push says it, with the fix.
    drop(icinga);
    let empty = served.site.dir().join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    let icinga = Icinga2::start(&empty).unwrap();
    served.write_config_with(
        "",
        &format!(
            "[push]\nicinga2_url = \"{}\"\nicinga2_user = \"xsmon\"\nicinga2_password = \"{PUSH_PASSWORD}\"\nicinga2_ca = \"{}\"\n",
            icinga.url(),
            icinga.ca().display()
        ),
    );
    service.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    let said = wait_for("the push warning", Duration::from_secs(60), || {
        let raw = stdout(&served.poller(&["raw"]));
        Ok(raw
            .lines()
            .filter_map(|l| xsmon_proto::rawline::parse(l).ok())
            .find(|l| l.check == "push" && l.message.contains("Icinga 2 has no object"))
            .map(|l| l.message))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    assert!(
        said.contains("regenerate them with `poller icinga2-objects` and reload Icinga 2"),
        "{said}"
    );
    assert!(!said.contains(PUSH_PASSWORD) && !service.log().contains(PUSH_PASSWORD));
}
