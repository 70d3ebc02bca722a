//! The pipeline on a real hypervisor: Debian's Xen 4.17 under QEMU
//! (`scripts/xen-lab`, harness `xsmon_tests::xenlab`), a PV dom0 running
//! oxenstored, xenconsoled, netback, snmpd with xsmon's extend lines and
//! host-collector, and real PV and PVH domUs running the static
//! guest-probe through their own kernels' xenbus. The host's poller reads
//! it all over SNMP.
//!
//! One lab is booted for this file (software emulation: ~35 s to dom0, ~20 s
//! per guest); every test uses its own guests, so they run side by side.
//! A lab that does not boot fails every test with its consoles.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use xsmon_proto::rawline::RawLine;
use xsmon_tests::xenlab::{scenarios, LabGuest, LabSite, Xenstored};

fn guests() -> &'static Guests {
    static G: OnceLock<Guests> = OnceLock::new();
    G.get_or_init(|| {
        let mut sick = LabGuest::new("sick01", "pv", 3);
        // A gateway nobody answers: the net check's error.
        sick.gateway = "10.77.0.254".into();
        // Swap on a vbd dom0 backs with one of its RAM disks.
        sick.swap_disk = Some("/dev/ram1");
        let mut crash = LabGuest::new("crash01", "pv", 5);
        crash.on_crash = "destroy";
        let mut noprobe = LabGuest::new("bare01", "pv", 14);
        // No probe at all, as on a guest that cannot run it.
        noprobe.probe_every = 0;
        Guests {
            pv: LabGuest::new("pv01", "pv", 1),
            pvh: LabGuest::new("pvh01", "pvh", 2),
            sick,
            crash,
            life: LabGuest::new("life01", "pv", 6),
            hostile: LabGuest::new("evil01", "pv", 7),
            saved: LabGuest::new("save01", "pv", 8),
            moved: LabGuest::new("move01", "pvh", 9),
            paused: LabGuest::new("pause01", "pv", 10),
            crashed: LabGuest::new("crashp01", "pv", 11),
            quiet: LabGuest::new("quiet01", "pv", 12),
            noprobe,
        }
    })
}

struct Guests {
    pv: LabGuest,
    pvh: LabGuest,
    sick: LabGuest,
    crash: LabGuest,
    life: LabGuest,
    hostile: LabGuest,
    saved: LabGuest,
    moved: LabGuest,
    paused: LabGuest,
    crashed: LabGuest,
    quiet: LabGuest,
    noprobe: LabGuest,
}

impl Guests {
    fn all(&self) -> Vec<&LabGuest> {
        vec![
            &self.pv,
            &self.pvh,
            &self.sick,
            &self.crash,
            &self.life,
            &self.hostile,
            &self.saved,
            &self.moved,
            &self.paused,
            &self.crashed,
            &self.quiet,
            &self.noprobe,
        ]
    }
}

/// The one lab of this file, booted by the first test that needs it, with
/// every test's guests created side by side and running their probes.
fn site() -> &'static LabSite {
    static SITE: OnceLock<std::result::Result<LabSite, String>> = OnceLock::new();
    let site = SITE.get_or_init(|| {
        LabSite::boot_with(Xenstored::Oxenstored, &guests().all()).map_err(|e| format!("{e:#}"))
    });
    match site {
        Ok(s) => s,
        Err(e) => panic!("the Xen lab did not come up:\n{e}"),
    }
}

fn lines_for<'a>(raw: &'a [RawLine], host: &str) -> Vec<&'a RawLine> {
    raw.iter().filter(|l| l.host == host).collect()
}

fn probe_runs(site: &LabSite, g: &LabGuest, n: usize) -> Result<()> {
    site.probe_runs(g, n)
}

fn collected(site: &LabSite, name: &str) -> Result<serde_json::Value> {
    site.collected(name)
}

fn domid_of(site: &LabSite, name: &str) -> Result<u32> {
    site.domid(name)
}

/// Scenario 1: healthy PV and PVH guests, every check ok, through the
/// guest kernel's /dev/xen/xenbus; then, with it removed, through
/// /proc/xen/xenbus as on kernels before 3.14.
#[test]
fn healthy_pv_and_pvh_guests_report_every_check_ok() -> Result<()> {
    let g = guests();
    scenarios::healthy(site(), &[&g.pv, &g.pvh])
}

