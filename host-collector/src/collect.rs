//! One collection cycle, conducted: observe (the guests' xenstore areas
//! and their agents' keys, the hypervisor, the shared config directory,
//! dom0 itself), judge ([`crate::judge`]), store (xsmon-store, one
//! transaction), export (the Prometheus textfile). Each phase runs once,
//! in that order, and is timed (`host-collector -v collect`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use xsmon_checks::Sys;
use xsmon_store::{self as store, CycleRecord, Keep};

use crate::config::Config;
use crate::export::write_textfile;
use crate::freshness::Rules;
use crate::gather::{self, Found, Guest};
use crate::judge::{dom0_record, judge_all, Scene};

/// Everything one cycle needs from outside.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub xenstore: Option<&'a Path>,
    /// Root for dom0's own /proc and mount points (tests use fixtures).
    pub root: &'a Path,
    /// The cycle's time (Unix seconds).
    pub now: i64,
}

/// Runs one cycle and stores it. Returns the record written. A xenstore
/// that cannot be read is recorded as the cycle's error (so snmp-extend and
/// the poller report it) and returned as an error.
pub fn run_cycle(conn: &mut Connection, inp: &Inputs<'_>) -> Result<CycleRecord> {
    let started = Instant::now();
    let cfg = inp.config;
    let dom0 = cfg.dom0_name();
    let sys = Sys::new(inp.root);
    // Observe. The stored rows first: they say which domains' start times
    // are known already. xenstore's answers take the longest (the daemon
    // answers one request at a time): dom0's own files and xl's listings
    // are read meanwhile, on this thread.
    let known = store::hosts(conn);
    let dom0_booted = sys.kernel_stats().ok().map(|k| k.btime as i64);
    let starts = match &known {
        Ok(rows) => gather::known_starts(rows, dom0_booted),
        Err(_) => Default::default(),
    };
    let (gathered, cluster, hv, times) = std::thread::scope(|s| {
        let (listed, domains_listed) = std::sync::mpsc::channel::<()>();
        let starts = &starts;
        let xenstore = s.spawn(move || {
            let t = Instant::now();
            let guests = read_xenstore(inp, starts, move || {
                let _ = listed.send(());
            });
            (guests, t.elapsed())
        });
        let cluster = xsmon_proto::cluster::scan(&cfg.config_dirs);
        let devices = crate::hypervisor::read_devices(&sys.path("proc/net/dev"), &sys.path("sys"));
        // xl only once xenstore has listed the domains: a domain xenstore
        // lists but the hypervisor no longer knows was destroyed in
        // between (its home is being removed), and is judged as not
        // running. (A reader that failed before listing drops the sender:
        // xl runs then too.)
        let _ = domains_listed.recv();
        let t = Instant::now();
        let hv = devices.with_domains(&cfg.xl);
        let hv_time = t.elapsed();
        let (gathered, xenstore_time) = xenstore.join().unwrap_or_else(|_| {
            (
                Err(anyhow::anyhow!("the xenstore reader failed")),
                Duration::ZERO,
            )
        });
        (gathered, cluster, hv, (xenstore_time, hv_time))
    });
    let (xenstore_time, hypervisor_time) = times;
    for p in &cluster.problems {
        tracing::warn!("{p}");
    }
    let known = known.context("reading the known hosts")?;
    let gathered = gathered.map(|mut guests| {
        if hv.knows_states() {
            guests.retain(|g| hv.domains.contains_key(&g.domid));
        }
        read_on_crash(&mut guests, &hv, &cfg.lifecycle.libxl_dir);
        guests
    });
    // What the toolstack keeps: xl's logs of the running domains and of
    // the VMs dom0 knew (a restart in progress), the restarts and former
    // names stored.
    let xl_logs = {
        let running = gathered.iter().flatten().filter_map(|g| g.name.as_deref());
        // Of the VMs not running now, only those running (or restarting)
        // at the last cycle can be in a restart: a dom0's years of retired
        // names are not read every cycle.
        let known_names = known
            .iter()
            .filter(|h| matches!(h.state.as_str(), "running" | "restarting"))
            .map(|h| h.name.as_str());
        crate::xl_records::read_logs(&cfg.lifecycle.xl_log_dir, running.chain(known_names))
    };
    for p in &xl_logs.problems {
        tracing::warn!("{p}");
    }
    let window_start = inp.now - cfg.lifecycle.restart_window_secs as i64;
    let restarts = store::restarts_since(conn, window_start).context("reading the restarts")?;
    let former_names = store::former_names(conn).context("reading the former names")?;
    let read_ms = started.elapsed().as_millis();
    // Histories set aside as damaged, which dom0 reports until removed.
    let set_aside = store::damage::kept_aside(&cfg.db);
    let mut hosts = vec![dom0_record(&sys, cfg, &hv, &known, &set_aside, inp.now)];
    let error = match &gathered {
        Ok(guests) => {
            let scene = Scene {
                dom0: &dom0,
                cluster: &cluster,
                expect_stopped: &cfg.expect_stopped,
                now: inp.now,
                rules: Rules {
                    stale_after: cfg.stale_after_secs as i64,
                    skew_max: cfg.clock_skew_max_secs as i64,
                },
                hypervisor: &cfg.hypervisor,
                without_probe: &cfg.without_probe,
                lifecycle: &cfg.lifecycle,
                xl_logs: &xl_logs,
                restarts: &restarts,
                former_names: &former_names,
            };
            hosts.extend(judge_all(&known, guests, &hv, &scene));
            None
        }
        // A cycle that could not read xenstore knows nothing about guests:
        // they are neither gone nor present, and keep their rows as they are.
        Err(e) => Some(format!("cannot read xenstore: {e:#}")),
    };
    let judged_ms = started.elapsed().as_millis();
    let record = CycleRecord {
        time: inp.now,
        duration_ms: judged_ms as i64,
        dom0,
        error: error.clone(),
        hosts,
    };
    let written = store::write_cycle(conn, &record, keep(cfg))
        .with_context(|| format!("storing the cycle in {}", cfg.db.display()))?;
    for p in &written.problems {
        tracing::error!("{p}");
    }
    // Where a large dom0's cycle goes (`host-collector -v collect`).
    tracing::info!(
        domains = record.hosts.len(),
        observe_ms = read_ms,
        xenstore_ms = xenstore_time.as_millis(),
        hypervisor_ms = hypervisor_time.as_millis(),
        judge_ms = judged_ms - read_ms,
        store_ms = started.elapsed().as_millis() - judged_ms,
        "cycle"
    );
    if let Some(path) = &cfg.prometheus_textfile {
        // The history is stored; a textfile that cannot be written is
        // reported but does not undo the cycle.
        if let Err(e) = write_textfile(path, &record, inp.now) {
            tracing::error!("cannot write {}: {e:#}", path.display());
        }
    }
    match error {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(record),
    }
}

