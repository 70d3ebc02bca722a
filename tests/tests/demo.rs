//! The demo (`scripts/demo`) runs green: its scenario's findings are
//! checked inside it, so this test fails the moment the demo rots.

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
        text.contains("all 7 expected findings present, nothing else"),
        "{text}"
    );
    assert!(text.contains("XSMON CRITICAL - "), "{text}");
    assert!(text.contains("== host-collector history app01"), "{text}");
    assert!(text.contains("XSMON OK - 1 guests ok on"), "{text}");
    assert!(
        text.contains("   chart: ") && text.contains("app01.png: "),
        "{text}"
    );
    // The history table shows app01's swap figures.
    assert!(
        text.contains("swap  ") && text.contains("pages_per_s"),
        "{text}"
    );
}
