//! guest-probe: runs in every Xen guest from cron every five minutes,
//! checks CPU, swap, disks and gateways, and writes the results into the
//! guest's own xenstore area for dom0's host-collector.

mod checks;
mod config;
mod ping;
mod publish;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use xsmon_proto::layout::{Run, DATA_SUBPATH, LEGACY_ROOT};
use xsmon_proto::{CheckResult, Status};

use crate::checks::Interval;
use crate::config::Config;
use crate::state::StateFile;
use xsmon_checks::Sys;
use xsmon_proto::layout::Resumed;

/// Check this Xen guest (CPU, swap, disks, gateways) and write the results
/// into xenstore for dom0 to collect.
///
/// Run from cron every five minutes (`*/5 * * * * root guest-probe`). By
/// default the results go under the guest's own xenstore home
/// (`data/xsmon`, writable by this guest only) in one transaction, with a
/// timestamp and a sequence number. With --print or --format json nothing is
/// written; the results are printed instead.
///
/// Exit status: 0 when the results were written (or printed), whatever they
/// say; 1 when they could not be written; 2 for a usage or config error.
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Config file (TOML). A missing default file means all defaults.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,

    /// Print the results for a human instead of writing them.
    #[arg(long)]
    print: bool,

    /// Print the results in this format instead of writing them.
    #[arg(long, value_enum)]
    format: Option<Format>,

    /// xenstore to use: a unix socket or the xenbus device. Default: as Xen's
    /// tools do (XENSTORED_PATH, /run/xenstored/socket, /dev/xen/xenbus,
    /// /proc/xen/xenbus on kernels before 3.14).
    #[arg(long, value_name = "PATH", env = "XENSTORED_PATH")]
    xenstore: Option<PathBuf>,

    /// Write as this domain, e.g. /local/domain/7 (for dom0-side tests and
    /// demos). Default: the guest's own home, by relative xenstore paths.
    #[arg(long, value_name = "PATH")]
    domain_path: Option<String>,

    /// Read /proc and /sys (and statvfs mount points) under this directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,

    /// State file for counters between runs (default from the config, else
    /// /var/lib/xsmon/probe.state).
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,

    /// Wait up to this long between measuring and writing, until the
    /// domain changes (for tests that suspend a guest in the middle of a
    /// run).
    #[arg(long, value_name = "SECS", hide = true)]
    hold_before_write: Option<u64>,

    /// More logging on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    xsmon_cli::maybe_generate(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    xsmon_cli::init_logging(cli.verbose);
    let config = match Config::load(&cli.config, cli.config.as_os_str() != config::DEFAULT_PATH) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guest-probe: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&cli, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest-probe: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli, config: &Config) -> Result<()> {
    let sys = Sys::new(&cli.root);
    let state_path = cli
        .state_file
        .clone()
        .or_else(|| config.state_file.clone())
        .unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH));
    let only_print = cli.print || cli.format.is_some();
    // Connect before measuring: on a machine that is not a Xen guest (a
    // copied binary tried by hand) the connection error comes at once, and
    // no check runs and no ping leaves it.
    let mut xs = if only_print {
        None
    } else {
        let mut xs = match &cli.xenstore {
            Some(p) => xsmon_xenstore::Client::open(p)?,
            None => xsmon_xenstore::Client::open_default()?,
        };
        xs.set_timeout(Duration::from_secs(config.xenstore.timeout_secs.max(1)));
        Some(xs)
    };
    let state = StateFile::new(state_path);
    let domid_before = xs.as_mut().and_then(own_domid);
    let (mut checks, mut resumed) = run_checks(&sys, config, &state, domid_before, None);
    if let Some(secs) = cli.hold_before_write {
        // Until the domain changes under the probe (a save and restore, a
        // migration), or `secs` have passed.
        tracing::info!(secs, domid = ?domid_before, "holding before writing");
        for _ in 0..secs {
            std::thread::sleep(Duration::from_secs(1));
            if xs.as_mut().and_then(own_domid) != domid_before {
                break;
            }
        }
    }
    // Suspended while measuring (saved and restored, or migrated): the
    // figures span the suspension; measure again, afresh.
    let domid_after = xs.as_mut().and_then(own_domid);
    if domid_before.is_some() && domid_after != domid_before {
        let during = Resumed {
            from_domid: domid_before,
            suspended_ms: None,
        };
        tracing::info!(
            ?domid_before,
            ?domid_after,
            "suspended during the run: measuring again"
        );
        (checks, resumed) = run_checks(&sys, config, &state, domid_after, Some(during));
    }
    let mut run = Run {
        probe: format!("guest-probe {}", env!("CARGO_PKG_VERSION")),
        time: 0,
        seq: 0,
        checks,
        resumed,
        boot: state::boot_id(&sys),
    };
    run.time = (xsmon_checks::sys::now_ms() / 1000) as i64;

    if cli.print || matches!(cli.format, Some(Format::Text)) {
        print_text(&run);
        return Ok(());
    }
    if matches!(cli.format, Some(Format::Json)) {
        println!("{}", serde_json::to_string_pretty(&json_of(&run))?);
        return Ok(());
    }
    let Some(mut xs) = xs else {
        return Ok(());
    };
    let bases = bases(cli, config, &sys);
    publish::publish(&mut xs, &bases, &mut run, config.xenstore.layout)?;
    tracing::info!(
        seq = run.seq,
        checks = run.checks.len(),
        resumed = %Resumed::field(run.resumed.as_ref()),
        "results written"
    );
    Ok(())
}

