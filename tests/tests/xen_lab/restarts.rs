//! The restart chain, on a PV guest with `on_crash = "restart"` (cr01):
//! a start and a crash with `host-collector watch` running, every state
//! snmp-extend serves sampled in dom0 meanwhile; then `xl reboot` and two
//! more crashes (a restart loop), `xl rename` (its old config), and a
//! domain caught while xl builds it (`xl create -p`).

use xsmon_proto::snmpline::{parse_line, Record};

use super::*;

/// One state snmp-extend served for the guest: the cycle it came from
/// (dom0's clock) and its `G` record.
struct Served {
    cycle_time: i64,
    probe: String,
    status: Status,
    domid: Option<u32>,
    message: String,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cycle {} domain {:?}: {} {}: {}",
            self.cycle_time, self.domid, self.probe, self.status, self.message
        )
    }
}

/// `host-collector watch` in dom0 (as the package runs it) and a sampler
/// beside it, reading what snmp-extend serves of one guest three times a
/// second, while the scenario holds the harness's own cycles.
struct Watched<'a> {
    site: &'a LabSite,
    name: String,
}

impl<'a> Watched<'a> {
    fn start(site: &'a LabSite, name: &str) -> Result<Watched<'a>> {
        site.lab.dom0_ok(&format!(
            "rm -f /run/served-{name}; host-collector -v watch >/var/log/watch-{name}.log 2>&1 & echo $! >/run/watch-{name}.pid; \
             ( while :; do snmp-extend basic-monitoring | grep -E '^(xsmon |G {name} )' | tr '\\n' ' '; echo; sleep 0.3; done \
               >/run/served-{name} 2>&1 ) >/dev/null 2>&1 & echo $! >/run/sampler-{name}.pid; sleep 1"
        ))?;
        Ok(Watched {
            site,
            name: name.to_string(),
        })
    }

    /// Every state served so far, oldest first.
    fn served(&self) -> Result<Vec<Served>> {
        let text = self
            .site
            .lab
            .dom0_ok(&format!("cat /run/served-{}", self.name))?;
        Ok(text
            .lines()
            .filter_map(|l| served_of(l, &self.name))
            .collect())
    }

    /// Waits until a state served from a cycle at or after `since` is
    /// `ready`; returns it.
    fn wait(
        &self,
        what: &str,
        since: i64,
        within: Duration,
        ready: impl Fn(&Served) -> bool,
    ) -> Result<Served> {
        self.site.lab.wait_until(what, within, |seen| {
            let served = self.served()?;
            if let Some(last) = served.last() {
                *seen = last.to_string();
            }
            Ok(served
                .into_iter()
                .find(|s| s.cycle_time >= since && ready(s)))
        })
    }

    /// Stops the watch and the sampler; the watch's log.
    fn stop(self) -> Result<String> {
        let n = &self.name;
        self.site.lab.dom0_ok(&format!(
            "kill $(cat /run/sampler-{n}.pid) $(cat /run/watch-{n}.pid) 2>/dev/null; tail -n 40 /var/log/watch-{n}.log"
        ))
    }
}

/// One sampler line: `xsmon 5 state <dom0> <cycle_time> <served> G <name> ...`.
fn served_of(line: &str, name: &str) -> Option<Served> {
    let at = line.find(&format!("G {name} "))?;
    let header: Vec<&str> = line[..at].split_whitespace().collect();
    let cycle_time = header.get(4)?.parse().ok()?;
    match parse_line(line[at..].trim_end()).ok()? {
        Record::Guest {
            probe,
            status,
            domid,
            message,
            ..
        } => Some(Served {
            cycle_time,
            probe,
            status,
            domid,
            message,
        }),
        _ => None,
    }
}

/// dom0's clock now.
fn dom0_now(site: &LabSite) -> Result<i64> {
    let out = site.lab.dom0_ok("date +%s")?;
    out.trim().parse().with_context(|| format!("date: {out}"))
}

/// Crashes the guest's kernel and waits until xl has started it again in
/// a new domain; returns that domain. A trigger the guest's agent did not
/// take (no crash within 60 s) is sent again, three times at most.
pub(crate) fn crash_and_restart(site: &LabSite, g: &LabGuest, old: u32) -> Result<u32> {
    for attempt in 1..=3 {
        let _ = site.lab.guest_within(g, "echo c > /proc/sysrq-trigger", 5);
        let new = site.lab.wait_until(
            &format!("xl to start {} again after its crash", g.name),
            Duration::from_secs(60),
            |seen| {
                let d = site.domid(&g.name).ok();
                *seen = format!("domain {d:?}");
                Ok(d.filter(|d| *d != old))
            },
        );
        match new {
            Ok(d) => return Ok(d),
            Err(e) if attempt < 3 => eprintln!(
                "xen lab: {}'s kernel did not crash within 60 s of sysrq c (attempt {attempt}): {e:#}",
                g.name
            ),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// The served states that break "a start is not an error": an error, a
/// guest said to be down, missing or paused, `xl unpause` advice.
fn false_words(served: &[Served], since: i64) -> Vec<String> {
    served
        .iter()
        .filter(|s| s.cycle_time >= since)
        .filter(|s| {
            s.status == Status::Error
                || matches!(s.probe.as_str(), "down" | "missing" | "stale")
                || (s.probe == "halted" && !s.message.starts_with("crashed"))
                || s.message.contains("unpause")
                || s.message.contains("paused for")
        })
        .map(|s| s.to_string())
        .collect()
}

/// A guest created with the watch running is never served as an error or
/// a warning while it boots: `starting` (ok) until its probe's first run,
/// then `fresh`; never "paused", never "probe not reporting".
pub(crate) fn a_guest_started_with_the_watch_running_is_never_an_error() -> Result<()> {
    let site = site();
    let g = &guests().restart;
    probe_runs(site, g, 1)?;
    site.lab.dom0_ok(&format!("xl destroy {}", g.name))?;
    let served = site.cycles_held(|cycle| {
        cycle()?;
        let watched = Watched::start(site, &g.name)?;
        let created_at = dom0_now(site)?;
        // A create is routine: Nagios, which showed the destroyed guest
        // CRITICAL (down, rightly), raises nothing while it boots.
        let result = alerts().quiet_through(&g.name, "xl create", 2, || {
            site.lab.create(g)?;
            let new = site.domid(&g.name)?;
            watched.wait(
                "the watch to serve the new domain as starting",
                created_at,
                Duration::from_secs(60),
                |s| s.domid == Some(new) && s.probe == "starting",
            )?;
            watched.wait(
                "the new domain's first run, served fresh",
                created_at,
                Duration::from_secs(240),
                |s| s.domid == Some(new) && s.probe == "fresh",
            )?;
            watched.served()
        });
        let log = watched.stop()?;
        let served = result.with_context(|| format!("host-collector watch's log: {log}"))?;
        Ok((created_at, served))
    });
    let (_, served) = served?;
    // From the first state served of the new domain on: before it, the
    // state of the destroyed one ("down", rightly).
    let new = site.domid(&g.name)?;
    let judged: Vec<&Served> = served.iter().skip_while(|s| s.domid != Some(new)).collect();
    let wrong: Vec<String> = judged
        .iter()
        .filter(|s| s.status != Status::Ok || !matches!(s.probe.as_str(), "starting" | "fresh"))
        .map(|s| s.to_string())
        .collect();
    ensure!(
        wrong.is_empty(),
        "served while {} booted (never an error or a warning): {wrong:#?}",
        g.name
    );
    let starting = judged
        .iter()
        .find(|s| s.probe == "starting" && !s.message.starts_with("being created: paused "))
        .context("never served as starting once xl had built it")?;
    ensure!(
        starting.message.starts_with("a new domain of this VM (domain ")
            && starting.message.contains(&format!(" -> {new}) started "))
            && starting
                .message
                .contains(" ago (a boot, a restore or a migration): no probe run from it yet, the first due by "),
        "the starting words: {starting}"
    );
    eprintln!(
        "xen lab: {} served {} times while it booted with the watch running: starting, then fresh",
        g.name,
        judged.len()
    );
    Ok(())
}

/// A crash that xl restarts (`on_crash = "restart"`): within a cycle of
/// the watch, the served state names the crash, the domains and xl's
/// action; never an error, never "paused", never down.
pub(crate) fn a_crash_that_xl_restarts_is_named_within_one_cycle_of_the_watch() -> Result<()> {
    let site = site();
    let g = &guests().restart;
    probe_runs(site, g, 1)?;
    let old = site.domid(&g.name)?;
    let outcome = site.cycles_held(|cycle| {
        cycle()?;
        let watched = Watched::start(site, &g.name)?;
        let crashed_at = dom0_now(site)?;
        let started = Instant::now();
        let result = (|| {
            let new = crash_and_restart(site, g, old)?;
            let named = watched.wait(
                "the watch to serve the crash and its restart",
                crashed_at,
                Duration::from_secs(90),
                |s| s.message.contains("crashed and restarted by the toolstack"),
            )?;
            let took = started.elapsed();
            // Within one cycle: the first state served of the new domain
            // says the crash.
            let first = watched
                .served()?
                .into_iter()
                .find(|s| s.domid == Some(new))
                .context("the new domain was never served")?;
            ensure!(
                first
                    .message
                    .contains("crashed and restarted by the toolstack"),
                "the first state served of domain {new}: {first}"
            );
            watched.wait(
                "the new domain's first run, served fresh",
                crashed_at,
                Duration::from_secs(240),
                |s| s.domid == Some(new) && s.probe == "fresh",
            )?;
            Ok((new, named, took, watched.served()?))
        })();
        let log = watched.stop()?;
        result.with_context(|| format!("host-collector watch's log: {log}"))
    });
    let (new, named, took, served) = outcome?;
    eprintln!(
        "xen lab: a crash xl restarted, to the served words that say so, with host-collector watch: {:.1} s",
        took.as_secs_f64()
    );
    ensure!(
        named.status == Status::Warning
            && named.message.contains(&format!(
                "crashed and restarted by the toolstack (domain {old} -> {new}, at "
            ))
            && named
                .message
                .contains(", on_crash = \"restart\" as xl's log says)"),
        "the crash's words: {named}"
    );
    let wrong = false_words(&served, named.cycle_time);
    ensure!(
        wrong.is_empty(),
        "served after the crash (a warning, never an error, never paused): {wrong:#?}"
    );
    // The crash stays said while the guest runs again.
    let j = collected(site, &g.name)?;
    ensure!(
        j["probe"] == "fresh"
            && j["status"] == "warning"
            && j["message"]
                .as_str()
                .is_some_and(|m| m.contains("crashed and restarted by the toolstack")),
        "running again after the crash: {j}"
    );
    Ok(())
}

/// `xl reboot` is a restart said as a reboot, never a crash; two more
/// crashes make four restarts in the hour: a restart loop that counts
/// each kind.
pub(crate) fn a_reboot_is_no_crash_and_repeated_crashes_are_a_restart_loop() -> Result<()> {
    let site = site();
    let g = &guests().restart;
    let before = site.domid(&g.name)?;
    site.lab.dom0_ok(&format!("xl reboot {}", g.name))?;
    let rebooted =
        site.lab
            .wait_until("xl reboot: a new domain", Duration::from_secs(90), |seen| {
                let d = site.domid(&g.name).ok();
                *seen = format!("domain {d:?}");
                Ok(d.filter(|d| *d != before))
            })?;
    site.settled(g, "xl reboot")?;
    let j = collected(site, &g.name)?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        message.contains(&format!("rebooted (domain {before} -> {rebooted}, at "))
            && message.matches("crashed and restarted").count() == 1
            && !message.contains(&format!(
                "crashed and restarted by the toolstack (domain {before} -> {rebooted}"
            )),
        "after xl reboot (the earlier crash's warning stands, the reboot is no crash): {message}"
    );
    let mut domid = rebooted;
    for _ in 0..2 {
        site.lab.wait_guest_up(g, Duration::from_secs(240))?;
        domid = crash_and_restart(site, g, domid)?;
    }
    site.settled(g, "the third crash")?;
    let j = collected(site, &g.name)?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        j["status"] == "warning"
            && message.contains("restarted 4 times in the last 60 min (3 crashes, 1 reboot; at ")
            && message.contains("): a restart loop (restart_loop_count = 3)"),
        "after xl reboot and three crashes: {j}"
    );
    let lines = site.raw_for(&g.name)?;
    ensure!(
        lines
            .iter()
            .any(|l| l.check == "restarts" && l.severity == "warning"),
        "the loop's own line: {lines:?}"
    );
    Ok(())
}

/// After `xl rename`, the VM's old config is said as such, a warning, not
/// a guest that should run; a domain xl builds paused is `starting`, never
/// "paused" with advice.
pub(crate) fn a_renamed_guests_old_config_and_a_domain_being_built() -> Result<()> {
    let site = site();
    let g = &guests().restart;
    site.lab.wait_guest_up(g, Duration::from_secs(240))?;
    site.lab.dom0_ok(&format!("xl rename {} cr02", g.name))?;
    collected(site, "cr02")?;
    let j = collected(site, &g.name)?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        j["probe"] == "renamed"
            && j["status"] == "warning"
            && message.starts_with(&format!("{}.cfg: this VM runs here as cr02 since ", g.name))
            && message.ends_with(": rename the config or remove it"),
        "the old config after xl rename: {j}"
    );
    site.lab.dom0_ok(&format!("xl rename cr02 {}", g.name))?;
    let j = collected(site, &g.name)?;
    ensure!(j["probe"] != "renamed", "renamed back: {j}");

    // Built paused (`xl create -p`): xl's own pause while it builds.
    site.lab.dom0_ok(&format!(
        "xl destroy {n} && xl create -p /data/config/auto/xenlab/{n}.cfg",
        n = g.name
    ))?;
    let j = collected(site, &g.name)?;
    let message = j["message"].as_str().unwrap_or("");
    ensure!(
        j["probe"] == "starting"
            && j["domain_state"] == "paused"
            && j["status"] != "error"
            && message.starts_with("being created: paused ")
            && !message.contains("unpause"),
        "a domain xl built paused, seconds old: {j}"
    );
    site.lab.dom0_ok(&format!("xl unpause {}", g.name))?;
    site.settled(g, "xl unpause")?;
    site.lab.wait_guest_up(g, Duration::from_secs(240))?;
    Ok(())
}
