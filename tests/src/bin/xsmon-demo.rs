//! The main job on one machine: a real Xen host (Debian's hypervisor and
//! kernel under QEMU, `scripts/xen-lab`: Debian 12's Xen 4.17, which
//! `scripts/demo` asks for, or `XSMON_LAB_XEN`'s; Xen's C xenstored, where
//! the tests' lab runs oxenstored) with real PV and PVH guests, beside three
//! simulated dom0s with real oxenstored, host-collector and
//! snmpd (each in its own network namespace) whose guests are filled by the
//! real guest-probe from /proc fixtures; then the real poller's outputs
//! over all four, the report for humans last. Run it through `scripts/demo`,
//! which installs and builds first.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xsmon_tests::bin;
use xsmon_tests::cluster::{demo_specs, SimCluster, DEMO_FINDINGS};
use xsmon_tests::xenlab::{
    base64_decode, scenarios, LabAlerts, LabGuest, LabSite, Xenstored, LAB_DOM0,
};

fn step(title: &str) {
    println!("\n== {title}");
}

/// The real dom0's guests: a healthy PV and PVH pair, one to pause, one
/// whose kernel will crash (kept, `on_crash = "preserve"`), and a hostile
/// one.
fn lab_guests() -> Vec<LabGuest> {
    let mut v = vec![
        LabGuest::new("web02", "pv", 1),
        LabGuest::new("db02", "pvh", 2),
        LabGuest::new("pause02", "pv", 3),
        LabGuest::new("crash02", "pv", 4),
        LabGuest::new("evil02", "pv", 5),
    ];
    for g in &mut v {
        g.probe_every = 5;
    }
    v
}

fn lab_guest<'a>(guests: &'a [LabGuest], name: &str) -> Result<&'a LabGuest> {
    guests
        .iter()
        .find(|g| g.name == name)
        .with_context(|| format!("no lab guest {name}"))
}

/// What the real dom0 must report: the hypervisor's view of the paused
/// and the crashed guest, the hostile guest's garbage; the healthy PV and
/// PVH guests have no finding.
const LAB_FINDINGS: &[(&str, &str, &str, &str)] = &[
    ("error", LAB_DOM0, "crash02", "domain"),
    ("error", LAB_DOM0, "evil02", "probe"),
    ("warning", LAB_DOM0, "pause02", "domain"),
];

/// Cycles of the real dom0 the chart of a real guest shows at least: more
/// than a few points of real figures. dom0 collects every 5 s in the
/// background from the moment its guests report (its cron, faster), while
/// the scenario runs.
const LAB_CYCLES: usize = 8;

fn main() -> Result<()> {
    let started = Instant::now();
    step("booting a real Xen host under QEMU (in the background) and a simulated site beside it");
    let guests = lab_guests();
    let lab = std::thread::scope(|s| -> Result<(LabSite, SimCluster)> {
        let lab = s.spawn(|| {
            let refs: Vec<&LabGuest> = guests.iter().collect();
            LabSite::boot_with(Xenstored::C, &refs)
        });
        let site = SimCluster::build(demo_specs(), 2000, &|m| println!("   {m}"))
            .context("building the simulated site")?;
        let lab = lab
            .join()
            .map_err(|_| anyhow::anyhow!("the lab's thread panicked"))?
            .context("booting the Xen lab")?;
        Ok((lab, site))
    });
    let (lab, site) = lab?;
    println!(
        "   real Xen {}: dom0 up {:.1} s after QEMU started ({}), {} guests reporting {:.1} s after that",
        lab.lab.xen_version,
        lab.lab.boot_time.as_secs_f64(),
        lab.lab.accel,
        guests.len(),
        lab.ready_after.as_secs_f64()
    );
    add_lab_to_site(&lab, &site, &guests)?;
    lab_scenario(&lab, &guests)?;
    println!("   shared config directory {}:", site.config_dir.display());
    for d in ["xen01", "xen02", "xen03"] {
        let mut cfgs: Vec<String> = std::fs::read_dir(site.config_dir.join(d))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        cfgs.sort();
        println!("     {d}/  {}", cfgs.join(" "));
    }

    step("host-collector: two more collection cycles on each simulated dom0");
    for _ in 0..2 {
        site.collect_all()?;
    }
    println!("   done; each dom0 keeps its history in SQLite");

    step("host-collector status on the real dom0 (what Xen itself says of every domain)");
    print!("{}", lab.lab.dom0_ok("host-collector status")?);

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

    step("host-collector history web02 --since 5m --plot (a real PV guest on the real dom0)");
    let charts = xsmon_tests::repo_root().join("target/xsmon-demo");
    std::fs::create_dir_all(&charts)?;
    let chart = charts.join("web02.png");
    let png = lab.lab.dom0_ok(
        "host-collector history web02 --since 5m --plot /tmp/web02.png >/dev/null && base64 /tmp/web02.png",
    )?;
    std::fs::write(&chart, base64_decode(&png).context("the chart's base64")?)?;
    let points = lab.lab.dom0_ok(
        "host-collector history web02 --since 5m --check mem --format csv | grep -c used_pct",
    )?;
    println!(
        "   chart: {}: {} cycles of a real guest's figures, with Xen's own CPU %, memory and vif counters",
        chart.display(),
        points.trim()
    );

    step("checking the findings against the scenario");
    let got: Vec<(String, String, String, String)> = raw_text
        .lines()
        .map(|l| xsmon_proto::rawline::parse(l).map(|r| (r.severity, r.dom0, r.host, r.check)))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("unparseable raw line: {e}"))?;
    let mut got = got;
    let mut want: Vec<(String, String, String, String)> = DEMO_FINDINGS
        .iter()
        .chain(LAB_FINDINGS)
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    got.sort();
    want.sort();
    if got != want {
        bail!("the poller's findings differ from the scenario:\n got  {got:?}\n want {want:?}");
    }
    println!(
        "   all {} expected findings present, nothing else",
        want.len()
    );
    // Last, what an admin reads first: the report of the whole site.
    step("poller report (for humans): the whole site, errors first");
    let report = site.poller(&["report"]).output()?;
    print!("{}", String::from_utf8_lossy(&report.stdout));
    println!(
        "\n== finished in {:.1} s; stopping every daemon",
        started.elapsed().as_secs_f64()
    );
    drop(site);
    drop(lab);
    Ok(())
}

