//! The lab seen from the central host: the real poller polls dom0's real
//! snmpd, with a shared config directory holding the lab dom0's folder;
//! collector cycles run in dom0 one at a time, shared by the scenarios
//! that wait side by side.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xsmon_proto::Status;

use super::guest::{LabGuest, LAB_DOM0, LAST_PROBE_RUN_10S_AGO};
use super::lab::XenLab;
use super::Xenstored;

/// Collector cycles run in this process (see [`super::harness_load`]).
pub(super) static CYCLES: AtomicU64 = AtomicU64::new(0);

/// The cycles held by scenarios ([`LabSite::cycles_held`]) and the waits
/// for the cycles' lock, in milliseconds (see [`super::cycle_holds`]):
/// while one scenario holds them, every other one that needs a cycle
/// waits.
pub(super) static HOLDS: AtomicU64 = AtomicU64::new(0);
pub(super) static HELD_MS: AtomicU64 = AtomicU64::new(0);
pub(super) static LONGEST_HOLD_MS: AtomicU64 = AtomicU64::new(0);
pub(super) static LOCK_WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// The least time between the starts of two cycles asked with
/// [`LabSite::collect`]: snmpd serves an extend's output for 5 s anyway.
const CYCLE_SPACING: Duration = Duration::from_secs(5);

/// A lab seen from the central host: the real poller, with a shared config
/// directory holding the lab dom0's folder, polls dom0's real snmpd.
pub struct LabSite {
    pub lab: XenLab,
    /// From dom0 up to every guest of [`LabSite::boot_with`] reporting.
    pub ready_after: Duration,
    /// Xen's triple faults logged by then ([`XenLab::triple_faults`]).
    pub faults_when_ready: usize,
    dir: tempfile::TempDir,
    poller_config: PathBuf,
    /// One collector cycle at a time (the collector refuses a second one).
    collect_lock: Mutex<()>,
    /// When the latest cycle started, by dom0's clock.
    last_cycle: Mutex<i64>,
    /// When the latest cycle was asked of dom0, by the host's clock.
    last_asked: Mutex<Option<Instant>>,
}

impl LabSite {
    pub fn new(lab: XenLab) -> Result<LabSite> {
        let dir = tempfile::tempdir()?;
        let auto = dir.path().join("auto");
        fs::create_dir_all(auto.join(LAB_DOM0))?;
        let poller_config = dir.path().join("poller.toml");
        crate::write_private(
            &poller_config,
            format!(
                "config_dirs = [\"{}\"]\n[snmp]\ncommunity = \"{}\"\ntimeout_ms = 15000\nretries = 2\n[addresses]\n{LAB_DOM0} = \"{}\"\n",
                auto.display(),
                crate::COMMUNITY,
                lab.snmp_target()
            ),
        )?;
        Ok(LabSite {
            lab,
            ready_after: Duration::ZERO,
            faults_when_ready: 0,
            dir,
            poller_config,
            collect_lock: Mutex::new(()),
            last_cycle: Mutex::new(0),
            last_asked: Mutex::new(None),
        })
    }

    /// Creates guests on the lab, with their configs in the shared config
    /// directory both dom0 and the poller read.
    pub fn create_all(&self, guests: &[&LabGuest]) -> Result<()> {
        for g in guests {
            fs::write(
                self.dir
                    .path()
                    .join("auto")
                    .join(LAB_DOM0)
                    .join(format!("{}.cfg", g.name)),
                g.xl_config(),
            )?;
        }
        self.lab.create_all(guests)
    }