/// Scenario 2: a full disk, swapping, and a dead gateway, each reported
/// for that guest with its own check.
#[test]
fn a_sick_guest_reports_a_full_disk_swapping_and_a_dead_gateway() -> Result<()> {
    let site = site();
    let g = &guests().sick;
    // Fill its disk; then, in the background, allocate 100 MB at a time
    // in a guest with 110 MB (dd's buffer): the kernel swaps to the vbd.
    site.lab.guest_ok(
        g,
        "dd if=/dev/zero of=/data/fill bs=1M 2>/dev/null; sync; \
         (for i in $(seq 12); do dd if=/dev/zero of=/dev/null bs=100M count=1; done) >/dev/null 2>&1 &",
    )?;
    // One run that may have started before, one wholly after.
    probe_runs(site, g, 2)?;
    site.collect()?;
    let raw = site.raw()?;
    let mine = lines_for(&raw, &g.name);
    let has = |check: &str, sev: &str| {
        mine.iter()
            .any(|l| l.check.starts_with(check) && l.severity == sev)
    };
    ensure!(has("disk", "error"), "full disk: {mine:?}");
    ensure!(has("net", "error"), "dead gateway: {mine:?}");
    ensure!(mine.iter().any(|l| l.check == "swap"), "swapping: {mine:?}");
    let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
    ensure!(code == 2 && out.starts_with("XSMON CRITICAL"), "{out}");
    let j = site.guest_json(&g.name)?.context("sick01 in json")?;
    ensure!(j["status"] == "error", "{j}");
    Ok(())
}

/// Scenario 3 (with the end of the silent-probe test, which destroys its
/// guest with `xl destroy`): a kernel crash with on_crash = "destroy": the
/// guest is down (it has a config under this dom0).
#[test]
fn a_guest_crashed_and_destroyed_is_down() -> Result<()> {
    let site = site();
    let g = &guests().crash;
    probe_runs(site, g, 1)?;
    // The guest's kernel panics; the agent's connection dies with it.
    let _ = site.lab.guest_within(g, "echo c > /proc/sysrq-trigger", 5);
    site.lab
        .wait_for("crash01 to be destroyed", Duration::from_secs(60), || {
            Ok(site.lab.xl_state(&g.name)?.is_none())
        })?;
    expect_down(site, &g.name)
}

/// The guest is `down`: an error line saying it is not running, Nagios
/// CRITICAL for it.
fn expect_down(site: &LabSite, name: &str) -> Result<()> {
    site.lab.wait_for(
        &format!("{name} to be down"),
        Duration::from_secs(60),
        || Ok(collected(site, name)?["probe"] == "down"),
    )?;
    let mine = site.raw_for(name)?;
    ensure!(
        mine.iter()
            .any(|l| l.severity == "error" && l.message.contains("not running")),
        "{name}: {mine:?}"
    );
    let (out, code) = site.poll(&["nagios", "--guest", name])?;
    ensure!(code == 2, "{name}: {out}");
    let j = site.guest_json(name)?.context("in json")?;
    ensure!(j["probe"] == "down", "{name}: {j}");
    Ok(())
}