/// This domain's id, from its own xenstore `domid` key (the toolstack
/// writes it; a guest may read it).
fn own_domid(xs: &mut xsmon_xenstore::Client) -> Option<u32> {
    use xsmon_xenstore::Store;
    let v = xs.read_opt("domid").ok()??;
    std::str::from_utf8(&v).ok()?.trim().parse().ok()
}

/// Runs every check; none can stop the others. Also returns the
/// suspension found since the previous run, if any.
fn run_checks(
    sys: &Sys,
    config: &Config,
    state: &StateFile,
    domid: Option<u32>,
    during: Option<Resumed>,
) -> (Vec<CheckResult>, Option<Resumed>) {
    let interval = interval(sys, config, state, domid, during);
    let resumed = interval.as_ref().ok().and_then(|i| i.resumed);
    let interval_ref = interval.as_ref();
    let mut out = vec![
        checks::cpu::check(sys, &config.cpu, interval_ref),
        checks::swap::check(sys, &config.swap, interval_ref),
        xsmon_checks::memory::check(sys, &config.memory),
    ];
    out.extend(xsmon_checks::disk::checks(sys, &config.disk));
    out.extend(checks::net::checks(sys, &config.net, resumed.is_some()));
    (out, resumed)
}

/// The interval since the last run; a short sample on a first run, and
/// after a suspension (`during` this run, or found between the previous
/// run's sample and this one), since no figure may span it.
fn interval(
    sys: &Sys,
    config: &Config,
    state: &StateFile,
    domid: Option<u32>,
    during: Option<Resumed>,
) -> Result<Interval> {
    let mut now = state::sample(sys)?;
    now.domid = domid;
    // A suspension is judged on the previous sample even when its
    // counters cannot serve (the restore of an image saved days ago).
    let loaded = state.load();
    let resumed = during.or_else(|| loaded.and_then(|p| p.suspension_before(&now)));
    let prev = loaded.filter(|p| p.usable_before(&now));
    let (prev, now, note) = match (prev, resumed) {
        (Some(prev), None) => (prev, now, None),
        _ => {
            std::thread::sleep(Duration::from_millis(config.cpu.first_sample_ms.max(100)));
            let mut later = state::sample(sys)?;
            later.domid = domid;
            // Here either the domain was suspended or there is no usable
            // previous sample.
            let note = match resumed {
                Some(r) => format!("resumed {}: short sample, steal not graded", describe(&r)),
                None => "first run: short sample, no previous state".into(),
            };
            (now, later, Some(note))
        }
    };
    if let Err(e) = state.save(&now) {
        tracing::warn!("cannot save state, next run will sample afresh: {e:#}");
    }
    Ok(Interval {
        prev,
        now,
        note,
        resumed,
    })
}

/// "in a new domain (was 7) after 8.4 s suspended", as far as known.
fn describe(r: &Resumed) -> String {
    let mut s = match r.from_domid {
        Some(d) => format!("in a new domain (was {d})"),
        None => "after a suspension".to_string(),
    };
    if let Some(ms) = r.suspended_ms {
        s.push_str(&format!(", {:.1} s suspended", ms as f64 / 1000.0));
    }
    s
}

/// Where to write: the guest's home (relative path unless --domain-path),
/// and/or the legacy shared path.
fn bases(cli: &Cli, config: &Config, sys: &Sys) -> Vec<String> {
    let mut out = Vec::new();
    if config.xenstore.home {
        out.push(match &cli.domain_path {
            Some(home) => format!("{}/{DATA_SUBPATH}", home.trim_end_matches('/')),
            None => DATA_SUBPATH.to_string(),
        });
    }
    if config.xenstore.legacy {
        let name = config
            .xenstore
            .legacy_name
            .clone()
            .or_else(|| {
                sys.read_string("proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            })
            .unwrap_or_else(|| "unknown".to_string());
        out.push(format!("{LEGACY_ROOT}/{name}"));
    }
    out
}

fn print_text(run: &Run) {
    let worst = run
        .checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    println!("guest-probe: overall {worst}");
    for c in &run.checks {
        println!("{:<6} {:<8} {}", c.id, c.status.as_str(), c.message);
    }
}

fn json_of(run: &Run) -> serde_json::Value {
    serde_json::json!({
        "probe": run.probe,
        "time": run.time,
        "checks": run.checks,
    })
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
