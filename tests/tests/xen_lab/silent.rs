//! A save in the middle of a run (its own guest); the hostile guest's
//! chain after its scenario: a probe that stops in a live guest, a crash
//! seen by cron alone, `xl destroy`.

use super::*;

/// A save in the middle of a run (the probe holds between measuring and
/// writing, no other run meanwhile): the run is measured again in the new
/// domain, says it resumed, and dom0 sees no second writer. On a guest of
/// its own, beside the other chains.
pub(crate) fn a_save_in_the_middle_of_a_run_is_measured_again() -> Result<()> {
    let site = site();
    let g = &guests().held;
    probe_runs(site, g, 1)?;
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "fresh" && j["status"] == "ok",
        "hold01 before its save: {j}"
    );
    let save_restore = save_and_restore(g);
    let domid = domid_of(site, &g.name)?;
    site.lab.guest_ok(
        g,
        &format!(
            "{PROBE_TIMER_OFF}; rm -f /run/hold.log; \
             (guest-probe -v --hold-before-write 240 >/run/hold.log 2>&1; echo held-rc=$? >>/run/hold.log) &"
        ),
    )?;
    site.lab.wait_for(
        "the probe to hold before writing",
        Duration::from_secs(60),
        || {
            Ok(site
                .lab
                .guest_ok(g, "cat /run/hold.log")?
                .contains("holding before writing"))
        },
    )?;
    // The held run is judged by a cycle right after it is written: the
    // lab calls a run stale after 75 s, and no other run follows it. So
    // the cycles are held from before the save: the held run is written
    // as soon as the guest resumes, and another scenario's cycle taken
    // before this one held them saw it first, leaving it 38 s old by
    // this one's: stale at the 30 s the lab had then (a soak run, with
    // this scenario beside the save chain's held rounds).
    let (j, mine) = site.cycles_held(|cycle| {
        site.lab.dom0_ok(&save_restore)?;
        site.settled(g, "xl save + xl restore (the probe held)")?;
        let held = site.lab.wait_for(
            "the held run to be written",
            Duration::from_secs(150),
            || {
                Ok(site
                    .lab
                    .guest_ok(g, "cat /run/hold.log")?
                    .contains("held-rc="))
            },
        );
        let log = site
            .lab
            .guest_ok(g, "cat /run/hold.log; xenstore-ls data")?;
        held.with_context(|| log.clone())?;
        ensure!(log.contains("held-rc=0"), "the held probe: {log}");
        let run = site
            .lab
            .guest_ok(g, "xenstore-read data/xsmon/chunk/0")
            .with_context(|| log.clone())?;
        ensure!(
            run.split(' ').nth(4) == Some(&format!("{domid},?")),
            "a run suspended between measuring and writing names its old domain {domid}: {run} ({log})"
        );
        cycle()?;
        let j = site.guest_json(&g.name)?.context("hold01")?;
        Ok((j, site.raw_for(&g.name)?))
    })?;
    ensure!(
        j["status"] == "ok" && j["probe"] == "fresh",
        "after the held run: {j}"
    );
    ensure!(
        !mine.iter().any(|l| l.check == "seq"),
        "a second writer seen across a suspension: {mine:?}"
    );
    site.lab.guest_ok(g, "rm -f /run/probe.off")?;
    Ok(())
}

/// What dom0 sees without the guest (3): a live guest whose probe stopped
/// was "probe not reporting", like the crashed and the paused; now the
/// message says the guest is alive and its probe is not running. Then
/// `xl destroy` (scenario 3): down. Runs on the hostile guest once its
/// scenario is over: its garbage is removed and its probe writes one
/// valid run, then no more.
pub(crate) fn a_live_guest_with_a_dead_probe_is_told_from_a_dead_guest() -> Result<()> {
    let site = site();
    let g = &guests().hostile;
    // One valid run, judged by a cycle right after it: the lab calls a run
    // stale after 75 s, and other scenarios may hold the cycles longer.
    let j = site.cycles_held(|cycle| {
        site.lab.guest_ok(
            g,
            &format!("{PROBE_TIMER_OFF}; xenstore-rm data/xsmon; guest-probe >/dev/null 2>&1"),
        )?;
        cycle()?;
        site.guest_json(&g.name)?.context("evil01 in poller json")
    })?;
    ensure!(j["probe"] == "fresh", "evil01 after one valid run: {j}");
    // stale_after_secs is 75 in the lab, by dom0's clock (which runs slower
    // than the host's under a loaded emulation): wait for the collector to
    // say so, with its words for a silent probe (the CPU time it judges
    // needs two cycles of the stale run).
    let alive = "the guest is alive, its probe is not running";
    let idle = "idle, or hung; CPU time alone cannot tell them apart";
    let j = site.lab.wait_until(
        "evil01 stale, with dom0's words for a silent probe",
        CYCLE_WAIT + Duration::from_secs(60),
        |seen| {
            let j = collected(site, &g.name)?;
            *seen = j.to_string();
            let message = j["message"].as_str().unwrap_or("");
            let said = message.contains(alive) || message.contains(idle);
            Ok((j["probe"] == "stale" && said).then_some(j))
        },
    )?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(j["domain_state"].is_string(), "{j}");
    // Never "hung" on no evidence: an idle guest uses less CPU time than
    // xl shows (0.1 s) for minutes.
    ensure!(!message.contains(": hung"), "{message}");
    if let Some((probe, _, message)) = site.before(&g.name)? {
        ensure!(
            !message.contains("alive") && !message.contains("CPU"),
            "the older xsmon did not fail as the issue says (nothing of what dom0 sees): {probe} {message}"
        );
    }
    crash_seen_with_cron_alone(site, g)?;
    // Scenario 3: `xl destroy`: down.
    site.lab.dom0_ok(&format!("xl destroy {}", g.name))?;
    expect_down(site, &g.name)
}

