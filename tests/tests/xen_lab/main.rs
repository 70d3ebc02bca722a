//! The pipeline on a real hypervisor: Debian 13's Xen 4.20 under QEMU
//! (`scripts/xen-lab`, harness `xsmon_tests::xenlab`; `XSMON_LAB_XEN=4.17`
//! runs it on Debian 12's 4.17), a PV dom0 running
//! oxenstored, xenconsoled, netback, snmpd with xsmon's extend lines and
//! host-collector, and real PV, PVH and HVM domUs running the static
//! guest-probe through their own kernels' xenbus (HVM guests, with
//! Debian's QEMU in dom0 as their device model, on 4.20 only). The host's
//! poller reads it all over SNMP.
//!
//! One lab is booted for this file (software emulation: ~20 s to dom0, ~15 s
//! of emulated CPU per guest boot). Ten guests carry the scenarios in
//! chains, each chain on its own guests, all chains side by side (the
//! file's own runner, `main` below). A lab that does not boot fails every
//! test with its consoles.

use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xsmon_proto::rawline::RawLine;
use xsmon_proto::Status;
use xsmon_tests::xenlab::scenarios::SAVE_DIR;
use xsmon_tests::xenlab::{scenarios, LabAlerts, LabGuest, LabSite, Xenstored, PROBE_TIMER_OFF};

mod hvm;
mod lifecycle;
mod migration;
mod pv_chain;
mod restarts;
mod saves;
mod sick;
mod silent;
mod without_probe;

use hvm::*;
use lifecycle::*;
use migration::*;
use pv_chain::*;
use restarts::*;
use saves::*;
use sick::*;
use silent::*;
use without_probe::*;

/// The lab's guests. Software emulation makes every guest cost a boot of
/// about 15 s of emulated CPU, so the scenarios share them: each guest goes
/// through a chain of scenarios, one after the other (see [`SCENARIOS`]).
struct Guests {
    /// Healthy, then the victim of the hostile guest, then paused, then
    /// crashed with on_crash = "preserve".
    pv: LabGuest,
    /// Healthy, then migrated live three times.
    pvh: LabGuest,
    /// A full disk, swapping, a dead gateway; then its xl figures.
    sick: LabGuest,
    /// Shut down, created again, rebooted twice, renamed; then one image
    /// of it restored twice.
    life: LabGuest,
    /// Saved and restored three times, then crashed with on_crash =
    /// "destroy".
    saved: LabGuest,
    /// Saved and restored twice (rounds 4 and 5 of the five).
    saved2: LabGuest,
    /// Hostile, then its probe stops while it runs, then its kernel
    /// crashes (seen by a cron tick alone), then `xl destroy`.
    hostile: LabGuest,
    /// Saved in the middle of a run, from the start: on the hostile guest
    /// after its scenario, it made the longest chain (healthy, hostile,
    /// held save, dead probe: 405 s of a 405 s lab run).
    held: LabGuest,
    /// No probe: a guest agent's keys, hostile ones, then a CPU burner.
    bare: LabGuest,
    /// HVM with its PV drivers and the probe; a disk QEMU serves. Then
    /// saved and restored, then crashed with on_crash = "preserve".
    hvm: LabGuest,
    /// HVM without PV drivers (an emulated e1000) and without the probe;
    /// a disk QEMU serves. Then its device model killed.
    hvm_bare: LabGuest,
    /// on_crash = "restart": created with the watch running, crashed and
    /// restarted, rebooted, crashed twice more, renamed, built paused.
    restart: LabGuest,
}

fn guests() -> &'static Guests {
    static G: OnceLock<Guests> = OnceLock::new();
    G.get_or_init(|| {
        let mut sick = LabGuest::new("sick01", "pv", 3);
        // A gateway nobody answers: the net check's error.
        sick.gateway = "10.77.0.254".into();
        // Swap on a vbd dom0 backs with one of its RAM disks.
        sick.swap_disk = Some("/dev/ram1");
        let mut saved = LabGuest::new("save01", "pv", 8);
        saved.on_crash = "destroy";
        let saved2 = LabGuest::new("save02", "pv", 17);
        // No probe at all, as on a guest that cannot run it; the lab's
        // collector.toml lists bare* under [without_probe].
        let mut bare = LabGuest::new("bare01", "pv", 14);
        bare.probe_every = 0;
        // HVM guests need more memory than PV ones (firmware, QEMU's
        // devices); each has a device model of ~43 MB in dom0.
        let mut hvm = LabGuest::new("hvm01", "hvm", 15);
        hvm.memory_mib = 256;
        hvm.qdisk = true;
        let mut hvm_bare = LabGuest::new("barehvm01", "hvm", 16);
        hvm_bare.memory_mib = 256;
        hvm_bare.qdisk = true;
        hvm_bare.pv_drivers = false;
        hvm_bare.probe_every = 0;
        let mut restart = LabGuest::new("cr01", "pv", 18);
        restart.on_crash = "restart";
        Guests {
            pv: LabGuest::new("pv01", "pv", 1),
            pvh: LabGuest::new("pvh01", "pvh", 2),
            sick,
            life: LabGuest::new("life01", "pv", 6),
            saved,
            saved2,
            hostile: LabGuest::new("evil01", "pv", 7),
            held: LabGuest::new("hold01", "pv", 9),
            bare,
            hvm,
            hvm_bare,
            restart,
        }
    })
}

