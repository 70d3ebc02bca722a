//! One poll of the site: every dom0 at once over SNMP (see `engine`), what
//! each served read into its result (`served`), and the figures of the
//! dom0s that need them. No verdicts here beyond what a dom0 served: the
//! report (`report`) and the site's state (`site`) judge.

mod served;

use xsmon_proto::rawline::RawLine;
use xsmon_proto::snmpline::parse_all;

use std::collections::HashMap;

use crate::config::Config;
use crate::discover::{self, Dom0, Known};
use crate::engine::{self, Limits};
use crate::snmp::Credentials;

use served::absorb_figures;
pub use served::{base_name, in_scope, is_guest, read_outcome, Dom0Result, GuestState};

/// One poll of the site: what every dom0 served, when, and what
/// discovery learnt.
#[derive(Debug, Clone)]
pub struct Polled {
    pub time: i64,
    pub known: Known,
    pub dom0s: Vec<Dom0Result>,
}

/// Which dom0s' figures a poll reads (a second, larger walk).
pub enum Figures<'a> {
    None,
    /// Those a scoped check is about (`--dom0`, `--guest`), or all.
    Scope(Option<&'a str>, Option<&'a str>),
    /// Those whose collector completed a new cycle since `last` (figures
    /// belong to a cycle): the others keep the figures of `last`.
    NewCycles(&'a HashMap<String, Dom0Result>),
}

/// Discovers the dom0s and polls them all. Fails only when there is
/// nothing to poll: an unreachable dom0 is a finding, not a failure.
pub fn poll_site(
    cfg: &Config,
    figures: Figures<'_>,
    progress: &dyn Fn(usize, usize),
) -> anyhow::Result<Polled> {
    let creds = cfg.credentials();
    let limits = cfg.limits();
    let t = std::time::Instant::now();
    let disc = discover::discover(cfg, &creds, limits.timeout);
    tracing::debug!(
        "discovered {} dom0s in {} ms",
        disc.dom0s.len(),
        t.elapsed().as_millis()
    );
    if disc.dom0s.is_empty() {
        let mut why = String::from(
            "no dom0 to poll: give --config-dir, --principal or --host (or set them in the config)",
        );
        if !disc.known.problems.is_empty() {
            why.push_str(&format!(" ({})", disc.known.problems.join("; ")));
        }
        anyhow::bail!(why);
    }
    let time = xsmon_cli::unix_now();
    let mut dom0s = poll_all(&disc.dom0s, &creds, &limits, time, progress);
    match figures {
        Figures::None => {}
        Figures::Scope(d, g) => {
            let wanted = |r: &Dom0Result| in_scope(r, d, g);
            fetch_figures(&disc.dom0s, &mut dom0s, wanted, &creds, &limits);
        }
        Figures::NewCycles(last) => {
            let carried = carry_figures(&mut dom0s, last);
            let wanted = |r: &Dom0Result| !carried.contains(&r.name);
            fetch_figures(&disc.dom0s, &mut dom0s, wanted, &creds, &limits);
        }
    }
    Ok(Polled {
        time,
        known: disc.known,
        dom0s,
    })
}

/// Gives each dom0 whose collector cycle is the one of `last` the figures
/// it had there (unless reading them failed there); returns their names.
fn carry_figures(
    dom0s: &mut [Dom0Result],
    last: &HashMap<String, Dom0Result>,
) -> std::collections::HashSet<String> {
    let mut carried = std::collections::HashSet::new();
    for r in dom0s.iter_mut() {
        let Some(before) = last.get(&r.name) else {
            continue;
        };
        let same_cycle = r.cycle_time.is_some() && r.cycle_time == before.cycle_time;
        let had_them = !before.findings.iter().any(|f| f.check == "figures");
        if !same_cycle || !had_them || r.error.is_some() {
            continue;
        }
        let by_name: HashMap<&str, &GuestState> =
            before.guests.iter().map(|g| (g.name.as_str(), g)).collect();
        for g in &mut r.guests {
            if let Some(b) = by_name.get(g.name.as_str()) {
                g.figures = b.figures.clone();
            }
        }
        carried.insert(r.name.clone());
    }
    carried
}

/// Polls all dom0s at once (see `engine`: every request in flight over a
/// few sockets, within `limits`). `progress` is called with (done, total)
/// as results come in.
pub fn poll_all(
    dom0s: &[Dom0],
    creds: &Credentials,
    limits: &Limits,
    now: i64,
    progress: &dyn Fn(usize, usize),
) -> Vec<Dom0Result> {
    let targets: Vec<String> = dom0s.iter().map(|d| d.target.clone()).collect();
    let fetched = engine::fetch_all(&targets, "basicXenstoreMonitoring", creds, limits, progress);
    dom0s
        .iter()
        .zip(fetched)
        .map(|(d, f)| {
            let mut r = Dom0Result::new(&d.name, &d.target);
            r.elapsed_ms = f.elapsed.as_millis() as u64;
            read_outcome(&mut r, f.outcome, now);
            r
        })
        .collect()
}

/// The extend that serves figures (SNMP line format version 3 and later).
pub const FIGURES_EXTEND: &str = "xsmonFigures";

/// Fetches the figures of the dom0s `wanted` picks among those that
/// answered in a format that has figures, and attaches them to their
/// guests. A dom0 that fails to serve them gets a warning finding: a graph
/// with a gap must say why.
pub fn fetch_figures(
    dom0s: &[Dom0],
    results: &mut [Dom0Result],
    wanted: impl Fn(&Dom0Result) -> bool,
    creds: &Credentials,
    limits: &Limits,
) {
    let picked: Vec<usize> = (0..results.len())
        .filter(|&i| {
            let r = &results[i];
            r.error.is_none() && r.format_version.is_some_and(|v| v >= 3) && wanted(r)
        })
        .collect();
    if picked.is_empty() {
        return;
    }
    let targets: Vec<String> = picked.iter().map(|&i| dom0s[i].target.clone()).collect();
    let fetched = engine::fetch_all(&targets, FIGURES_EXTEND, creds, limits, &|_, _| {});
    for (&i, f) in picked.iter().zip(fetched) {
        let r = &mut results[i];
        if let Err(why) = f.outcome.map_err(|e| e.to_string()).and_then(|served| {
            let text = served.lines.join("\n") + "\n";
            let recs = parse_all(&text).map_err(|e| e.to_string())?;
            absorb_figures(r, recs)
        }) {
            r.findings.push(RawLine {
                severity: "warning".into(),
                dom0: r.name.clone(),
                host: String::new(),
                check: "figures".into(),
                age: None,
                message: format!("figures unavailable: {why}"),
            });
        }
    }
}
