//! guest-probe's cost per run, and the wall time of the gateway check.
//!
//!     cargo bench -p xsmon-tests --bench probe
//!
//! 1. CPU time and peak RSS of one run without ping waits (no gateways,
//!    state present so no first-run sample), over 20 runs, writing to a real
//!    oxenstored; CPU from getrusage, peak RSS from GNU time.
//! 2. Wall time of a run with 4 gateways of which 2 are unreachable and a
//!    1 s timeout.
//!
//! Prints figures; asserts nothing about speed.

use std::process::Command;
use std::time::Instant;

use xsmon_tests::{add_domain, bin_dir, measure, probe_root, Netns, Xenstored};

/// CPU seconds of all waited-for descendants so far.
fn children_cpu() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn main() {
    let probe = bin_dir().join("guest-probe");
    assert!(
        probe.exists(),
        "build first: cargo build --release -p guest-probe"
    );
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    add_domain(&mut c, 5, "bench").unwrap();
    let root = probe_root("xen-guest", "a", &[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let cfg = tmp.path().join("probe.toml");
    std::fs::write(&cfg, "[net]\nfrom_routes = false\n").unwrap();
    let run = |cfg: &std::path::Path, root: &std::path::Path| {
        let st = Command::new(&probe)
            .args([
                "--root",
                root.to_str().unwrap(),
                "--state-file",
                state.to_str().unwrap(),
            ])
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--domain-path",
                "/local/domain/5",
            ])
            .args(["--xenstore", xs.socket().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    run(&cfg, root.path()); // writes the state file

    let runs = 20;
    let mut per_run = Vec::new();
    let mut maxrss_kib = 0;
    for _ in 0..runs {
        let cpu_before = children_cpu();
        let m = measure(
            &probe,
            &[
                "--root",
                root.path().to_str().unwrap(),
                "--state-file",
                state.to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
                "--domain-path",
                "/local/domain/5",
                "--xenstore",
                xs.socket().to_str().unwrap(),
            ],
        )
        .unwrap();
        assert!(m.success);
        // getrusage has microsecond resolution where GNU time has 10 ms;
        // it includes GNU time's own (tiny) share.
        per_run.push(children_cpu() - cpu_before);
        maxrss_kib = maxrss_kib.max(m.max_rss_kib);
    }
    per_run.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "guest-probe, {runs} runs without ping waits (binary {}):",
        probe.display()
    );
    println!(
        "  CPU per run: median {:.2} ms, max {:.2} ms; peak RSS of any run {:.1} MiB",
        per_run[runs / 2] * 1000.0,
        per_run[runs - 1] * 1000.0,
        maxrss_kib as f64 / 1024.0
    );

    let ns = Netns::create().expect("network namespace (run as root)");
    let gw_root = probe_root("xen-guest", "a", &[]).unwrap();
    let cfg2 = tmp.path().join("probe2.toml");
    std::fs::write(
        &cfg2,
        format!(
            "[net]\nfrom_routes = false\ntimeout_ms = 1000\ngateways = [\"127.0.0.1\", \"{}\", \"{}\", \"{}\"]\n",
            ns.ns_ip,
            ns.unused_ip,
            ns.unused_ip.replace(".99", ".98")
        ),
    )
    .unwrap();
    let mut walls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        run(&cfg2, gw_root.path());
        walls.push(t.elapsed().as_secs_f64());
    }
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  4 gateways (2 unreachable), 1 s timeout: wall median {:.3} s, max {:.3} s over 5 runs",
        walls[2], walls[4]
    );
}