    /// Boots a lab with `xenstored`, creates `guests` on it and waits
    /// until each has booted (and run its probe once, where it has one);
    /// then runs one collector cycle, so that the next has CPU % from it.
    pub fn boot_with(xenstored: Xenstored, guests: &[&LabGuest]) -> Result<LabSite> {
        let lab = XenLab::boot(xenstored)?;
        eprintln!(
            "xen lab ({xenstored:?}): dom0 up {:.1} s after QEMU started (Xen {}, {})",
            lab.boot_time.as_secs_f64(),
            lab.xen_version,
            lab.accel
        );
        // Every collect below runs under the shipped units' sandbox: first
        // see that it holds and lets xl, xenstore, /proc/xen and sysfs
        // through.
        for line in super::sandbox::check_collector_sandbox(&lab)? {
            eprintln!("xen lab ({xenstored:?}): collector sandbox on the real dom0: {line}");
        }
        let mut site = LabSite::new(lab)?;
        let t = Instant::now();
        let faults = site.lab.triple_faults();
        site.create_all(guests)?;
        for g in guests {
            site.lab.wait_guest_up_after_a_boot_fault(g, faults)?;
        }
        site.ready_after = t.elapsed();
        // The probes run under their unit's sandbox too: see it in force
        // in the first PV or PVH guest that runs the probe.
        if let Some(g) = guests
            .iter()
            .find(|g| g.kind != "hvm" && !g.name.starts_with("bare"))
        {
            let line = super::sandbox::check_probe_sandbox(&site.lab, g)?;
            eprintln!(
                "xen lab ({xenstored:?}): the probe's sandbox in {}: {line}",
                g.name
            );
        }
        site.faults_when_ready = site.lab.triple_faults();
        eprintln!(
            "xen lab ({xenstored:?}): {} guests created and reporting in {:.1} s",
            guests.len(),
            site.ready_after.as_secs_f64()
        );
        site.collect()?;
        // What one cycle costs on the real dom0, as the collector measures
        // it (logged at -v: "ms=...").
        let out = site.lab.dom0_ok("host-collector -v collect 2>&1")?;
        if let Some(ms) = out.split_whitespace().find_map(|w| w.strip_prefix("ms=")) {
            eprintln!(
                "xen lab ({xenstored:?}): one collector cycle on the real dom0 ({} guests): {ms} ms",
                guests.len()
            );
        }
        Ok(site)
    }

