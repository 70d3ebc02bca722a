//! The docs name the contracts' versions as the code has them. Each page
//! that states the current version of a contract says so with the words
//! `<contract> version N (this release`, and the range a reader accepts
//! with `<contract> versions A to B`; this test checks every such claim in
//! README.md, CONTRIBUTING.md and docs/ against the constants in the code,
//! and that CHANGELOG.md's newest release is the crates' version. A
//! version bump in the code without the docs (or the reverse) fails here.

use std::path::Path;

use xsmon_proto::{layout, rawline, snmpline};

/// The contracts: the words the docs use, the version written, and the
/// oldest version read.
fn contracts() -> Vec<(&'static str, u32, u32)> {
    vec![
        ("key layout", layout::VERSION, 1),
        ("SNMP line format", snmpline::VERSION, snmpline::OLDEST_READ),
        (
            "schema",
            xsmon_store::SCHEMA_VERSION as u32,
            xsmon_store::OLDEST_READ as u32,
        ),
        ("raw format", rawline::VERSION, 1),
    ]
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Every page a reader reads, its text with single spaces (markdown wraps
/// anywhere). The generated reference pages are checked by their own test.
fn pages() -> Vec<(String, String)> {
    let mut paths = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            paths.push(p);
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// The numbers right after each occurrence of `prefix` in `text`, and
/// what follows them.
fn numbers_after<'a>(text: &'a str, prefix: &str) -> Vec<(u32, &'a str)> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let n = digits.parse().ok()?;
            Some((n, &rest[digits.len()..]))
        })
        .collect()
}

/// The claims of one page: (what it says, what the code has) for each
/// contract's current version and read range.
fn claims(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, current, oldest) in contracts() {
        for (n, rest) in numbers_after(text, &format!("{name} version ")) {
            if rest.starts_with(" (this release") {
                out.push((
                    format!("{name} version {n} (this release)"),
                    format!("{name} version {current} (this release)"),
                ));
            }
        }
        for (a, rest) in numbers_after(text, &format!("{name} versions ")) {
            if let Some((b, _)) = numbers_after(rest, " to ")
                .first()
                .filter(|_| rest.starts_with(" to "))
            {
                out.push((
                    format!("{name} versions {a} to {b}"),
                    format!("{name} versions {oldest} to {current}"),
                ));
            }
        }
    }
    out
}

#[test]
fn the_docs_name_each_contracts_version_as_the_code_has_it() {
    let mut wrong = Vec::new();
    let mut stated = std::collections::BTreeSet::new();
    for (page, text) in pages() {
        for (said, truth) in claims(&text) {
            if said == truth {
                stated.insert(truth.split(" version").next().unwrap().to_string());
            } else {
                wrong.push(format!("{page}: says \"{said}\"; the code: \"{truth}\""));
            }
        }
    }
    assert!(wrong.is_empty(), "the docs drifted:\n{}", wrong.join("\n"));
    // Each contract a user upgrades through is stated somewhere: a page
    // that stopped stating it would make this test pass on nothing.
    for name in ["key layout", "SNMP line format", "schema"] {
        assert!(
            stated.contains(name),
            "no page states the current {name} version (\"{name} version N (this release)\")"
        );
    }
}

#[test]
fn the_changelogs_newest_release_is_the_crates_version() {
    let log = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    let newest = log
        .lines()
        .find_map(|l| l.strip_prefix("## "))
        .expect("CHANGELOG.md has a release heading");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        newest.split_whitespace().next() == Some(version),
        "CHANGELOG.md's newest release is {newest:?}; the crates are {version}"
    );
}

#[test]
fn a_wrong_claim_is_seen() {
    let text =
        "writes key layout version 4 (this release) and reads SNMP line format versions 1 to 3.";
    let c = claims(text);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].0, "key layout version 4 (this release)");
    assert_ne!(c[0].0, c[0].1, "the code writes layout {}", layout::VERSION);
    assert_eq!(c[1].0, "SNMP line format versions 1 to 3");
    assert_ne!(c[1].0, c[1].1);
}

/// schema.sql, the contract itself, opens with its version.
#[test]
fn schema_sql_names_its_own_version() {
    let sql = std::fs::read_to_string(root().join("schema.sql")).unwrap();
    let first = sql.lines().next().unwrap_or_default();
    let want = format!(
        "-- xsmon history: the SQLite schema, version {}.",
        xsmon_store::SCHEMA_VERSION
    );
    assert_eq!(first, want, "schema.sql's first line");
}
