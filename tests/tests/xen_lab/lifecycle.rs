//! The lifecycle chain: `xl shutdown` + `xl create`, `xl reboot`, a
//! reboot inside, `xl rename`; then one image restored twice.

use super::*;

/// Scenarios 4, 5 and 8 on one guest: `xl shutdown` then `xl create`
/// again, `xl reboot`, a reboot from inside, `xl rename`: the same VM
/// (UUID) every time, a new domid each time, one history throughout.
pub(crate) fn shutdown_create_reboot_and_rename_keep_one_history() -> Result<()> {
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
        .ok("xl shutdown")
        .with_context(|| site.lab.consoles())?;
    // `xl shutdown -w` returns once the domain has shut down; Xen may
    // still be tearing it down (`dying`, a warning) for a cycle or two.
    site.lab
        .wait_for("life01 to be down after xl shutdown", CYCLE_WAIT, || {
            Ok(collected(site, &g.name)?["probe"] == "down")
        })?;
    site.lab.create(g)?;
    site.settled(g, "xl create")?;
    site.lab.wait_guest_up(g, Duration::from_secs(120))?;
    let next = domid_of(site, &g.name)?;
    ensure!(next != domid, "xl create again: same domid {domid}");
    domid = next;
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "fresh" && j["uuid"] == first["uuid"],
        "back after xl create: {j}"
    );
    // Each new boot counts once: another boot id than the last run's.
    let mut reboots =
        xen_figure(&first, "reboots").with_context(|| format!("no reboot count: {first}"))?;
    ensure!(
        xen_figure(&j, "reboots") == Some(reboots + 1.0),
        "after xl shutdown and xl create, the reboot count ({reboots} before): {j}"
    );
    reboots += 1.0;

    // xl reboot, then a reboot the guest does itself: routine, no
    // alert in Nagios.
    routine(g, "xl reboot and a reboot from inside", || {
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
            domid = site.settled(g, how)?;
            site.lab.wait_guest_up(g, Duration::from_secs(120))?;
            let j = collected(site, &g.name)?;
            ensure!(
                j["uuid"] == first["uuid"] && j["domid"] == domid,
                "{how}: {j}"
            );
            ensure!(
                xen_figure(&j, "reboots") == Some(reboots + 1.0),
                "after {how}, the reboot count ({reboots} before): {j}"
            );
            reboots += 1.0;
        }
        Ok(())
    })?;

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

/// One image restored twice, on the reboot chain's guest once its own
/// scenario is over (the save chain is the lab's longest; this runs beside
/// it, on a guest no other scenario reads).
pub(crate) fn one_image_restored_twice_is_an_older_save() -> Result<()> {
    let site = site();
    let g = &guests().life;
    let j = collected(site, &g.name)?;
    let reboots = Some(xen_figure(&j, "reboots").with_context(|| format!("no reboot count: {j}"))?);
    second_restore_of_one_image(site, g, reboots)
}

/// One image restored twice: the second restore brings back a state older
/// than the one dom0 last read, and the words say so. The probe is off in
/// the image and run by hand once in each new domain, so that the run dom0
/// reads is the one that says where its kernel last ran.
pub(crate) fn second_restore_of_one_image(
    site: &LabSite,
    g: &LabGuest,
    reboots: Option<f64>,
) -> Result<()> {
    site.cycles_held(|cycle| {
        site.lab.guest_ok(
            g,
            &format!("{PROBE_TIMER_OFF}; guest-probe >/dev/null 2>&1"),
        )?;
        cycle()?;
        let saved_in = site.domid(&g.name)?;
        site.lab.dom0_ok(&format!(
            "xl save {n} {SAVE_DIR}/{n} && xl restore {SAVE_DIR}/{n}",
            n = g.name
        ))?;
        let first = site.settled(g, "xl restore (the image's first)")?;
        site.lab.guest_ok(g, "guest-probe >/dev/null 2>&1")?;
        cycle()?;
        site.lab.dom0_ok(&format!(
            "xl destroy {n} && xl restore {SAVE_DIR}/{n} && rm {SAVE_DIR}/{n}",
            n = g.name
        ))?;
        let second = site.settled(g, "xl restore (the same image again)")?;
        site.lab.guest_ok(g, "guest-probe >/dev/null 2>&1")?;
        cycle()?;
        let j = site.guest_json(&g.name)?.context("save01")?;
        let message = j["message"].as_str().unwrap_or("");
        ensure!(
            message.contains(&format!("(domain {first} -> {second}"))
                && message.contains(&format!(
                    "its kernel last ran in domain {saved_in}, not {first}: an older save"
                ))
                && !message.contains("rebooted"),
            "the second restore of one image: {message}"
        );
        ensure!(
            xen_figure(&j, "reboots") == reboots,
            "the reboot count after restores: {j}"
        );
        site.lab.guest_ok(g, "rm -f /run/probe.off")?;
        Ok(())
    })
}