/// Scenarios 4, 5 and 8 on one guest: `xl shutdown` then `xl create`
/// again, `xl reboot`, a reboot from inside, `xl rename`: the same VM
/// (UUID) every time, a new domid each time, one history throughout.
#[test]
fn shutdown_create_reboot_and_rename_keep_one_history() -> Result<()> {
    let site = site();
    let g = &guests().life;
    probe_runs(site, g, 1)?;
    let first = collected(site, &g.name)?;
    let mut domid = domid_of(site, &g.name)?;

    site.lab
        .dom0_within(
            &format!("timeout 120 xl shutdown -w {}", g.name),
            Duration::from_secs(130),
        )?
        .ok("xl shutdown")?;
    // `xl shutdown -w` returns once the domain has shut down; Xen may
    // still be tearing it down (`dying`, a warning) for a cycle or two.
    site.lab.wait_for(
        "life01 to be down after xl shutdown",
        Duration::from_secs(60),
        || Ok(collected(site, &g.name)?["probe"] == "down"),
    )?;
    site.lab.create(g)?;
    site.lab.wait_guest_up(g, Duration::from_secs(120))?;
    let next = domid_of(site, &g.name)?;
    ensure!(next != domid, "xl create again: same domid {domid}");
    domid = next;
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "fresh" && j["uuid"] == first["uuid"],
        "back after xl create: {j}"
    );

    // xl reboot, then a reboot the guest does itself.
    for (how, script) in [("xl reboot", None), ("reboot -f inside", Some("reboot -f"))] {
        match script {
            None => {
                site.lab.dom0_ok(&format!("xl reboot {}", g.name))?;
            }
            Some(s) => {
                let _ = site.lab.guest_within(g, s, 5);
            }
        }
        site.lab.wait_for(
            &format!("{how}: a new domid"),
            Duration::from_secs(90),
            || Ok(domid_of(site, &g.name).is_ok_and(|d| d != domid)),
        )?;
        domid = domid_of(site, &g.name)?;
        site.lab.wait_guest_up(g, Duration::from_secs(120))?;
        let j = collected(site, &g.name)?;
        ensure!(
            j["uuid"] == first["uuid"] && j["domid"] == domid,
            "{how}: {j}"
        );
    }

    // xl rename: the new name is shown, the history follows the UUID.
    site.lab.dom0_ok(&format!("xl rename {} life02", g.name))?;
    let j = collected(site, "life02")?;
    ensure!(j["uuid"] == first["uuid"], "after xl rename: {j}");
    let history = site
        .lab
        .dom0_ok("host-collector history life02 --check cpu --format csv 2>&1")?;
    let rows = history
        .lines()
        .filter(|l| l.contains("load_per_cpu"))
        .count();
    ensure!(
        rows >= 3,
        "the history under the new name holds the runs before it: {history}"
    );
    site.lab.dom0_ok("xl rename life02 life01")?;
    Ok(())
}

/// Scenario 6: `xl save` + `xl restore`: the same VM under a new domid; the
/// report carries the seq note as documented, and no error.
#[test]
fn save_and_restore_continue_the_same_vm() -> Result<()> {
    let site = site();
    let g = &guests().saved;
    probe_runs(site, g, 1)?;
    let before = collected(site, &g.name)?;
    let domid = domid_of(site, &g.name)?;
    site.lab.dom0_ok(&format!(
        "xl save {n} /tmp/{n}.save && xl restore /tmp/{n}.save && rm /tmp/{n}.save",
        n = g.name
    ))?;
    let after_domid = domid_of(site, &g.name)?;
    ensure!(after_domid != domid, "restored under the same domid");
    probe_runs(site, g, 1)?;
    let j = collected(site, &g.name)?;
    ensure!(
        j["uuid"] == before["uuid"] && j["probe"] == "fresh" && j["status"] != "error",
        "after restore: {j}"
    );
    Ok(())
}

/// Scenario 7: live migration to the same host (PVH: PV log-dirty needs
/// shadow paging, which Debian's Xen lacks): no false down, the history
/// follows the UUID.
#[test]
fn live_migration_is_not_a_false_down() -> Result<()> {
    let site = site();
    let g = &guests().moved;
    probe_runs(site, g, 1)?;
    let before = collected(site, &g.name)?;
    let domid = domid_of(site, &g.name)?;
    site.lab.dom0_ok(&format!(
        "xl migrate -s /lab/migrate-here {} localhost 2>&1",
        g.name
    ))?;
    let after = domid_of(site, &g.name)?;
    ensure!(after != domid, "migrated under the same domid");
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] != "down" && j["uuid"] == before["uuid"],
        "right after the migration: {j}"
    );
    probe_runs(site, g, 1)?;
    let j = collected(site, &g.name)?;
    ensure!(j["probe"] == "fresh" && j["status"] != "error", "{j}");
    Ok(())
}

/// Scenario 9: a hostile guest, from inside a real domU: the real xenstored
/// refuses its writes to another domain's area, to dom0's and to the 2010
/// shared path; garbage in its own area is reported for it alone.
#[test]
fn a_hostile_guest_is_refused_and_reported_for_itself() -> Result<()> {
    let g = guests();
    scenarios::hostile(site(), &g.hostile, &g.pvh)
}