/// Detection without `host-collector watch`: the kernel of `g` (kept by
/// on_crash = "preserve") crashes, and the next tick of a cron of every
/// minute (`* * * * *`, run in dom0 at the next minute boundary of its
/// clock) runs the cycle that sees it. The time from the crash to the
/// poller's error line once that cycle is done is what cron alone gives
/// (other scenarios' cycles may have seen it sooner; this one would have,
/// alone). With the 5-minute cron of a real site, the wait for the tick
/// is up to 300 s instead of 60.
pub(crate) fn crash_seen_with_cron_alone(site: &LabSite, g: &LabGuest) -> Result<()> {
    // The crash first, until Xen has the domain crashed, then the tick
    // after it: a tick set before the sysrq could fire at a minute
    // boundary a few seconds away, before the kernel died (the trigger
    // goes through the guest's agent).
    let crashed_at = Instant::now();
    site.lab.crash_kernel(g)?;
    // The tick: a cycle at dom0's next minute boundary. It is dom0's own
    // process, which no lock of the harness stops, so it is set only
    // while this scenario holds the cycles: set before (the hold from 4 s
    // before the tick, taken after), it once fired while another scenario
    // held them, between an HVM guest's restore and that scenario's own
    // cycle, which then read "restored or migrated within this dom0"
    // without "since the last cycle" (a soak run of 45ace84). The hold
    // is taken a few seconds before a boundary, not for the whole minute
    // (it was: other scenarios waited up to a minute for a cycle); when
    // taking it took so long that the boundary is too near or gone, it is
    // let go and the next boundary is tried.
    loop {
        let to_boundary = secs_to_dom0_minute(site)?;
        if to_boundary > 8 {
            // Not a wait for a condition: the tick is a moment on the clock.
            std::thread::sleep(Duration::from_secs(to_boundary - 8));
            continue;
        }
        let ticked = site.cycles_held(|_| {
            let Some(started) = cron_tick_at_the_next_minute(site)? else {
                return Ok(false);
            };
            site.cycle_ran_at(started);
            Ok(true)
        })?;
        if ticked {
            break;
        }
    }
    let lines = site.raw_for(&g.name)?;
    ensure!(
        lines.iter().any(|l| l.check == "domain"
            && l.severity == "error"
            && l.message.starts_with("crashed")),
        "after the cron tick: {lines:?} ({})",
        site.lab.dom0_ok("cat /var/log/cron-tick.log")?
    );
    eprintln!(
        "xen lab: a guest's kernel crash to the poller's error line, with cron alone (every minute): {:.1} s",
        crashed_at.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Seconds from now to dom0's next minute boundary, by dom0's clock.
fn secs_to_dom0_minute(site: &LabSite) -> Result<u64> {
    site.lab
        .dom0_ok("echo $((60 - $(date +%s) % 60))")?
        .trim()
        .parse()
        .context("the seconds to dom0's next minute")
}

/// A cron tick in dom0: a cycle at its next minute boundary, if that is 2
/// to 12 s away (else `None`: too near to be sure the tick comes after
/// this was set, or so far that the caller would hold the cycles for
/// long), waited for until its cycle is done. A cycle
/// already running then makes it exit 3 (the collector's lock): tried
/// again until it runs, as the harness's own cycles are. Its start, by
/// dom0's clock.
fn cron_tick_at_the_next_minute(site: &LabSite) -> Result<Option<i64>> {
    let set = site.lab.dom0_ok(
        "rm -f /run/cron.done; d=$((60 - $(date +%s) % 60)); echo $d; [ $d -ge 2 ] && [ $d -le 12 ] || exit 0; \
         ( sleep $d; date +%s >/run/cron.started; \
           for i in $(seq 60); do host-collector collect >/var/log/cron-tick.log 2>&1; rc=$?; [ $rc = 3 ] || break; sleep 0.5; done; \
           touch /run/cron.done ) >/dev/null 2>&1 &",
    )?;
    let d: u64 = set
        .trim()
        .parse()
        .with_context(|| format!("the seconds to dom0's next minute: {set:?}"))?;
    if !(2..=12).contains(&d) {
        return Ok(None);
    }
    site.lab
        .wait_for("the cron tick's cycle", Duration::from_secs(120), || {
            Ok(site.lab.dom0("[ -e /run/cron.done ]")?.rc == 0)
        })?;
    let started = site.lab.dom0_ok("cat /run/cron.started")?;
    started
        .trim()
        .parse()
        .map(Some)
        .with_context(|| format!("the tick's start (dom0's clock): {started:?}"))
}
