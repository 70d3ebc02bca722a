//! The save chains: five saves and restores over two guests (three of
//! save01, then a second writer in it and a crash with on_crash =
//! "destroy"; two of save02, side by side).

use super::*;

/// Scenario 6 and saves without false findings: five `xl save` + `xl
/// restore` cycles of a PV guest, each the same VM under a new domid, with
/// no warning and no error (the run after a restore used to warn of steal:
/// the kernel books the restore as steal), three of them with the words
/// dom0 gives them. Rounds 1 to 3 here, on save01; 4 and 5 on save02
/// ([`two_more_saves_continue_the_same_vm`]): the five on one guest made
/// the lab's longest chain. (A save in the middle of a run is
/// [`a_save_in_the_middle_of_a_run_is_measured_again`], on another guest.)
pub(crate) fn save_and_restore_continue_the_same_vm() -> Result<()> {
    let g = &guests().saved;
    routine(g, "xl save and xl restore, three times", || {
        save_rounds(site(), g, 1..=3)
    })
}

/// Rounds 4 and 5 of [`save_and_restore_continue_the_same_vm`], on save02.
pub(crate) fn two_more_saves_continue_the_same_vm() -> Result<()> {
    let g = &guests().saved2;
    routine(g, "xl save and xl restore, twice", || {
        save_rounds(site(), g, 4..=5)
    })
}

/// Save and restore rounds `rounds` of the five, on `g`: round 1 measures
/// the steal the guest's kernel booked across it, rounds 2 to 4 read
/// dom0's words with the first cycle after the new domain (round 3 after
/// two probe runs), round 5 is plain.
fn save_rounds(site: &LabSite, g: &LabGuest, rounds: std::ops::RangeInclusive<u32>) -> Result<()> {
    probe_runs(site, g, 1)?;
    let before = collected(site, &g.name)?;
    ensure!(
        xen_figure(&before, "reboots").is_some(),
        "no reboot count: {before}"
    );
    let save_restore = save_and_restore(g);
    // The runs the probe wrote, as it logs them (the lab runs it with -v):
    // "... results written seq=12 checks=5 resumed=7,8400".
    let runs = || -> Result<Vec<String>> {
        Ok(site
            .lab
            .guest_ok(g, "grep 'results written' /run/probe.log")?
            .lines()
            .map(str::to_string)
            .collect())
    };
    for round in rounds {
        let domid = domid_of(site, &g.name)?;
        let written_before = runs()?.len();
        let check = |j: &serde_json::Value| -> Result<()> {
            scenarios::same_vm_fresh_and_quiet(site, g, &before, j)
                .with_context(|| format!("restore {round}"))
        };
        if (2..=4).contains(&round) {
            // Words come with the first cycle after the new domain; no
            // other test's cycle may come in between. In round 3, two
            // probe runs before it: the run dom0 reads is not the one that
            // says it resumed (the words then come from the kernel's boot
            // id), as with a 5-minute cron and a restore a few minutes
            // before.
            site.cycles_held(|cycle| {
                cycle()?;
                site.lab.dom0_ok(&save_restore)?;
                site.settled(g, "xl save + xl restore")?;
                // Round 3: two runs, so the run read is not the first.
                probe_runs(site, g, if round == 3 { 2 } else { 1 })?;
                cycle()?;
                scenarios::restored_not_rebooted(site, g, domid, &before)
                    .with_context(|| format!("restore {round}"))
            })?;
        } else if round == 1 {
            // Steal after a restore: what the guest's kernel booked over
            // the save and restore (its /proc/stat, before and after),
            // against what the probe reports for its first run after.
            let stat = || -> Result<(u64, u64)> {
                let line = site.lab.guest_ok(g, "head -1 /proc/stat")?;
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                ensure!(f.len() >= 8, "/proc/stat: {line}");
                Ok((f[7], f.iter().take(8).sum()))
            };
            let (steal0, total0) = stat()?;
            site.lab.dom0_ok(&save_restore)?;
            site.settled(g, "xl save + xl restore")?;
            probe_runs(site, g, 1)?;
            let (steal1, total1) = stat()?;
            let kernel = 100.0 * (steal1 - steal0) as f64 / (total1 - total0).max(1) as f64;
            let j = collected(site, &g.name)?;
            let figures = site.lab.dom0_ok("snmp-extend figures")?;
            let probe = figures
                .lines()
                .find(|l| l.starts_with(&format!("M {} cpu cpu ", g.name)))
                .and_then(|l| {
                    l.split(' ')
                        .nth(6)?
                        .split("\\s")
                        .find_map(|v| v.strip_prefix("steal_pct="))
                })
                .unwrap_or("?")
                .to_string();
            eprintln!(
                "xen lab: steal across a save and restore, by the guest's kernel: {kernel:.1}% over {:.0} s; the probe's first run after it: {probe}% (a short sample, not graded)",
                (total1 - total0) as f64 / 100.0
            );
            check(&j)?;
        } else {
            site.lab.dom0_ok(&save_restore)?;
            site.settled(g, "xl save + xl restore")?;
            probe_runs(site, g, 1)?;
            check(&collected(site, &g.name)?)?;
        }
        let after = domid_of(site, &g.name)?;
        ensure!(after != domid, "restore {round}: same domid {domid}");
        let since = runs()?.split_off(written_before);
        ensure!(
            since
                .iter()
                .any(|l| l.contains(&format!("resumed={domid},"))),
            "restore {round}: no run after it says it resumed from domain {domid}: {since:?}"
        );
    }

    Ok(())
}

/// Scenario 3 (with the end of the silent-probe test, which destroys its
/// guest with `xl destroy`): a kernel crash with on_crash = "destroy": the
/// guest is down (it has a config under this dom0).
pub(crate) fn a_guest_crashed_and_destroyed_is_down() -> Result<()> {
    let site = site();
    let g = &guests().saved;
    // First, within one running domain, a second writer: the run's seq
    // rewritten with other content is still a warning. Both cycles come
    // right after the guest's steps: its last run must not go stale.
    let (j, mine) = site.cycles_held(|cycle| {
        site.lab.guest_ok(g, PROBE_TIMER_OFF)?;
        cycle()?;
        site.lab.guest_ok(
            g,
            "c=$(xenstore-read data/xsmon/chunk/0) && xenstore-write data/xsmon/chunk/0 \"$(echo \"$c\" | sed 's/ ok / warning /')\"",
        )?;
        cycle()?;
        let j = site.guest_json(&g.name)?.context("save01")?;
        Ok((j, site.raw_for(&g.name)?))
    })?;
    ensure!(
        mine.iter().any(|l| l.check == "seq"
            && l.severity == "warning"
            && l.message.contains("more than one probe")),
        "a second writer in one domain: {j} {mine:?}"
    );
    site.lab.guest_ok(g, "rm -f /run/probe.off")?;
    probe_runs(site, g, 1)?;
    // The guest's kernel panics; the agent's connection dies with it.
    site.lab.crash_kernel(g)?;
    site.lab
        .wait_for("crash01 to be destroyed", Duration::from_secs(60), || {
            Ok(site.lab.xl_state(&g.name)?.is_none())
        })?;
    expect_down(site, &g.name)
}
