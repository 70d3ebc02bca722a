//! HVM guests, with Debian's QEMU in dom0 as their device model: one with
//! its PV drivers (PVHVM, the probe through its xenbus), one without (an
//! emulated e1000 and no probe, listed in `[without_probe]`, as a Windows
//! guest without Xen's drivers would be). Both have a second disk QEMU
//! serves (`backendtype=qdisk`).

use super::*;

/// The line of `snmp-extend figures` for one check of a guest.
fn figure_line(figures: &str, host: &str, check: &str) -> Option<String> {
    figures
        .lines()
        .find(|l| l.starts_with(&format!("M {host} {check} ")))
        .map(str::to_string)
}

/// A counter in an `M` line's values (`rx_packets=12`).
fn counter(line: &str, name: &str) -> Option<f64> {
    line.split(' ')
        .nth(6)?
        .split("\\s")
        .find_map(|v| v.strip_prefix(&format!("{name}=")))?
        .parse()
        .ok()
}

/// The device model libxl started for a domain: its pid in xenstore, and
/// that process's command line (which names the domain).
fn device_model(site: &LabSite, name: &str) -> Result<(u32, String)> {
    let domid = domid_of(site, name)?;
    let pid: u32 = site
        .lab
        .dom0_ok(&format!(
            "xenstore-exists /local/domain/0/device-model/{domid} && xenstore-read /local/domain/{domid}/image/device-model-pid"
        ))?
        .trim()
        .parse()
        .context("device-model-pid")?;
    let cmdline = site
        .lab
        .dom0_ok(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"))?;
    ensure!(
        cmdline.contains(&format!("-xen-domid {domid} ")),
        "{name}'s device model (pid {pid}) does not name domain {domid}: {cmdline}"
    );
    Ok((pid, cmdline))
}

/// What dom0 sees of HVM guests: the PVHVM guest reports through its
/// probe like any other, its NIC is netback's (the emulated one unplugged,
/// its tap gone); the guest without PV drivers is seen by dom0 alone, its
/// traffic on the emulated NIC's tap (`vif<domid>.0-emu`, figures
/// `vif0emu`) and its PV vif never connected; each disk QEMU serves is
/// listed as having no counters in dom0; both device models run.
pub(crate) fn hvm_guests_with_and_without_pv_drivers_are_reported() -> Result<()> {
    let site = hvm_site();
    let g = guests();
    for h in [&g.hvm, &g.hvm_bare] {
        device_model(site, &h.name)?;
    }
    probe_runs(site, &g.hvm, 1)?;
    let j = collected(site, &g.hvm.name)?;
    ensure!(
        j["probe"] == "fresh" && j["status"] == "ok",
        "the PVHVM guest: {j}"
    );
    // The same cycle's entry: one cycle fewer to wait for under the lab's
    // load (other chains hold the cycles at times: saves, crashes).
    let j = site
        .guest_json(&g.hvm_bare.name)?
        .with_context(|| format!("{} is not in poller json", g.hvm_bare.name))?;
    ensure!(
        j["probe"] == "none" && j["status"] == "ok" && j["domain_state"].is_string(),
        "the HVM guest without PV drivers: {j}"
    );
    // Traffic to the guest without PV drivers: the harness's requests
    // reach its agent through the emulated NIC.
    site.lab.guest_ok(&g.hvm_bare, "echo up")?;
    let figures = site.lab.dom0_ok("snmp-extend figures")?;
    let bare = &g.hvm_bare.name;
    let bare_domid = domid_of(site, bare)?;
    let emu = figure_line(&figures, bare, "vif0emu")
        .with_context(|| format!("no vif0emu figures for {bare}: {figures}"))?;
    ensure!(
        emu.contains(&format!(" vif{bare_domid}.0-emu "))
            && counter(&emu, "rx_packets").is_some_and(|n| n > 0.0)
            && counter(&emu, "tx_packets").is_some_and(|n| n > 0.0),
        "{bare}'s emulated NIC: {emu}"
    );
    if let Some(pv) = figure_line(&figures, bare, "vif0") {
        ensure!(
            counter(&pv, "rx_packets") == Some(0.0),
            "{bare}'s PV vif, never connected, counts what the guest sent: {pv}"
        );
    }
    let hvm = &g.hvm.name;
    ensure!(
        figure_line(&figures, hvm, "vif0").is_some()
            && figure_line(&figures, hvm, "vif0emu").is_none(),
        "{hvm}'s NIC is netback's once its PV drivers unplugged the emulated one: {figures}"
    );
    for h in [hvm, bare] {
        let disk = figure_line(&figures, h, "vbd51728")
            .with_context(|| format!("{h}'s qdisk disk is not listed: {figures}"))?;
        ensure!(
            disk.contains("qdisk-")
                && disk.contains("served\\sby\\sQEMU:\\sno\\scounters\\sin\\sdom0"),
            "{h}'s qdisk disk: {disk}"
        );
    }
    ensure!(
        !site.raw()?.iter().any(|l| l.check == "devmodel"),
        "a device model finding while both run"
    );
    Ok(())
}

/// A device model that dies: the domain runs on, its emulated devices are
/// gone, and dom0 says so for that guest.
pub(crate) fn an_hvm_guests_device_model_that_dies_is_an_error() -> Result<()> {
    let site = hvm_site();
    let g = &guests().hvm_bare;
    let (pid, _) = device_model(site, &g.name)?;
    site.lab.dom0_ok(&format!("kill -9 {pid}"))?;
    let want =
        format!("its device model (QEMU, pid {pid} in image/device-model-pid) is not running");
    site.lab
        .wait_for(
            &format!("{}'s device model finding", g.name),
            CYCLE_WAIT,
            || {
                Ok(site.raw_for(&g.name)?.iter().any(|l| {
                    l.check == "devmodel" && l.severity == "error" && l.message.starts_with(&want)
                }))
            },
        )
        .with_context(|| format!("xl list: {:?}", site.lab.xl_state(&g.name)))?;
    let j = collected(site, &g.name)?;
    ensure!(j["status"] == "error", "{j}");
    let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
    ensure!(code == 2 && out.contains("device model"), "{out}");
    Ok(())
}

/// An HVM guest's kernel crash, kept (on_crash = "preserve"): the same
/// error as a PV guest's, and its device model is not judged. The guest
/// boots with `xen_legacy_crash` (`LabGuest::hvm_config`): without it,
/// Linux tells Xen of an HVM guest's panic as a reboot.
pub(crate) fn a_crashed_hvm_guest_is_an_error_at_once() -> Result<()> {
    let site = hvm_site();
    let g = &guests().hvm;
    probe_runs(site, g, 1)?;
    site.lab.crash_kernel(g)?;
    // What dom0 said and what xl says, kept for the timeout's message: a
    // crash Xen did not keep (a new domain) is told from one xsmon missed.
    site.lab
        .wait_until(&format!("{} to be crashed", g.name), CYCLE_WAIT, |seen| {
            let j = collected(site, &g.name)?;
            *seen = format!(
                "collected: domain_state {}, probe {}, status {}, domid {}; xl list: {:?}",
                j["domain_state"],
                j["probe"],
                j["status"],
                j["domid"],
                site.lab.xl_state(&g.name)?
            );
            Ok((j["domain_state"] == "crashed").then_some(()))
        })?;
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "halted" && j["status"] == "error",
        "crashed: {j}"
    );
    let lines = domain_lines(site, &g.name)?;
    ensure!(
        lines
            .iter()
            .any(|l| l.severity == "error" && l.message.starts_with("crashed")),
        "{lines:?}"
    );
    ensure!(
        !site.raw_for(&g.name)?.iter().any(|l| l.check == "devmodel"),
        "a device model finding for a crashed domain"
    );
    Ok(())
}

