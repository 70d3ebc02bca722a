//! The README's first command, `scripts/demo`, run as a user runs it: from
//! the clone, with no variable of the suite's (a user sets none), so a
//! front door that a fresh clone would find locked fails this test. The
//! demo's scenario checks its findings itself; this test checks its
//! report and that every step of the script ran. It boots the real Xen
//! lab too (a lab that does not boot fails it). In `scripts/test` its
//! builds are the suite's own (the same profiles), so they take seconds;
//! the demo's own executable is removed first, so that a scripts/demo
//! that stopped building fails here too.

use std::io::Write;
use std::process::Command;

/// `scripts/demo` as a user starts it: the test process's environment
/// without what cargo and `scripts/test` add (a user has none of it).
fn demo_as_a_user() -> Command {
    let mut cmd = Command::new(xsmon_tests::repo_root().join("scripts/demo"));
    cmd.current_dir(xsmon_tests::repo_root());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let added_by_cargo =
            key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
        if key.starts_with("XSMON_") || added_by_cargo || key == "RUST_TEST_THREADS" {
            cmd.env_remove(&key);
        }
    }
    cmd
}

#[test]
fn the_demo_runs_and_finds_what_the_scenario_says() {
    // The one output of the suite's builds that only the demo runs: gone,
    // scripts/demo must have cargo bring it back (cargo links it again in
    // a moment), so a scripts/demo that no longer builds fails here as it
    // would in a fresh clone.
    let demo_exe = xsmon_tests::repo_root().join("target/debug/xsmon-demo");
    match std::fs::remove_file(&demo_exe) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", demo_exe.display()),
    }
    let out = demo_as_a_user().output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Where its time went, in the suite's log: written to stderr itself,
    // past libtest's capture (which keeps a test's output only when it
    // fails).
    for line in text.lines().filter(|l| {
        l.contains(": done in ")
            || l.contains("real Xen ")
            || l.starts_with("== demo: every step")
            || l.contains("crash to nagios critical: ")
    }) {
        let _ = writeln!(std::io::stderr(), "demo: {}", line.trim());
    }
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
    // The crash reaches a real Nagios, pushed by the poller service.
    assert!(
        text.contains("   crash to nagios critical: ")
            && text.contains(" s (Nagios's log: XSMON CRITICAL - "),
        "{text}"
    );
    // The real hypervisor: its boot, what Xen says of each domain, and a
    // chart of a real guest with more than a few points.
    // On Xen 4.17, scripts/demo's own (the smoke set for Debian 12 and
    // XCP-ng 8.3; the other tests' lab runs 4.20).
    assert!(text.contains("real Xen 4.17."), "{text}");
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
    // Every step of the script, each with its time, and its last line.
    for step in [
        "Debian packages (scripts/install-deps): done in ",
        "static binaries for the lab's images (scripts/xen-lab static): done in ",
        "programs for this machine (cargo build --workspace --bins, debug): done in ",
        "Xen 4.17 lab images (scripts/xen-lab images",
        "the demo (target/debug/xsmon-demo): done in ",
        "== demo: every step done in ",
    ] {
        assert!(text.contains(step), "no line {step:?}: {text}");
    }
}
