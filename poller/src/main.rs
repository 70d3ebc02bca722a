//! poller: the central command. Discovers every dom0, polls them all over
//! SNMP at once, and reports on every guest: for humans, for scripts, for
//! Nagios, as JSON.

mod ber;
mod config;
mod discover;
mod engine;
mod output;
mod perfdata;
mod report;
mod snmp;
mod usm;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::config::Config;
use crate::snmp::Credentials;

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
/// exposition format, figures included). Only the modes that show figures
/// read them (a second extend, xsmonFigures), and only from the dom0s in
/// scope.
///
/// Exit status: 0 nothing wrong, 1 warnings, 2 errors (an unreachable dom0,
/// a stale guest, a failed check), 3 the poll could not be done at all (bad
/// config, nothing to poll) — in every mode, as Nagios expects.
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Output mode.
    #[arg(value_enum, default_value = "report")]
    mode: Mode,

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
    xsmon_cli::init_logging(cli.verbose);
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
    let mut cfg = Config::load(&cli.config, cli.config.as_os_str() != config::DEFAULT_PATH)?;
    cfg.config_dirs.extend(cli.config_dirs.iter().cloned());
    cfg.principals.extend(cli.principals.iter().cloned());
    cfg.hosts.extend(cli.hosts.iter().cloned());
    if let Some(c) = &cli.community {
        cfg.snmp.community = c.clone();
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
    let creds = if cfg.snmp.version == "3" {
        Credentials::V3 {
            user: cfg.snmp.v3_user.clone(),
            auth: cfg.snmp.v3_auth_password.clone(),
            privacy: cfg.snmp.v3_priv_password.clone(),
        }
    } else {
        Credentials::V2c {
            community: cfg.snmp.community.clone(),
        }
    };
    let timeout = Duration::from_millis(cfg.snmp.timeout_ms.max(10));
    let t = Instant::now();
    let disc = discover::discover(&cfg, &creds, timeout);
    tracing::debug!(
        "discovered {} dom0s in {} ms",
        disc.dom0s.len(),
        t.elapsed().as_millis()
    );
    if disc.dom0s.is_empty() {
        let mut why = String::from(
            "no dom0 to poll: give --config-dir, --principal or --host (or set them in the config)",
        );
        if !disc.problems.is_empty() {
            why.push_str(&format!(" ({})", disc.problems.join("; ")));
        }
        anyhow::bail!(why);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let show_progress = cli.mode == Mode::Report && std::io::stderr().is_terminal();
    let limits = engine::Limits {
        timeout,
        retries: cfg.snmp.retries,
        max_in_flight: cfg.snmp.concurrency.max(1),
        max_pps: cfg.snmp.max_packets_per_s.max(1),
    };
    let mut results = with_progress(show_progress, disc.dom0s.len(), |tick| {
        report::poll_all(&disc.dom0s, &creds, &limits, now, tick)
    });
    // Figures are a second, larger read: only the modes that show them
    // ask, and a scoped Nagios check asks only the dom0s in its scope.
    let scoped = cli.guest.is_some() || cli.dom0.is_some();
    if matches!(cli.mode, Mode::Json | Mode::Prometheus) || (cli.mode == Mode::Nagios && scoped) {
        let in_scope =
            |r: &report::Dom0Result| report::in_scope(r, cli.dom0.as_deref(), cli.guest.as_deref());
        report::fetch_figures(&disc.dom0s, &mut results, in_scope, &creds, &limits);
    }
    let t = Instant::now();
    let rep = report::build(
        &disc,
        results,
        now,
        cli.dom0.as_deref(),
        cli.guest.as_deref(),
    );
    if rep.dom0s.is_empty() {
        anyhow::bail!(
            "dom0 {:?} is not among the discovered dom0s",
            cli.dom0.as_deref().unwrap_or("")
        );
    }
    tracing::debug!("report built in {} ms", t.elapsed().as_millis());
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
            write!(stdout, "{}", output::report(&rep, colour))?;
        }
        Mode::Raw => write!(stdout, "{}", output::raw(&rep))?,
        Mode::Json => writeln!(stdout, "{}", output::json(&rep))?,
        Mode::Nagios => write!(
            stdout,
            "{}",
            output::nagios(&rep, cli.dom0.as_deref(), cli.guest.as_deref()).0
        )?,
        Mode::Prometheus => write!(stdout, "{}", output::prometheus(&rep))?,
    }
    Ok(state)
}

/// Runs `poll`, showing "polling dom0s: 12/500 answered or given up" on
/// stderr, refreshed four times a second, once polling has taken more than
/// a second (and only when `enabled`: on a terminal).
fn with_progress<T>(
    enabled: bool,
    total: usize,
    poll: impl FnOnce(&(dyn Fn(usize, usize) + Sync)) -> T,
) -> T {
    let done = AtomicUsize::new(0);
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
                            "\rpolling dom0s: {}/{total} answered or given up",
                            done.load(Ordering::Relaxed)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        let r = poll(&|d, _| done.store(d, Ordering::Relaxed));
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
