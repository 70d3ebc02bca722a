//! Swap: activity (pages in and out per second, from /proc/vmstat) and use
//! (from /proc/meminfo). Activity is what hurts; use alone is a warning at
//! most.

use anyhow::Result;
use xsmon_proto::{CheckResult, Status};

use super::Interval;
use crate::config::SwapConfig;
use xsmon_checks::Sys;

pub fn check(
    sys: &Sys,
    cfg: &SwapConfig,
    interval: Result<&Interval, &anyhow::Error>,
) -> CheckResult {
    match run(sys, cfg, interval) {
        Ok(r) => r,
        Err(e) => CheckResult::unknown("swap", "swap", "", format!("{e:#}")),
    }
}

fn run(
    sys: &Sys,
    cfg: &SwapConfig,
    interval: Result<&Interval, &anyhow::Error>,
) -> Result<CheckResult> {
    let interval = interval.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // Without vmstat the counters would read as zero activity: a silent OK.
    sys.vmstat()?;
    let mem = sys.meminfo()?;
    let secs = interval.seconds().max(0.001);
    let pages = interval.now.pswpin.saturating_sub(interval.prev.pswpin)
        + interval.now.pswpout.saturating_sub(interval.prev.pswpout);
    let rate = pages as f64 / secs;
    let used = mem.swap_total.saturating_sub(mem.swap_free);
    let used_pct = if mem.swap_total > 0 {
        100.0 * used as f64 / mem.swap_total as f64
    } else {
        0.0
    };

    let mut r = CheckResult::new("swap", "swap", "");
    let use_status = if used_pct >= cfg.used_pct_warning {
        Status::Warning
    } else {
        Status::Ok
    };
    r.limit("used_pct", Some(cfg.used_pct_warning), None);
    r.status = cfg
        .pages_per_s
        .judge(&mut r, "pages_per_s", rate)
        .worst(use_status);
    r.message = if mem.swap_total == 0 {
        format!("{rate:.0} pages/s swapped, no swap space configured")
    } else {
        format!(
            "{rate:.0} pages/s swapped in+out, {used_pct:.0}% of {} MiB swap used",
            mem.swap_total / (1024 * 1024)
        )
    };
    if let Some(note) = &interval.note {
        r.message.push_str(&format!(" ({note})"));
    }
    r.value("pages_per_s", rate)
        .value("used_pct", used_pct)
        .value("used_bytes", used as f64)
        .value("total_bytes", mem.swap_total as f64);
    Ok(r)
}
