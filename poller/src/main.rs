//! poller: the central command. Discovers every dom0, polls them all over
//! SNMP at once, and reports on every guest: for humans, for scripts, for
//! Nagios, as JSON, for Prometheus. As a service (`poller serve`) it polls
//! the site on an interval and keeps its state and history, which every
//! other mode then reads in milliseconds.
//!
//! The data flows one way: config → discover → poll (engine, snmp, ber,
//! usm) → site (live, or kept by serve) → report → outputs.

mod ber;
mod config;
mod discover;
mod engine;
mod outputs;
mod perfdata;
mod poll;
mod push;
mod report;
mod secret;
mod serve;
mod site;
mod snmp;
mod usm;
mod words;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, ValueEnum};
use xsmon_store::site::Scope;

use crate::config::Config;
use crate::poll::Figures;

/// Poll every Xen dom0 over SNMP and report which guests are sick.
///
/// dom0s are discovered from the shared config directory (one folder per
/// dom0 holding its guests' .cfg files), from principal dom0s' listXenCluster,
/// and from a static list; all are polled at once.
///
/// Modes: report (default, for humans), raw (one escaped line per finding,
/// for scripts), nagios (a Nagios/Icinga plugin; with --guest or --dom0 its
/// performance data carries that host's figures and thresholds), json
/// (everything, figures included), prometheus (metrics in the text
/// exposition format, figures included); serve (the service: polls the
/// site every [service] interval_secs, keeps its state and history in
/// [service] state, serves /metrics on [service] listen, pushes every
/// result to Nagios's command file with [push] nagios_command_file);
/// history NAME (a guest's or dom0's changes of state, from the service's
/// history); nagios-objects, icinga2-objects (the hosts and passive
/// services the pushed results name, from the site).
///
/// When `poller serve` keeps the site's state, every mode answers from it
/// (in milliseconds, with since when each problem stands), and says UNKNOWN
/// when it is older than its limit; --live, or any option that changes what
/// is polled or how, polls the dom0s instead.
///
/// Exit status: 0 nothing wrong, 1 warnings, 2 errors (an unreachable dom0,
/// a stale guest, a failed check), 3 the question could not be answered (bad
/// config, nothing to poll, a stale state) — in every mode, as Nagios expects.
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Output mode, or serve, history, nagios-objects, icinga2-objects.
    #[arg(value_enum, default_value = "report")]
    mode: Mode,

    /// The guest or dom0 whose history to show (history only).
    #[arg(value_name = "NAME")]
    name: Option<String>,

    /// Config file (TOML). A missing default file means all defaults.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,

    /// Shared config directory, one folder per dom0 (repeatable).
    #[arg(long = "config-dir", value_name = "DIR")]
    config_dirs: Vec<PathBuf>,

    /// Ask this dom0 for listXenCluster (repeatable; host or host:port).
    #[arg(long = "principal", value_name = "HOST")]
    principals: Vec<String>,

    /// Poll this dom0 too (repeatable; NAME or NAME=HOST:PORT).
    #[arg(long = "host", value_name = "NAME[=ADDR]")]
    hosts: Vec<String>,

    /// SNMPv2c community (overrides the config).
    #[arg(long, short = 'c')]
    community: Option<String>,

    /// Per-request timeout in milliseconds (overrides the config).
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,

    /// Extra attempts after a timeout (overrides the config).
    #[arg(long)]
    retries: Option<u32>,

    /// Requests in flight at once, one per dom0 at most (overrides the
    /// config's `concurrency`).
    #[arg(long)]
    concurrency: Option<usize>,

    /// Packets sent per second at most (overrides the config).
    #[arg(long, value_name = "N")]
    max_pps: Option<u32>,

    /// Only this dom0 (for a Nagios service per dom0).
    #[arg(long, value_name = "NAME")]
    dom0: Option<String>,

    /// Only this guest (for a Nagios service per guest).
    #[arg(long, value_name = "NAME")]
    guest: Option<String>,

    /// Poll the dom0s now, even when `poller serve` keeps the site's state.
    #[arg(long)]
    live: bool,

    /// report: also list what changed in this span (90s, 30m, 1h, 7d);
    /// history: only the changes in it. Needs the service's state.
    #[arg(long = "changes-since", visible_alias = "since", value_name = "SPAN")]
    changes_since: Option<String>,

    /// More logging on stderr (-v: the poll's figures; -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Colour in the report: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Report,
    Raw,
    Nagios,
    Json,
    Prometheus,
    Serve,
    History,
    NagiosObjects,
    Icinga2Objects,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    xsmon_cli::maybe_generate(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    xsmon_cli::init_logging(cli.verbose.max(u8::from(cli.mode == Mode::Serve)));
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if cli.mode == Mode::Nagios {
                println!(
                    "XSMON UNKNOWN - {}",
                    xsmon_proto::text::clean(&format!("{e:#}"), 300).replace('|', "/")
                );
            } else {
                eprintln!("poller: {e:#}");
            }
            ExitCode::from(3)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    if cli.name.is_some() && cli.mode != Mode::History {
        bail!("a NAME is given only to `poller history NAME`");
    }
    let scoped = cli.dom0.is_some() || cli.guest.is_some();
    if cli.mode == Mode::Serve && (scoped || cli.live || cli.changes_since.is_some()) {
        bail!("`poller serve` polls the whole site: --dom0, --guest, --live and --changes-since are for the other modes");
    }
    match cli.mode {
        Mode::Serve => serve::run(&|| load_config(cli)),
        Mode::History => history(cli, &load_config(cli)?),
        Mode::NagiosObjects | Mode::Icinga2Objects => objects(cli, &load_config(cli)?),
        _ => one_shot(cli, &load_config(cli)?),
    }
}

