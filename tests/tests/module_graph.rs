//! The house rule that keeps the crates livable: no two files of a crate
//! import each other, directly or around a circle (CONTRIBUTING.md). Two
//! files that need each other want a third that both use.
//!
//! Read from the sources: each file's `crate::<module>` and `super::<module>`
//! paths outside comments and outside its `#[cfg(test)]` part are its
//! imports; a circle among them fails, named file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "guest-probe",
    "host-collector",
    "snmp-extend",
    "poller",
    "xsmon-proto",
    "xsmon-store",
    "xsmon-checks",
    "xsmon-xenstore",
    "xsmon-cli",
    "tests",
];

/// Module path (`agent::view`) -> the modules its file imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `agent/mod.rs` -> `agent`, `agent/view.rs` -> `agent::view`; the crate
/// roots and binaries are not modules of the graph.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    let m = parts.join("::");
    (!matches!(m.as_str(), "lib" | "main") && !m.starts_with("bin")).then_some(m)
}

/// The names following `prefix` in `code` (`crate::agent::view` gives
/// `agent` and `view`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<(&'a str, Option<&'a str>)> {
    let word = |s: &'a str| {
        let end = s
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    };
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `xsmon_proto::crate::` never occurs; `foo_crate::` must not count.
            *i == 0
                || !code.as_bytes()[i - 1].is_ascii_alphanumeric() && code.as_bytes()[i - 1] != b'_'
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let first = word(rest);
            let second = rest[first.len()..].strip_prefix("::").map(word);
            (first, second.filter(|s| !s.is_empty()))
        })
        .filter(|(first, _)| !first.is_empty())
        .collect()
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let exists = |m: &str| {
        let p = src.join(m.replace("::", "/"));
        p.with_extension("rs").exists() || p.join("mod.rs").exists()
    };
    let mut g = Graph::new();
    for f in &files {
        let Some(m) = module_of(src, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let code: String = before_unit_tests(&text)
            .iter()
            .filter(|l| !l.trim_start().starts_with("//"))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let mut deps = BTreeSet::new();
        for (a, b) in paths_after(&code, "crate::") {
            let nested = b.map(|b| format!("{a}::{b}"));
            deps.insert(match nested {
                Some(n) if exists(&n) => n,
                _ => a.to_string(),
            });
        }
        let parent = m.rsplit_once("::").map(|(p, _)| p.to_string());
        for (a, _) in paths_after(&code, "super::") {
            let Some(parent) = &parent else { continue };
            let sibling = format!("{parent}::{a}");
            deps.insert(if exists(&sibling) {
                sibling
            } else {
                parent.clone()
            });
        }
        deps.remove(&m);
        g.insert(m, deps);
    }
    g
}

/// Every circle found by a depth-first walk, as the modules around it.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    fn walk(
        g: &Graph,
        m: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in g
            .get(m)
            .into_iter()
            .flatten()
            .filter(|d| g.contains_key(*d))
        {
            match state.get(d.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == d).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(d.clone());
                    found.push(c);
                }
                Some(_) => {}
                None => walk(g, d, state, stack, found),
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for m in g.keys() {
        if !state.contains_key(m) {
            walk(g, m, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = xsmon_tests::repo_root();
    let mut problems = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let g = graph(&src);
        // The single-file crates have nothing to circle.
        if !matches!(*krate, "snmp-extend" | "xsmon-cli") {
            assert!(
                g.len() > 1,
                "{krate}: no modules read from {}",
                src.display()
            );
        }
        for c in circles(&g) {
            problems.push(format!("{krate}: {}", c.join(" -> ")));
        }
    }
    assert!(
        problems.is_empty(),
        "files importing each other:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    // The check itself, on a crate made for it: a -> b -> a.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::thing;\n// crate::c in a comment\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub fn f() { crate::a::g() }\n#[cfg(test)]\nmod tests { use crate::c; }\n",
    )
    .unwrap();
    std::fs::write(src.join("c.rs"), "").unwrap();
    let g = graph(src);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(g["b"], BTreeSet::from(["a".to_string()]));
    assert_eq!(
        circles(&g),
        vec![vec!["a".to_string(), "b".to_string(), "a".to_string()]]
    );
}

/// The most lines of code a file holds: its unit tests
/// ([`before_unit_tests`]), comments and blank lines not counted.
const MAX_CODE_LINES: usize = 600;

/// A file's lines before its unit test module (`#[cfg(test)]` then
/// `mod`): a test helper marked `#[cfg(test)]` earlier does not end it.
fn before_unit_tests(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let tests_start = lines
        .windows(2)
        .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..tests_start].to_vec()
}

fn code_lines(text: &str) -> usize {
    before_unit_tests(text)
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn no_file_holds_more_than_600_lines_of_code() {
    let root = xsmon_tests::repo_root();
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    rust_files(&root.join("tests/tests"), &mut files);
    rust_files(&root.join("tests/benches"), &mut files);
    assert!(files.len() > 50, "only {} files found", files.len());
    let mut big: Vec<String> = files
        .iter()
        .map(|f| (code_lines(&std::fs::read_to_string(f).unwrap()), f))
        .filter(|(n, _)| *n > MAX_CODE_LINES)
        .map(|(n, f)| format!("{}: {n} lines of code", f.display()))
        .collect();
    big.sort();
    assert!(
        big.is_empty(),
        "files past {MAX_CODE_LINES} lines of code (split each along its concerns):\n{}",
        big.join("\n")
    );
}

#[test]
fn code_lines_leave_out_comments_blanks_and_unit_tests() {
    let text = "//! doc\nuse a;\n\n/// item doc\nfn f() {\n    // why\n    g();\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    assert_eq!(code_lines(text), 4);
}

#[test]
fn a_test_helper_before_the_code_does_not_end_the_count() {
    let text = "#[cfg(test)]\nimpl A {\n}\nfn f() {\n    g();\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    assert_eq!(code_lines(text), 6);
}