    /// Waits until the guest has run its probe `n` more times, starting
    /// each run at once: the guest's timer is long (every 30 s, each run
    /// costs the emulated machine), and a wait cut short by the harness
    /// is its "run the cron job now" (the guest's init kills the sleep
    /// between runs, scripts/xen-lab; the run itself is the timer's own).
    /// Never within 10 s of the last run: its CPU figures are over the
    /// interval since ([`LAST_PROBE_RUN_10S_AGO`]).
    pub fn probe_runs(&self, g: &LabGuest, n: usize) -> Result<()> {
        let runs = |start_another_below: usize| -> Result<usize> {
            let out = self.lab.guest_ok(
                g,
                &format!(
                    "n=$(grep -c '^probe rc=' /run/probe.runs); \
                     if [ \"$n\" -lt {start_another_below} ] && {LAST_PROBE_RUN_10S_AGO} && p=$(cat /run/probe.sleep 2>/dev/null); then \
                     kill -KILL \"$p\" 2>/dev/null; fi; echo \"runs=$n\""
                ),
            )?;
            out.lines()
                .find_map(|l| l.trim().strip_prefix("runs="))
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("{}'s probe runs: {out}", g.name))
        };
        let start = runs(0)?;
        self.lab.wait_for(
            &format!("{n} more probe runs in {}", g.name),
            Duration::from_secs(30 + 30 * n as u64),
            || Ok(runs(start + n)? >= start + n),
        )
    }

    /// The guest's entry in `poller json` after a fresh collector cycle.
    pub fn collected(&self, name: &str) -> Result<serde_json::Value> {
        self.collect()?;
        match self.guest_json(name)? {
            Some(j) => Ok(j),
            None => {
                // Say what the poller said of the lab's dom0 instead.
                let (out, code) = self.run_poller(&["json"])?;
                let dom0 = serde_json::from_str::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|j| {
                        let mut d = lab_dom0(&j)?.clone();
                        d["guests"] = serde_json::Value::Null;
                        Some(d.to_string())
                    });
                bail!("{name} is not in poller json (exit {code}; the lab's dom0: {dom0:?})")
            }
        }
    }

    /// The domain's id now (`xl domid`).
    pub fn domid(&self, name: &str) -> Result<u32> {
        let out = self.lab.dom0_ok(&format!("xl domid {name}"))?;
        out.trim()
            .parse()
            .with_context(|| format!("xl domid {name}: {out}"))
    }

    /// With `XSMON_LAB_BEFORE` (an older xsmon's collector and snmp-extend
    /// in dom0 beside the current ones, see scripts/xen-lab): one cycle of
    /// the older collector, on its own config and database, and the line
    /// that version's basic-monitoring gives `name`: what it reported of
    /// the same domain at the same moment (its probe word, status and
    /// message). `None` in a lab without it.
    pub fn before(&self, name: &str) -> Result<Option<(String, Status, String)>> {
        let out = self.lab.dom0(
            "[ -x /usr/lib/xsmon-before/host-collector ] || exit 10; \
             /usr/lib/xsmon-before/host-collector --config /etc/xsmon/before.toml collect >/dev/null 2>&1; \
             /usr/lib/xsmon-before/snmp-extend basic-monitoring --db /var/lib/xsmon/before.db",
        )?;
        if out.rc == 10 {
            return Ok(None);
        }
        let text = out.ok("the older xsmon's basic-monitoring")?;
        // Today's reader reads that version's lines, as the poller does.
        let records = xsmon_proto::snmpline::parse_all(&text)
            .map_err(|e| anyhow::anyhow!("the older xsmon's lines: {e}: {text}"))?;
        let said = records
            .into_iter()
            .find_map(|r| match r {
                xsmon_proto::snmpline::Record::Guest {
                    host,
                    probe,
                    status,
                    message,
                    ..
                } if host == name => Some((probe, status, message)),
                _ => None,
            })
            .with_context(|| format!("the older xsmon says nothing of {name}: {text}"))?;
        eprintln!(
            "xen lab: the older xsmon (XSMON_LAB_BEFORE) said of {name}: {} {}: {}",
            said.0,
            said.1.as_str(),
            said.2
        );
        Ok(Some(said))
    }

    /// `poller raw`'s lines about one guest.
    pub fn raw_for(&self, name: &str) -> Result<Vec<xsmon_proto::rawline::RawLine>> {
        Ok(self.raw()?.into_iter().filter(|l| l.host == name).collect())
    }

    /// Runs one collector cycle on the lab's dom0: a cycle that starts
    /// after this call. Tests run side by side: one that waited for
    /// another's cycle, asked after its own call began, takes that cycle
    /// (one emulated cycle costs seconds).
    ///
    /// Cycles asked this way start at least [`CYCLE_SPACING`] apart: the
    /// scenarios' waits ask for one per look, and back-to-back cycles on
    /// the emulated dom0 slowed the whole lab; a caller that arrives
    /// during the spacing shares the next cycle.
    pub fn collect(&self) -> Result<String> {
        let called = Instant::now();
        let _one = self.lock_cycles();
        let last = *self.last_asked.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t > called) {
            return Ok("(a cycle that started after this call)".into());
        }
        if let Some(t) = last {
            // Not a wait for a condition: the lab's pace.
            std::thread::sleep(CYCLE_SPACING.saturating_sub(t.elapsed()));
        }
        self.cycle()
    }

    /// Runs `f` while no other test can run a collector cycle; `f` runs
    /// its own with the function it is given. For a scenario whose words
    /// appear only in the first cycle after an event (a VM's new domain).
    pub fn cycles_held<T>(
        &self,
        f: impl FnOnce(&dyn Fn() -> Result<String>) -> Result<T>,
    ) -> Result<T> {
        let _one = self.lock_cycles();
        let held = Instant::now();
        let out = f(&|| self.cycle());
        let ms = held.elapsed().as_millis() as u64;
        HOLDS.fetch_add(1, Ordering::Relaxed);
        HELD_MS.fetch_add(ms, Ordering::Relaxed);
        LONGEST_HOLD_MS.fetch_max(ms, Ordering::Relaxed);
        out
    }

    /// The cycles' lock, its wait counted in [`LOCK_WAIT_MS`].
    fn lock_cycles(&self) -> MutexGuard<'_, ()> {
        let asked = Instant::now();
        let one = self.collect_lock.lock().unwrap_or_else(|e| e.into_inner());
        LOCK_WAIT_MS.fetch_add(asked.elapsed().as_millis() as u64, Ordering::Relaxed);
        one
    }

    /// One cycle, now (the caller holds `collect_lock`).
    fn cycle(&self) -> Result<String> {
        CYCLES.fetch_add(1, Ordering::Relaxed);
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // A `host-collector watch` running in dom0 may hold the lock (exit
        // 3): wait for its cycle to end.
        let out = self.lab.dom0_ok(
            "date +%s; for i in $(seq 60); do host-collector collect 2>&1; rc=$?; \
             [ $rc = 3 ] || break; sleep 0.5; done; exit $rc",
        )?;
        let started: i64 = out
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("dom0's clock: {out}"))?;
        self.cycle_ran_at(started);
        Ok(out)
    }

    /// A cycle that started at `started` by dom0's clock, the harness's
    /// own or one dom0 ran by itself (a cron tick): later polls wait until
    /// snmpd serves it or a later one. Without it, for the tick, a poll right after
    /// the tick could be served snmpd's cached output of the cycle before,
    /// filled by another chain's poll a moment earlier (seen: the tick's
    /// crash read as the guest still running).
    pub fn cycle_ran_at(&self, started: i64) {
        let mut last = self.last_cycle.lock().unwrap_or_else(|e| e.into_inner());
        *last = (*last).max(started);
    }

    /// snmpd keeps an extend's output for 5 s (NET-SNMP-EXTEND-MIB's
    /// nsExtendCacheTime, not settable from snmpd.conf): waits until what
    /// it serves comes from a cycle no older than the last [`collect`], so
    /// that a poll right after a cycle reads that cycle.
    ///
    /// [`collect`]: LabSite::collect
    fn wait_served_current(&self) -> Result<()> {
        let want = *self.last_cycle.lock().unwrap_or_else(|e| e.into_inner());
        let what = format!("snmpd to serve dom0's cycle of {want} (dom0's clock) or a later one");
        self.lab.wait_until(&what, Duration::from_secs(60), |seen| {
            let (out, code) = self.run_poller(&["json"])?;
            let served = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|j| lab_dom0(&j)?["cycle_time"].as_i64());
            *seen = format!("poller json exit {code}, cycle_time {served:?}");
            Ok(served.is_some_and(|t| t >= want).then_some(()))
        })
    }

    /// `lab.settled` for a guest of this site, after `after` (which may
    /// include a whole boot of the guest's kernel: `xl create`, `xl
    /// reboot`, under emulation and load up to minutes).
    pub fn settled(&self, g: &LabGuest, after: &str) -> Result<u32> {
        self.lab.settled(g, after, Duration::from_secs(240))
    }

    /// Runs the real poller against the lab (after the served state caught
    /// up with the last cycle): stdout and exit code.
    ///
    /// The poller reads a dom0's state and its figures in two reads; when
    /// a cycle (another scenario's) ended between them, or the figures'
    /// read timed out on the emulated dom0, it shows no figures and says so
    /// (a warning, "figures unavailable: ..."). The scenarios judge one
    /// cycle's state and figures together, so such a poll is made again,
    /// until one reads both.
    pub fn poll(&self, args: &[&str]) -> Result<(String, i32)> {
        self.wait_served_current()?;
        let what = format!(
            "poller {} reading the lab dom0's state and figures of one cycle",
            args.join(" ")
        );
        self.lab
            .wait_until(&what, Duration::from_secs(120), |seen| {
                let (out, code) = self.run_poller(args)?;
                // As json and nagios print it, and as raw lines escape it.
                // The lab's dom0 not answering SNMP in the poller's time
                // (the emulator under load) is a poll to make again: its
                // guests' lines are missing from such an output.
                let unavailable = [
                    "figures unavailable",
                    "figures\\sunavailable",
                    "dom0 unreachable",
                    "dom0\\sunreachable",
                    "dom0 stopped answering",
                    "dom0\\sstopped\\sanswering",
                ];
                if let Some(line) = out
                    .lines()
                    .find(|l| unavailable.iter().any(|m| l.contains(m)))
                {
                    *seen = format!(
                        "exit {code}: {}",
                        line.chars().take(300).collect::<String>()
                    );
                    return Ok(None);
                }
                Ok(Some((out, code)))
            })
    }

    /// The poller's config for this site (the shared config directory,
    /// the community, dom0's address).
    pub fn poller_config(&self) -> &Path {
        &self.poller_config
    }

    fn run_poller(&self, args: &[&str]) -> Result<(String, i32)> {
        let out = Command::new(crate::bin("poller"))
            .args(args)
            .arg("--config")
            .arg(&self.poller_config)
            .output()
            .context("running the poller")?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        ))
    }

    /// `poller raw`, parsed.
    pub fn raw(&self) -> Result<Vec<xsmon_proto::rawline::RawLine>> {
        let (out, _) = self.poll(&["raw"])?;
        out.lines()
            .map(|l| {
                xsmon_proto::rawline::parse(l)
                    .map_err(|e| anyhow::anyhow!("unreadable raw line {l:?}: {e}"))
            })
            .collect()
    }

    /// `poller json`'s entry for one guest of the lab dom0.
    pub fn guest_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let (out, _) = self.poll(&["json"])?;
        let j: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("poller json: {out}"))?;
        Ok(lab_dom0(&j)
            .and_then(|d| d["guests"].as_array())
            .and_then(|guests| guests.iter().find(|g| g["name"] == name))
            .cloned())
    }
}

/// The lab dom0's entry in `poller json`.
fn lab_dom0(json: &serde_json::Value) -> Option<&serde_json::Value> {
    json["dom0s"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == LAB_DOM0)
}