/// The config file with the command line's overrides.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::load(&cli.config, cli.config.as_os_str() != config::DEFAULT_PATH)?;
    cfg.config_dirs.extend(cli.config_dirs.iter().cloned());
    cfg.principals.extend(cli.principals.iter().cloned());
    cfg.hosts.extend(cli.hosts.iter().cloned());
    if let Some(c) = &cli.community {
        cfg.snmp.community = secret::Secret::new(c.clone());
    }
    if let Some(t) = cli.timeout {
        cfg.snmp.timeout_ms = t;
    }
    if let Some(r) = cli.retries {
        cfg.snmp.retries = r;
    }
    if let Some(c) = cli.concurrency {
        cfg.snmp.concurrency = c;
    }
    if let Some(p) = cli.max_pps {
        cfg.snmp.max_packets_per_s = p;
    }
    Ok(cfg)
}

/// Does the command line ask another question than the service answers
/// (other dom0s, other credentials or limits)? Then it is polled live.
fn asks_other_than_the_service(cli: &Cli) -> bool {
    !cli.config_dirs.is_empty()
        || !cli.principals.is_empty()
        || !cli.hosts.is_empty()
        || cli.community.is_some()
        || cli.timeout.is_some()
        || cli.retries.is_some()
        || cli.concurrency.is_some()
        || cli.max_pps.is_some()
}

