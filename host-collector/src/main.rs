//! host-collector: runs on each dom0 from cron, one minute after the
//! guests' probes: reads every guest's results from xenstore, checks dom0,
//! and keeps the history in SQLite.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use host_collector::collect::{self, Inputs};
use host_collector::config::{self, Config};
use host_collector::watch::Starting;
use host_collector::words::{self, ago};
use nix::fcntl::{Flock, FlockArg};
use xsmon_store as db;

/// Collect every Xen guest's health from xenstore, check dom0 itself, and
/// keep the history in SQLite (like sar).
///
/// Run `host-collector collect` from cron one minute after the guests'
/// probes (`1-56/5 * * * * root host-collector collect`). `status` shows the
/// latest state (what snmp-extend serves); `history` a guest's figures;
/// `forget` stops reporting a vanished guest that is gone for good.
///
/// A guest is its VM (UUID from xenstore's `vm` link): history follows it
/// across reboots, renames and migrations. A guest that ran here and
/// vanished, or that has a config under this dom0 in the shared config
/// directory but does not run, is reported as `down` (an error) until it
/// runs again, its config is removed, or it is forgotten.
///
/// Exit status: 0 success; 1 failure (xenstore or database; the message
/// names which); 2 usage or config error; 3 another collect is still
/// running (it holds the lock).
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Config file (TOML). A missing default file means all defaults.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,

    /// The history database (overrides the config's `db`).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,

    /// More logging on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one collection cycle (what cron runs).
    Collect {
        /// xenstore socket or device (default: XENSTORED_PATH, then the
        /// usual paths).
        #[arg(long, value_name = "PATH", env = "XENSTORED_PATH")]
        xenstore: Option<PathBuf>,
        /// Read dom0's /proc, /sys and mount points under this directory.
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
        /// Pretend the cycle runs at this Unix time (tests, simulations).
        #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
        now: Option<i64>,
    },
    /// Run a cycle whenever a domain appears or goes away (xenstore's
    /// @introduceDomain and @releaseDomain watches: a start, a crash, a
    /// shutdown, a destroy), and when a domain served as starting writes
    /// its probe's first run or that run is due, so that snmp-extend
    /// serves it within seconds instead of at the next cron cycle. Runs until killed (the systemd
    /// service xsmon-host-collector-watch); cron (or the timer) keeps the
    /// regular cycles. Exits 1 if xenstore goes away.
    Watch {
        /// xenstore socket (default: XENSTORED_PATH, then the usual paths).
        #[arg(long, value_name = "PATH", env = "XENSTORED_PATH")]
        xenstore: Option<PathBuf>,
        /// After an event, wait this long for more (a domain's shutdown and
        /// destroy come a moment apart) before the cycle, in ms.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        settle_ms: u64,
    },
    /// Print the latest state of every guest and of dom0.
    Status,
    /// Stop reporting a guest that is not running here and is gone for
    /// good (destroyed, not coming back). Its history is kept.
    Forget {
        /// The guest: its VM UUID, the name shown by `status`, or its name
        /// (a name several VMs had must be given as a UUID).
        guest: String,
    },
    /// Print a guest's history (use Domain-0 for dom0 itself).
    History {
        /// The guest: its name, the label `status` shows (e.g. web01#7), or
        /// its VM UUID.
        guest: String,
        /// How far back: e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_span)]
        since: i64,
        /// Only this check: cpu, swap, disk, net, mem or xen.
        #[arg(long)]
        check: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Draw the figures as charts into FILE (.svg or .png) instead of
        /// printing them: a panel per figure, the guest's thresholds as
        /// lines, rollups' min-max as a band, silences as grey gaps.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

fn parse_span(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 24h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h, d or w")),
    };
    Ok(n * mult)
}

