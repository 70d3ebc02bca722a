//! The sick guest's chain: a full disk, swapping, a dead gateway; then
//! xl's figures.

use super::*;

/// Scenario 2: a full disk, swapping, and a dead gateway, each reported
/// for that guest with its own check.
pub(crate) fn a_sick_guest_reports_a_full_disk_swapping_and_a_dead_gateway() -> Result<()> {
    let site = site();
    let g = &guests().sick;
    // Its swap must be on, or "no swap finding" would say nothing.
    let swaps = site.lab.guest_ok(g, "cat /proc/swaps")?;
    ensure!(
        swaps.contains("/dev/xvdb"),
        "{} has no swap on /dev/xvdb: {swaps}",
        g.name
    );
    // Fill its disk; then make it swap for certain: a tmpfs file 24 MiB
    // larger than the memory it has left (tmpfs pages can only go to
    // swap, never be dropped), read over and over in the background, so
    // that every pass swaps pages in and others out. Not zeros: since
    // 6.12 (Debian 13) the kernel keeps a zero-filled page out of the
    // swap device (a bit in a map, no I/O, not counted in pswpout), so
    // zeros (the `dd if=/dev/zero bs=100M` loop used before) take swap
    // space without any swap traffic.
    // The guest has 160 MiB and 64 MiB of swap: the file fits with room
    // to spare. Stopped once the scenario has seen it (swapping under
    // emulation costs the whole lab's CPU).
    // Writing past the guest's memory swaps under emulation: minutes at
    // worst when the lab is loaded (the 60 s of a request were seen cut
    // once, with a slower fill of `yes` lines).
    let meminfo = site
        .lab
        .guest_within(g, SWAP_FOR_CERTAIN, 300)?
        .ok(&format!("guest {}: the fill that makes it swap", g.name))?;
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let used_mib = match (kib("SwapTotal:"), kib("SwapFree:")) {
        (Some(total), Some(free)) => total.saturating_sub(free) / 1024,
        _ => bail!("{}: no swap figures after the fill: {meminfo}", g.name),
    };
    ensure!(
        used_mib >= 8,
        "{}: the fill put {used_mib} MiB in swap, not the 24 asked for: {meminfo}",
        g.name
    );
    let swapping = sick_guest_findings(site, g).map_err(|e| {
        // What the guest's kernel counted, to tell "no swap traffic" from
        // "traffic the probe did not see".
        let vmstat = site
            .lab
            .guest_ok(
                g,
                "grep -E '^pswp' /proc/vmstat; grep -E '^Swap' /proc/meminfo",
            )
            .unwrap_or_else(|e| format!("(cannot read: {e:#})"));
        e.context(format!("the guest's own swap counters: {vmstat}"))
    });
    site.lab.guest_ok(g, "touch /run/swap.stop")?;
    swapping
}

/// The sick guest's disk filled, then a loop that makes it swap until
/// `/run/swap.stop` exists. The file is written from a 1 MiB block of
/// text by `cat` (a pipe of `yes` lines costs a write per line: a minute
/// under emulation for 100 MiB).
const SWAP_FOR_CERTAIN: &str = "set -e
dd if=/dev/zero of=/data/fill bs=1M 2>/dev/null || true
sync; rm -f /run/swap.stop
avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
mkdir -p /run/press
mount -t tmpfs -o size=$((avail + 40))m press /run/press
yes xsmon-lab-swap | head -c 1048576 >/run/press/block
i=0; while [ $i -lt $((avail + 24)) ]; do cat /run/press/block; i=$((i + 1)); done >/run/press/file
rm /run/press/block
(while [ ! -e /run/swap.stop ]; do cat /run/press/file >/dev/null; done
 rm -f /run/press/file; umount /run/press) >/dev/null 2>&1 &
grep -E '^Swap(Total|Free):' /proc/meminfo";

/// Scenario 2's findings, while the sick guest swaps.
pub(crate) fn sick_guest_findings(site: &LabSite, g: &LabGuest) -> Result<()> {
    // One run that may have started before, one wholly after.
    probe_runs(site, g, 2)?;
    site.collect()?;
    let raw = site.raw()?;
    let mine = lines_for(&raw, &g.name);
    let has = |check: &str, sev: &str| {
        mine.iter()
            .any(|l| l.check.starts_with(check) && l.severity == sev)
    };
    ensure!(has("disk", "error"), "full disk: {mine:?}");
    ensure!(has("net", "error"), "dead gateway: {mine:?}");
    ensure!(mine.iter().any(|l| l.check == "swap"), "swapping: {mine:?}");
    let (out, code) = site.poll(&["nagios", "--guest", &g.name])?;
    ensure!(code == 2 && out.starts_with("XSMON CRITICAL"), "{out}");
    let j = site.guest_json(&g.name)?.context("sick01 in json")?;
    ensure!(j["status"] == "error", "{j}");
    Ok(())
}

/// Scenario 10: xl's CPU times and the vif counters, stored and served as
/// figures.
pub(crate) fn xl_cpu_times_and_vif_counters_are_served_as_figures() -> Result<()> {
    let site = site();
    // The sick guest, once its own scenario is over (its gateway is dead,
    // dom0's bridge address answers).
    let g = &guests().sick;
    site.lab
        .guest_ok(g, "ping -c 5 -i 0.2 10.77.0.1 >/dev/null")?;
    site.collect()?;
    let figures = site.lab.dom0_ok("snmp-extend figures")?;
    let recs = xsmon_proto::snmpline::parse_all(&figures)
        .map_err(|e| anyhow::anyhow!("{e}: {figures}"))?;
    let text = format!("{recs:?}");
    let domid = domid_of(site, &g.name)?;
    ensure!(text.contains("cpu_time_s"), "{figures}");
    ensure!(
        figures.contains(&format!("vif{domid}.0")) || figures.contains("vif0"),
        "{figures}"
    );
    let line = figures
        .lines()
        .find(|l| l.starts_with(&format!("M {} ", g.name)) && l.contains("cpu_time_s"))
        .with_context(|| format!("no xen figures for {}: {figures}", g.name))?;
    let secs: f64 = line
        .split(' ')
        .find_map(|f| f.strip_prefix("cpu_time_s="))
        .and_then(|v| v.split("\\s").next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cpu_time_s in {line}"))?;
    if secs <= 0.0 {
        bail!("{}: cpu_time_s {secs}", g.name);
    }
    Ok(())
}
