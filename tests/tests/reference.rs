//! The programs' reference pages (`docs/reference/<program>.md`) are what
//! the programs say of themselves: every command's `--help` (options,
//! defaults, exit codes) and the commented configuration files the
//! packages install. They are generated, never edited by hand; this test
//! generates them again and fails when a page drifted from the code.
//!
//! To write them after changing a program's help or an example config:
//!
//! ```sh
//! XSMON_WRITE_REFERENCE=1 cargo test -p xsmon-tests --test reference
//! ```

use std::path::PathBuf;
use std::process::Command;

/// Each program, and the configuration files its reference carries (the
/// commented examples the packages install as the config).
const PROGRAMS: &[(&str, &[&str])] = &[
    ("guest-probe", &["guest-probe/probe.toml.example"]),
    ("host-collector", &["host-collector/collector.toml.example"]),
    ("snmp-extend", &[]),
    ("poller", &["packaging/poller.toml"]),
];

/// `program args... --help`, as a terminal of 100 columns shows it.
fn help(program: &str, args: &[&str]) -> String {
    let out = Command::new(xsmon_tests::bin(program))
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?} --help: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} --help exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The commands a help text lists under `Commands:` (clap's layout: two
/// spaces, the name, then its summary; continuation lines are indented
/// further), without `help`.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// One program's page.
fn page(program: &str, configs: &[&str]) -> String {
    let mut s = format!(
        "# `{program}` reference\n\n\
         <!-- Generated from the program itself by tests/tests/reference.rs: do not edit.\n     \
         After changing its help or its example config:\n     \
         XSMON_WRITE_REFERENCE=1 cargo test -p xsmon-tests --test reference -->\n\n\
         Every command's `--help`, as the program prints it{}.\n",
        if configs.is_empty() {
            String::new()
        } else {
            ", then the configuration file the packages install, with every key and its default"
                .into()
        }
    );
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(args) = todo.pop() {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = help(program, &argv);
        let title = std::iter::once(program)
            .chain(argv.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&format!(
            "\n## `{title} --help`\n\n```text\n{}\n```\n",
            text.trim_end()
        ));
        // Depth first, in the order the help lists them.
        for c in commands(&text).into_iter().rev() {
            let mut next = args.clone();
            next.push(c);
            todo.push(next);
        }
    }
    for c in configs {
        let text = std::fs::read_to_string(xsmon_tests::repo_root().join(c))
            .unwrap_or_else(|e| panic!("{c}: {e}"));
        s.push_str(&format!(
            "\n## The configuration: [`{c}`](../../{c})\n\n```toml\n{}\n```\n",
            text.trim_end()
        ));
    }
    s
}

fn page_path(program: &str) -> PathBuf {
    xsmon_tests::repo_root()
        .join("docs/reference")
        .join(format!("{program}.md"))
}

#[test]
fn each_programs_reference_page_is_what_the_program_says() {
    let write = std::env::var_os("XSMON_WRITE_REFERENCE").is_some();
    let mut drifted = Vec::new();
    for (program, configs) in PROGRAMS {
        let want = page(program, configs);
        let path = page_path(program);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have == want {
            continue;
        }
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            eprintln!("wrote {}", path.display());
        } else {
            let at = have
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
            drifted.push(format!(
                "{}: differs from line {} on (the program says: {:?})",
                path.display(),
                at + 1,
                want.lines().nth(at).unwrap_or("(end)")
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "reference pages out of date; regenerate with \
         `XSMON_WRITE_REFERENCE=1 cargo test -p xsmon-tests --test reference`:\n{}",
        drifted.join("\n")
    );
}

#[test]
fn commands_are_read_from_claps_layout() {
    let help = "Usage: x <COMMAND>\n\nCommands:\n  collect  Run one\n  watch    Run a cycle whenever\n           a domain appears\n  help     Print this\n\nOptions:\n  -v\n";
    assert_eq!(commands(help), ["collect", "watch"]);
    assert!(commands("Usage: x [OPTIONS]\n\nOptions:\n  -v\n").is_empty());
}
