//! The demo (`scripts/demo`) runs green: its scenario's findings are
//! checked inside it, so this test fails the moment the demo rots. It boots
//! the real Xen lab too (a lab that does not boot fails it).

#[test]
fn the_demo_runs_and_finds_what_the_scenario_says() {
    let out = std::process::Command::new(xsmon_tests::bin("xsmon-demo"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("all 10 expected findings present, nothing else"),
        "{text}"
    );
    assert!(text.contains("XSMON CRITICAL - "), "{text}");
    assert!(text.contains("== host-collector history app01"), "{text}");
    assert!(text.contains("XSMON OK - 1 guests ok on"), "{text}");
    // The real hypervisor: its boot, what Xen says of each domain, and a
    // chart of a real guest with more than a few points.
    // On the Xen XSMON_LAB_XEN names (scripts/test: 4.17, the smoke set
    // for Debian 12 and XCP-ng 8.3; the other tests' lab runs 4.20).
    let xen = xsmon_tests::xenlab::lab_xen();
    assert!(text.contains(&format!("real Xen {xen}.")), "{text}");
    assert!(text.contains(" dom0 up "), "{text}");
    // Save and restore: the same VM in a new domain, not a reboot (checked
    // inside the demo with dom0's words).
    assert!(
        text.contains("web02 went on in domain ") && text.contains("not a reboot"),
        "{text}"
    );
    // Scenario 11 of the real-Xen tests: the demo's dom0 runs the C
    // xenstored (the tests' lab runs oxenstored).
    assert!(
        text.contains("the C xenstored refused all three")
            && text.contains("bin/xenstored --pid-file"),
        "{text}"
    );
    assert!(
        text.contains("crash02") && text.contains("crashed") && text.contains("paused"),
        "{text}"
    );
    let points: usize = text
        .lines()
        .find_map(|l| l.split("web02.png: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chart line: {text}"));
    assert!(points >= 8, "{points} points in the chart: {text}");
    // The history table shows app01's swap figures.
    assert!(
        text.contains("swap  ") && text.contains("pages_per_s"),
        "{text}"
    );
}