impl Guests {
    /// The guests the lab boots with: every one but the HVM guests, which
    /// their own chain creates ([`hvm_site`]).
    fn booted_with_the_lab(&self) -> Vec<&LabGuest> {
        vec![
            &self.pv,
            &self.pvh,
            &self.sick,
            &self.life,
            &self.saved,
            &self.hostile,
            &self.held,
            &self.bare,
            &self.saved2,
            &self.restart,
        ]
    }
}

/// Whether this run has the HVM guests: on Debian 13's lab (4.20), whose
/// dom0 has Debian's device model (qemu-system-xen), unless left out
/// (`XSMON_LAB_HVM=0`); Debian 12's (4.17) has none. The runner says when
/// they are not in a run.
fn hvm_lab() -> bool {
    std::env::var("XSMON_LAB_HVM").map_or(true, |v| v != "0")
        && xsmon_tests::xenlab::lab_xen() != "4.17"
}

/// The one lab of this file, booted by the first test that needs it, with
/// every test's guests created side by side and running their probes.
fn site() -> &'static LabSite {
    static SITE: OnceLock<std::result::Result<LabSite, String>> = OnceLock::new();
    let site = SITE.get_or_init(|| {
        LabSite::boot_with(Xenstored::Oxenstored, &guests().booted_with_the_lab())
            .map_err(|e| format!("{e:#}"))
    });
    match site {
        Ok(s) => s,
        Err(e) => panic!("the Xen lab did not come up:\n{e}"),
    }
}

/// The admin's end beside the lab: `poller serve` polling dom0 and
/// pushing into a real Nagios ([`LabAlerts`]), started by the first
/// scenario that reads Nagios, once.
fn alerts() -> &'static LabAlerts {
    static ALERTS: OnceLock<std::result::Result<LabAlerts, String>> = OnceLock::new();
    let alerts = ALERTS.get_or_init(|| LabAlerts::start(site()).map_err(|e| format!("{e:#}")));
    match alerts {
        Ok(a) => a,
        Err(e) => panic!("poller serve and Nagios did not come up beside the lab:\n{e}"),
    }
}

/// Runs a routine event of `g` (a create, reboot, save and restore,
/// migration): Nagios must raise nothing for it.
fn routine<T>(g: &LabGuest, what: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    alerts().quiet_through(&g.name, what, 0, body)
}

/// The lab with its two HVM guests created and up: by the first HVM
/// scenario, once, while the other chains run. HVM guests boot slowest
/// under emulation (34-52 s alone, minutes under the suite's load, once a
/// triple fault and Xen's reboot of the domain more): in the lab's own
/// boot they held every chain back until they were up.
fn hvm_site() -> &'static LabSite {
    static HVM: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let site = site();
    let up = HVM.get_or_init(|| {
        let g = guests();
        let t = Instant::now();
        let hvm = [&g.hvm, &g.hvm_bare];
        let faults = site.lab.triple_faults();
        hvm.iter()
            .try_for_each(|g| create_hvm(site, g))
            .and_then(|()| {
                let created = t.elapsed();
                hvm.iter()
                    .try_for_each(|g| site.lab.wait_guest_up_after_a_boot_fault(g, faults))?;
                Ok(created)
            })
            .map(|created| {
                eprintln!(
                    "xen lab: the 2 HVM guests created in {:.1} s and up in {:.1} s",
                    created.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                )
            })
            .map_err(|e| format!("{e:#}"))
    });
    match up {
        Ok(()) => site,
        Err(e) => panic!("the HVM guests did not come up:\n{e}"),
    }
}

