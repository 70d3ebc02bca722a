//! What dom0 concludes from the hypervisor's view of a domain
//! ([`crate::hypervisor`]), once per domain per cycle:
//!
//! - its figures from Xen itself: CPU time and CPU % over the cycle's
//!   interval, for all vCPUs and per vCPU (from the previous cycle's CPU
//!   times, as xentop computes it), vCPUs, memory (actual, target,
//!   maximum), uptime, the reboot count, each vif's and vbd's counters and
//!   each vif's drops per second (a warning past `vif_drops_per_s_warning`);
//! - its state: a paused domain is a warning, then an error; a crashed one
//!   an error at once, saying what to do; one shut down but not destroyed,
//!   or dying, an error once it lasts; its probe's last results are then
//!   not current (probe `halted`), whatever their age;
//! - a silent probe is described by what dom0 sees of the guest: running
//!   with CPU time moving (the probe is not running), no CPU time at all,
//!   or spinning at its vCPUs' limit (likely hung).

use std::collections::BTreeMap;

use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{CheckResult, Limit, Status, Value};
use xsmon_store::{HostRecord, HostRow, XenSeen};

use crate::config::HypervisorConfig;
use crate::gather::Guest;
use crate::hypervisor::{Domain, Hypervisor, Reason, RunState};
use crate::words::ago;

/// The check id and kind of the hypervisor's finding about a domain.
pub const CHECK_ID: &str = "domain";
pub const KIND: &str = "xen";

/// Applies the hypervisor's view of `domid` to its record. `guest` is the
/// domain's xenstore side (`None` for dom0), `prev` its host row.
pub fn apply(
    rec: &mut HostRecord,
    domid: u32,
    guest: Option<&Guest>,
    hv: &Hypervisor,
    prev: Option<&HostRow>,
    cfg: &HypervisorConfig,
    now: i64,
) {
    let dom = hv.domains.get(&domid);
    let last = prev
        .and_then(|p| p.xen.as_ref())
        .filter(|x| x.domid == domid);
    let interval = last.map(|l| now - l.cpu_at).filter(|dt| *dt > 0);
    let counters = counters_of(domid, hv);
    let rates = Rates {
        cpu_pct: dom.and_then(|d| cpu_pct(d, last, now)),
        per_s: last
            .zip(interval)
            .map(|(l, dt)| per_second(&counters, &l.counters, dt))
            .unwrap_or_default(),
    };
    let reboots = prev.map_or(0, |p| p.reboots) + u64::from(rec.rebooted);
    add_figures(rec, domid, guest, &rates, reboots, cfg, hv, now);
    drops_finding(rec, &rates, interval, cfg);
    let cpu_pct = rates.cpu_pct;
    let Some(dom) = dom else {
        return;
    };
    let word = dom.state.word();
    let since = match last {
        Some(l) if l.state == word => l.since,
        _ => now,
    };
    if let Some(l) = last.filter(|l| l.state != word) {
        if !(dom.state.runs() && matches!(l.state.as_str(), "running" | "blocked")) {
            rec.events.push((
                "domain",
                format!("{} is {word} (was {})", rec.name, l.state),
            ));
        }
    }
    rec.xen = Some(XenSeen {
        domid,
        state: word,
        since,
        cpu_time_s: dom.cpu_time_s,
        cpu_at: now,
        counters,
    });
    if guest.is_none() {
        return;
    }
    if dom.state.runs() {
        let cpu_used_s = last.map(|l| dom.cpu_time_s - l.cpu_time_s);
        describe_silence(rec, cpu_pct, cpu_used_s, interval, cfg);
        // A domain booting uses its vCPUs to the full: not a load to warn of.
        if rec.probe != "starting" {
            busy_finding(rec, cpu_pct, interval, cfg);
        }
        if let Some(g) = guest {
            balloon_finding(rec, dom, g, now, cfg);
        }
    } else if let Some(g) = guest {
        halted(rec, dom, g, now, now - since, cfg);
    }
}

/// CPU % of all its vCPUs since the previous cycle's reading (same
/// domain instance: a new domid restarts the count).
fn cpu_pct(d: &Domain, last: Option<&XenSeen>, now: i64) -> Option<f64> {
    let l = last?;
    let dt = (now - l.cpu_at) as f64;
    let used = d.cpu_time_s - l.cpu_time_s;
    if dt <= 0.0 || used < 0.0 || d.vcpus == 0 {
        return None;
    }
    Some((used / dt / f64::from(d.vcpus) * 100.0).clamp(0.0, 100.0))
}

/// The cycle's rates from the hypervisor's counters.
struct Rates {
    /// CPU % of all vCPUs.
    cpu_pct: Option<f64>,
    /// Per second since the previous cycle, by counter name (see
    /// [`counters_of`]): a vCPU's CPU seconds, a vif's drops.
    per_s: BTreeMap<String, f64>,
}

/// The counters kept for next cycle's rates: each vCPU's CPU time
/// (`vcpu<N>`) and each vif's drops (`vif<dev>.rx_dropped`,
/// `vif<dev>.tx_dropped`: numbered by device, as its figures are).
fn counters_of(domid: u32, hv: &Hypervisor) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (vcpu, t) in hv.vcpu_times.get(&domid).into_iter().flatten() {
        out.insert(format!("vcpu{vcpu}"), *t);
    }
    for (vif, c) in hv.vifs.get(&domid).into_iter().flatten() {
        let id = vif_check_id(vif);
        out.insert(format!("{id}.rx_dropped"), c.rx_dropped as f64);
        out.insert(format!("{id}.tx_dropped"), c.tx_dropped as f64);
    }
    out
}