/// Scenario 10: xl's CPU times and the vif counters, stored and served as
/// figures.
#[test]
fn xl_cpu_times_and_vif_counters_are_served_as_figures() -> Result<()> {
    let site = site();
    let g = &guests().pvh;
    site.lab
        .guest_ok(g, "ping -c 5 -i 0.2 10.77.0.1 >/dev/null")?;
    site.collect()?;
    let figures = site.lab.dom0_ok("snmp-extend figures")?;
    let recs = xsmon_proto::snmpline::parse_all(&figures)
        .map_err(|e| anyhow::anyhow!("{e}: {figures}"))?;
    let text = format!("{recs:?}");
    let domid = domid_of(site, &g.name)?;
    ensure!(text.contains("cpu_time_s"), "{figures}");
    ensure!(
        figures.contains(&format!("vif{domid}.0")) || figures.contains("vif0"),
        "{figures}"
    );
    let line = figures
        .lines()
        .find(|l| l.starts_with(&format!("M {} ", g.name)) && l.contains("cpu_time_s"))
        .with_context(|| format!("no xen figures for {}: {figures}", g.name))?;
    let secs: f64 = line
        .split(' ')
        .find_map(|f| f.strip_prefix("cpu_time_s="))
        .and_then(|v| v.split("\\s").next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cpu_time_s in {line}"))?;
    if secs <= 0.0 {
        bail!("{}: cpu_time_s {secs}", g.name);
    }
    Ok(())
}

/// The poller's raw lines for one guest's `domain` check (the hypervisor's
/// finding).
fn domain_lines(site: &LabSite, name: &str) -> Result<Vec<RawLine>> {
    Ok(site
        .raw_for(name)?
        .into_iter()
        .filter(|l| l.check == "domain")
        .collect())
}

/// What dom0 sees without the guest (1): a paused guest was reported
/// `fresh` with its last findings; now it is `halted`, a warning that
/// says so, and Nagios says WARNING.
#[test]
fn a_paused_guest_is_never_fresh() -> Result<()> {
    let site = site();
    let g = &guests().paused;
    probe_runs(site, g, 1)?;
    let j = collected(site, &g.name)?;
    ensure!(j["probe"] == "fresh", "before the pause: {j}");
    site.lab.dom0_ok(&format!("xl pause {}", g.name))?;
    let state = site.lab.xl_state(&g.name)?;
    ensure!(
        state
            .as_deref()
            .is_some_and(|s| s.as_bytes().get(2) == Some(&b'p')),
        "xl list after xl pause: {state:?}"
    );
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "halted" && j["domain_state"] == "paused" && j["status"] == "warning",
        "paused: {j}"
    );
    let lines = domain_lines(site, &g.name)?;
    ensure!(
        lines.len() == 1
            && lines[0].severity == "warning"
            && lines[0].message.contains(&format!("xl unpause {}", g.name)),
        "{lines:?}"
    );
    let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
    ensure!(code == 1 && out.starts_with("XSMON WARNING"), "{out}");
    site.lab.dom0_ok(&format!("xl unpause {}", g.name))?;
    site.lab.wait_for(
        "the unpaused guest to be fresh again",
        Duration::from_secs(90),
        || {
            let j = collected(site, &g.name)?;
            Ok(j["domain_state"] != "paused" && j["probe"] == "fresh")
        },
    )?;
    Ok(())
}

/// What dom0 sees without the guest (2): a guest whose kernel crashed
/// with on_crash = "preserve" (`---sc-`) was `fresh` until
/// stale_after_secs; now it is an error at once, saying what to do.
#[test]
fn a_crashed_and_preserved_guest_is_an_error_at_once() -> Result<()> {
    let site = site();
    let g = &guests().crashed;
    probe_runs(site, g, 1)?;
    let _ = site.lab.guest_within(g, "echo c > /proc/sysrq-trigger", 5);
    site.lab
        .wait_for("xl list to show the crash", Duration::from_secs(60), || {
            Ok(site.lab.xl_state(&g.name)?.as_deref() == Some("---sc-"))
        })?;
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "halted" && j["domain_state"] == "crashed" && j["status"] == "error",
        "crashed: {j}"
    );
    let lines = domain_lines(site, &g.name)?;
    ensure!(
        lines.iter().any(|l| l.severity == "error"
            && l.message.starts_with("crashed")
            && l.message.contains("xl dump-core")
            && l.message.contains("xl destroy")),
        "{lines:?}"
    );
    let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
    ensure!(code == 2 && out.starts_with("XSMON CRITICAL"), "{out}");
    // The dom0-wide check counts it as an error, not a warning.
    let (out, code) = site.poll(&["nagios"])?;
    ensure!(code == 2, "{out}");
    // The history says when it happened.
    let events = site.lab.dom0_ok(&format!(
        "host-collector history {} --check xen --format csv | tail -3",
        g.name
    ))?;
    ensure!(!events.trim().is_empty(), "no xen history for {}", g.name);
    Ok(())
}