/// Creates one HVM guest (one at a time: two device models starting at
/// once under emulation were each too slow to answer libxl's QMP queries
/// after their start, a 10 s limit compiled into libxl: "Post DM startup
/// configs failed, rc=-9 ... device model did not start"). That timeout,
/// the emulator's slowness, is tried once more and said on stderr; any
/// other failure fails.
fn create_hvm(site: &LabSite, g: &LabGuest) -> Result<()> {
    let Err(first) = site.create_all(&[g]) else {
        return Ok(());
    };
    let words = format!("{first:#}");
    if !words.contains("device model did not start") {
        return Err(first);
    }
    eprintln!(
        "xen lab: environment fault: {}'s device model did not start in libxl's time under emulation; once more. xl's words: {}",
        g.name,
        words.lines().filter(|l| l.contains("error")).take(2).collect::<Vec<_>>().join(" | ")
    );
    site.lab
        .dom0(&format!("xl destroy {} 2>/dev/null; true", g.name))?;
    site.create_all(&[g])
        .with_context(|| format!("{}: xl create, the second time", g.name))
}

/// A wait whose every look runs a collector cycle: a scenario that holds
/// the cycles (`cycles_held`: the crash seen by `host-collector watch`, the
/// cron tick, a restore's words) may keep one look waiting up to 120 s.
const CYCLE_WAIT: Duration = Duration::from_secs(240);

fn lines_for<'a>(raw: &'a [RawLine], host: &str) -> Vec<&'a RawLine> {
    raw.iter().filter(|l| l.host == host).collect()
}

/// `xl save` then `xl restore` of a guest, its image removed after.
fn save_and_restore(g: &LabGuest) -> String {
    scenarios::save_and_restore_command(g)
}

fn probe_runs(site: &LabSite, g: &LabGuest, n: usize) -> Result<()> {
    site.probe_runs(g, n)
}

fn collected(site: &LabSite, name: &str) -> Result<serde_json::Value> {
    site.collected(name)
}

fn xen_figure(guest: &serde_json::Value, name: &str) -> Option<f64> {
    scenarios::xen_figure(guest, name)
}

fn domid_of(site: &LabSite, name: &str) -> Result<u32> {
    site.domid(name)
}