/// Each counter's growth per second over `dt`; one that went back (a
/// counter reset: a new vif, a vCPU unplugged and plugged) has no rate.
fn per_second(
    now: &BTreeMap<String, f64>,
    last: &BTreeMap<String, f64>,
    dt: i64,
) -> BTreeMap<String, f64> {
    now.iter()
        .filter_map(|(k, v)| {
            let grew = v - last.get(k)?;
            (grew >= 0.0).then(|| (k.clone(), grew / dt as f64))
        })
        .collect()
}

/// Which of the hypervisor's figures history keeps, every cycle for every
/// domain: xcp-rrdd's per-VM set (CPU %, memory in use, each vif's bytes
/// and drops, each vbd's requests and sectors). The rest are served with
/// the latest figures only: the CPU time is the CPU %'s counter (and kept
/// in the host row for the next cycle's), the per-vCPU CPU % the same per
/// vCPU, vCPUs, the memory target and maximum, uptime and the reboot count
/// change rarely (a reboot is an event, a target away from the memory a
/// `balloon` finding), packets follow bytes, the per-second rates are the
/// counters' own, and `oo_req` is blkback's. Every row counts: each cycle
/// writes one per figure per domain, and a thousand-guest dom0's cycle
/// spent more time storing 20 of them per guest than reading xenstore.
fn kept_in_history(name: &str) -> bool {
    matches!(
        name,
        "cpu_pct"
            | "mem_actual_bytes"
            | "rx_bytes"
            | "tx_bytes"
            | "rx_dropped"
            | "tx_dropped"
            | "rd_req"
            | "wr_req"
            | "rd_sect"
            | "wr_sect"
    )
}

/// The check id of a vif's figures, by device number, so that a graph
/// survives the domid changing: `vif<domid>.<n>` is `vif<n>`, the tap of
/// the NIC an HVM guest's device model emulates (`vif<domid>.<n>-emu`)
/// `vif<n>emu`, its own figures beside the PV vif's.
fn vif_check_id(vif: &str) -> String {
    let device = vif.rsplit_once('.').map_or(vif, |(_, d)| d);
    match device.strip_suffix("-emu") {
        Some(n) => format!("vif{n}emu"),
        None => format!("vif{device}"),
    }
}

fn value(name: &str, value: f64) -> Value {
    Value {
        name: name.into(),
        value,
    }
}

/// The domain's figures: kept in history (`rec.figures`) and served as its
/// latest (`rec.latest`): check `xen`, and one check per vif and vbd,
/// numbered by device so that a graph survives the domid changing.
#[allow(clippy::too_many_arguments)]
fn add_figures(
    rec: &mut HostRecord,
    domid: u32,
    guest: Option<&Guest>,
    rates: &Rates,
    reboots: u64,
    cfg: &HypervisorConfig,
    hv: &Hypervisor,
    now: i64,
) {
    let dom = hv.domains.get(&domid);
    let mut xen = Vec::new();
    let pct = |p: f64| ((p * 1000.0).round() / 1000.0).clamp(0.0, 100.0);
    if let Some(d) = dom {
        xen.push(value("cpu_time_s", d.cpu_time_s));
        if let Some(p) = rates.cpu_pct {
            xen.push(value("cpu_pct", pct(p)));
        }
        for vcpu in hv.vcpu_times.get(&domid).into_iter().flat_map(|m| m.keys()) {
            if let Some(r) = rates.per_s.get(&format!("vcpu{vcpu}")) {
                xen.push(value(&format!("vcpu{vcpu}_pct"), pct(r * 100.0)));
            }
        }
        xen.push(value("vcpus", f64::from(d.vcpus)));
        xen.push(value("mem_actual_bytes", (d.mem_mib << 20) as f64));
    }
    if guest.is_some() && dom.is_some() {
        xen.push(value("reboots", reboots as f64));
    }
    if let Some(g) = guest {
        if let Some(t) = g.mem_target_kib {
            xen.push(value("mem_target_bytes", (t << 10) as f64));
        }
        if let Some(m) = g.mem_max_kib {
            xen.push(value("mem_max_bytes", (m << 10) as f64));
        }
        if let Some(up) = uptime(g, now) {
            xen.push(value("uptime_s", up.round()));
        }
    }
    // History is kept under the check id (`xen`, `vif0`, `vbd51712`), not
    // the device's dom0-side name (`vif7.0`): a reboot gives the domain a
    // new domid, and its graph must go on; and a thousand guests then
    // share a dozen metrics instead of each having its own.
    let push = |rec: &mut HostRecord, id: String, target: &str, values: Vec<Value>, limits| {
        let kept_as = if id == "xen" {
            String::new()
        } else {
            id.clone()
        };
        for v in values.iter().filter(|v| kept_in_history(&v.name)) {
            rec.figures
                .push((KIND.into(), kept_as.clone(), v.name.clone(), v.value));
        }
        rec.latest.push(CheckFigures {
            check_id: id,
            kind: KIND.into(),
            status: Status::Ok,
            target: target.to_string(),
            values,
            limits,
        });
    };
    if !xen.is_empty() {
        let limits = if cfg.cpu_pct_warning.is_some() || cfg.cpu_pct_error.is_some() {
            vec![Limit {
                name: "cpu_pct".into(),
                warning: cfg.cpu_pct_warning,
                error: cfg.cpu_pct_error,
            }]
        } else {
            Vec::new()
        };
        push(rec, "xen".into(), "", xen, limits);
    }
    for (vif, c) in hv.vifs.get(&domid).into_iter().flatten() {
        let id = vif_check_id(vif);
        let mut values = vec![
            value("rx_bytes", c.rx_bytes as f64),
            value("tx_bytes", c.tx_bytes as f64),
            value("rx_packets", c.rx_packets as f64),
            value("tx_packets", c.tx_packets as f64),
            value("rx_dropped", c.rx_dropped as f64),
            value("tx_dropped", c.tx_dropped as f64),
        ];
        for side in ["rx", "tx"] {
            if let Some(r) = rates.per_s.get(&format!("{id}.{side}_dropped")) {
                values.push(value(
                    &format!("{side}_drops_per_s"),
                    (r * 1000.0).round() / 1000.0,
                ));
            }
        }
        push(rec, id, vif, values, Vec::new());
    }
    // A disk QEMU serves: its check says where it is and that dom0 has
    // no counters for it, rather than leaving a gap in the list.
    for dev in hv.qdisks.get(&domid).into_iter().flatten() {
        push(
            rec,
            format!("vbd{dev}"),
            &format!("qdisk-{domid}-{dev} (served by QEMU: no counters in dom0)"),
            Vec::new(),
            Vec::new(),
        );
    }
    for (dev, c) in hv.vbds.get(&domid).into_iter().flatten() {
        let values = vec![
            value("rd_req", c.rd_req as f64),
            value("wr_req", c.wr_req as f64),
            value("rd_sect", c.rd_sect as f64),
            value("wr_sect", c.wr_sect as f64),
            value("oo_req", c.oo_req as f64),
        ];
        push(
            rec,
            format!("vbd{dev}"),
            &format!("vbd-{domid}-{dev}"),
            values,
            Vec::new(),
        );
    }
}

