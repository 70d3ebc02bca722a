//! CPU: load per online CPU, iowait and steal over the interval since the
//! previous run. Steal matters on Xen: it is time the hypervisor gave to
//! other guests while this one wanted to run.

use anyhow::Result;
use xsmon_proto::CheckResult;

use super::Interval;
use crate::config::CpuConfig;
use xsmon_checks::Sys;

pub fn check(
    sys: &Sys,
    cfg: &CpuConfig,
    interval: Result<&Interval, &anyhow::Error>,
) -> CheckResult {
    match run(sys, cfg, interval) {
        Ok(r) => r,
        Err(e) => CheckResult::unknown("cpu", "cpu", "", format!("{e:#}")),
    }
}

fn run(
    sys: &Sys,
    cfg: &CpuConfig,
    interval: Result<&Interval, &anyhow::Error>,
) -> Result<CheckResult> {
    let interval = interval.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let load = sys.loadavg()?;
    let ncpu = sys.kernel_stats()?.cpu_time.len().max(1) as f64;
    let per_cpu = load.five as f64 / ncpu;

    let d_total = interval
        .now
        .cpu_total
        .saturating_sub(interval.prev.cpu_total) as f64;
    let pct = |now: u64, prev: u64| {
        if d_total > 0.0 {
            100.0 * now.saturating_sub(prev) as f64 / d_total
        } else {
            0.0
        }
    };
    let iowait = pct(interval.now.cpu_iowait, interval.prev.cpu_iowait);
    let steal = pct(interval.now.cpu_steal, interval.prev.cpu_steal);

    let mut r = CheckResult::new("cpu", "cpu", "");
    r.status = cfg
        .load_per_cpu
        .judge(&mut r, "load_per_cpu", per_cpu)
        .worst(cfg.iowait_pct.judge(&mut r, "iowait_pct", iowait));
    // Right after a restore or a migration the kernel books the time its
    // new domain spent being built as steal, over the ticks that follow:
    // steal is shown but not graded for this run.
    if interval.resumed.is_none() {
        r.status = r
            .status
            .worst(cfg.steal_pct.judge(&mut r, "steal_pct", steal));
    }
    r.message = format!(
        "load {:.2} per cpu ({} cpus), iowait {:.1}%, steal {:.1}% over {:.0} s",
        per_cpu,
        ncpu,
        iowait,
        steal,
        interval.seconds()
    );
    if let Some(note) = &interval.note {
        r.message.push_str(&format!(" ({note})"));
    }
    r.value("load1", load.one as f64)
        .value("load5", load.five as f64)
        .value("load15", load.fifteen as f64)
        .value("cpus", ncpu)
        .value("load_per_cpu", per_cpu)
        .value("iowait_pct", iowait)
        .value("steal_pct", steal)
        .value("interval_s", interval.seconds());
    Ok(r)
}