/// The guest is `down`: an error line saying it is not running, Nagios
/// CRITICAL for it.
fn expect_down(site: &LabSite, name: &str) -> Result<()> {
    site.lab
        .wait_for(&format!("{name} to be down"), CYCLE_WAIT, || {
            Ok(collected(site, name)?["probe"] == "down")
        })?;
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

/// The poller's raw lines for one guest's `domain` check (the hypervisor's
/// finding).
fn domain_lines(site: &LabSite, name: &str) -> Result<Vec<RawLine>> {
    Ok(site
        .raw_for(name)?
        .into_iter()
        .filter(|l| l.check == "domain")
        .collect())
}

/// A scenario of this file: its name, the scenario it follows on the same
/// guests (it starts once that one passed), and its body.
struct Scenario {
    name: &'static str,
    after: Option<&'static str>,
    run: fn() -> Result<()>,
}

/// The scenarios with HVM guests (see [`hvm_lab`]).
const HVM_SCENARIOS: &[&str] = &[
    "hvm_guests_with_and_without_pv_drivers_are_reported",
    "an_hvm_guests_device_model_that_dies_is_an_error",
    "an_hvm_guest_is_saved_and_restored",
    "a_crashed_hvm_guest_is_an_error_at_once",
    "a_pvhvm_crash_that_xl_restarts_is_worded_as_dom0_knows",
];

/// The scenarios this lab runs.
fn scenarios() -> Vec<&'static Scenario> {
    SCENARIOS
        .iter()
        .filter(|s| hvm_lab() || !HVM_SCENARIOS.contains(&s.name))
        .collect()
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "healthy_pv_and_pvh_guests_report_every_check_ok",
        after: None,
        run: healthy_pv_and_pvh_guests_report_every_check_ok,
    },
    Scenario {
        name: "a_hostile_guest_is_refused_and_reported_for_itself",
        after: Some("healthy_pv_and_pvh_guests_report_every_check_ok"),
        run: a_hostile_guest_is_refused_and_reported_for_itself,
    },
    Scenario {
        name: "a_paused_guest_is_never_fresh",
        after: Some("a_hostile_guest_is_refused_and_reported_for_itself"),
        run: a_paused_guest_is_never_fresh,
    },
    Scenario {
        name: "a_crashed_and_preserved_guest_is_an_error_at_once",
        after: Some("a_paused_guest_is_never_fresh"),
        run: a_crashed_and_preserved_guest_is_an_error_at_once,
    },
    Scenario {
        name: "a_save_in_the_middle_of_a_run_is_measured_again",
        after: None,
        run: a_save_in_the_middle_of_a_run_is_measured_again,
    },
    Scenario {
        name: "a_live_guest_with_a_dead_probe_is_told_from_a_dead_guest",
        after: Some("a_hostile_guest_is_refused_and_reported_for_itself"),
        run: a_live_guest_with_a_dead_probe_is_told_from_a_dead_guest,
    },
    Scenario {
        name: "xl_cpu_times_and_vif_counters_are_served_as_figures",
        after: Some("a_sick_guest_reports_a_full_disk_swapping_and_a_dead_gateway"),
        run: xl_cpu_times_and_vif_counters_are_served_as_figures,
    },
    Scenario {
        name: "live_migration_is_not_a_false_down",
        after: Some("healthy_pv_and_pvh_guests_report_every_check_ok"),
        run: live_migration_is_not_a_false_down,
    },
    Scenario {
        name: "a_sick_guest_reports_a_full_disk_swapping_and_a_dead_gateway",
        after: None,
        run: a_sick_guest_reports_a_full_disk_swapping_and_a_dead_gateway,
    },
    Scenario {
        name: "shutdown_create_reboot_and_rename_keep_one_history",
        after: None,
        run: shutdown_create_reboot_and_rename_keep_one_history,
    },
    Scenario {
        name: "save_and_restore_continue_the_same_vm",
        after: None,
        run: save_and_restore_continue_the_same_vm,
    },
    Scenario {
        name: "two_more_saves_continue_the_same_vm",
        after: None,
        run: two_more_saves_continue_the_same_vm,
    },
    Scenario {
        name: "a_guest_crashed_and_destroyed_is_down",
        after: Some("save_and_restore_continue_the_same_vm"),
        run: a_guest_crashed_and_destroyed_is_down,
    },
    Scenario {
        name: "one_image_restored_twice_is_an_older_save",
        after: Some("shutdown_create_reboot_and_rename_keep_one_history"),
        run: one_image_restored_twice_is_an_older_save,
    },
    Scenario {
        name: "a_guest_without_the_probe_is_reported_by_xen_and_its_agent",
        after: None,
        run: a_guest_without_the_probe_is_reported_by_xen_and_its_agent,
    },
    Scenario {
        name: "xens_own_figures_cpu_percent_memory_vifs_and_vbds",
        after: Some("a_guest_without_the_probe_is_reported_by_xen_and_its_agent"),
        run: xens_own_figures_cpu_percent_memory_vifs_and_vbds,
    },
    Scenario {
        name: "a_guest_started_with_the_watch_running_is_never_an_error",
        after: None,
        run: a_guest_started_with_the_watch_running_is_never_an_error,
    },
    Scenario {
        name: "a_crash_that_xl_restarts_is_named_within_one_cycle_of_the_watch",
        after: Some("a_guest_started_with_the_watch_running_is_never_an_error"),
        run: a_crash_that_xl_restarts_is_named_within_one_cycle_of_the_watch,
    },
    Scenario {
        name: "a_reboot_is_no_crash_and_repeated_crashes_are_a_restart_loop",
        after: Some("a_crash_that_xl_restarts_is_named_within_one_cycle_of_the_watch"),
        run: a_reboot_is_no_crash_and_repeated_crashes_are_a_restart_loop,
    },
    Scenario {
        name: "a_renamed_guests_old_config_and_a_domain_being_built",
        after: Some("a_reboot_is_no_crash_and_repeated_crashes_are_a_restart_loop"),
        run: a_renamed_guests_old_config_and_a_domain_being_built,
    },
    Scenario {
        name: "hvm_guests_with_and_without_pv_drivers_are_reported",
        after: None,
        run: hvm_guests_with_and_without_pv_drivers_are_reported,
    },
    Scenario {
        name: "an_hvm_guests_device_model_that_dies_is_an_error",
        after: Some("hvm_guests_with_and_without_pv_drivers_are_reported"),
        run: an_hvm_guests_device_model_that_dies_is_an_error,
    },
    Scenario {
        name: "an_hvm_guest_is_saved_and_restored",
        after: Some("hvm_guests_with_and_without_pv_drivers_are_reported"),
        run: an_hvm_guest_is_saved_and_restored,
    },
    Scenario {
        name: "a_crashed_hvm_guest_is_an_error_at_once",
        after: Some("an_hvm_guest_is_saved_and_restored"),
        run: a_crashed_hvm_guest_is_an_error_at_once,
    },
    Scenario {
        name: "a_pvhvm_crash_that_xl_restarts_is_worded_as_dom0_knows",
        after: Some("a_crashed_hvm_guest_is_an_error_at_once"),
        run: a_pvhvm_crash_that_xl_restarts_is_worded_as_dom0_knows,
    },
];