/// A silent probe in a running domain: say what dom0 sees.
fn describe_silence(
    rec: &mut HostRecord,
    cpu_pct: Option<f64>,
    cpu_used_s: Option<f64>,
    interval: Option<i64>,
    cfg: &HypervisorConfig,
) {
    if !matches!(rec.probe, "stale" | "missing") {
        return;
    }
    let (Some(pct), Some(dt)) = (cpu_pct, interval) else {
        return;
    };
    let over = ago(dt);
    let seen = if pct >= cfg.spinning_pct {
        format!("dom0 sees it spinning at {pct:.0}% of its vCPUs for the last {over}: likely hung")
    } else if cpu_used_s.is_some_and(|used| used < XL_CPU_RESOLUTION_S) {
        // xl's CPU time has 0.1 s resolution, and an idle tickless guest
        // can use less than that in minutes: no CPU time is no evidence
        // of a hang, so the words say both.
        format!(
            "dom0 sees it using almost no CPU (< {XL_CPU_RESOLUTION_S} s in the last {over}): idle, or hung; CPU time alone cannot tell them apart"
        )
    } else {
        format!("dom0 sees it running ({pct:.1}% CPU over the last {over}): the guest is alive, its probe is not running")
    };
    rec.message.push_str(&format!("; {seen}"));
}

/// The resolution of `xl list`'s CPU time, in seconds.
const XL_CPU_RESOLUTION_S: f64 = 0.1;

/// Seconds since the toolstack created the domain (dom0's clock both).
fn uptime(g: &Guest, now: i64) -> Option<f64> {
    let up = now as f64 - g.start_time?;
    (up >= 0.0).then_some(up)
}

/// A balloon that stays away from the toolstack's target: the guest's
/// balloon driver is missing, stuck, or cannot give memory back. Judged
/// once the domain has run `balloon_settle_secs` (a new domain's balloon
/// takes a while to reach its target); the gap must exceed
/// `balloon_off_pct` of the target and 32 MiB (xl rounds to MiB).
fn balloon_finding(
    rec: &mut HostRecord,
    dom: &Domain,
    g: &Guest,
    now: i64,
    cfg: &HypervisorConfig,
) {
    let (Some(target_kib), Some(up)) = (g.mem_target_kib, uptime(g, now)) else {
        return;
    };
    if up < cfg.balloon_settle_secs as f64 {
        return;
    }
    let target_mib = target_kib >> 10;
    let gap = dom.mem_mib.abs_diff(target_mib);
    if gap <= 32 || (gap as f64) <= target_mib as f64 * cfg.balloon_off_pct / 100.0 {
        return;
    }
    let mut c = CheckResult::new("balloon", KIND, "");
    c.status = Status::Warning;
    c.message = format!(
        "balloon away from its target: {} MiB in use, the toolstack's target is {target_mib} MiB (memory/target), {} after the domain started: is its balloon driver loaded?",
        dom.mem_mib,
        ago(up as i64)
    );
    c.values.push(value("mem_gap_mib", gap as f64));
    rec.status = rec.status.max(Status::Warning);
    rec.message.push_str(&format!("; {}", c.message));
    rec.findings.push(c);
}

