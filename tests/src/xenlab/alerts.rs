//! The admin's end of the pipeline beside the lab: `poller serve` polling
//! the lab's dom0 over SNMP every [`INTERVAL_SECS`] and pushing each
//! cycle's results into a real Nagios 4 (Debian's `nagios4`, objects from
//! `poller nagios-objects`), as docs/deploy.md sets a site up. Scenarios
//! read Nagios's own record: its log's alerts and its status file.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

use super::site::LabSite;
use crate::nagios::{Alert, Nagios, Running};
use crate::service::{wait_for, PollerService};

/// The service's interval here: each poll of the emulated dom0 takes
/// about a second; a crash must reach Nagios within seconds.
pub const INTERVAL_SECS: u64 = 2;

/// How long after a change on dom0 a poll surely reads it: snmpd keeps an
/// extend's output for 5 s (its nsExtendCacheTime), then the next poll of
/// the service runs the extend again.
const SNMPD_CACHE: i64 = 5;

pub struct LabAlerts {
    // Dropped in this order: the service stops pushing, then Nagios stops.
    service: PollerService,
    nagios: Running,
    _config: Nagios,
    service_config: PathBuf,
    dir: tempfile::TempDir,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl LabAlerts {
    /// Generates Nagios's objects for the site (a live poll), checks them
    /// with `nagios4 -v`, starts Nagios, then the poller service pushing
    /// into its command file; returns once Nagios holds a result for
    /// every guest of the site.
    pub fn start(site: &LabSite) -> Result<LabAlerts> {
        let dir = tempfile::tempdir()?;
        let base = fs::read_to_string(site.poller_config())?;
        let objects = dir.path().join("xsmon-objects.cfg");
        let generated = std::process::Command::new(crate::bin("poller"))
            .args(["nagios-objects", "--live", "--config"])
            .arg(site.poller_config())
            .output()
            .context("running poller nagios-objects")?;
        ensure!(
            generated.status.success(),
            "poller nagios-objects: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        fs::write(&objects, &generated.stdout)?;
        let config = Nagios::new(&[&objects])?;
        let verified = config.verify()?;
        ensure!(
            verified.status.success(),
            "nagios4 -v refuses the generated objects:\n{}",
            String::from_utf8_lossy(&verified.stdout)
        );
        let nagios = config.start()?;
        let service_config = dir.path().join("poller-serve.toml");
        crate::write_private(
            &service_config,
            format!(
                "{base}\n[service]\ninterval_secs = {INTERVAL_SECS}\nstate = \"{}\"\n[push]\nnagios_command_file = \"{}\"\n",
                dir.path().join("poller.db").display(),
                nagios.command_file().display()
            ),
        )?;
        let service = PollerService::start(&service_config)?;
        let alerts = LabAlerts {
            service,
            nagios,
            _config: config,
            service_config,
            dir,
        };
        let guests: Vec<String> = String::from_utf8_lossy(&generated.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("alias                   guest "))
            .map(str::to_string)
            .collect();
        ensure!(!guests.is_empty(), "no guest in the generated objects");
        alerts.wait(
            "Nagios to hold a pushed result for every guest",
            Duration::from_secs(120),
            || {
                let status = alerts.nagios.status();
                Ok(guests
                    .iter()
                    .all(|g| {
                        status
                            .iter()
                            .any(|s| &s.host == g && s.service == "xsmon" && s.last_check > 0)
                    })
                    .then_some(()))
            },
        )?;
        Ok(alerts)
    }

    /// [`wait_for`] with the service's and Nagios's last log lines on a
    /// timeout.
    fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        look: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        wait_for(what, within, look).with_context(|| self.diagnosis())
    }

    /// The tails of the service's log and Nagios's.
    pub fn diagnosis(&self) -> String {
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "poller serve's log (last lines):\n{}\nNagios's log (last lines):\n{}",
            tail(self.service.log()),
            tail(self.nagios.log())
        )
    }