/// The output modes: the site from the service's state when it keeps one,
/// else a live poll; then the report and the mode's output.
fn one_shot(cli: &Cli, cfg: &Config) -> anyhow::Result<u8> {
    let now = xsmon_cli::unix_now();
    let changes_since = match &cli.changes_since {
        Some(span) => Some(now - words::parse_span(span).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let scope = match (&cli.dom0, &cli.guest) {
        (Some(d), _) => Scope::Dom0(d),
        (None, Some(g)) => Scope::Guest(g),
        (None, None) => Scope::All,
    };
    let live = cli.live || asks_other_than_the_service(cli);
    let t = Instant::now();
    let kept = if live {
        None
    } else {
        site::kept::read(&cfg.service.state, scope, changes_since, now)?
    };
    let site = match kept {
        Some(site) => {
            tracing::debug!("site's state read in {} µs", t.elapsed().as_micros());
            site
        }
        None if changes_since.is_some() => bail!(
            "--changes-since reads the history that `poller serve` keeps in {}: {}",
            cfg.service.state.display(),
            if live {
                "not with --live or options that poll live"
            } else {
                "there is none"
            }
        ),
        None => live_poll(cli, cfg)?.into(),
    };
    let rep = report::build(site, cli.dom0.as_deref(), cli.guest.as_deref());
    if rep.dom0s.is_empty() {
        bail!(
            "dom0 {:?} is not among the discovered dom0s",
            cli.dom0.as_deref().unwrap_or("")
        );
    }
    let state = report::exit_state(&rep);
    let mut stdout = std::io::stdout().lock();
    match cli.mode {
        Mode::Report => {
            let colour = match cli.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            write!(stdout, "{}", outputs::human::report(&rep, colour, now))?;
        }
        Mode::Raw => write!(stdout, "{}", outputs::raw(&rep))?,
        Mode::Json => writeln!(stdout, "{}", outputs::json(&rep))?,
        Mode::Nagios => write!(
            stdout,
            "{}",
            outputs::nagios::nagios(&rep, cli.dom0.as_deref(), cli.guest.as_deref()).0
        )?,
        Mode::Prometheus => write!(stdout, "{}", outputs::prometheus::prometheus(&rep))?,
        Mode::Serve | Mode::History | Mode::NagiosObjects | Mode::Icinga2Objects => {
            unreachable!("handled by run")
        }
    }
    Ok(state)
}

/// A poll of the site now, with the figures the mode shows: json and
/// prometheus all of them, a scoped Nagios check its scope's.
fn live_poll(cli: &Cli, cfg: &Config) -> anyhow::Result<poll::Polled> {
    let scoped = cli.guest.is_some() || cli.dom0.is_some();
    let figures = match cli.mode {
        Mode::Json | Mode::Prometheus => Figures::Scope(None, None),
        Mode::Nagios if scoped => Figures::Scope(cli.dom0.as_deref(), cli.guest.as_deref()),
        _ => Figures::None,
    };
    let show_progress = cli.mode == Mode::Report && std::io::stderr().is_terminal();
    with_progress(show_progress, |tick| poll::poll_site(cfg, figures, tick))
}

/// `poller nagios-objects` and `poller icinga2-objects`: the objects
/// `poller serve`'s pushed results name, from the site (kept or live).
fn objects(cli: &Cli, cfg: &Config) -> anyhow::Result<u8> {
    let now = xsmon_cli::unix_now();
    let live = cli.live || asks_other_than_the_service(cli);
    let site = match (!live)
        .then(|| site::kept::read(&cfg.service.state, Scope::All, None, now))
        .transpose()?
        .flatten()
    {
        Some(site) => site,
        None => poll::poll_site(cfg, Figures::None, &|_, _| {})?.into(),
    };
    let freshness = cfg.service.freshness();
    let (text, refused) = if cli.mode == Mode::Icinga2Objects {
        push::icinga2_objects::icinga2_objects(&site, freshness)
    } else {
        push::nagios_objects::nagios_objects(&site, freshness)
    };
    for name in refused {
        tracing::warn!(
            "{:?} is not a name Nagios and Icinga 2 accept: no objects for it",
            xsmon_proto::text::clean(&name, 80)
        );
    }
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(0)
}

/// `poller history NAME`: the transitions of a guest or dom0.
fn history(cli: &Cli, cfg: &Config) -> anyhow::Result<u8> {
    let Some(name) = &cli.name else {
        bail!("poller history needs the NAME of a guest or dom0");
    };
    let since = match &cli.changes_since {
        Some(span) => {
            xsmon_cli::unix_now() - words::parse_span(span).map_err(anyhow::Error::msg)?
        }
        None => i64::MIN,
    };
    let transitions = site::kept::history(&cfg.service.state, name, since)?;
    write!(
        std::io::stdout().lock(),
        "{}",
        outputs::history::history(&transitions)
    )?;
    Ok(0)
}

/// Runs `poll`, showing "polling dom0s: 12/500 answered or given up" on
/// stderr, refreshed four times a second, once polling has taken more than
/// a second (and only when `enabled`: on a terminal).
fn with_progress<T>(enabled: bool, poll: impl FnOnce(&(dyn Fn(usize, usize) + Sync)) -> T) -> T {
    let done = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let shown = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if enabled {
            s.spawn(|| {
                let start = Instant::now();
                while !finished.load(Ordering::Relaxed) {
                    if start.elapsed() > Duration::from_secs(1) {
                        shown.store(true, Ordering::Relaxed);
                        eprint!(
                            "\rpolling dom0s: {}/{} answered or given up",
                            done.load(Ordering::Relaxed),
                            total.load(Ordering::Relaxed)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        let r = poll(&|d, t| {
            done.store(d, Ordering::Relaxed);
            total.store(t, Ordering::Relaxed);
        });
        finished.store(true, Ordering::Relaxed);
        r
    });
    if shown.load(Ordering::Relaxed) {
        eprint!("\r\x1b[2K");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