/// The `on_crash` action libxl keeps for each crashed domain: what the
/// words about it may say the toolstack does.
fn read_on_crash(guests: &mut [Guest], hv: &crate::hypervisor::Hypervisor, libxl_dir: &Path) {
    for g in guests {
        let crashed = hv
            .domains
            .get(&g.domid)
            .is_some_and(|d| d.state == crate::hypervisor::RunState::Crashed);
        if let (true, Some(uuid)) = (crashed, &g.uuid) {
            g.on_crash = crate::xl_records::on_crash(libxl_dir, g.domid, uuid);
        }
    }
}

fn keep(cfg: &Config) -> Keep {
    let day = 86_400i64;
    Keep {
        raw_secs: i64::from(cfg.retention.raw_days) * day,
        hourly_secs: i64::from(cfg.retention.hourly_days) * day,
        daily_secs: i64::from(cfg.retention.daily_days) * day,
    }
}

/// The guests' xenstore areas and their agents' keys; `listed` is called
/// once the domains are listed.
fn read_xenstore(
    inp: &Inputs<'_>,
    starts: &gather::KnownStarts,
    listed: impl FnOnce(),
) -> Result<Vec<Guest>> {
    let mut xs = match inp.xenstore {
        Some(p) => xsmon_xenstore::Client::open(p)?,
        None => xsmon_xenstore::Client::open_default()?,
    };
    xs.set_timeout(Duration::from_secs(inp.config.xenstore_timeout_secs.max(1)));
    let mut guests = gather::gather_then(&mut xs, inp.config.legacy, starts, listed)?;
    // The agents' keys of the guests that have no probe results.
    let silent: Vec<u32> = guests
        .iter()
        .filter(|g| matches!(g.found, Found::Nothing))
        .map(|g| g.domid)
        .collect();
    let mut agents = crate::agent_keys::read(&mut xs, &silent);
    for g in &mut guests {
        g.agent = agents.remove(&g.domid);
    }
    crate::devmodel::observe(&mut xs, &inp.root.join("proc"), &mut guests);
    Ok(guests)
}