    /// Waits until Nagios logs `guest`'s `xsmon` service in `state`
    /// (HARD: the objects take one attempt), and returns the alert.
    pub fn wait_service_alert(
        &self,
        guest: &str,
        state: &str,
        since: i64,
        within: Duration,
    ) -> Result<Alert> {
        self.wait(
            &format!("Nagios to log {guest}'s xsmon {state}"),
            within,
            || {
                Ok(self.nagios.alerts().into_iter().find(|a| {
                    a.host == guest && a.service == "xsmon" && a.state == state && a.time >= since
                }))
            },
        )
    }

    /// Waits until Nagios holds a result for `guest` from a poll that
    /// read dom0 after `after` (Unix seconds): one that began past the
    /// snmpd cache's time.
    pub fn wait_result_after(
        &self,
        guest: &str,
        after: i64,
        within: Duration,
    ) -> Result<crate::nagios::Status> {
        self.wait(
            &format!("Nagios to hold a result for {guest} polled after {after}"),
            within,
            || {
                Ok(self.nagios.status().into_iter().find(|s| {
                    s.host == guest && s.service == "xsmon" && s.last_check > after + SNMPD_CACHE
                }))
            },
        )
    }

    /// What Nagios holds now of `guest`'s `xsmon` service.
    pub fn status(&self, guest: &str) -> Option<crate::nagios::Status> {
        self.nagios
            .status()
            .into_iter()
            .find(|s| s.host == guest && s.service == "xsmon")
    }

    /// Waits until Nagios shows `guest`'s `xsmon` service in `state` (0 OK
    /// .. 3 UNKNOWN).
    pub fn wait_state(&self, guest: &str, state: u8, within: Duration) -> Result<()> {
        self.wait(
            &format!("Nagios to show {guest}'s xsmon in state {state}"),
            within,
            || {
                Ok(self
                    .nagios
                    .status()
                    .iter()
                    .any(|s| s.host == guest && s.service == "xsmon" && s.state == state)
                    .then_some(()))
            },
        )
    }

    /// Runs `routine` (a create, reboot, save and restore, migration of
    /// `guest`), then waits for a result read after it, and fails if
    /// Nagios raised a problem for the guest meanwhile, or if its service
    /// is not OK after; before, it must be in `state_before` (0 OK; 2 for
    /// a guest created again after it was destroyed), so that a problem
    /// the routine raised is an alert.
    pub fn quiet_through<T>(
        &self,
        guest: &str,
        what: &str,
        state_before: u8,
        routine: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.wait_state(guest, state_before, Duration::from_secs(180))
            .with_context(|| format!("before {what}"))?;
        let start = unix_now();
        let out = routine()?;
        let end = unix_now();
        let after = self.wait_result_after(guest, end, Duration::from_secs(120))?;
        let problems: Vec<String> = self
            .nagios
            .alerts()
            .into_iter()
            .filter(|a| a.host == guest && a.time >= start && a.is_problem())
            .map(|a| a.to_string())
            .collect();
        ensure!(
            problems.is_empty(),
            "{what} of {guest} raised problems in Nagios (a routine event must not):\n{}\nwhat the service kept (poller history {guest}):\n{}",
            problems.join("\n"),
            self.history(guest)
        );
        ensure!(
            after.state == 0,
            "{guest} after {what}, as Nagios holds it: state {} ({})",
            after.state,
            after.output
        );
        eprintln!(
            "xen lab: {what} of {guest} ({} s): no alert in Nagios, OK after",
            end - start
        );
        Ok(out)
    }

    /// `poller history NAME --since 30m` from the service's state: each
    /// change and its words.
    pub fn history(&self, name: &str) -> String {
        match std::process::Command::new(crate::bin("poller"))
            .args(["history", name, "--since", "30m", "--config"])
            .arg(&self.service_config)
            .output()
        {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(poller history: {e})"),
        }
    }

    /// Where the service's state and the objects are.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn now() -> i64 {
        unix_now()
    }
}
