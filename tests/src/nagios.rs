//! Debian's real Nagios 4 (`nagios4-core`) for the tests: a main config in
//! a temporary directory with Debian's object templates and the given
//! object files, checked with `nagios4 -v` or run as the scheduler until it
//! has recorded the performance data of the services asked for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const NAGIOS: &str = "/usr/sbin/nagios4";

/// One service check result as Nagios wrote it to its perfdata file.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub service: String,
    /// OK, WARNING, CRITICAL or UNKNOWN.
    pub state: String,
    /// `$SERVICEPERFDATA$` as Nagios passes it to graphers.
    pub perfdata: String,
}

pub struct Nagios {
    dir: tempfile::TempDir,
    main: PathBuf,
    perf_file: PathBuf,
}

impl Nagios {
    /// A config loading `objects` besides Debian's templates, with
    /// performance data processing on (into a service perfdata file),
    /// Debian's `illegal_macro_output_chars`, and every check scheduled at
    /// start. Nagios runs as the user running the tests.
    pub fn new(objects: &[&Path]) -> Result<Nagios> {
        let dir = tempfile::tempdir()?;
        // nagios4 -v checks that its user may write here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let d = dir.path().display();
        let perf_file = dir.path().join("service-perfdata");
        let mut cfg = format!(
            "log_file={d}/nagios.log\nstatus_file={d}/status.dat\nlock_file={d}/nagios.lock\ntemp_file={d}/nagios.tmp\n\
             check_result_path={d}\nobject_cache_file={d}/objects.cache\nprecached_object_file={d}/objects.precache\n\
             command_file={d}/nagios.cmd\nstate_retention_file={d}/retention.dat\nuse_syslog=0\n\
             nagios_user=root\nnagios_group=root\nenable_notifications=0\n\
             illegal_macro_output_chars=`~$&|'\"<>\n\
             service_inter_check_delay_method=n\nmax_service_check_spread=1\ncheck_result_reaper_frequency=1\n\
             status_update_interval=1\ntranslate_passive_host_checks=1\ncheck_external_commands=1\ncommand_check_interval=-1\n\
             process_performance_data=1\nservice_perfdata_file={}\nservice_perfdata_file_mode=a\n\
             service_perfdata_file_template=$SERVICEDESC$\\t$SERVICESTATE$\\t$SERVICEPERFDATA$\n\
             resource_file=/etc/nagios4/resource.cfg\n\
             cfg_file=/etc/nagios4/objects/commands.cfg\ncfg_file=/etc/nagios4/objects/contacts.cfg\n\
             cfg_file=/etc/nagios4/objects/timeperiods.cfg\ncfg_file=/etc/nagios4/objects/templates.cfg\n",
            perf_file.display()
        );
        for o in objects {
            cfg.push_str(&format!("cfg_file={}\n", o.display()));
        }
        let main = dir.path().join("nagios.cfg");
        std::fs::write(&main, cfg)?;
        Ok(Nagios {
            dir,
            main,
            perf_file,
        })
    }

    /// A directory for object files that live as long as this config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nagios4 -v`: the configuration check.
    pub fn verify(&self) -> Result<Output> {
        Command::new(NAGIOS)
            .arg("-v")
            .arg(&self.main)
            .output()
            .context("running nagios4 (Debian package nagios4-core)")
    }

    /// Runs Nagios until each of `services` has a result in the perfdata
    /// file, then stops it and returns the first result of each.
    pub fn run_until_recorded(&self, services: &[&str], within: Duration) -> Result<Vec<Recorded>> {
        let mut nagios = Command::new(NAGIOS)
            .arg(&self.main)
            .stdout(Stdio::null())
            .spawn()
            .context("starting nagios4 (Debian package nagios4-core)")?;
        let deadline = Instant::now() + within;
        let outcome = loop {
            let text = std::fs::read_to_string(&self.perf_file).unwrap_or_default();
            let recorded: Vec<Recorded> = text.lines().filter_map(parse).collect();
            let first = |s: &str| recorded.iter().find(|r| r.service == s).cloned();
            if let Some(all) = services
                .iter()
                .map(|s| first(s))
                .collect::<Option<Vec<_>>>()
            {
                break Ok(all);
            }
            if Instant::now() > deadline || nagios.try_wait()?.is_some() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("nagios.log")).unwrap_or_default();
                break Err(anyhow::anyhow!(
                    "nagios recorded no performance data for all of {services:?}:\n{text}\nlog:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let _ = nagios.kill();
        let _ = nagios.wait();
        outcome
    }
}

/// A Nagios running as a daemon (see `Nagios::start`), killed on drop.
pub struct Running {
    child: std::process::Child,
    dir: PathBuf,
}

/// One host's or service's state as Nagios's status file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub host: String,
    /// Empty for a host.
    pub service: String,
    /// Hosts: 0 UP, 1 DOWN, 2 UNREACHABLE; services: 0 OK .. 3 UNKNOWN.
    pub state: u8,
    pub output: String,
    /// The lines after the first (Nagios keeps them as `\n`).
    pub long_output: String,
    /// When its last result was taken (Unix seconds; a passive result's
    /// own time).
    pub last_check: i64,
}

/// A state change as Nagios logged it (`SERVICE ALERT`, `HOST ALERT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Nagios's time of the line (Unix seconds).
    pub time: i64,
    pub host: String,
    /// Empty for a host.
    pub service: String,
    /// OK, WARNING, CRITICAL, UNKNOWN; UP, DOWN, UNREACHABLE.
    pub state: String,
    pub output: String,
}