/// A vif dropping packets over the interval (netback's drops: the guest
/// does not drain its rings, or dom0 cannot keep up), against
/// `vif_drops_per_s_warning`.
fn drops_finding(
    rec: &mut HostRecord,
    rates: &Rates,
    interval: Option<i64>,
    cfg: &HypervisorConfig,
) {
    let (Some(limit), Some(dt)) = (cfg.vif_drops_per_s_warning, interval) else {
        return;
    };
    let mut by_vif: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (k, r) in &rates.per_s {
        if let Some((vif, side)) = k.split_once('.') {
            let e = by_vif.entry(vif).or_default();
            match side {
                "rx_dropped" => e.0 = *r,
                "tx_dropped" => e.1 = *r,
                _ => {}
            }
        }
    }
    for (vif, (rx, tx)) in by_vif {
        if rx + tx < limit {
            continue;
        }
        let mut c = CheckResult::new(vif, KIND, "");
        c.status = Status::Warning;
        c.message = format!(
            "{vif} dropping {:.1} packets/s over the last {} (from the guest {rx:.1}/s, to it {tx:.1}/s, as netback counts them)",
            rx + tx,
            ago(dt)
        );
        c.values.push(value("drops_per_s", rx + tx));
        rec.status = rec.status.max(Status::Warning);
        rec.message.push_str(&format!("; {}", c.message));
        rec.findings.push(c);
    }
}

/// Sustained CPU over the interval, against the configured thresholds.
fn busy_finding(
    rec: &mut HostRecord,
    cpu_pct: Option<f64>,
    interval: Option<i64>,
    cfg: &HypervisorConfig,
) {
    let (Some(pct), Some(dt)) = (cpu_pct, interval) else {
        return;
    };
    let status = match (cfg.cpu_pct_error, cfg.cpu_pct_warning) {
        (Some(e), _) if pct >= e => Status::Error,
        (_, Some(w)) if pct >= w => Status::Warning,
        _ => return,
    };
    let mut c = CheckResult::new(CHECK_ID, KIND, "");
    c.status = status;
    c.message = format!(
        "CPU at {pct:.0}% of its vCPUs over the last {} (as Xen counts it)",
        ago(dt)
    );
    c.values.push(value("cpu_pct", pct));
    rec.status = rec.status.max(status);
    rec.message.push_str(&format!("; {}", c.message));
    rec.findings.push(c);
}

/// A domain that exists but does not run: the hypervisor's finding
/// replaces whatever its probe last wrote, which is not current.
fn halted(
    rec: &mut HostRecord,
    dom: &Domain,
    g: &Guest,
    now: i64,
    age: i64,
    cfg: &HypervisorConfig,
) {
    let name = rec.name.clone();
    let lasting = age >= cfg.stuck_after_secs as i64;
    let for_ = ago(age);
    let being_built = being_built(dom, g, now, age, cfg);
    let (status, message) = match dom.state {
        // xl builds a domain paused and unpauses it once its devices are
        // up: a pause this young is the toolstack's, and no admin's.
        RunState::Paused if being_built => {
            being_created(rec, uptime(g, now).map_or(age, |up| up as i64));
            return;
        }
        RunState::Paused => (
            if age >= cfg.paused_error_after_secs as i64 {
                Status::Error
            } else {
                Status::Warning
            },
            format!("paused for {for_} (xl list: p): `xl unpause {name}` resumes it"),
        ),
        RunState::Crashed => crashed(&name, &for_, g.on_crash.as_deref()),
        // An `xl save` or `xl migrate` under way: an admin's doing, no
        // finding unless it lasts.
        RunState::Shutdown(Reason::Suspend) if !lasting => (
            Status::Ok,
            format!("suspended for {for_}: being saved or migrated"),
        ),
        // `xl reboot` or the guest's own: xl destroys the domain and
        // builds the next one; caught in between, it is no finding.
        RunState::Shutdown(Reason::Reboot) if !lasting => (
            Status::Ok,
            format!("shut down to reboot {for_} ago: the toolstack starts it again"),
        ),
        RunState::Shutdown(r) if !lasting => (
            Status::Warning,
            format!("shut down ({}) {for_} ago, not yet destroyed", r.as_str()),
        ),
        RunState::Shutdown(r) => (
            Status::Error,
            format!(
                "shut down ({}) {for_} ago and never destroyed: the toolstack did not clean it up; `xl destroy {name}`",
                r.as_str()
            ),
        ),
        RunState::Dying if !lasting => (Status::Warning, format!("dying for {for_}: being destroyed")),
        RunState::Dying => (
            Status::Error,
            format!(
                "dying for {for_}: a zombie domain still holding {} MiB (a backend or a mapping keeps it; see `xl list`, `xenstore-ls /local/domain/0/backend`)",
                dom.mem_mib
            ),
        ),
        RunState::Running | RunState::Blocked => return,
    };
    let mut c = CheckResult::new(CHECK_ID, KIND, "");
    c.status = status;
    c.message = message.clone();
    let probe_said = match rec.probe {
        "fresh" | "stale" => match rec.run {
            Some(r) => format!(
                "; its probe's last run was seen {} ago",
                ago((now - r.seen).max(0))
            ),
            None => String::new(),
        },
        _ => String::new(),
    };
    rec.probe = "halted";
    rec.status = status;
    rec.message = format!("{message}{probe_said}");
    rec.findings = vec![c];
    // The guest's own figures are not current: keep only Xen's.
    rec.latest.retain(|f| f.kind == KIND);
    rec.figures.retain(|f| f.0 == KIND);
}

/// A paused domain the toolstack is still building: it has never run (xl
/// builds a domain paused, its vCPUs at 0.0 s until it unpauses it; a
/// domain paused after it ran is someone's pause, however young), and it
/// is younger than `creation_secs`: by its start time, or, before libxl
/// has written that (late in the build: a soak run's watch met a domain
/// paused 0 s with none yet), by how long dom0 has seen it paused (`age`).
fn being_built(dom: &Domain, g: &Guest, now: i64, age: i64, cfg: &HypervisorConfig) -> bool {
    let young = match uptime(g, now) {
        Some(up) => up < cfg.creation_secs as f64,
        None => age < cfg.creation_secs as i64,
    };
    young && dom.cpu_time_s < XL_CPU_RESOLUTION_S
}

