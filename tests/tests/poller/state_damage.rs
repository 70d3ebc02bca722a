//! The service's state database, damaged (a wrong file in its place, its
//! pages overwritten), is set aside, never deleted; the service starts a
//! new one and goes on polling, and every reader of the whole site says a
//! warning naming the file until it is removed.

use std::path::PathBuf;
use std::time::Duration;

use xsmon_tests::service::{wait_for, PollerService};

use crate::stdout;

/// What is done to the database file's bytes.
type Damage = fn(&mut Vec<u8>);

/// A service polling one unreachable dom0 every second, its config and
/// state in a directory of their own: (the directory, config, state).
fn service_site() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poller.toml");
    let state = dir.path().join("poller.db");
    xsmon_tests::write_private(
        &config,
        format!(
            "hosts = [\"xen09=127.0.0.1:9\"]\n[snmp]\ntimeout_ms = 100\nretries = 0\n[service]\ninterval_secs = 1\nstale_after_secs = 5\nstate = \"{}\"\n",
            state.display()
        ),
    )
    .unwrap();
    (dir, config, state)
}

#[test]
fn a_damaged_state_is_set_aside_and_the_service_goes_on() {
    // The directory lives as long as the test.
    let (_dir, config, state) = service_site();
    let raw = || {
        let o = std::process::Command::new(xsmon_tests::bin("poller"))
            .args(["raw", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        stdout(&o)
            .lines()
            .map(|l| xsmon_proto::rawline::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect::<Vec<_>>()
    };
    let has = |lines: &[xsmon_proto::rawline::RawLine], severity: &str, dom0: &str, check: &str| {
        lines
            .iter()
            .any(|l| l.severity == severity && l.dom0 == dom0 && l.check == check)
    };
    // Each damage: (what, how the file is damaged). A wrong file is met
    // when the service opens it; pages overwritten past the first (the
    // schema reads, the tables do not) when a cycle writes.
    let damages: [(&str, &str, Damage); 2] = [
        ("wrong file", "file is not a database", |b| {
            *b = b"not a database\n".repeat(500)
        }),
        ("garbage pages", "database disk image is malformed", |b| {
            let page = u16::from_be_bytes([b[16], b[17]]) as usize;
            b[page..].fill(0x5a);
        }),
    ];
    for (what, sqlite_says, damage) in damages {
        let mut service = PollerService::start(&config).unwrap();
        // The service's own log: a reader finds xen09 in a live poll as
        // well, before the service has kept anything.
        wait_for("a kept cycle", Duration::from_secs(30), || {
            Ok(service.log().contains("site polled").then_some(()))
        })
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", service.log()));
        service.stop().unwrap();
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", state.display()));
        }
        let mut bytes = std::fs::read(&state).unwrap();
        damage(&mut bytes);
        std::fs::write(&state, &bytes).unwrap();

        let service = PollerService::start(&config).unwrap();
        let said = wait_for("the state warning", Duration::from_secs(30), || {
            let lines = raw();
            Ok(
                (has(&lines, "warning", "", "state") && has(&lines, "error", "xen09", "snmp"))
                    .then_some(lines),
            )
        })
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", service.log()));
        let kept = xsmon_tests::set_aside_beside(&state);
        assert_eq!(kept.len(), 1, "{what}: {kept:?}");
        assert_eq!(
            std::fs::read(&kept[0]).unwrap(),
            bytes,
            "{what}: kept as it was"
        );
        let line = &said.iter().find(|l| l.check == "state").unwrap().message;
        assert!(
            line.starts_with(&format!(
                "the site's state database was damaged: xsmon-poller set it aside as {} ",
                kept[0].display()
            )) && line.ends_with("Remove or move it to clear this"),
            "{what}: {line}"
        );
        let log = service.log();
        let logged = log
            .lines()
            .find(|l| l.contains(" is damaged ("))
            .unwrap_or("");
        assert!(
            logged.contains(sqlite_says)
                && logged.ends_with(&format!(
                    "set aside as {}, a new one starts",
                    kept[0].display()
                )),
            "{what}: {log}"
        );
        // Removed: said no more.
        std::fs::remove_file(&kept[0]).unwrap();
        let lines = raw();
        assert!(!has(&lines, "warning", "", "state"), "{what}: {lines:?}");
        drop(service);
    }
}

/// A state another writer locks, or on a read-only filesystem, is no
/// damage: the service says SQLite's words and moves nothing.
#[test]
fn a_locked_or_read_only_state_is_no_damage() {
    let (dir, config, state) = service_site();
    let service = PollerService::start(&config).unwrap();
    wait_for("a kept cycle", Duration::from_secs(30), || {
        Ok(service.log().contains("site polled").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    // Another writer holds the database past the service's busy timeout.
    let holder = rusqlite::Connection::open(&state).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let said = wait_for("the lock said", Duration::from_secs(60), || {
        let log = service.log();
        Ok(log
            .lines()
            .find(|l| l.contains("could not be polled or kept") && l.contains("database is locked"))
            .map(str::to_string))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
    drop(holder);
    assert!(!service.log().contains("is damaged"), "{said}");
    assert!(xsmon_tests::set_aside_beside(&state).is_empty());
    drop(service);

    // Read-only: the service cannot open it, says so, exits, moves nothing.
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind -o ro \"$DIR\" \"$DIR\" && exec \"$@\"")
        .arg("sh")
        .arg(xsmon_tests::bin("poller"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("DIR", dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains("attempt to write a readonly database")
            || log.contains("Read-only file system"),
        "{log}"
    );
    assert!(!log.contains("is damaged"), "{log}");
    assert!(xsmon_tests::set_aside_beside(&state).is_empty());
}
