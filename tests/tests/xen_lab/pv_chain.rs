//! The PV guest's chain (healthy beside the PVH guest, then the hostile
//! guest's victim, then paused, then crashed with on_crash = "preserve"),
//! and the hostile guest's own scenario.

use super::*;

/// Scenario 1: healthy PV and PVH guests, every check ok, through the
/// guest kernel's /dev/xen/xenbus; then, with it removed, through
/// /proc/xen/xenbus as on kernels before 3.14.
pub(crate) fn healthy_pv_and_pvh_guests_report_every_check_ok() -> Result<()> {
    let g = guests();
    let site = site();
    site.lab
        .tolerating_triple_faults(&g.pvh, "healthy guests", || {
            scenarios::healthy(site, &[&g.pv, &g.pvh])
        })
}

/// Scenario 9: a hostile guest, from inside a real domU: the real xenstored
/// refuses its writes to another domain's area, to dom0's and to the 2010
/// shared path; garbage in its own area is reported for it alone.
pub(crate) fn a_hostile_guest_is_refused_and_reported_for_itself() -> Result<()> {
    let g = guests();
    scenarios::hostile(site(), &g.hostile, &g.pv)
}

/// What dom0 sees without the guest (1): a paused guest was reported
/// `fresh` with its last findings; now it is `halted`, a warning that
/// says so, and Nagios says WARNING.
pub(crate) fn a_paused_guest_is_never_fresh() -> Result<()> {
    let site = site();
    let g = &guests().pv;
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
    if let Some((probe, _, message)) = site.before(&g.name)? {
        ensure!(
            probe == "fresh" && !message.contains("paused"),
            "the older xsmon did not fail as the issue says (fresh, no word of the pause): {probe} {message}"
        );
    }
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
    site.settled(g, "xl unpause")?;
    site.lab
        .wait_for("the unpaused guest to be fresh again", CYCLE_WAIT, || {
            let j = collected(site, &g.name)?;
            Ok(j["domain_state"] != "paused" && j["probe"] == "fresh")
        })?;
    Ok(())
}

/// What dom0 sees without the guest (2): a guest whose kernel crashed
/// with on_crash = "preserve" (`---sc-`) was `fresh` until
/// stale_after_secs; now it is an error at once, saying what to do.
pub(crate) fn a_crashed_and_preserved_guest_is_an_error_at_once() -> Result<()> {
    let site = site();
    let g = &guests().pv;
    probe_runs(site, g, 1)?;
    // Detection in seconds: `host-collector watch` runs a cycle on the
    // domain event the crash fires; nothing else runs one meanwhile. The
    // watch runs cycles of its own, on any domain's event: while it runs,
    // no other scenario may count on the first cycle after its own event.
    // The service's Nagios is up before the crash (its start polls).
    let alerts = alerts();
    let (to_nagios, critical) = site.cycles_held(|_| {
        site.lab.dom0_ok(
            "host-collector -v watch >/var/log/watch.log 2>&1 & echo $! >/run/watch.pid; sleep 2",
        )?;
        let crashed_unix = LabAlerts::now();
        let crashed_at = Instant::now();
        site.lab.crash_kernel(g)?;
        // The end of the pipeline first: Nagios, fed by `poller serve`'s
        // push; the poller's own reading after it.
        let critical = alerts
            .wait_service_alert(&g.name, "CRITICAL", crashed_unix, Duration::from_secs(90))
            .map(|a| (crashed_at.elapsed(), a));
        let seen = critical.and_then(|c| {
            site.lab
                .wait_for(
                    "the poller to read the crash as an error",
                    Duration::from_secs(90),
                    || {
                        Ok(site.raw_for(&g.name)?.iter().any(|l| {
                            l.check == "domain"
                                && l.severity == "error"
                                && l.message.starts_with("crashed")
                        }))
                    },
                )
                .map(|()| c)
        });
        let watch_log = site
            .lab
            .dom0_ok("kill $(cat /run/watch.pid); cat /var/log/watch.log")?;
        seen.with_context(|| format!("host-collector watch's log: {watch_log}"))
    })?;
    // The line the soak's table and the demo show.
    eprintln!(
        "crash to nagios critical: {:.1} s (a kernel crash of {} on the real hypervisor, host-collector watch in dom0, poller serve polling every {} s, Nagios's log)",
        to_nagios.as_secs_f64(),
        g.name,
        xsmon_tests::xenlab::alerts::INTERVAL_SECS
    );
    ensure!(
        critical.output.starts_with("XSMON CRITICAL - 1 error"),
        "Nagios's alert for the crash: {critical}"
    );
    // Nagios rewrites its status file every second: the alert is logged
    // first.
    alerts.wait_state(&g.name, 2, Duration::from_secs(30))?;
    let held = alerts.status(&g.name).context("pv01 in Nagios's status")?;
    ensure!(
        held.state == 2
            && held.long_output.contains(" crashed ")
            && held.long_output.contains("xl dump-core"),
        "Nagios's words for the crash: {held:?}"
    );
    ensure!(
        site.lab.xl_state(&g.name)?.as_deref() == Some("---sc-"),
        "xl list after the crash: {:?}",
        site.lab.xl_state(&g.name)?
    );
    if let Some((probe, _, message)) = site.before(&g.name)? {
        ensure!(
            probe == "fresh" && !message.contains("crash"),
            "the older xsmon did not fail as the issue says (fresh, no word of the crash): {probe} {message}"
        );
    }
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
