//! A damaged history (a garbage page, a truncated file, a wrong file in
//! its place) is set aside, never deleted, and collecting goes on in a new
//! one, with a finding of dom0's own until the file is removed; a full
//! disk, a read-only filesystem and another writer's lock are no damage:
//! they fail the cycle as before and move nothing.

use std::path::PathBuf;
use std::process::Command;

use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{add_domain, sample_run, write_run};

use crate::now;

/// A dom0 with two guests reporting and a first cycle stored.
fn dom0_with_history() -> Dom0 {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    for (id, name) in [(1, "web01"), (2, "db01")] {
        add_domain(&mut c, id, name).unwrap();
        write_run(&mut c, id, &sample_run(now(), 6, Status::Ok)).unwrap();
    }
    d.collect();
    d
}

fn history(d: &Dom0) -> PathBuf {
    d.dir.path().join("history.db")
}

/// The files set aside beside the history.
fn set_aside(d: &Dom0) -> Vec<PathBuf> {
    xsmon_tests::set_aside_beside(&history(d))
}

/// The damage done to the closed database file (its WAL, fully
/// checkpointed when the collector closed it, removed with it, as a disk
/// that lost the file would lose it too).
fn damage(d: &Dom0, how: &str) -> Vec<u8> {
    let db = history(d);
    let page: u64 = d
        .db()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let host_root: u64 = d
        .db()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'host'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    let mut bytes = std::fs::read(&db).unwrap();
    match how {
        // The page every cycle reads first (the hosts' b-tree root).
        "garbage page" => {
            let at = ((host_root - 1) * page) as usize;
            bytes[at..at + page as usize].fill(0x5a);
        }
        "truncated" => bytes.truncate(2 * page as usize),
        "wrong file" => bytes = b"#!/bin/sh\necho this is not a database\n".repeat(200),
        _ => unreachable!(),
    }
    std::fs::write(&db, &bytes).unwrap();
    bytes
}

#[test]
fn a_damaged_history_is_set_aside_and_collecting_goes_on() {
    for how in ["garbage page", "truncated", "wrong file"] {
        let d = dom0_with_history();
        let damaged = damage(&d, how);
        let out = d.collect_at(None);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{how}: the cycle failed: {log}");
        // Kept byte for byte, named by when, and said in the log.
        let kept = set_aside(&d);
        assert_eq!(kept.len(), 1, "{how}: {kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), damaged, "{how}");
        let kept_path = kept[0].display().to_string();
        assert!(
            log.contains("is damaged (")
                && log.contains(&format!("set aside as {kept_path}, a new history starts")),
            "{how}: {log}"
        );
        // The new history has the guests, and snmp-extend serves them with
        // dom0's finding naming the file.
        let latest = d.latest();
        assert!(
            latest.iter().any(|h| h.0 == "web01") && latest.iter().any(|h| h.0 == "db01"),
            "{how}: {latest:?}"
        );
        let (served, ok) = d.served();
        assert!(ok, "{how}: {served}");
        let served = served.replace("\\s", " ");
        let finding = served
            .lines()
            .find(|l| l.contains("history database damaged"))
            .unwrap_or_else(|| panic!("{how}: no finding served:\n{served}"));
        assert!(finding.contains(&kept_path), "{how}: {finding}");
        assert!(
            finding.contains("Remove or move it to clear this"),
            "{how}: {finding}"
        );
        // The next cycle keeps saying it; removing the file clears it.
        d.collect();
        assert!(
            d.served().0.contains("history\\sdatabase\\sdamaged"),
            "{how}"
        );
        std::fs::remove_file(&kept[0]).unwrap();
        d.collect();
        let (served, _) = d.served();
        assert!(
            !served.contains("history\\sdatabase\\sdamaged"),
            "{how}: {served}"
        );
        assert_eq!(set_aside(&d).len(), 0);
    }
}

/// Runs a collect of `d` in a mount namespace of its own, after `setup`
/// (shell, with $DIR the dom0's directory) has been run there. Returns
/// the collect's exit code, its stderr, and the names in $DIR after it as
/// the namespace saw them.
fn collect_in_namespace(d: &Dom0, setup: &str) -> (Option<i32>, String, Vec<String>) {
    let collect = d.cmd(&[
        "collect",
        "--xenstore",
        d.xs.socket().to_str().unwrap(),
        "--root",
        d.root.path().to_str().unwrap(),
    ]);
    let mut argv = vec![collect.get_program().to_string_lossy().into_owned()];
    argv.extend(collect.get_args().map(|a| a.to_string_lossy().into_owned()));
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "set -e\n{setup}\nset +e\n\"$@\"\necho \"rc=$?\"\nls \"$DIR\""
        ))
        .arg("sh")
        .args(&argv)
        .env("DIR", d.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let rc = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rc="))
        .and_then(|c| c.parse().ok());
    assert!(rc.is_some(), "the namespace's setup failed: {log}{stdout}");
    let names = stdout
        .lines()
        .filter(|l| !l.starts_with("rc="))
        .map(str::to_string)
        .collect();
    (rc, log, names)
}

fn assert_failed_without_moving(rc: Option<i32>, log: &str, names: &[String], said: &str) {
    assert_eq!(rc, Some(1), "{log}");
    assert!(log.contains(said), "{said:?} not in: {log}");
    assert!(!log.contains("damaged"), "{log}");
    assert!(names.iter().any(|n| n == "history.db"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains(".damaged-")), "{names:?}");
}

#[test]
fn a_full_disk_is_no_damage() {
    let d = dom0_with_history();
    // The history and the config on a small tmpfs over the directory,
    // filled up before the cycle but for 36 KiB: SQLite's shared memory
    // (32 KiB) fits, the cycle's WAL does not.
    let (rc, log, names) = collect_in_namespace(
        &d,
        "keep=$(mktemp -d)\n\
         cp \"$DIR/history.db\" \"$DIR/collector.toml\" \"$keep/\"\n\
         mount -t tmpfs -o size=4m tmpfs \"$DIR\"\n\
         cp \"$keep/history.db\" \"$keep/collector.toml\" \"$DIR/\"\n\
         rm -r \"$keep\"\n\
         dd if=/dev/zero of=\"$DIR/filler\" bs=4k 2>/dev/null || true\n\
         truncate -s -36K \"$DIR/filler\"",
    );
    assert_failed_without_moving(rc, &log, &names, "database or disk is full");
    // The real history was never touched, and takes the next cycle.
    assert_eq!(set_aside(&d), Vec::<PathBuf>::new());
    d.collect();
}

#[test]
fn a_read_only_filesystem_is_no_damage() {
    let d = dom0_with_history();
    let (rc, log, names) = collect_in_namespace(&d, "mount --bind -o ro \"$DIR\" \"$DIR\"");
    assert_failed_without_moving(rc, &log, &names, "Read-only file system");
    d.collect();
}

#[test]
fn another_writers_lock_is_no_damage() {
    let d = dom0_with_history();
    let holder = d.db();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = d.collect_at(None);
    drop(holder);
    let log = String::from_utf8_lossy(&out.stderr);
    let names: Vec<String> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_failed_without_moving(out.status.code(), &log, &names, "database is locked");
    let ok: String = d
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    d.collect();
}
