//! One poll of the site: every dom0 at once over SNMP (see `engine`), what
//! each served read into its result (`served`), and the figures of the
//! dom0s that need them. No verdicts here beyond what a dom0 served: the
//! report (`report`) and the site's state (`site`) judge.

mod served;

use std::collections::HashMap;

use crate::config::Config;
use crate::discover::{self, Dom0, Known};
use crate::engine::{self, Limits};
use crate::snmp::{Credentials, SiteCredentials};

pub use served::{
    attach_figures, base_name, failed, in_scope, is_guest, read_outcome, read_served, Dom0Result,
    OtherCycle, DOM0_HOST,
};

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
    /// Those whose collector completed another cycle than the one whose
    /// figures are kept (figures belong to a cycle), by dom0; each dom0's
    /// result is handed to the function as soon as its figures are read
    /// (the service writes them there and then).
    NewCycles(&'a HashMap<String, i64>, &'a mut dyn FnMut(&mut Dom0Result)),
}

/// Picks the dom0s whose figures a poll reads.
type Wanted<'a> = Box<dyn Fn(&Dom0Result) -> bool + 'a>;

/// Discovers the dom0s and polls them all. Fails only when there is
/// nothing to poll: an unreachable dom0 is a finding, not a failure.
pub fn poll_site(
    cfg: &Config,
    figures: Figures<'_>,
    progress: &dyn Fn(usize, usize),
) -> anyhow::Result<Polled> {
    let creds = cfg.site_credentials().map_err(anyhow::Error::msg)?;
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
    // Which dom0s' figures, what to make of figures of another cycle, and
    // who takes each dom0's result once they are read.
    let mut ignore = |_: &mut Dom0Result| {};
    let (wanted, other, read): (Wanted<'_>, _, &mut dyn FnMut(&mut Dom0Result)) = match figures {
        Figures::None => (Box::new(|_| false), OtherCycle::Warn, &mut ignore),
        Figures::Scope(d, g) => (
            Box::new(move |r| in_scope(r, d, g)),
            OtherCycle::Warn,
            &mut ignore,
        ),
        Figures::NewCycles(kept, taken) => (
            Box::new(move |r| r.cycle_time.is_none() || kept.get(&r.name) != r.cycle_time.as_ref()),
            OtherCycle::Skip,
            taken,
        ),
    };
    fetch_figures(
        &disc.dom0s,
        &mut dom0s,
        wanted,
        &creds,
        &limits,
        other,
        read,
    );
    Ok(Polled {
        time,
        known: disc.known,
        dom0s,
    })
}

/// Polls all dom0s at once (see `engine`: every request in flight over a
/// few sockets, within `limits`). `progress` is called with (done, total)
/// as results come in.
pub fn poll_all(
    dom0s: &[Dom0],
    creds: &SiteCredentials,
    limits: &Limits,
    now: i64,
    progress: &dyn Fn(usize, usize),
) -> Vec<Dom0Result> {
    let targets: Vec<String> = dom0s.iter().map(|d| d.target.clone()).collect();
    let each: Vec<&Credentials> = dom0s.iter().map(|d| creds.for_dom0(&d.name)).collect();
    let fetched = engine::fetch_all(&targets, "basicXenstoreMonitoring", &each, limits, progress);
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

/// dom0s whose figures are read at once.
const FIGURES_BATCH: usize = 250;

/// Fetches the figures of the dom0s `wanted` picks among those that
/// answered in a format that has figures, and attaches them to their
/// guests (see `attach_figures`), then hands each dom0's result to `read`.
pub fn fetch_figures(
    dom0s: &[Dom0],
    results: &mut [Dom0Result],
    wanted: impl Fn(&Dom0Result) -> bool,
    creds: &SiteCredentials,
    limits: &Limits,
    other: OtherCycle,
    read: &mut dyn FnMut(&mut Dom0Result),
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
    // In batches: the lines of every dom0's figures at once would hold
    // hundreds of MiB on a site of 100,000 guests (a batch's are joined
    // into one text per dom0 before the next is read).
    for batch in picked.chunks(FIGURES_BATCH) {
        let targets: Vec<String> = batch.iter().map(|&i| dom0s[i].target.clone()).collect();
        let each: Vec<&Credentials> = batch
            .iter()
            .map(|&i| creds.for_dom0(&dom0s[i].name))
            .collect();
        let fetched = engine::fetch_all(&targets, FIGURES_EXTEND, &each, limits, &|_, _| {});
        for (&i, f) in batch.iter().zip(fetched) {
            let served = f
                .outcome
                .map(|s| s.lines.join("\n") + "\n")
                .map_err(|e| e.to_string());
            attach_figures(&mut results[i], served, other);
            read(&mut results[i]);
        }
    }
}