fn main() -> ExitCode {
    xsmon_cli::maybe_generate(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    xsmon_cli::init_logging(cli.verbose);
    let mut config = match Config::load(&cli.config, cli.config.as_os_str() != config::DEFAULT_PATH)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("host-collector: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(db) = &cli.db {
        config.db = db.clone();
    }
    let result = match &cli.command {
        Command::Collect {
            xenstore,
            root,
            now,
        } => collect_cmd(&config, xenstore.as_deref(), root, *now),
        Command::Watch {
            xenstore,
            settle_ms,
        } => watch_cmd(&config, xenstore.as_deref(), *settle_ms),
        Command::Status => status_cmd(&config),
        Command::Forget { guest } => forget_cmd(&config, guest),
        Command::History {
            guest,
            since,
            check,
            format: _,
            plot: Some(file),
        } => plot_cmd(&config, guest, *since, check.as_deref(), file),
        Command::History {
            guest,
            since,
            check,
            format,
            plot: None,
        } => history_cmd(&config, guest, *since, check.as_deref(), *format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("host-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn collect_cmd(
    config: &Config,
    xenstore: Option<&std::path::Path>,
    root: &std::path::Path,
    at: Option<i64>,
) -> Result<ExitCode> {
    match locked_cycle(config, xenstore, root, at)? {
        Cycle::Done(_) => Ok(ExitCode::SUCCESS),
        Cycle::Busy(why) => {
            eprintln!("host-collector: {why}; not starting a second one");
            Ok(ExitCode::from(3))
        }
    }
}

/// What [`locked_cycle`] did.
enum Cycle {
    /// The cycle stored: the domains it served as starting.
    Done(Starting),
    /// Another collect holds the lock (why, with its path).
    Busy(String),
}

/// One cycle under the collect lock (`<db>.lock`): overlapping cron runs,
/// or the watch and cron, never interleave their cycles.
fn locked_cycle(
    config: &Config,
    xenstore: Option<&std::path::Path>,
    root: &std::path::Path,
    at: Option<i64>,
) -> Result<Cycle> {
    let lock_path = PathBuf::from(format!("{}.lock", config.db.display()));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(&lock_path)
        .with_context(|| format!("opening lock {}", lock_path.display()))?;
    // Held until the end of this function.
    let _lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, errno)) => {
            return Ok(Cycle::Busy(format!(
                "another collect holds {} ({errno})",
                lock_path.display()
            )))
        }
    };
    if std::env::var_os("XSMON_TEST_HOLD_LOCK_MS").is_some() {
        // Test hook: hold the lock a while so a second run meets it.
        let ms = std::env::var("XSMON_TEST_HOLD_LOCK_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let inputs = Inputs {
        config,
        xenstore,
        root,
        now: at.unwrap_or_else(now),
    };
    let record = match stored_cycle(&inputs) {
        // A damaged history must not stop monitoring: set it aside (never
        // deleted), start a new one, and run the cycle again on it. A full
        // disk, a read-only filesystem or a lock is no damage: an error.
        Err(e) if e.chain().any(db::damage::is_damage) => {
            let kept = db::damage::set_aside(&config.db, inputs.now).with_context(|| {
                format!(
                    "{} is damaged ({e:#}) and cannot be set aside",
                    config.db.display()
                )
            })?;
            tracing::error!(
                "{} is damaged ({e:#}): set aside as {}, a new history starts",
                config.db.display(),
                kept.display()
            );
            stored_cycle(&inputs)?
        }
        r => r?,
    };
    tracing::info!(
        hosts = record.hosts.len(),
        ms = record.duration_ms,
        "cycle stored in {}",
        config.db.display()
    );
    Ok(Cycle::Done(Starting::of(
        &record,
        config.lifecycle.first_run_secs,
    )))
}

/// Opens the history and runs one cycle into it.
fn stored_cycle(inputs: &Inputs<'_>) -> Result<xsmon_store::CycleRecord> {
    let mut conn = db::open_rw(&inputs.config.db)?;
    collect::run_cycle(&mut conn, inputs)
}

/// The watch loop: one cycle at the start, then one after every burst of
/// domain events, and (see [`host_collector::watch`]) when a starting
/// domain's probe first writes or its first run is due. A cycle that
/// meets another (cron's) waits for it.
fn watch_cmd(
    config: &Config,
    xenstore: Option<&std::path::Path>,
    settle_ms: u64,
) -> Result<ExitCode> {
    let mut xs = match xenstore {
        Some(p) => xsmon_xenstore::Client::open(p)?,
        None => xsmon_xenstore::Client::open_default()?,
    };
    let path = xs.path().display().to_string();
    for special in ["@introduceDomain", "@releaseDomain"] {
        xs.watch(special, special)
            .with_context(|| format!("watching {special} on {path}"))?;
    }
    tracing::info!("watching domains on {path}");
    let settle = std::time::Duration::from_millis(settle_ms);
    let mut starting = Starting::default();
    loop {
        // The daemon fires each watch once when set: the first cycle.
        let wait = starting
            .next_due()
            .map_or(3600, |due| (due - now()).clamp(0, 3600));
        let first = xs
            .wait_event(std::time::Duration::from_secs(wait as u64))
            .with_context(|| format!("waiting for xenstore events on {path}"))?;
        let why = match &first {
            Some(e) => e.path.clone(),
            None if starting.next_due().is_some_and(|due| due <= now()) => {
                "a starting domain is due a look (built, or its first run due)".to_string()
            }
            None => continue,
        };
        let mut events = usize::from(first.is_some());
        while xs
            .wait_event(settle)
            .with_context(|| format!("waiting for xenstore events on {path}"))?
            .is_some()
        {
            events += 1;
        }
        tracing::info!(first = %why, events, "collecting");
        // A cycle not stored follows nothing (else a due time already past
        // would call for cycles without end).
        let next = watched_cycle(config, xenstore)?.unwrap_or_default();
        follow_starting(&mut xs, &starting, &next);
        starting = next;
    }
}

/// Watches the probe areas of the domains that started to be served as
/// starting, and no longer those that stopped. A watch that cannot be set
/// or removed is logged: the domain is then served at the next cycle.
fn follow_starting(xs: &mut xsmon_xenstore::Client, was: &Starting, now: &Starting) {
    let (add, drop) = was.changes(now);
    for domid in drop {
        if let Err(e) = xs.unwatch(&Starting::path(domid), host_collector::watch::TOKEN) {
            tracing::debug!("unwatching domain {domid}'s probe area: {e}");
        }
    }
    for domid in add {
        if let Err(e) = xs.watch(&Starting::path(domid), host_collector::watch::TOKEN) {
            tracing::warn!("cannot watch domain {domid}'s probe area: {e}");
        }
    }
}

/// One cycle for the watch: waits (up to a minute) while another collect
/// holds the lock, rather than skip what just happened. Returns the
/// domains the cycle served as starting (`None`: no cycle stored).
fn watched_cycle(config: &Config, xenstore: Option<&std::path::Path>) -> Result<Option<Starting>> {
    for _ in 0..120 {
        match locked_cycle(config, xenstore, std::path::Path::new("/"), None) {
            Ok(Cycle::Busy(_)) => std::thread::sleep(std::time::Duration::from_millis(500)),
            Ok(Cycle::Done(starting)) => return Ok(Some(starting)),
            // A cycle that fails (xenstore unreadable) is recorded as the
            // cycle's error by run_cycle; the watch goes on.
            Err(e) => {
                tracing::error!("cycle failed: {e:#}");
                return Ok(None);
            }
        }
    }
    tracing::warn!("another collect held the lock for a minute: this event's cycle is skipped");
    Ok(None)
}

fn forget_cmd(config: &Config, guest: &str) -> Result<ExitCode> {
    let mut conn = db::open_rw(&config.db)?;
    match db::forget(&mut conn, guest, now()) {
        Ok(h) => {
            println!(
                "forgot {} ({}, last {}): it is no longer reported as down",
                h.name, h.ident, h.state
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (db::Error::UnknownHost(_) | db::Error::Ambiguous { .. } | db::Error::Refused(_)),
        ) => {
            eprintln!("host-collector: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn status_cmd(config: &Config) -> Result<ExitCode> {
    let conn = db::open_ro(&config.db, std::time::Duration::from_secs(2))?;
    let Some(latest) = db::latest(&conn)? else {
        println!(
            "no collection cycle recorded yet in {}",
            config.db.display()
        );
        return Ok(ExitCode::from(1));
    };
    let now = now();
    println!(
        "dom0 {}: cycle at {}, {} hosts",
        latest.dom0,
        words::when(latest.time, now),
        latest.hosts.len()
    );
    if let Some(e) = &latest.error {
        println!("COLLECTOR ERROR: {e}");
    }
    for p in &latest.problems {
        println!("STORE ERROR: {p}");
    }
    // Columns as wide as their longest entry: a long guest name (XAPI
    // name-labels are free text) does not shift the columns after it.
    let host_w = latest
        .hosts
        .iter()
        .map(|h| h.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(24);
    let probe_w = latest
        .hosts
        .iter()
        .map(|h| h.probe.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let check_w = latest
        .hosts
        .iter()
        .flat_map(|h| &h.findings)
        .map(|f| f.check_id.len())
        .max()
        .unwrap_or(0)
        .max(6);
    println!(
        "{:<host_w$} {:>5}  {:<9} {:<probe_w$} {:<8} {:>8}  MESSAGE",
        "HOST", "DOMID", "DOMAIN", "PROBE", "STATUS", "AGE"
    );
    for h in &latest.hosts {
        let age = h
            .seen_time
            .or(h.probe_time)
            .map(|t| ago(now - t))
            .unwrap_or_else(|| "-".into());
        let domid = h.domid.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        // The hypervisor's word, as Xen spells it in `xl list`.
        let domain = h.domain_state.as_deref().unwrap_or("-");
        println!(
            "{:<host_w$} {:>5}  {:<9} {:<probe_w$} {:<8} {:>8}  {}",
            h.name, domid, domain, h.probe, h.status, age, h.message
        );
        for f in &h.findings {
            println!(
                "{:<host_w$} {:>5}  {:<9}   {:<check_w$} {:<8} {}",
                "", "", "", f.check_id, f.status, f.message
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn history_cmd(
    config: &Config,
    guest: &str,
    since: i64,
    check: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let conn = db::open_ro(&config.db, std::time::Duration::from_secs(2))?;
    let rows = db::history(&conn, guest, now() - since, check)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => {
            println!("time,resolution,check,target,metric,value,min,max");
            for r in &rows {
                println!(
                    "{},{},{},{},{},{},{},{}",
                    r.time,
                    r.resolution,
                    r.kind,
                    csv_field(&r.target),
                    r.metric,
                    r.value,
                    r.min,
                    r.max
                );
            }
        }
        Format::Table => {
            // Raw rows to the second: two cycles within one minute would
            // otherwise print as two identical rows.
            let time_of = |t: i64, resolution: &str| {
                let format = if resolution == "raw" {
                    "%Y-%m-%d %H:%M:%S"
                } else {
                    "%Y-%m-%d %H:%M"
                };
                words::local_time(t, format).unwrap_or_default()
            };
            // Header and rows share one set of widths, each as wide as its
            // longest entry (mount points can be long).
            let target_w = rows
                .iter()
                .map(|r| r.target.chars().count())
                .max()
                .unwrap_or(0)
                .max(6);
            let metric_w = rows
                .iter()
                .map(|r| r.metric.len())
                .max()
                .unwrap_or(0)
                .max(6);
            let check_w = rows.iter().map(|r| r.kind.len()).max().unwrap_or(0).max(5);
            println!(
                "{:<19} {:<6} {:<check_w$} {:<target_w$} {:<metric_w$} {:>12} {:>12} {:>12}",
                "TIME", "RES", "CHECK", "TARGET", "METRIC", "VALUE", "MIN", "MAX"
            );
            for r in &rows {
                println!(
                    "{:<19} {:<6} {:<check_w$} {:<target_w$} {:<metric_w$} {:>12.2} {:>12.2} {:>12.2}",
                    time_of(r.time, r.resolution),
                    r.resolution,
                    r.kind,
                    r.target,
                    r.metric,
                    r.value,
                    r.min,
                    r.max
                );
            }
            if rows.is_empty() {
                println!("(no figures for {guest} in that range)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plot_cmd(
    config: &Config,
    guest: &str,
    since: i64,
    check: Option<&str>,
    file: &std::path::Path,
) -> Result<ExitCode> {
    let conn = db::open_ro(&config.db, std::time::Duration::from_secs(2))?;
    let host = db::find_host(&conn, guest)?;
    let to = now();
    let rows = db::history(&conn, guest, to - since, check)?;
    let latest = db::host_figures(&conn, host.id)?;
    let chart = host_collector::chart::Chart {
        host: guest,
        from: to - since,
        to,
        rows: &rows,
        latest: &latest,
    };
    let panels = host_collector::chart::draw(&chart, file)?;
    println!(
        "{}: {panels} panels, {} figures over {}",
        file.display(),
        rows.len(),
        ago(since)
    );
    Ok(ExitCode::SUCCESS)
}

/// Quotes a CSV field when it needs it (mount points may hold commas).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("24h"), Ok(86400));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span("7d"), Ok(604800));
        assert!(parse_span("x").is_err());
        assert!(parse_span("5y").is_err());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("/var"), "/var");
        assert_eq!(csv_field("/a,b"), "\"/a,b\"");
    }
}
