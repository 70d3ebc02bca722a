//! The README's commands exist, with the options it gives them. Every
//! command in README.md's `sh` code blocks, and every inline command of
//! xsmon's own programs in its prose (`poller nagios --guest NAME`), is
//! checked here: a script of `scripts/` must be there and executable; a
//! command of xsmon's programs or of cargo must take its subcommands and
//! options (it is run with `--help` after them: clap refuses an unknown
//! subcommand or option before it prints any help). The two front-door
//! commands are also run as written: `scripts/demo` by the demo test,
//! `scripts/test` by CI (`.ci/run`). Commands of the system (`dpkg`,
//! `systemctl`) are not xsmon's to check.

use std::path::Path;
use std::process::Command;

use xsmon_tests::repo_root;

/// The programs whose inline commands in the prose are checked.
const PROGRAMS: &[&str] = &["poller", "host-collector", "snmp-extend", "guest-probe"];

/// The README's commands: each line of its `sh` blocks cut at `&&` and
/// `#`, and each inline code span that starts with one of [`PROGRAMS`].
fn readme_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut in_other = false;
    for line in readme.lines() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match (in_sh, in_other) {
                (false, false) if info.trim() == "sh" => in_sh = true,
                (false, false) => in_other = true,
                _ => (in_sh, in_other) = (false, false),
            }
            continue;
        }
        if in_sh {
            let code = t.split('#').next().unwrap_or("");
            out.extend(
                code.split("&&")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from),
            );
        } else if !in_other {
            out.extend(line.split('`').skip(1).step_by(2).filter_map(|span| {
                let first = span.split_whitespace().next()?;
                PROGRAMS.contains(&first).then(|| span.trim().to_string())
            }));
        }
    }
    out
}

/// What is wrong with one command, if anything.
fn check(root: &Path, command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let (program, args) = words.split_first()?;
    if program.starts_with("scripts/") {
        let path = root.join(program);
        let executable = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
            .unwrap_or(false);
        return (!executable).then(|| format!("{program}: no such executable script"));
    }
    let exe = match *program {
        "cargo" => "cargo".into(),
        p if PROGRAMS.contains(&p) => xsmon_tests::bin(p),
        _ => {
            return Some(format!(
                "{program}: not a command this test knows how to check"
            ))
        }
    };
    let out = Command::new(exe)
        .args(args)
        .arg("--help")
        .current_dir(root)
        .output()
        .ok()?;
    (!out.status.success()).then(|| {
        format!(
            "`{command} --help` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

#[test]
fn every_command_the_readme_gives_exists_with_its_options() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    // The front door and the install commands are among them: a README
    // whose blocks this parser no longer reads fails here, not silently.
    for must in [
        "scripts/demo",
        "scripts/test",
        "scripts/package",
        "poller nagios",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(must)),
            "no `{must}` among the README's commands: {commands:?}"
        );
    }
    let wrong: Vec<String> = commands.iter().filter_map(|c| check(&root, c)).collect();
    assert!(
        wrong.is_empty(),
        "the README gives commands that do not work:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_command_gone_or_an_option_gone_is_caught() {
    let root = repo_root();
    let bad = [
        "scripts/no-such-script",
        "poller nagios --no-such-option",
        "poller no-such-mode",
        "host-collector collect --no-such-option",
        "cargo build --no-such-option",
    ];
    for c in bad {
        assert!(check(&root, c).is_some(), "`{c}` passed the check");
    }
    let parsed = readme_commands(
        "```sh\nscripts/a --x && scripts/b # c\n```\n\
         ```text\npoller raw\n```\n\
         Run `poller nagios --guest web01` or `xl list`.\n",
    );
    assert_eq!(
        parsed,
        ["scripts/a --x", "scripts/b", "poller nagios --guest web01"]
    );
}
