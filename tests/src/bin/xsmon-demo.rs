//! The main job on one machine: three simulated dom0s with real oxenstored,
//! host-collector and snmpd (each in its own network namespace), guests
//! filled by the real guest-probe, then the real poller's outputs.
//! Run it through `scripts/demo`, which installs and builds first.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xsmon_tests::bin;
use xsmon_tests::cluster::{demo_specs, SimCluster, DEMO_FINDINGS};

fn step(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<()> {
    let started = Instant::now();
    step("building a simulated Xen site (nothing faked but the hypervisor)");
    let site = SimCluster::build(demo_specs(), 2000, &|m| println!("   {m}"))
        .context("building the site")?;
    println!("   shared config directory {}:", site.config_dir.display());
    for d in ["xen01", "xen02", "xen03"] {
        let mut cfgs: Vec<String> = std::fs::read_dir(site.config_dir.join(d))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        cfgs.sort();
        println!("     {d}/  {}", cfgs.join(" "));
    }

    step("host-collector: two more collection cycles on each dom0");
    for _ in 0..2 {
        site.collect_all()?;
    }
    println!("   done; each dom0 keeps its history in SQLite");

    step("poller report (for humans)");
    let report = site.poller(&["report"]).output()?;
    print!("{}", String::from_utf8_lossy(&report.stdout));

    step("poller raw (for scripts)");
    let raw = site.poller(&["raw"]).output()?;
    let raw_text = String::from_utf8_lossy(&raw.stdout).into_owned();
    print!("{raw_text}");

    step("poller nagios (a Nagios plugin)");
    let nagios = site.poller(&["nagios"]).output()?;
    print!("{}", String::from_utf8_lossy(&nagios.stdout));
    println!(
        "   exit code {} (2 = CRITICAL)",
        nagios.status.code().unwrap_or(-1)
    );

    step("poller nagios --guest web01 (one guest's service, with its figures as performance data)");
    let scoped = site.poller(&["nagios", "--guest", "web01"]).output()?;
    let scoped_text = String::from_utf8_lossy(&scoped.stdout);
    print!("{scoped_text}");
    if !scoped_text.contains("'mem_used'=") {
        bail!("no performance data for web01: {scoped_text}");
    }

    step("host-collector history app01 --since 1h (on xen01)");
    let xen01 = site
        .dom0s
        .iter()
        .find(|d| d.name == "xen01")
        .context("xen01")?;
    let hist = Command::new(bin("host-collector"))
        .args(["--config", "/dev/null", "--db"])
        .arg(&xen01.db)
        .args(["history", "app01", "--since", "1h", "--check", "swap"])
        .output()?;
    print!("{}", String::from_utf8_lossy(&hist.stdout));
    if !hist.status.success() {
        bail!("history failed: {}", String::from_utf8_lossy(&hist.stderr));
    }

    step("host-collector history app01 --since 1h --plot (a chart of the same)");
    let charts = xsmon_tests::repo_root().join("target/xsmon-demo");
    std::fs::create_dir_all(&charts)?;
    let chart = charts.join("app01.png");
    let plot = Command::new(bin("host-collector"))
        .args(["--config", "/dev/null", "--db"])
        .arg(&xen01.db)
        .args(["history", "app01", "--since", "1h", "--plot"])
        .arg(&chart)
        .output()?;
    if !plot.status.success() {
        bail!("plot failed: {}", String::from_utf8_lossy(&plot.stderr));
    }
    println!(
        "   chart: {} (a few minutes of history: the demo's site is new)",
        String::from_utf8_lossy(&plot.stdout).trim()
    );

    step("checking the findings against the scenario");
    let got: Vec<(String, String, String, String)> = raw_text
        .lines()
        .map(|l| xsmon_proto::rawline::parse(l).map(|r| (r.severity, r.dom0, r.host, r.check)))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("unparseable raw line: {e}"))?;
    let want: Vec<(String, String, String, String)> = DEMO_FINDINGS
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    if got != want {
        bail!("the poller's findings differ from the scenario:\n got  {got:?}\n want {want:?}");
    }
    println!(
        "   all {} expected findings present, nothing else",
        want.len()
    );
    println!(
        "\n== finished in {:.1} s; stopping every daemon",
        started.elapsed().as_secs_f64()
    );
    drop(site);
    Ok(())
}
