//! docs/findings.md lists every message a finding can carry. This test
//! reads the code that writes findings, takes each message it can write
//! (every string literal of three words or more outside the unit tests),
//! and fails when the page lacks one: a message changed or added in the
//! code without the page saying what it means and what to do.
//!
//! A message is matched by its fixed parts: the text between its `{...}`
//! placeholders, which the page writes as the code does (`{pct}% of {mib}
//! MiB memory in use`). The other direction (a message the page lists that
//! the code no longer writes) is left to review: the page composes some
//! messages from two literals (`dom0 unreachable: ...`).

use std::path::Path;

/// The files whose literals are findings' words.
const SOURCES: &[&str] = &[
    "guest-probe/src/checks/cpu.rs",
    "guest-probe/src/checks/swap.rs",
    "guest-probe/src/checks/net.rs",
    "xsmon-checks/src/disk.rs",
    "xsmon-checks/src/memory.rs",
    "host-collector/src/judge.rs",
    "host-collector/src/freshness.rs",
    "host-collector/src/domstate.rs",
    "host-collector/src/continuity.rs",
    "host-collector/src/agent/mod.rs",
    "host-collector/src/agent/view.rs",
    "host-collector/src/hypervisor.rs",
    "host-collector/src/devmodel.rs",
    "snmp-extend/src/main.rs",
    "poller/src/engine/mod.rs",
    "poller/src/engine/job.rs",
    "poller/src/engine/poll.rs",
    "poller/src/engine/reply.rs",
    "poller/src/report.rs",
    "poller/src/poll/served.rs",
    "poller/src/site/kept.rs",
    "poller/src/push/nagios.rs",
    "poller/src/push/icinga2.rs",
    "poller/src/serve/pushing.rs",
    "host-collector/src/absent.rs",
    "host-collector/src/damaged.rs",
];

/// Literals in those files that are not findings, and why.
const NOT_FINDINGS: &[(&str, &str)] = &[
    (
        "echoes without a reply",
        "guest-probe's -v log line (docs/guest-probe.md)",
    ),
    (
        "after the resume, every gateway answered",
        "guest-probe's -v log line (docs/guest-probe.md)",
    ),
    (
        "polled {total} dom0s in {} ms: {} requests sent ({} resent), {} answers, {} replies ignored, {failed} dom0s failed",
        "the poller's -v log line",
    ),
    (
        "every dom0 had its first request after {} ms",
        "the poller's -v log line",
    ),
    (
        "Nagios's command file {}: {e} (is Nagios running, with check_external_commands=1?)",
        "poller serve's log line when a push fails (docs/poller.md)",
    ),
    (
        "No objects found",
        "Icinga 2's answer, matched, not written",
    ),
    (
        "host.name == xsmon_host && service.name == xsmon_service",
        "the filter of Icinga 2's API request",
    ),
    (
        "host.name == xsmon_host",
        "the filter of Icinga 2's API request",
    ),
    (
        "{:?} is not a name Nagios and Icinga 2 accept: its results are not pushed",
        "poller serve's log line (docs/alerts.md)",
    ),
    (
        "push to {consumer} failed, the next cycle pushes again: {e}",
        "poller serve's log line; the finding is the push warning",
    ),
    (
        "how the push to {consumer} went could not be recorded: {e:#}",
        "poller serve's log line",
    ),
    (
        "pushed to Nagios",
        "poller serve's log line (docs/alerts.md)",
    ),
    (
        "pushed to Icinga 2",
        "poller serve's log line (docs/alerts.md)",
    ),
    (
        "figures of another cycle skipped",
        "the poller's -vv log line (poller serve reads them again at its next poll)",
    ),
    (
        "after the resume, no reply yet from these gateways",
        "guest-probe's -v log line (the net check then measures and says it)",
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The file's code before its unit tests.
fn code(path: &str) -> String {
    let text = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Every `"..."` literal on the lines that are code (not comments or
/// attributes), unescaped as far as the page needs (`\"`, `\\`).
fn literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with("#[") {
            continue;
        }
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut lit = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('"') => lit.push('"'),
                        Some('\\') => lit.push('\\'),
                        Some(o) => {
                            lit.push('\\');
                            lit.push(o);
                        }
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => lit.push(c),
                }
            }
            if closed {
                out.push(lit);
            }
        }
    }
    out
}

/// The text between a message's `{...}` placeholders.
fn fixed_parts(message: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                depth += 1;
                parts.push(String::new());
            }
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 => parts.last_mut().unwrap().push(c),
            _ => {}
        }
    }
    parts
}

/// A part worth matching: it holds a word of three letters or more (a
/// lone `(` or `, ` says nothing of the message).
fn is_words(part: &str) -> bool {
    part.split(|c: char| !c.is_alphabetic())
        .any(|w| w.chars().count() >= 3)
}

/// A literal that reads as a message: three words or more once its
/// placeholders are out.
fn is_message(lit: &str) -> bool {
    fixed_parts(lit).concat().split_whitespace().count() >= 3
}

#[test]
fn every_message_the_code_writes_is_in_the_findings_page() {
    let page =
        std::fs::read_to_string(root().join("docs/findings.md")).expect("docs/findings.md exists");
    // Markdown wraps lines anywhere: compare with single spaces.
    let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut missing = Vec::new();
    let mut seen = 0;
    for path in SOURCES {
        for lit in literals(&code(path)) {
            if !is_message(&lit) || NOT_FINDINGS.iter().any(|(m, _)| *m == lit) {
                continue;
            }
            seen += 1;
            for part in fixed_parts(&lit) {
                let part = part.trim();
                if is_words(part) && !page.contains(part) {
                    missing.push(format!("{path}: {lit:?}: the page lacks {part:?}"));
                }
            }
        }
    }
    // The sources hold well over a hundred messages: far fewer means the
    // reader above stopped reading them.
    assert!(seen > 100, "only {seen} messages read from the sources");
    assert!(
        missing.is_empty(),
        "docs/findings.md lacks {} message part(s); add each with what it means and what to do:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_reader_takes_what_a_finding_says() {
    let src = r#"
        // "a comment is not a message at all"
        c.message = format!("paused for {for_} (xl list: p): `xl unpause {name}` resumes it");
        x("crashed (on_crash = \"preserve\"): then", "id");
    "#;
    let lits = literals(src);
    assert_eq!(
        lits,
        vec![
            "paused for {for_} (xl list: p): `xl unpause {name}` resumes it",
            "crashed (on_crash = \"preserve\"): then",
            "id",
        ]
    );
    assert_eq!(
        fixed_parts(&lits[0]),
        vec!["paused for ", " (xl list: p): `xl unpause ", "` resumes it"]
    );
    assert!(is_message(&lits[0]) && !is_message("id"));
    assert!(!is_words(") (") && is_words("was"));
}
