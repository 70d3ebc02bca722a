//! Scenarios that run the same on every lab (oxenstored and C xenstored):
//! each drives real guests end to end, from the guest kernel's xenbus to
//! the poller's `json`, `nagios` (with its exit code) and `raw`.

use anyhow::{ensure, Context, Result};

use super::{LabGuest, LabSite, PROBE_TIMER_OFF};

/// The `seq` of the run a guest last wrote (key layout 6: the third
/// field of its `data/xsmon/chunk/0`, after `xsmon/6` and the time).
fn written_seq(site: &LabSite, g: &LabGuest) -> Result<u64> {
    let run = site.lab.guest_ok(g, "xenstore-read data/xsmon/chunk/0")?;
    run.split(' ')
        .nth(2)
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("{}'s chunk/0: {run:?}", g.name))
}

/// Healthy guests: every check ok through the guest kernel's
/// `/dev/xen/xenbus`, the VM's UUID from the toolstack's `/vm`, Nagios OK
/// with the probe's performance data, no finding; then, on the first
/// guest, with `/dev/xen/xenbus` removed, one more run through
/// `/proc/xen/xenbus` (kernels before 3.14 have only that).
pub fn healthy(site: &LabSite, guests: &[&LabGuest]) -> Result<()> {
    for g in guests {
        site.probe_runs(g, 1)?;
        let j = site.collected(&g.name)?;
        ensure!(
            j["probe"] == "fresh" && j["status"] == "ok",
            "{}: {j}",
            g.name
        );
        ensure!(
            j["uuid"] == g.uuid().as_str(),
            "{}: the UUID from /vm: {j}",
            g.name
        );
        ensure!(
            j["domain_state"].is_string(),
            "{}: no domain state: {j}",
            g.name
        );
        let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
        ensure!(
            code == 0 && out.starts_with("XSMON OK"),
            "{}: {out}",
            g.name
        );
        for label in [
            "mem_used",
            "disk_/data_used",
            "cpu_load_per_cpu",
            "net_10.77.0.1_rtt",
        ] {
            ensure!(
                out.contains(&format!("'{label}'=")) || out.contains(&format!(" {label}=")),
                "{}: no {label} in the performance data: {out}",
                g.name
            );
        }
        let mine = site.raw_for(&g.name)?;
        ensure!(
            mine.is_empty(),
            "{}: findings for a healthy guest: {mine:?}",
            g.name
        );
    }
    let Some(g) = guests.first() else {
        return Ok(());
    };
    let before = written_seq(site, g)?;
    // The run is judged by a cycle right after it: the lab calls a run
    // stale after 75 s, and other scenarios may hold the cycles longer.
    let j = site.cycles_held(|cycle| {
        let out = site.lab.guest_ok(
            g,
            &format!("{PROBE_TIMER_OFF}; rm /dev/xen/xenbus && guest-probe 2>&1; echo probe-rc=$?"),
        )?;
        ensure!(
            out.contains("probe-rc=0"),
            "probe through /proc/xen/xenbus: {out}"
        );
        let after = written_seq(site, g)?;
        ensure!(
            after > before,
            "seq {before} -> {after}: no run through /proc/xen/xenbus"
        );
        cycle()?;
        site.guest_json(&g.name)?.context("in poller json")
    })?;
    ensure!(j["probe"] == "fresh" && j["status"] == "ok", "{j}");
    site.lab.guest_ok(g, "rm -f /run/probe.off")?;
    Ok(())
}

/// A hostile guest, from inside a real domU: the real xenstored refuses
/// its writes to another domain's area, to dom0's and to the 2010 shared
/// path (not granted here); garbage in its own area (a run line with a
/// newline followed by a forged `G` line for its victim, where key layout
/// 6 keeps it: the head of `chunk/0`) is reported for it alone.
pub fn hostile(site: &LabSite, hostile: &LabGuest, victim: &LabGuest) -> Result<()> {
    let victim_domid = site.domid(&victim.name)?;
    for path in [
        format!("/local/domain/{victim_domid}/data/xsmon/run"),
        "/local/domain/0/data/xsmon/run".to_string(),
        format!(
            "/tool/myManagement/domUunsecureFiles/basicMonitoring/{}/status",
            victim.name
        ),
    ] {
        let e = site
            .lab
            .guest(hostile, &format!("xenstore-write {path} forged"))?;
        ensure!(
            e.rc != 0,
            "the real xenstored let a guest write {path}: {}",
            e.out
        );
    }
    site.lab.guest_ok(
        hostile,
        &format!(
            "{PROBE_TIMER_OFF}; xenstore-write data/xsmon/chunk/0 \"$(printf 'xsmon/6 1 2 1 - - x\\nG {} {victim_domid} - fresh ok - - forged')\"",
            victim.name
        ),
    )?;
    site.collect()?;
    let raw = site.raw()?;
    ensure!(
        raw.iter()
            .any(|l| l.host == hostile.name && l.severity == "error" && l.check == "probe"),
        "no finding for the hostile guest: {raw:?}"
    );
    ensure!(
        !raw.iter().any(|l| l.host == victim.name),
        "the victim got findings: {raw:?}"
    );
    let j = site.guest_json(&victim.name)?.context("the victim")?;
    ensure!(
        j["status"] == "ok" && j["probe"] == "fresh",
        "the victim: {j}"
    );
    Ok(())
}

