//! guest-probe's cost per run, and the wall time of the gateway check.
//!
//!     cargo bench -p xsmon-tests --bench probe
//!
//! 1. CPU time and peak RSS of one run without ping waits (no gateways,
//!    state present so no first-run sample), over 20 runs, writing to a real
//!    oxenstored; from getrusage of each child.
//! 2. Wall time of a run with 4 gateways of which 2 are unreachable and a
//!    1 s timeout.
//!
//! Prints figures; asserts nothing about speed.

use std::process::Command;
use std::time::Instant;

use nix::sys::resource::{getrusage, UsageWho};
use xsmon_tests::{add_domain, bin_dir, probe_root, Netns, Xenstored};

fn children_usage() -> (f64, i64) {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let cpu = u.user_time().tv_sec() as f64
        + u.user_time().tv_usec() as f64 / 1e6
        + u.system_time().tv_sec() as f64
        + u.system_time().tv_usec() as f64 / 1e6;
    (cpu, u.max_rss())
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
    let (cpu0, _) = children_usage();
    let mut per_run = Vec::new();
    let mut last = cpu0;
    for _ in 0..runs {
        run(&cfg, root.path());
        let (cpu, _) = children_usage();
        per_run.push(cpu - last);
        last = cpu;
    }
    let (_, maxrss_kib) = children_usage();
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