/// A domain the toolstack is building: `starting`, no advice; ok unless
/// what dom0 knows of the VM says otherwise (a crash the toolstack
/// restarted it from: its finding stays).
fn being_created(rec: &mut HostRecord, up: i64) {
    rec.probe = "starting";
    rec.findings.retain(|f| f.kind == KIND);
    rec.status = rec
        .findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok);
    rec.message = format!(
        "being created: paused {} after its start (xl list: p), as the toolstack builds a domain before it runs it",
        ago(up)
    );
    for f in &rec.findings {
        rec.message.push_str(&format!("; {}", f.message));
    }
    rec.latest.retain(|f| f.kind == KIND);
    rec.figures.retain(|f| f.0 == KIND);
}

/// A crashed domain: what the toolstack does with it, from its `on_crash`
/// as libxl keeps it; never a guessed one.
fn crashed(name: &str, for_: &str, on_crash: Option<&str>) -> (Status, String) {
    match on_crash {
        Some(a) if a.ends_with("restart") => (
            Status::Warning,
            format!(
                "crashed {for_} ago; the toolstack starts it again (on_crash = \"{a}\" in libxl's config of the domain)"
            ),
        ),
        Some(a @ ("destroy" | "coredump-destroy")) => (
            Status::Error,
            format!(
                "crashed {for_} ago; the toolstack destroys it (on_crash = \"{a}\" in libxl's config of the domain)"
            ),
        ),
        Some("preserve") => (
            Status::Error,
            format!(
                "crashed {for_} ago and kept by Xen for a core dump (on_crash = \"preserve\" in libxl's config of the domain): `xl dump-core {name} FILE`, then `xl destroy {name}`"
            ),
        ),
        _ => (
            Status::Error,
            format!(
                "crashed {for_} ago and still kept by Xen (xl list: c); dom0 cannot read what the toolstack does with it: if it stays, `xl dump-core {name} FILE` saves its memory for a diagnosis, then `xl destroy {name}`"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::parse_xl_list;

    const NOW: i64 = 1_796_000_000;

    fn guest(domid: u32) -> Guest {
        Guest {
            mem_target_kib: Some(163_840),
            mem_max_kib: Some(262_144),
            ..Guest::named(domid, "web01")
        }
    }

    fn view(state: &str, cpu: f64) -> Hypervisor {
        Hypervisor {
            domains: parse_xl_list(&format!(
                "Name ID Mem VCPUs State Time(s)\nweb01 7 160 2 {state} {cpu}\n"
            )),
            ..Default::default()
        }
    }

    fn fresh_record() -> HostRecord {
        let mut r = HostRecord::new("uuid:x".into(), "web01".into(), "web01".into(), "running");
        r.probe = "fresh";
        r.status = Status::Ok;
        r.message = "all 5 checks ok".into();
        r.latest.push(CheckFigures {
            check_id: "mem".into(),
            kind: "mem".into(),
            status: Status::Ok,
            target: String::new(),
            values: vec![value("used_pct", 30.0)],
            limits: Vec::new(),
        });
        r.figures
            .push(("mem".into(), String::new(), "used_pct".into(), 30.0));
        r
    }

    fn row(state: &str, since: i64, cpu: f64, at: i64) -> HostRow {
        HostRow {
            id: 1,
            ident: "uuid:x".into(),
            uuid: None,
            name: "web01".into(),
            last_seen: at,
            domid: Some(7),
            state: "running".into(),
            config: false,
            run: None,
            run_domid: None,
            run_boot: None,
            started: None,
            xen: Some(XenSeen {
                domid: 7,
                state: state.into(),
                since,
                cpu_time_s: cpu,
                cpu_at: at,
                counters: BTreeMap::new(),
            }),
            reboots: 0,
        }
    }

    fn run(state: &str, cpu: f64, prev: Option<&HostRow>) -> HostRecord {
        let mut r = fresh_record();
        apply(
            &mut r,
            7,
            Some(&guest(7)),
            &view(state, cpu),
            prev,
            &HypervisorConfig::default(),
            NOW,
        );
        r
    }

    fn xen_value(r: &HostRecord, name: &str) -> Option<f64> {
        r.latest
            .iter()
            .find(|f| f.check_id == "xen")?
            .values
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value)
    }

    #[test]
    fn a_crashed_guest_is_an_error_at_once_and_never_fresh() {
        let r = run("---sc-", 10.0, None);
        assert_eq!(r.probe, "halted");
        assert_eq!(r.status, Status::Error);
        assert!(r.message.starts_with("crashed"), "{}", r.message);
        assert!(r.message.contains("xl dump-core web01") && r.message.contains("xl destroy web01"));
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].id, CHECK_ID);
        // The probe's figures are not current; Xen's are.
        assert!(r.latest.iter().all(|f| f.kind == KIND));
        assert!(r.figures.iter().all(|f| f.0 == KIND));
        assert_eq!(r.xen.as_ref().unwrap().state, "crashed");
    }

    fn crashed_with(on_crash: Option<&str>) -> HostRecord {
        let mut r = fresh_record();
        let g = Guest {
            on_crash: on_crash.map(str::to_string),
            ..guest(7)
        };
        apply(
            &mut r,
            7,
            Some(&g),
            &view("---sc-", 10.0),
            None,
            &HypervisorConfig::default(),
            NOW,
        );
        r
    }

    #[test]
    fn a_crash_is_worded_by_the_on_crash_libxl_keeps_never_a_guessed_one() {
        let r = crashed_with(Some("restart"));
        assert_eq!((r.probe, r.status), ("halted", Status::Warning));
        assert_eq!(
            r.message,
            "crashed 0 s ago; the toolstack starts it again (on_crash = \"restart\" in libxl's config of the domain)"
        );
        let r = crashed_with(Some("preserve"));
        assert_eq!(r.status, Status::Error);
        assert!(r.message.contains("(on_crash = \"preserve\" in libxl's config of the domain): `xl dump-core web01 FILE`, then `xl destroy web01`"), "{}", r.message);
        let r = crashed_with(Some("coredump-destroy"));
        assert!(r.message.ends_with("the toolstack destroys it (on_crash = \"coredump-destroy\" in libxl's config of the domain)"), "{}", r.message);
        // Not readable: no action is named.
        let r = crashed_with(None);
        assert_eq!(r.status, Status::Error);
        assert!(!r.message.contains("on_crash"), "{}", r.message);
        assert!(
            r.message
                .contains("dom0 cannot read what the toolstack does with it"),
            "{}",
            r.message
        );
    }

    /// A record of web01 paused (`xl list: p`) with `cpu` seconds of CPU,
    /// started `started_ago` seconds ago (`None`: no start time yet).
    fn paused(started_ago: Option<i64>, cpu: f64) -> HostRecord {
        let mut r = fresh_record();
        let g = Guest {
            start_time: started_ago.map(|ago| (NOW - ago) as f64),
            ..guest(7)
        };
        apply(
            &mut r,
            7,
            Some(&g),
            &view("--p---", cpu),
            None,
            &HypervisorConfig::default(),
            NOW,
        );
        r
    }

    #[test]
    fn a_domain_paused_while_xl_builds_it_is_starting_not_paused() {
        let r = paused(Some(4), 0.0);
        assert_eq!((r.probe, r.status), ("starting", Status::Ok));
        assert_eq!(
            r.message,
            "being created: paused 4 s after its start (xl list: p), as the toolstack builds a domain before it runs it"
        );
        assert!(!r.message.contains("unpause") && r.findings.is_empty());
        // Its start time not yet written (libxl writes it late in the
        // build), and it never ran: being built too.
        let r = paused(None, 0.0);
        assert_eq!(
            (r.probe, r.status),
            ("starting", Status::Ok),
            "{}",
            r.message
        );
        // ... but one that ran is paused, start time or not.
        let r = paused(None, 12.5);
        assert_eq!(
            (r.probe, r.status),
            ("halted", Status::Warning),
            "{}",
            r.message
        );
        // Paused seconds after its start, but it ran: someone's pause.
        let r = paused(Some(4), 3.2);
        assert_eq!(
            (r.probe, r.status),
            ("halted", Status::Warning),
            "{}",
            r.message
        );
        // Past creation_secs, a pause is a pause.
        let r = paused(Some(600), 0.0);
        assert_eq!((r.probe, r.status), ("halted", Status::Warning));
        assert!(
            r.message.contains("`xl unpause web01` resumes it"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_paused_guest_is_a_warning_then_an_error() {
        let r = run("--p---", 10.0, None);
        assert_eq!((r.probe, r.status), ("halted", Status::Warning));
        assert!(r.message.contains("xl unpause web01"), "{}", r.message);
        let long_ago = row("paused", NOW - 1000, 10.0, NOW - 300);
        let r = run("--p---", 10.0, Some(&long_ago));
        assert_eq!(r.status, Status::Error);
        assert!(r.message.contains("paused for 16 min"), "{}", r.message);
        assert_eq!(r.xen.unwrap().since, NOW - 1000);
    }

    #[test]
    fn shut_down_and_dying_domains_become_errors_once_they_last() {
        let r = run("---s--", 10.0, None);
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.contains("poweroff"), "{}", r.message);
        let stuck = row("shutdown-poweroff", NOW - 400, 10.0, NOW - 300);
        let r = run("---s--", 10.0, Some(&stuck));
        assert_eq!(r.status, Status::Error);
        assert!(r.message.contains("xl destroy web01"), "{}", r.message);
        let zombie = row("dying", NOW - 4000, 10.0, NOW - 300);
        let r = run("-----d", 10.0, Some(&zombie));
        assert_eq!(r.status, Status::Error);
        assert!(
            r.message.contains("zombie") && r.message.contains("160 MiB"),
            "{}",
            r.message
        );
        // A save or a migration under way, a reboot between xl's two
        // domains: no finding, in words that say so.
        let r = run("---ss-", 10.0, None);
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message
                .starts_with("suspended for 0 s: being saved or migrated"),
            "{}",
            r.message
        );
        let r = run("---sr-", 10.0, None);
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message
                .starts_with("shut down to reboot 0 s ago: the toolstack starts it again"),
            "{}",
            r.message
        );
        // ... an error once they last.
        let stuck = row("shutdown-suspend", NOW - 400, 10.0, NOW - 300);
        let r = run("---ss-", 10.0, Some(&stuck));
        assert_eq!(r.status, Status::Error);
        assert!(r.message.contains("shut down (suspend)"), "{}", r.message);
    }

    #[test]
    fn cpu_percent_comes_from_the_previous_cycles_cpu_time() {
        // 2 vCPUs, 60 s of CPU time over 300 s: 10 %.
        let prev = row("blocked", NOW - 3000, 100.0, NOW - 300);
        let r = run("-b----", 160.0, Some(&prev));
        assert_eq!(xen_value(&r, "cpu_pct"), Some(10.0));
        assert_eq!(
            xen_value(&r, "mem_actual_bytes"),
            Some((160u64 << 20) as f64)
        );
        assert_eq!(
            xen_value(&r, "mem_target_bytes"),
            Some((163_840u64 << 10) as f64)
        );
        assert_eq!(
            xen_value(&r, "mem_max_bytes"),
            Some((262_144u64 << 10) as f64)
        );
        assert_eq!((r.probe, r.status), ("fresh", Status::Ok));
        // A new domain instance (another domid) starts the count afresh.
        let mut other = prev.clone();
        other.xen.as_mut().unwrap().domid = 3;
        assert_eq!(
            xen_value(&run("-b----", 160.0, Some(&other)), "cpu_pct"),
            None
        );
        // CPU time going back (a reboot under the same domid) gives none.
        assert_eq!(xen_value(&run("-b----", 1.0, Some(&prev)), "cpu_pct"), None);
    }

    #[test]
    fn a_busy_guest_is_a_warning_at_the_threshold() {
        let prev = row("running", NOW - 3000, 0.0, NOW - 300);
        let r = run("r-----", 590.0, Some(&prev));
        assert_eq!(r.status, Status::Warning);
        assert!(r
            .findings
            .iter()
            .any(|f| f.id == CHECK_ID && f.message.contains("98%")));
    }

    #[test]
    fn a_silent_probe_is_described_by_what_dom0_sees() {
        let silent = |cpu_now: f64| {
            let mut r = fresh_record();
            r.probe = "stale";
            r.status = Status::Error;
            r.message = "probe not reporting since 10:00".into();
            let prev = row("blocked", NOW - 3000, 100.0, NOW - 300);
            apply(
                &mut r,
                7,
                Some(&guest(7)),
                &view("-b----", cpu_now),
                Some(&prev),
                &HypervisorConfig::default(),
                NOW,
            );
            r.message
        };
        assert!(silent(103.0).contains("the guest is alive, its probe is not running"));
        let idle = silent(100.0);
        assert!(
            idle.contains(
                "using almost no CPU (< 0.1 s in the last 5 min): idle, or hung; CPU time alone cannot tell them apart"
            ) && !idle.contains(": hung"),
            "{idle}"
        );
        assert!(silent(700.0).contains("spinning at 100% of its vCPUs"));
    }

    #[test]
    fn uptime_and_a_stuck_balloon() {
        let judged = |g: &Guest| {
            let mut r = fresh_record();
            apply(
                &mut r,
                7,
                Some(g),
                &view("-b----", 10.0),
                None,
                &HypervisorConfig::default(),
                NOW,
            );
            r
        };
        let mut g = guest(7);
        g.start_time = Some((NOW - 3600) as f64);
        // xl says 160 MiB; the target is 100 MiB, an hour after the start.
        g.mem_target_kib = Some(100 << 10);
        let r = judged(&g);
        assert_eq!(xen_value(&r, "uptime_s"), Some(3600.0));
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.findings.iter().any(|f| f.id == "balloon"
                && f.message.contains("160 MiB in use")
                && f.message.contains("target is 100 MiB")),
            "{:?}",
            r.findings
        );
        // Just started: the balloon has time to get there.
        g.start_time = Some((NOW - 60) as f64);
        assert_eq!(judged(&g).status, Status::Ok);
    }

    #[test]
    fn without_xl_nothing_changes() {
        let mut r = fresh_record();
        apply(
            &mut r,
            7,
            Some(&guest(7)),
            &Hypervisor::default(),
            None,
            &HypervisorConfig::default(),
            NOW,
        );
        assert_eq!((r.probe, r.status), ("fresh", Status::Ok));
        assert!(r.xen.is_none());
    }

    #[test]
    fn device_counters_become_figures() {
        let mut hv = view("-b----", 1.0);
        hv.vifs.entry(7).or_default().insert(
            "vif7.0".into(),
            crate::hypervisor::VifCounters {
                rx_bytes: 5,
                tx_dropped: 2,
                ..Default::default()
            },
        );
        hv.vbds.entry(7).or_default().insert(
            "51712".into(),
            crate::hypervisor::VbdCounters {
                wr_sect: 80,
                ..Default::default()
            },
        );
        hv.qdisks.insert(7, vec!["768".into()]);
        hv.vifs.entry(7).or_default().insert(
            "vif7.0-emu".into(),
            crate::hypervisor::VifCounters {
                rx_bytes: 9,
                ..Default::default()
            },
        );
        let mut r = fresh_record();
        apply(
            &mut r,
            7,
            Some(&guest(7)),
            &hv,
            None,
            &HypervisorConfig::default(),
            NOW,
        );
        let vif = r.latest.iter().find(|f| f.check_id == "vif0").unwrap();
        assert_eq!(vif.target, "vif7.0");
        // An HVM guest's emulated NIC: its own check, named for what it is.
        let emu = r.latest.iter().find(|f| f.check_id == "vif0emu").unwrap();
        assert_eq!(emu.target, "vif7.0-emu");
        assert!(emu
            .values
            .iter()
            .any(|v| v.name == "rx_bytes" && v.value == 9.0));
        assert_eq!(vif_check_id("vif12.3"), "vif3");
        // A disk QEMU serves: listed, and said to have no counters.
        let qdisk = r.latest.iter().find(|f| f.check_id == "vbd768").unwrap();
        assert_eq!(
            qdisk.target,
            "qdisk-7-768 (served by QEMU: no counters in dom0)"
        );
        assert!(qdisk.values.is_empty());
        assert!(!r.figures.iter().any(|f| f.1 == "vbd768"));
        assert!(vif
            .values
            .iter()
            .any(|v| v.name == "tx_dropped" && v.value == 2.0));
        let vbd = r.latest.iter().find(|f| f.check_id == "vbd51712").unwrap();
        assert!(vbd
            .values
            .iter()
            .any(|v| v.name == "wr_sect" && v.value == 80.0));
        assert!(r
            .figures
            .iter()
            .any(|f| f.1 == "vbd51712" && f.2 == "wr_sect"));
        assert!(r
            .figures
            .iter()
            .any(|f| f.1 == "vif0" && f.2 == "tx_dropped"));
    }

    /// `xl vcpu-list` captured on the lab's dom0 (Xen 4.17).
    const XL_VCPU_LIST: &str = include_str!("../../tests/fixtures/xen/xl-vcpu-list.txt");

    #[test]
    fn the_labs_vcpu_list_parses() {
        let v = crate::hypervisor::parse_xl_vcpu_list(XL_VCPU_LIST);
        assert_eq!(v.len(), 8, "dom0 and seven guests: {v:?}");
        assert_eq!(v[&0].len(), 2, "dom0 has two vCPUs");
        assert!(v.values().flat_map(|m| m.values()).all(|t| *t > 0.0));
        let odd = "Name ID VCPU CPU State Time(s) Affinity\n\
                   web01 7 0 - --p 12.5 all / all\n\
                   web01 7 1 1 r-- -3 all / all\n\
                   web01 7 2 1 xyz 4 all / all\n\
                   web 01 7 3 1 -b- 4 all / all\n";
        let v = crate::hypervisor::parse_xl_vcpu_list(odd);
        assert_eq!(v[&7].len(), 1, "{v:?}");
        assert_eq!(v[&7][&0], 12.5);
    }

    #[test]
    fn per_vcpu_cpu_percent_drops_and_reboots() {
        let with = |v0: f64, v1: f64, drops: u64| {
            let mut hv = view("-b----", v0 + v1);
            hv.vcpu_times.insert(7, BTreeMap::from([(0, v0), (1, v1)]));
            hv.vifs.entry(7).or_default().insert(
                "vif7.0".into(),
                crate::hypervisor::VifCounters {
                    tx_dropped: drops,
                    ..Default::default()
                },
            );
            hv
        };
        // One cycle of domain 7 with these vCPU times and drops.
        let cycle = |rebooted: bool,
                     times: (f64, f64, u64),
                     prev: Option<&HostRow>,
                     cfg: &HypervisorConfig,
                     now: i64| {
            let mut r = fresh_record();
            r.rebooted = rebooted;
            let hv = with(times.0, times.1, times.2);
            apply(&mut r, 7, Some(&guest(7)), &hv, prev, cfg, now);
            r
        };
        let cfg = HypervisorConfig::default();
        // The first cycle: counters kept, no rate yet.
        let first = cycle(false, (100.0, 10.0, 0), None, &cfg, NOW - 300);
        assert_eq!(xen_value(&first, "vcpu0_pct"), None);
        assert_eq!(xen_value(&first, "reboots"), Some(0.0));
        let mut prev = row("blocked", NOW - 3000, 110.0, NOW - 300);
        prev.xen = first.xen.clone();
        prev.reboots = 2;
        // 300 s later: vCPU 0 used 150 s (50 %), vCPU 1 3 s (1 %); 6,000
        // drops (20/s) to the guest; and it was a reboot.
        let r = cycle(true, (250.0, 13.0, 6_000), Some(&prev), &cfg, NOW);
        assert_eq!(xen_value(&r, "vcpu0_pct"), Some(50.0));
        assert_eq!(xen_value(&r, "vcpu1_pct"), Some(1.0));
        assert_eq!(xen_value(&r, "cpu_pct"), Some(25.5));
        assert_eq!(xen_value(&r, "reboots"), Some(3.0));
        let vif = r.latest.iter().find(|f| f.check_id == "vif0").unwrap();
        assert!(vif
            .values
            .iter()
            .any(|v| v.name == "tx_drops_per_s" && v.value == 20.0));
        assert_eq!(r.status, Status::Warning);
        let drop = r.findings.iter().find(|c| c.id == "vif0").unwrap();
        assert!(
            drop.message.contains("dropping 20.0 packets/s"),
            "{}",
            drop.message
        );
        // History keeps the all-vCPU figure and the drops, not the rest.
        assert!(r.figures.iter().any(|f| f.2 == "cpu_pct"));
        assert!(r
            .figures
            .iter()
            .any(|f| f.1 == "vif0" && f.2 == "tx_dropped"));
        assert!(!r
            .figures
            .iter()
            .any(|f| f.2 == "vcpu0_pct" || f.2 == "reboots"));
        // Under the threshold, or with it unset: no finding.
        let quiet = cycle(false, (250.0, 13.0, 30), Some(&prev), &cfg, NOW);
        assert_eq!(quiet.status, Status::Ok, "{}", quiet.message);
        let off = HypervisorConfig {
            vif_drops_per_s_warning: None,
            ..cfg.clone()
        };
        let r = cycle(false, (250.0, 13.0, 6_000), Some(&prev), &off, NOW);
        assert_eq!(r.status, Status::Ok);
        // A counter that went back (a new vCPU, a vif recreated): no rate.
        let r = cycle(false, (5.0, 13.0, 0), Some(&prev), &cfg, NOW);
        assert_eq!(xen_value(&r, "vcpu0_pct"), None);
        assert_eq!(xen_value(&r, "vcpu1_pct"), Some(1.0));
    }
}