/// `xl save` and `xl restore` of the PVHVM guest (a 277 MB image: its
/// memory and QEMU's state): the same VM goes on in a new domain, in
/// dom0's words a restore, never a reboot; its new device model runs and
/// its NIC is still netback's.
pub(crate) fn an_hvm_guest_is_saved_and_restored() -> Result<()> {
    let site = hvm_site();
    let g = &guests().hvm;
    scenarios::save_and_restore(site, g)?;
    device_model(site, &g.name)?;
    let figures = site.lab.dom0_ok("snmp-extend figures")?;
    ensure!(
        figure_line(&figures, &g.name, "vif0").is_some()
            && figure_line(&figures, &g.name, "vif0emu").is_none(),
        "{}'s NIC after the restore: {figures}",
        g.name
    );
    Ok(())
}

/// The PVHVM guest created again with `on_crash = "restart"`, after its
/// kept crash: its kernel's panic, told to Xen as a crash by
/// `xen_legacy_crash`, is one in xl's log, and dom0 says the crash and
/// the restart as for a PV guest (a Linux HVM guest without it would tell
/// Xen of a reboot, and dom0 says "rebooted": what it can know).
pub(crate) fn a_pvhvm_crash_that_xl_restarts_is_worded_as_dom0_knows() -> Result<()> {
    let site = hvm_site();
    let mut g = guests().hvm.clone();
    g.on_crash = "restart";
    site.lab.dom0_ok(&format!("xl destroy {}", g.name))?;
    let faults = site.lab.triple_faults();
    create_hvm(site, &g)?;
    site.lab.wait_guest_up_after_a_boot_fault(&g, faults)?;
    let old = site.domid(&g.name)?;
    let new = crash_and_restart(site, &g, old)?;
    let words = format!("crashed and restarted by the toolstack (domain {old} -> {new}, at ");
    let j = site.lab.wait_until(
        &format!("{} to be said crashed and restarted", g.name),
        CYCLE_WAIT,
        |seen| {
            let j = collected(site, &g.name)?;
            *seen = j.to_string();
            Ok(j["message"]
                .as_str()
                .is_some_and(|m| m.contains(&words))
                .then_some(j))
        },
    )?;
    ensure!(
        j["status"] == "warning"
            && j["message"]
                .as_str()
                .is_some_and(|m| m.contains(", on_crash = \"restart\" as xl's log says)")),
        "the PVHVM guest's crash xl restarted: {j}"
    );
    Ok(())
}