/// This file's own test runner (`harness = false`): libtest runs as many
/// tests at once as the machine has cores (two here), but these tests
/// mostly wait on an emulated machine, and each chain of them has its own
/// guests; so every chain runs at once, each scenario after the one it
/// follows. Arguments as libtest's: names to filter by (a scenario's
/// prerequisites run too), `--list`; other flags are accepted and ignored.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !hvm_lab() {
        let xen = xsmon_tests::xenlab::lab_xen();
        let why = if xen == "4.17" {
            "has no device model"
        } else {
            "XSMON_LAB_HVM=0"
        };
        eprintln!(
            "xen lab: the {} HVM scenarios are not in this run (Xen {xen}'s lab: {why}; docs/testing.md)",
            HVM_SCENARIOS.len(),
        );
    }
    if args.iter().any(|a| a == "--list") {
        for s in scenarios() {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&Scenario> = scenarios()
        .into_iter()
        .filter(|s| filters.is_empty() || needed_by(s, &filters))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();
    let results: Mutex<Vec<(&'static str, Result<(), String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for s in selected.iter().filter(|s| s.after.is_none()) {
            run_chain(scope, s, &selected, &results);
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for (name, r) in &failed {
            if let Err(e) = r {
                println!("---- {name} ----\n{e}\n");
            }
        }
    }
    let (calls, cycles) = xsmon_tests::xenlab::harness_load();
    eprintln!(
        "xen lab: the harness's load on dom0: {calls} requests to its agent, {cycles} collector cycles in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (holds, held, longest, waited) = xsmon_tests::xenlab::cycle_holds();
    eprintln!(
        "xen lab: the cycles held {holds} times, {held:.0} s in all (the longest {longest:.0} s); the scenarios waited {waited:.0} s in all for a cycle's turn"
    );
    println!(
        "test result: {}. {} passed; {} failed; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// Is `s` named by a filter, or a prerequisite of a scenario that is?
fn needed_by(s: &Scenario, filters: &[&str]) -> bool {
    SCENARIOS.iter().any(|t| {
        filters.iter().any(|f| t.name.contains(f)) && {
            let mut at = Some(t);
            std::iter::from_fn(|| {
                let cur = at?;
                at = cur
                    .after
                    .and_then(|a| SCENARIOS.iter().find(|x| x.name == a));
                Some(cur.name)
            })
            .any(|n| n == s.name)
        }
    })
}

/// Runs `s` on its own thread, then the scenarios that follow it.
fn run_chain<'a>(
    scope: &'a std::thread::Scope<'a, '_>,
    s: &'a Scenario,
    selected: &'a [&'a Scenario],
    results: &'a Mutex<Vec<(&'static str, Result<(), String>)>>,
) {
    scope.spawn(move || {
        let t = Instant::now();
        let outcome = match std::panic::catch_unwind(s.run) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())),
        };
        let passed = outcome.is_ok();
        println!(
            "test {} ... {} ({:.0} s)",
            s.name,
            if passed { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if let Err(e) = &outcome {
            // At once too (the summary comes when every chain is over):
            // the first lines, the rest (consoles) in the summary.
            let head: Vec<&str> = e.lines().take(6).collect();
            eprintln!("---- {} (first lines) ----\n{}", s.name, head.join("\n"));
        }
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((s.name, outcome));
        for next in selected.iter().filter(|n| n.after == Some(s.name)) {
            if passed {
                run_chain(scope, next, selected, results);
            } else {
                not_run(next, s.name, selected, results);
            }
        }
    });
}

/// `s` and every scenario after it fail without running: `failed`, which
/// they follow, failed.
fn not_run(
    s: &Scenario,
    failed: &str,
    selected: &[&Scenario],
    results: &Mutex<Vec<(&'static str, Result<(), String>)>>,
) {
    println!(
        "test {} ... FAILED (not run: it follows {failed}, which failed)",
        s.name
    );
    results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((s.name, Err(format!("not run: {failed} failed"))));
    for next in selected.iter().filter(|n| n.after == Some(s.name)) {
        not_run(next, failed, selected, results);
    }
}
