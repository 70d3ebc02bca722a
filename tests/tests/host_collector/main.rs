//! host-collector end to end: real oxenstored, guests written by the real
//! guest-probe or raw writes (hostile cases), real SQLite.

mod cycle;
mod damage;
mod guests;
mod history;

use std::process::Command;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{bin, probe_root};

pub(crate) fn now() -> i64 {
    chrono_now()
}

pub(crate) fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn run_probe(d: &Dom0, domid: u32, config: &str) {
    let root = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.toml"),
        format!("[cpu]\nfirst_sample_ms = 100\n{config}"),
    )
    .unwrap();
    let out = Command::new(bin("guest-probe"))
        .args(["--root", root.path().to_str().unwrap()])
        .args(["--config", tmp.path().join("p.toml").to_str().unwrap()])
        .args(["--state-file", tmp.path().join("s").to_str().unwrap()])
        .args(["--xenstore", d.xs.socket().to_str().unwrap()])
        .args(["--domain-path", &format!("/local/domain/{domid}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