/// What dom0 sees without the guest (3): a live guest whose probe stopped
/// was "probe not reporting", like the crashed and the paused; now the
/// message says the guest is alive and its probe is not running. Then
/// `xl destroy` (scenario 3): down.
#[test]
fn a_live_guest_with_a_dead_probe_is_told_from_a_dead_guest() -> Result<()> {
    let site = site();
    let g = &guests().quiet;
    site.lab.guest_ok(g, "touch /run/probe.off")?;
    // stale_after_secs is 30 in the lab, by dom0's clock (which runs slower
    // than the host's under a loaded emulation): wait for the collector to
    // say so, then one more cycle for the CPU time over an interval.
    site.lab
        .wait_for("quiet01 to go stale", Duration::from_secs(180), || {
            Ok(collected(site, &g.name)?["probe"] == "stale")
        })?;
    std::thread::sleep(Duration::from_secs(5));
    let j = collected(site, &g.name)?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        j["probe"] == "stale" && j["domain_state"].is_string(),
        "{j}"
    );
    ensure!(
        message.contains("the guest is alive, its probe is not running")
            || message.contains("using no CPU time"),
        "{message}"
    );
    // Scenario 3: `xl destroy`: down.
    site.lab.dom0_ok(&format!("xl destroy {}", g.name))?;
    expect_down(site, &g.name)
}

/// What dom0 sees without the guest (4): figures from Xen itself. A guest
/// without any probe, burning its CPU, still gets its state, its CPU % (a
/// warning at the threshold) and memory; a guest with network and disk
/// traffic shows its vif and vbd counters.
#[test]
fn xens_own_figures_cpu_percent_memory_vifs_and_vbds() -> Result<()> {
    let site = site();
    let g = guests();
    // 60 s of a busy loop (an emulated CPU is shared by the whole lab).
    site.lab.guest_ok(
        &g.noprobe,
        "timeout 60 sh -c 'while :; do :; done' >/dev/null 2>&1 &",
    )?;
    site.collect()?;
    std::thread::sleep(Duration::from_secs(20));
    site.collect()?;
    let figures = site.lab.dom0_ok("snmp-extend figures")?;
    let cpu_pct = |host: &str| -> Option<f64> {
        figures
            .lines()
            .find(|l| l.starts_with(&format!("M {host} xen xen ")))?
            .split(' ')
            .nth(6)?
            .split("\\s")
            .find_map(|v| v.strip_prefix("cpu_pct="))?
            .parse()
            .ok()
    };
    // A dozen guests share two emulated CPUs: the burner gets what Xen's
    // scheduler gives it, far more than an idle guest (the warning at 95 %
    // is unit-tested in domstate).
    let burning = cpu_pct(&g.noprobe.name).context(figures.clone())?;
    // Against the median of the other guests (some of them are busy with
    // their own scenarios at the same time).
    let mut others: Vec<f64> = guests()
        .all()
        .iter()
        .filter(|o| o.name != g.noprobe.name)
        .filter_map(|o| cpu_pct(&o.name))
        .collect();
    others.sort_by(|a, b| a.total_cmp(b));
    let median = others.get(others.len() / 2).copied().unwrap_or(0.0);
    ensure!(
        burning > 30.0 && burning > 2.0 * median,
        "bare01 at {burning}% CPU, the other guests' median {median}%: {figures}"
    );
    // No probe: still its state and Xen's figures.
    let bare = site.guest_json(&g.noprobe.name)?.context("bare01")?;
    ensure!(bare["domain_state"].is_string(), "{bare}");
    ensure!(
        figures
            .lines()
            .any(|l| l.starts_with(&format!("M {} xen xen ", g.noprobe.name))
                && l.contains("mem_target_bytes=167772160")),
        "memory target of bare01: {figures}"
    );
    // The swapping guest's vbd (its swap, backed by dom0's RAM disk).
    let vbd = figures
        .lines()
        .find(|l| l.starts_with(&format!("M {} vbd", g.sick.name)))
        .with_context(|| format!("no vbd figures for sick01: {figures}"))?;
    ensure!(vbd.contains("wr_sect="), "{vbd}");
    let vif = figures
        .lines()
        .find(|l| l.starts_with(&format!("M {} vif0 ", g.pv.name)))
        .with_context(|| format!("no vif figures for pv01: {figures}"))?;
    ensure!(
        vif.contains("rx_packets=") && vif.contains("tx_dropped="),
        "{vif}"
    );
    Ok(())
}
