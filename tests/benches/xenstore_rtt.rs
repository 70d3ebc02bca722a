//! Round-trip time of a xenstore read through xsmon's client over the unix
//! socket, against one `xenstore-read` process per key (the original
//! design's way), both against the same real oxenstored, in one run.
//!
//!     cargo bench -p xsmon-tests --bench xenstore_rtt
//!
//! Prints figures; asserts nothing about speed (targets live in the notes).

use std::time::{Duration, Instant};

use xsmon_tests::Xenstored;
use xsmon_xenstore::Store;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let reads: usize = std::env::var("XSMON_BENCH_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let procs: usize = (reads / 20).clamp(50, 500);
    let xs = Xenstored::start().expect("start oxenstored");
    let mut c = xs.client().expect("connect");
    for i in 0..100 {
        c.write(&format!("/bench/key{i}"), format!("value-{i}").as_bytes())
            .unwrap();
    }

    let mut times = Vec::with_capacity(reads);
    for i in 0..reads {
        let path = format!("/bench/key{}", i % 100);
        let t = Instant::now();
        let v = c.read(&path).unwrap();
        times.push(t.elapsed());
        assert!(!v.is_empty());
    }
    times.sort();
    let median = percentile(&times, 0.5);
    let p99 = percentile(&times, 0.99);

    let mut ptimes = Vec::with_capacity(procs);
    for i in 0..procs {
        let t = Instant::now();
        let out = xs
            .tool("xenstore-read")
            .arg(format!("/bench/key{}", i % 100))
            .output()
            .unwrap();
        ptimes.push(t.elapsed());
        assert!(out.status.success());
    }
    ptimes.sort();
    let pmedian = percentile(&ptimes, 0.5);

    // The same reads, pipelined (what host-collector does).
    let reqs: Vec<xsmon_xenstore::Request> = (0..reads)
        .map(|i| xsmon_xenstore::Request::Read(format!("/bench/key{}", i % 100)))
        .collect();
    let t = Instant::now();
    let replies = c.pipeline(&reqs);
    let pipelined = t.elapsed();
    assert!(replies.iter().all(|r| r.is_ok()));

    println!("xenstore read round trip over the unix socket, real oxenstored");
    println!(
        "  client, {reads} reads:          median {:>9.1?}  p99 {:>9.1?}",
        median, p99
    );
    println!(
        "  xenstore-read, {procs} processes: median {:>9.1?}  p99 {:>9.1?}",
        pmedian,
        percentile(&ptimes, 0.99)
    );
    println!(
        "  client, {reads} reads pipelined:  {:>9.1?} per read ({:.1?} in all)",
        pipelined / reads as u32,
        pipelined
    );
    println!(
        "  ratio (process per key / client), medians: {:.0}x",
        pmedian.as_secs_f64() / median.as_secs_f64()
    );
}