/// Where dom0 keeps save images: a tmpfs of their own (scripts/xen-lab;
/// three images at once overflowed dom0's root).
pub const SAVE_DIR: &str = "/var/lib/xen/save";

/// `xl save` then `xl restore` of a guest, its image removed after.
pub fn save_and_restore_command(g: &LabGuest) -> String {
    format!(
        "xl save {n} {SAVE_DIR}/{n} && xl restore {SAVE_DIR}/{n} && rm {SAVE_DIR}/{n}",
        n = g.name
    )
}

/// A figure of the hypervisor's `xen` check in a guest's poller json.
pub fn xen_figure(guest: &serde_json::Value, name: &str) -> Option<f64> {
    guest["figures"]
        .as_array()?
        .iter()
        .find(|f| f["check_id"] == "xen")?["values"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?["value"]
        .as_f64()
}

/// `xl save` and `xl restore` of a healthy guest: the VM goes on in a new
/// domain, and the first cycle after says so, in dom0's words ("restored
/// or migrated within this dom0 ... the same boot of its kernel"), never a
/// reboot: same VM, reboot count unchanged, fresh, ok, no finding. No
/// other collector cycle may run between the restore and the one that
/// reads it (a cron in dom0 would take the words).
pub fn save_and_restore(site: &LabSite, g: &LabGuest) -> Result<()> {
    site.probe_runs(g, 1)?;
    let before = site.collected(&g.name)?;
    site.cycles_held(|cycle| {
        cycle()?;
        let domid = site.domid(&g.name)?;
        site.lab.dom0_ok(&save_and_restore_command(g))?;
        // Once in a CI run on Xen 4.20 a restored PV guest answered once,
        // then no more: what dom0 saw of it goes with the error.
        (|| {
            site.settled(g, "xl save + xl restore")?;
            site.probe_runs(g, 1)
        })()
        .with_context(|| site.lab.guest_diagnosis(g, "xl save + xl restore"))?;
        cycle()?;
        restored_not_rebooted(site, g, domid, &before)
    })
}

/// What the first cycle after `g`'s restore (it ran in domain `was`)
/// shows in the poller's json, against `before` (its json before the save):
/// dom0's words for a restore, the same VM, the reboot count unchanged,
/// fresh, ok, and no finding.
pub fn restored_not_rebooted(
    site: &LabSite,
    g: &LabGuest,
    was: u32,
    before: &serde_json::Value,
) -> Result<()> {
    let reboots = xen_figure(before, "reboots");
    ensure!(reboots.is_some(), "no reboot count before: {before}");
    let now = site.domid(&g.name)?;
    ensure!(now != was, "{} kept domain {was} over a restore", g.name);
    let j = site.guest_json(&g.name)?.context("after the restore")?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        message.contains(&format!(
            "restored or migrated within this dom0 since the last cycle (domain {was} -> {now}"
        )) && message.contains("the same boot of its kernel"),
        "the words after a restore: {message}"
    );
    ensure!(
        xen_figure(&j, "reboots") == reboots,
        "the reboot count moved over a restore: {j}"
    );
    same_vm_fresh_and_quiet(site, g, before, &j)
}

/// `j` (a guest's poller json after a restore) is the same VM as `before`,
/// fresh and ok, and the guest has no finding.
pub fn same_vm_fresh_and_quiet(
    site: &LabSite,
    g: &LabGuest,
    before: &serde_json::Value,
    j: &serde_json::Value,
) -> Result<()> {
    // What the probe logged of its runs around the restore (the settle
    // after the resume, echoes without a reply) goes with a failure.
    let probe_log = || {
        site.lab
            .guest_ok(g, "tail -n 12 /run/probe.log")
            .unwrap_or_else(|e| format!("(its log not read: {e:#})"))
    };
    ensure!(
        j["uuid"] == before["uuid"] && j["probe"] == "fresh" && j["status"] == "ok",
        "after the restore: {j}\nthe probe's log in {}:\n{}",
        g.name,
        probe_log()
    );
    let mine = site.raw_for(&g.name)?;
    ensure!(
        mine.is_empty(),
        "findings after a restore: {mine:?}\nthe probe's log in {}:\n{}",
        g.name,
        probe_log()
    );
    Ok(())
}