impl Alert {
    /// A problem: anything but OK or UP.
    pub fn is_problem(&self) -> bool {
        !matches!(self.state.as_str(), "OK" | "UP")
    }
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}{}{} {}: {}",
            self.time,
            self.host,
            if self.service.is_empty() { "" } else { ";" },
            self.service,
            self.state,
            self.output
        )
    }
}

/// The alerts of a Nagios log.
pub fn parse_alerts(log: &str) -> Vec<Alert> {
    log.lines()
        .filter_map(|line| {
            let (time, rest) = line.strip_prefix('[')?.split_once("] ")?;
            let time = time.parse().ok()?;
            if let Some(r) = rest.strip_prefix("SERVICE ALERT: ") {
                let f: Vec<&str> = r.splitn(6, ';').collect();
                (f.len() == 6).then(|| Alert {
                    time,
                    host: f[0].into(),
                    service: f[1].into(),
                    state: f[2].into(),
                    output: f[5].into(),
                })
            } else if let Some(r) = rest.strip_prefix("HOST ALERT: ") {
                let f: Vec<&str> = r.splitn(5, ';').collect();
                (f.len() == 5).then(|| Alert {
                    time,
                    host: f[0].into(),
                    service: String::new(),
                    state: f[1].into(),
                    output: f[4].into(),
                })
            } else {
                None
            }
        })
        .collect()
}

impl Nagios {
    /// Starts Nagios as a daemon and waits until its command file (a FIFO
    /// it reads) exists.
    pub fn start(&self) -> Result<Running> {
        self.start_within(Duration::from_secs(30))
    }

    /// [`Nagios::start`], waiting up to `within` (a config of 100,000
    /// hosts takes Nagios minutes to load).
    pub fn start_within(&self, within: Duration) -> Result<Running> {
        // Tied to this process: a lab's Nagios lives in a static, never
        // dropped.
        let mut cmd = Command::new(NAGIOS);
        cmd.arg(&self.main).stdout(Stdio::null());
        let child = crate::daemon::spawn_tied_to_process(cmd)
            .context("starting nagios4 (Debian package nagios4-core)")?;
        let mut running = Running {
            child,
            dir: self.dir.path().to_path_buf(),
        };
        let deadline = Instant::now() + within;
        while !running.command_file().exists() {
            if Instant::now() > deadline || running.child.try_wait()?.is_some() {
                bail!(
                    "nagios made no command file within {} s:\n{}",
                    within.as_secs(),
                    running.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(running)
    }
}

impl Running {
    pub fn command_file(&self) -> PathBuf {
        self.dir.join("nagios.cmd")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nagios.log")).unwrap_or_default()
    }

    /// The state changes Nagios logged so far.
    pub fn alerts(&self) -> Vec<Alert> {
        parse_alerts(&self.log())
    }

    /// Whether the daemon still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every host and service in Nagios's status file (rewritten every
    /// second here).
    pub fn status(&self) -> Vec<Status> {
        let text = std::fs::read_to_string(self.dir.join("status.dat")).unwrap_or_default();
        let mut out = Vec::new();
        let mut block: Option<(bool, Vec<(String, String)>)> = None;
        for line in text.lines().map(str::trim) {
            if let Some(kind) = line.strip_suffix(" {") {
                block = matches!(kind, "hoststatus" | "servicestatus")
                    .then(|| (kind == "servicestatus", Vec::new()));
            } else if line == "}" {
                if let Some((_, fields)) = block.take() {
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    out.push(Status {
                        host: field("host_name"),
                        service: field("service_description"),
                        state: field("current_state").parse().unwrap_or(255),
                        output: field("plugin_output"),
                        long_output: field("long_plugin_output").replace("\\n", "\n"),
                        last_check: field("last_check").parse().unwrap_or(0),
                    });
                }
            } else if let (Some((_, fields)), Some((k, v))) = (block.as_mut(), line.split_once('='))
            {
                fields.push((k.to_string(), v.to_string()));
            }
        }
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> Option<Recorded> {
    let mut f = line.splitn(3, '\t');
    Some(Recorded {
        service: f.next()?.to_string(),
        state: f.next()?.to_string(),
        perfdata: f.next()?.to_string(),
    })
}

/// One item of performance data: `label=value[UOM];warn;crit;min;max`
/// (quotes optional: Nagios strips them with its usual
/// illegal_macro_output_chars).
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    pub uom: String,
    pub fields: Vec<String>,
}

/// Parses performance data as a grapher would; an item that is not whole
/// (a cut line) is an error naming it.
pub fn parse_perfdata(text: &str) -> Result<Vec<Perf>> {
    text.split_whitespace()
        .map(|item| {
            let Some((label, rest)) = item.rsplit_once('=') else {
                bail!("{item:?}: no '='");
            };
            let mut fields = rest.split(';').map(str::to_string);
            let v = fields.next().unwrap_or_default();
            let at = v
                .find(|c: char| !(c.is_ascii_digit() || ".-".contains(c)))
                .unwrap_or(v.len());
            let fields: Vec<String> = fields.collect();
            if fields.len() > 4 {
                bail!("{item:?}: more than five fields");
            }
            Ok(Perf {
                label: label.trim_matches('\'').to_string(),
                value: v[..at]
                    .parse()
                    .with_context(|| format!("{item:?}: value"))?,
                uom: v[at..].to_string(),
                fields,
            })
        })
        .collect()
}