/// The real dom0 joins the site: its folder in the shared config directory
/// (its guests' .cfg files) and its address in the poller's config.
fn add_lab_to_site(lab: &LabSite, site: &SimCluster, guests: &[LabGuest]) -> Result<()> {
    let dir = site.config_dir.join(LAB_DOM0);
    std::fs::create_dir_all(&dir)?;
    for g in guests {
        std::fs::write(dir.join(format!("{}.cfg", g.name)), g.xl_config())?;
    }
    let mut cfg = std::fs::read_to_string(&site.poller_config)?;
    cfg.push_str(&format!("{LAB_DOM0} = \"{}\"\n", lab.lab.snmp_target()));
    xsmon_tests::write_private(&site.poller_config, cfg)?;
    Ok(())
}

/// On the real dom0: pause one guest, crash another's kernel, and collect
/// every 5 s while the guests report, for the chart.
fn lab_scenario(lab: &LabSite, guests: &[LabGuest]) -> Result<()> {
    let (web, db) = (lab_guest(guests, "web02")?, lab_guest(guests, "db02")?);
    let daemon = lab.lab.dom0_ok("ps | grep '[x]enstored'")?;
    println!(
        "   dom0's xenstore daemon: {}",
        daemon.lines().next().unwrap_or("?").trim()
    );
    step("real Xen: web02 (PV) and db02 (PVH) report every check ok through their kernels' xenbus");
    scenarios::healthy(lab, &[web, db])?;
    println!("   ok, also through /proc/xen/xenbus (kernels before 3.14)");
    step("real Xen: xl save web02, xl restore: the same VM in a new domain, not a reboot");
    let domid = lab.domid("web02")?;
    scenarios::save_and_restore(lab, web)?;
    println!(
        "   web02 went on in domain {} (was {domid}); dom0 said: restored or migrated, the same boot of its kernel",
        lab.domid("web02")?
    );
    // dom0's cron, every 5 s instead of 5 minutes, from here on (the
    // restore's words belong to the first cycle after it, which the
    // scenario ran itself); a cycle the demo asks for meanwhile waits for
    // the running one (the collector's lock).
    lab.lab.dom0_ok(
        "( while :; do host-collector collect >>/var/log/collector.log 2>&1; sleep 5; done ) >/dev/null 2>&1 &",
    )?;
    step("real Xen: evil02 writes into web02's, dom0's and the 2010 shared area, then garbage into its own");
    scenarios::hostile(lab, lab_guest(guests, "evil02")?, web)?;
    println!("   the C xenstored refused all three; evil02 alone is reported, web02 is untouched");
    step("the admin's end: poller serve polling the real dom0 every 2 s, pushing into a real Nagios 4");
    // As the packages run them: the watch in dom0 (a cycle on each domain
    // event), the poller service and Nagios with `poller nagios-objects`.
    lab.lab
        .dom0_ok("host-collector watch >/var/log/watch.log 2>&1 & echo $! >/run/watch.pid")?;
    let alerts = LabAlerts::start(lab)?;
    println!("   Nagios holds a result for every guest of the real dom0");
    step("real Xen: xl pause pause02; a kernel crash in crash02 (echo c > /proc/sysrq-trigger)");
    lab.lab.dom0_ok("xl pause pause02")?;
    let crash = lab_guest(guests, "crash02")?;
    let crashed_unix = LabAlerts::now();
    let crashed_at = Instant::now();
    lab.lab.crash_kernel(crash)?;
    let critical = alerts
        .wait_service_alert("crash02", "CRITICAL", crashed_unix, Duration::from_secs(90))
        .context("crash02's crash in Nagios")?;
    println!(
        "   crash to nagios critical: {:.1} s (Nagios's log: {})",
        crashed_at.elapsed().as_secs_f64(),
        critical.output.lines().next().unwrap_or_default()
    );
    lab.lab
        .wait_for("crash02 to crash", Duration::from_secs(60), || {
            Ok(lab.lab.xl_state("crash02")?.as_deref() == Some("---sc-"))
        })?;
    print!("{}", lab.lab.dom0_ok("xl list")?);
    let cycles = || -> Result<usize> {
        let n = lab.lab.dom0_ok(
            "host-collector history web02 --since 10m --check mem --format csv | grep -c used_pct || true",
        )?;
        Ok(n.trim().parse().unwrap_or(0))
    };
    lab.lab.wait_for(
        &format!("{LAB_CYCLES} of dom0's cycles with web02's figures"),
        Duration::from_secs(180),
        || Ok(cycles()? >= LAB_CYCLES),
    )?;
    lab.collect()?;
    println!(
        "   dom0 collected every 5 s meanwhile (its cron, faster): {} cycles of web02's figures",
        cycles()?
    );
    Ok(())
}
