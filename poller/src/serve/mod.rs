//! `poller serve`: the poller as a service. Polls the whole site every
//! `interval_secs`, one poll at a time (a poll that outlasts the interval
//! delays the next, never overlaps it; one service per state, by a lock),
//! keeps the site's state and history (`site::keeper`), and serves the
//! state's metrics on `/metrics` (`metrics`). SIGHUP reloads the config;
//! SIGTERM or SIGINT ends it (a poll in progress is dropped).

mod metrics;
mod pushing;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Config;
use crate::poll::{self, Figures};
use crate::push;
use crate::report;
use crate::site::keeper::{Judged, Keeper, Kept};
use crate::site::Site;
use xsmon_store::damage;

/// Runs the service until SIGTERM or SIGINT. `load` reads the config (and
/// the command line's overrides) again on SIGHUP.
pub fn run(load: &dyn Fn() -> Result<Config>) -> Result<u8> {
    let mut cfg = load()?;
    let state = cfg.service.state.clone();
    let _lock = lock(&state)?;
    let mut keeper = match Keeper::open(&state) {
        Err(e) if e.chain().any(damage::is_damage) => set_aside(&state, None, &e)?,
        k => k?,
    };
    let mut pushers = pushing::Pushers::new(&cfg);
    let in_poll = Arc::new(AtomicBool::new(false));
    let signals = signals(in_poll.clone())?;
    if !cfg.service.listen.is_empty() {
        metrics::serve(&cfg.service.listen, &state)?;
    }
    tracing::info!(
        state = %state.display(),
        interval_secs = cfg.service.interval_secs,
        listen = %cfg.service.listen,
        "poller serve started"
    );
    loop {
        let started = Instant::now();
        in_poll.store(true, Ordering::SeqCst);
        let outcome = match cycle(&cfg, &mut keeper, &pushers) {
            // A damaged state must not stop the service: set aside, a new
            // one, and the cycle again into it.
            Err(e) if e.chain().any(damage::is_damage) => {
                keeper = set_aside(&state, Some(keeper), &e)?;
                cycle(&cfg, &mut keeper, &pushers)
            }
            o => o,
        };
        in_poll.store(false, Ordering::SeqCst);
        match outcome {
            Ok((kept, polled)) => {
                tracing::info!(
                    dom0s = polled,
                    written = kept.written,
                    figures = kept.figures,
                    problems = kept.problems,
                    changes = kept.transitions,
                    ms = started.elapsed().as_millis() as u64,
                    "site polled"
                );
            }
            Err(e) => {
                tracing::error!("the site could not be polled or kept: {e:#}");
                if let Err(e2) = keeper.failed(xsmon_cli::unix_now(), &format!("{e:#}")) {
                    tracing::error!("and that could not be recorded either: {e2:#}");
                }
            }
        }
        let interval = Duration::from_secs(cfg.service.interval_secs);
        if started.elapsed() > interval {
            tracing::warn!(
                "a poll of the site took {} ms, longer than the interval ({} s): the next starts now",
                started.elapsed().as_millis(),
                cfg.service.interval_secs
            );
        }
        // Signals that came during the poll are taken first, even when the
        // next poll is due at once.
        let next = started + interval;
        loop {
            match signals.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(SIGHUP) => {
                    cfg = reload(load, cfg, &state);
                    pushers = pushing::Pushers::new(&cfg);
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    tracing::info!("poller serve stopping");
                    return Ok(0);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
    }
}

/// One cycle: poll the site (the figures of the dom0s that collected
/// since the last), judge it, keep it, push its results.
fn cycle(cfg: &Config, keeper: &mut Keeper, pushers: &pushing::Pushers) -> Result<(Kept, usize)> {
    let t = Instant::now();
    let had = keeper.figures_cycles();
    let mut cycling = keeper.begin()?;
    let polled = poll::poll_site(
        cfg,
        Figures::NewCycles(&had, &mut |d| cycling.take_figures(d)),
        &|_, _| {},
    )?;
    let n = polled.dom0s.len();
    let (time, known) = (polled.time, polled.known.clone());
    let site = Site::from(polled);
    let rep = report::build(site, None, None);
    let judged = Judged {
        dom0s: rep.dom0s,
        findings: rep.findings,
    };
    let elapsed_ms = t.elapsed().as_millis() as i64;
    let kept = cycling.finish(time, &known, judged, &cfg.service, elapsed_ms)?;
    if cfg.push.any() {
        // What was just kept, read as every reader reads it: the pushed
        // words and performance data are those of `poller nagios --guest`
        // and `--dom0`, the figures of every dom0 included (the poll read
        // only the new ones).
        let kept_site = crate::site::kept::read(
            &cfg.service.state,
            xsmon_store::site::Scope::All,
            None,
            xsmon_cli::unix_now(),
        )?
        .context("the state just kept could not be read back for the push")?;
        let (results, refused) = push::results(&kept_site);
        drop(kept_site);
        pushers.push(cfg, &results, &refused, time, keeper);
    }
    Ok((kept, n))
}

/// Sets the damaged state database aside (closed first, never deleted)
/// and opens a new one; readers say so until the file is removed.
fn set_aside(state: &Path, keeper: Option<Keeper>, e: &anyhow::Error) -> Result<Keeper> {
    drop(keeper);
    let kept = damage::set_aside(state, xsmon_cli::unix_now()).with_context(|| {
        format!(
            "the site's state {} is damaged ({e:#}) and cannot be set aside",
            state.display()
        )
    })?;
    tracing::error!(
        "the site's state {} is damaged ({e:#}): set aside as {}, a new one starts",
        state.display(),
        kept.display()
    );
    Keeper::open(state)
}

/// The config read again; a broken one is said and the running one kept.
fn reload(load: &dyn Fn() -> Result<Config>, running: Config, state: &Path) -> Config {
    match load() {
        Ok(new) => {
            if new.service.state != state || new.service.listen != running.service.listen {
                tracing::warn!(
                    "config reloaded; service.state and service.listen change only at a restart"
                );
            }
            tracing::info!("config reloaded");
            Config {
                service: crate::config::ServiceConfig {
                    state: running.service.state.clone(),
                    listen: running.service.listen.clone(),
                    ..new.service
                },
                ..new
            }
        }
        Err(e) => {
            tracing::error!("config not reloaded, the running one is kept: {e:#}");
            running
        }
    }
}

/// One service per state: an exclusive lock on `<state>.lock`, held while
/// the service runs.
fn lock(state: &Path) -> Result<Flock<File>> {
    let path = PathBuf::from(format!("{}.lock", state.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow!(
            "another `poller serve` keeps the site's state {} (it holds {}: {e})",
            state.display(),
            path.display()
        )
    })
}

/// SIGHUP, SIGTERM and SIGINT as messages, so the wait between polls ends
/// on them. SIGTERM or SIGINT during a poll ends the service at once
/// rather than after the poll's SNMP timeouts: the poll is dropped, and
/// the state keeps the last whole cycle (each is one transaction).
fn signals(in_poll: Arc<AtomicBool>) -> Result<mpsc::Receiver<i32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if s != SIGHUP && in_poll.load(Ordering::SeqCst) {
                tracing::info!(
                    "poller serve stopping during a poll; the state keeps the last whole cycle"
                );
                std::process::exit(0);
            }
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
