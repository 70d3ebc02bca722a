//! What the hypervisor knows of every domain, without the guest's help:
//! its state (running, blocked, paused, shut down and why, crashed,
//! dying), its CPU time and vCPUs, its memory, and its devices' counters.
//! A guest cannot forge any of it.
//!
//! Sources, chosen by cost and by stability across Xen versions:
//! - `xl list -v`: one process per cycle (the same cost as `xl list`: 1.2 s
//!   for ten domains in the software-emulated lab, tens of ms on hardware),
//!   columns unchanged since Xen 4.1 (xl's printf format), and it gives the
//!   state letters, the CPU time, the VM's UUID and the shutdown reason
//!   code. `xentop -b` computes CPU % only over a delay of its own (two
//!   samples per run); dom0 already keeps the previous cycle's CPU time, so
//!   the percentage comes from that. libxenctrl's API changes with every
//!   release (libxenctrl.so.4.17), which a static binary cannot follow.
//! - `xl vcpu-list`, beside it (the two run at once), for each vCPU's CPU
//!   time: the per-vCPU CPU %, as xentop's `-v` computes it;
//! - the toolstack's keys in xenstore (`memory/target`, `memory/static-max`
//!   in KiB, read by [`crate::gather`]), which the guest may read but not
//!   write;
//! - dom0's `/proc/net/dev` for every vif's counters (`vif<domid>.<n>`),
//!   one file for all of them, and sysfs for each vbd's
//!   (`/sys/bus/xen-backend/devices/vbd-<domid>-<dev>`,
//!   blkback's request and sector counts).
//!
//! Where a source is absent (no hypervisor, no xl), its figures are
//! unavailable and that is said, never hidden: states are then unknown,
//! and guests are judged by their probe alone, as before.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A domain's state, from `xl list`'s six letters: running `r`, blocked
/// `b`, paused `p`, shut down `s`, the shutdown reason (`-` poweroff, `r`
/// reboot, `s` suspend, `c` crash, `w` watchdog, `S` soft reset: xl's
/// `shutdown_reason_letters`) and dying `d`. A crashed domain kept by
/// `on_crash = "preserve"` is `---sc-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// On a CPU now (`r`), or runnable (`------`).
    Running,
    /// Waiting for an event (`b`): idle, which is normal.
    Blocked,
    /// Stopped by the toolstack (`p`: `xl pause`).
    Paused,
    /// Shut down (`s`) but not yet destroyed, with its reason.
    Shutdown(Reason),
    /// Its kernel crashed (`c`): kept until the toolstack acts on its
    /// `on_crash` (for `preserve`, until an admin destroys it).
    Crashed,
    /// Being destroyed (`d`): gone once its last pages are released.
    Dying,
}

/// Xen's shutdown reason codes (`SHUTDOWN_*` in `xen/sched.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
    Unknown,
}

impl Reason {
    /// xl's letter in the fifth column, else the `-v` listing's code.
    fn from_letter(letter: u8, code: Option<u32>) -> Reason {
        match letter {
            b'r' => Reason::Reboot,
            b's' => Reason::Suspend,
            b'c' => Reason::Crash,
            b'w' => Reason::Watchdog,
            b'S' => Reason::SoftReset,
            // '-' is reason 0, poweroff; a code from `-v` has the last word.
            _ if code.is_some() => Reason::from_code(code),
            _ => Reason::Poweroff,
        }
    }

    /// Xen's code (`SHUTDOWN_*`), as `xl list -v` and xl's log give it.
    pub fn from_code(code: Option<u32>) -> Reason {
        match code {
            Some(0) => Reason::Poweroff,
            Some(1) => Reason::Reboot,
            Some(2) => Reason::Suspend,
            Some(3) => Reason::Crash,
            Some(4) => Reason::Watchdog,
            Some(5) => Reason::SoftReset,
            _ => Reason::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Poweroff => "poweroff",
            Reason::Reboot => "reboot",
            Reason::Suspend => "suspend",
            Reason::Crash => "crash",
            Reason::Watchdog => "watchdog",
            Reason::SoftReset => "soft_reset",
            Reason::Unknown => "unknown",
        }
    }
}

impl RunState {
    /// Reads xl's state letters (`r-----`, `--p---`, `---sc-`). The most
    /// telling one wins: dying, crashed, shut down, paused, running,
    /// blocked.
    pub fn parse(letters: &str, reason: Option<u32>) -> Option<RunState> {
        let b = letters.as_bytes();
        let fits = |i: usize, allowed: &[u8]| b[i] == b'-' || allowed.contains(&b[i]);
        if b.len() != 6
            || !(fits(0, b"r") && fits(1, b"b") && fits(2, b"p") && fits(3, b"s"))
            || !(fits(4, b"rscwS") && fits(5, b"d"))
        {
            return None;
        }
        Some(if b[5] == b'd' {
            RunState::Dying
        } else if b[4] == b'c' {
            RunState::Crashed
        } else if b[3] == b's' {
            RunState::Shutdown(Reason::from_letter(b[4], reason))
        } else if b[2] == b'p' {
            RunState::Paused
        } else if b[1] == b'b' && b[0] != b'r' {
            RunState::Blocked
        } else {
            RunState::Running
        })
    }

    /// The word served in the SNMP line format's `G` record (version 4)
    /// and stored in history: `running`, `blocked`, `paused`, `crashed`,
    /// `dying`, `shutdown-<reason>`.
    pub fn word(self) -> String {
        match self {
            RunState::Running => "running".into(),
            RunState::Blocked => "blocked".into(),
            RunState::Paused => "paused".into(),
            RunState::Crashed => "crashed".into(),
            RunState::Dying => "dying".into(),
            RunState::Shutdown(r) => format!("shutdown-{}", r.as_str()),
        }
    }

    /// Is the guest's kernel running (so its probe can)?
    pub fn runs(self) -> bool {
        matches!(self, RunState::Running | RunState::Blocked)
    }
}

/// One domain as `xl list -v` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub domid: u32,
    pub name: String,
    pub mem_mib: u64,
    pub vcpus: u32,
    pub state: RunState,
    pub cpu_time_s: f64,
    pub uuid: Option<String>,
}

/// Parses `xl list` or `xl list -v` output. xl refuses names with spaces,
/// so columns split on whitespace: `Name ID Mem VCPUs State Time(s)`, then
/// (with `-v`) `UUID Reason-Code Security-Label`, the reason in hex or `-`.
/// A line that does not fit is skipped, never guessed at.
pub fn parse_xl_list(text: &str) -> BTreeMap<u32, Domain> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1).take(crate::gather::MAX_DOMAINS) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 {
            continue;
        }
        let (Ok(domid), Ok(mem_mib), Ok(vcpus), Ok(cpu)) = (
            cols[1].parse::<u32>(),
            cols[2].parse::<u64>(),
            cols[3].parse::<u32>(),
            cols[5].parse::<f64>(),
        ) else {
            continue;
        };
        if !cpu.is_finite() || cpu < 0.0 {
            continue;
        }
        let uuid = cols
            .get(6)
            .filter(|u| u.len() == 36 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            .map(|u| u.to_ascii_lowercase());
        let reason = cols.get(7).and_then(|r| u32::from_str_radix(r, 16).ok());
        let Some(state) = RunState::parse(cols[4], reason) else {
            continue;
        };
        out.insert(
            domid,
            Domain {
                domid,
                name: cols[0]
                    .chars()
                    .take(crate::gather::MAX_GUEST_NAME)
                    .collect(),
                mem_mib,
                vcpus,
                state,
                cpu_time_s: cpu,
                uuid,
            },
        );
    }
    out
}

/// Parses `xl vcpu-list`: `Name ID VCPU CPU State Time(s) Affinity...`,
/// one line per vCPU (a paused or offline vCPU has `-` for its CPU and
/// still its time). As with `xl list`, a line that does not fit is
/// skipped; at most [`MAX_VCPUS`] per domain are kept.
pub fn parse_xl_vcpu_list(text: &str) -> BTreeMap<u32, BTreeMap<u32, f64>> {
    let mut out: BTreeMap<u32, BTreeMap<u32, f64>> = BTreeMap::new();
    let lines = crate::gather::MAX_DOMAINS.saturating_mul(MAX_VCPUS);
    for line in text.lines().skip(1).take(lines) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 {
            continue;
        }
        let (Ok(domid), Ok(vcpu), Ok(time)) = (
            cols[1].parse::<u32>(),
            cols[2].parse::<u32>(),
            cols[5].parse::<f64>(),
        ) else {
            continue;
        };
        let state_fits = cols[4].len() == 3 && cols[4].bytes().all(|b| b"rbp-".contains(&b));
        if !state_fits || !time.is_finite() || time < 0.0 {
            continue;
        }
        let times = out.entry(domid).or_default();
        if times.len() < MAX_VCPUS || times.contains_key(&vcpu) {
            times.insert(vcpu, time);
        }
    }
    out
}

/// vCPUs per domain whose figures are kept (Xen 4.17 allows 512 for a PV
/// guest; a chart of more than this is no use).
pub const MAX_VCPUS: usize = 128;

/// A vif's counters, as dom0 counts them (so `rx` is what the guest sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// A vbd's counters from blkback: requests and 512-byte sectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VbdCounters {
    pub rd_req: u64,
    pub wr_req: u64,
    pub rd_sect: u64,
    pub wr_sect: u64,
    /// Requests that waited for a free slot ("out of requests").
    pub oo_req: u64,
}

/// Everything the hypervisor side told this cycle.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hypervisor {
    /// By domid; empty when xl could not be run.
    pub domains: BTreeMap<u32, Domain>,
    /// domid -> vCPU -> its CPU time in seconds (`xl vcpu-list`).
    pub vcpu_times: BTreeMap<u32, BTreeMap<u32, f64>>,
    /// domid -> vif name (`vif7.0`) -> counters.
    pub vifs: BTreeMap<u32, BTreeMap<String, VifCounters>>,
    /// domid -> vbd device number (`51712`) -> counters.
    pub vbds: BTreeMap<u32, BTreeMap<String, VbdCounters>>,
    /// domid -> the device numbers of disks QEMU serves (the `qdisk`
    /// backend, an HVM guest's usual one): dom0's kernel lists them
    /// (`qdisk-<domid>-<dev>`) but keeps no counters for them.
    pub qdisks: BTreeMap<u32, Vec<String>>,
    /// Why a source is unavailable, one line each.
    pub unavailable: Vec<String>,
}

/// What dom0's own files say of the guests' devices: the vifs'
/// counters in `/proc/net/dev` and blkback's vbd statistics under `/sys`.
/// Counters only, so they can be read while xenstore is (see
/// [`Hypervisor::with_domains`] for what must come after it).
pub fn read_devices(proc_net_dev: &Path, sys: &Path) -> Hypervisor {
    let mut h = Hypervisor {
        vbds: read_vbds(&sys.join("bus/xen-backend/devices")),
        qdisks: read_qdisks(&sys.join("bus/xen-backend/devices")),
        ..Hypervisor::default()
    };
    match std::fs::read(proc_net_dev) {
        Ok(text) => {
            h.vifs = parse_proc_net_dev(&text);
            if h.vifs.is_empty() {
                h.unavailable.push(format!(
                    "no vif devices in {}: per-guest network counters unavailable",
                    proc_net_dev.display()
                ));
            }
        }
        Err(e) => h.unavailable.push(format!(
            "cannot read {}: per-guest network counters unavailable ({e})",
            proc_net_dev.display()
        )),
    }
    h
}

impl Hypervisor {
    /// Did xl answer this cycle (so a domain's state is known)?
    pub fn knows_states(&self) -> bool {
        !self.domains.is_empty()
    }

    /// Adds what `xl` says of every domain (states, CPU time, memory,
    /// per-vCPU time). Run after the guests' xenstore listing, so that a
    /// domain listed there and gone from xl is known to be destroyed.
    pub fn with_domains(mut self, xl: &Path) -> Hypervisor {
        // Both listings at once: the cycle waits for the slower one only.
        let (list, vcpus) = std::thread::scope(|s| {
            let vcpus = s.spawn(|| run_xl(xl, &["vcpu-list"], Duration::from_secs(10)));
            let list = run_xl(xl, &["list", "-v"], Duration::from_secs(10));
            let vcpus = vcpus
                .join()
                .unwrap_or_else(|_| Err("its reader failed".into()));
            (list, vcpus)
        });
        // Said only when xl itself answered: without xl, its listing's line
        // says it for both. xl's lines come before the devices' ones.
        let mut lines = Vec::new();
        match vcpus {
            Ok(text) => self.vcpu_times = parse_xl_vcpu_list(&text),
            Err(e) if list.is_ok() => lines.push(format!("per-vCPU CPU time unavailable ({e})")),
            Err(_) => {}
        }
        match list {
            Ok(text) => {
                self.domains = parse_xl_list(&text);
                if self.domains.is_empty() {
                    lines.push(format!("{} list -v listed no domain", xl.display()));
                }
            }
            Err(e) => lines.push(format!("domain states and CPU time unavailable ({e})")),
        }
        self.unavailable.splice(0..0, lines);
        self
    }
}

/// Runs xl with a deadline (xl can block on a busy toolstack lock).
fn run_xl(xl: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let what = format!("{} {}", xl.display(), args.join(" "));
    let mut child = Command::new(xl)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", xl.display()))?;
    // Read while it runs: a listing larger than the pipe would otherwise
    // block xl until the deadline. The cycle waits for the listing's end
    // (xl closing its output as it exits), not in steps of a poll.
    let mut stdout = child.stdout.take();
    let (done, listing) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.take(16 << 20).read_to_string(&mut out);
        }
        let _ = done.send(out);
    });
    let deadline = Instant::now() + timeout;
    let gave_up = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("{what} did not finish within {timeout:?}"))
    };
    let Ok(out) = listing.recv_timeout(timeout) else {
        return gave_up(&mut child);
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = (&mut e).take(4096).read_to_string(&mut err);
                }
                if !status.success() {
                    let first = err.lines().next().unwrap_or("").trim().to_string();
                    return Err(format!("{what} failed ({status}): {first}"));
                }
                return Ok(out);
            }
            // Its output closed: xl is exiting.
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => return gave_up(&mut child),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// A counter file of blkback's (`rd_req`: a decimal number and a
/// newline), read into a small buffer: a thousand vbds are five thousand
/// such files a cycle, and `read_to_string`'s size query and allocation
/// were half of what each cost.
fn read_counter(dir: &Path, name: &str) -> Option<u64> {
    let mut f = std::fs::File::open(dir.join(name)).ok()?;
    let mut buf = [0u8; 32];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    // A counter is at most 20 digits: a longer file is not one.
    if len == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..len]).ok()?.trim().parse().ok()
}

/// The backend devices under `dir` named `<prefix><domid>-<device>`, both
/// numbers: (domid, device, the device's directory). Anything else
/// (`vif-7-0`) is skipped.
fn backend_dirs(dir: &Path, prefix: &str) -> Vec<(u32, String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (domid, dev) = name.strip_prefix(prefix)?.split_once('-')?;
            let domid = domid.parse::<u32>().ok()?;
            dev.parse::<u32>().ok()?;
            Some((domid, dev.to_string(), e.path()))
        })
        .collect()
}

/// The disks QEMU serves (`qdisk-<domid>-<device>`), by domid.
pub fn read_qdisks(backend_devices: &Path) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (domid, dev, _) in backend_dirs(backend_devices, "qdisk-") {
        out.entry(domid).or_default().push(dev);
    }
    for devs in out.values_mut() {
        devs.sort();
    }
    out
}

/// Reads the vif counters from `/proc/net/dev`: every interface in one
/// file (the counters of `/sys/class/net/<vif>/statistics`, six files per
/// vif, which cost a thousand-guest dom0 6,000 opens a cycle). Netback's
/// `vif<domid>.<n>` and an HVM guest's `vif<domid>.<n>-emu`, the tap of
/// the NIC its device model emulates (the guest's traffic goes there
/// until its PV drivers unplug it, and for good in a guest without them),
/// are read, each under its own name; other lines (the bridge, `lo`, a
/// line without its sixteen counters) are skipped.
pub fn parse_proc_net_dev(text: &[u8]) -> BTreeMap<u32, BTreeMap<String, VifCounters>> {
    let mut out: BTreeMap<u32, BTreeMap<String, VifCounters>> = BTreeMap::new();
    for line in String::from_utf8_lossy(text).lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let Some(domid) = vif_domid(name) else {
            continue;
        };
        let n: Vec<u64> = counters
            .split_ascii_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        if n.len() != 16 {
            continue;
        }
        // Receive: bytes packets errs drop fifo frame compressed multicast;
        // transmit: bytes packets errs drop fifo colls carrier compressed.
        let c = VifCounters {
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_dropped: n[11],
        };
        out.entry(domid).or_default().insert(name.to_string(), c);
    }
    out
}

/// The domid of netback's interface name `vif<domid>.<n>`, or of an
/// emulated NIC's tap `vif<domid>.<n>-emu`.
fn vif_domid(name: &str) -> Option<u32> {
    let (domid, dev) = name.strip_prefix("vif")?.split_once('.')?;
    let dev = dev.strip_suffix("-emu").unwrap_or(dev);
    if dev.is_empty() || !dev.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    dev.parse::<u32>().ok()?;
    domid.parse().ok()
}

/// Reads blkback's counters: `vbd-<domid>-<device>/statistics`.
pub fn read_vbds(backend_devices: &Path) -> BTreeMap<u32, BTreeMap<String, VbdCounters>> {
    let mut out: BTreeMap<u32, BTreeMap<String, VbdCounters>> = BTreeMap::new();
    for (domid, dev, dir) in backend_dirs(backend_devices, "vbd-") {
        let s = dir.join("statistics");
        let Some(rd_req) = read_counter(&s, "rd_req") else {
            continue;
        };
        let c = VbdCounters {
            rd_req,
            wr_req: read_counter(&s, "wr_req").unwrap_or(0),
            rd_sect: read_counter(&s, "rd_sect").unwrap_or(0),
            wr_sect: read_counter(&s, "wr_sect").unwrap_or(0),
            oo_req: read_counter(&s, "oo_req").unwrap_or(0),
        };
        out.entry(domid).or_default().insert(dev, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `xl list -v` captured on the Xen lab (Debian's Xen 4.17 under QEMU),
    /// ten domains, PV and PVH.
    const XL_LIST_V: &str = include_str!("../../tests/fixtures/xen/xl-list-v.txt");
    /// The same lab with a guest paused, one crashed and preserved, and a
    /// PVH guest whose early boot triple-faulted (Xen's HVM shutdown
    /// action for that is reboot; `on_reboot = "preserve"` kept it).
    const XL_LIST_V_STATES: &str = include_str!("../../tests/fixtures/xen/xl-list-v-states.txt");
    /// `xl list` as Xen 4.17's xl prints it (no -v).
    const XL_LIST: &str = include_str!("../tests/data/xl-list.txt");

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): any text from xl (a newer xl, an
        /// error message, garbage) never makes the parser panic; every
        /// domain it keeps has a finite, non-negative CPU time and a
        /// bounded name.
        #[test]
        fn fuzz_xl_list_parser(text in "(.{0,40}[ \n\t]){0,12}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for t in [text, String::from_utf8_lossy(&raw).into_owned()] {
                for d in parse_xl_list(&t).values() {
                    proptest::prop_assert!(d.cpu_time_s.is_finite() && d.cpu_time_s >= 0.0);
                    proptest::prop_assert!(d.name.chars().count() <= crate::gather::MAX_GUEST_NAME);
                }
            }
        }

        /// Fuzz target (scripts/fuzz): any `xl vcpu-list` text never makes
        /// the parser panic; every vCPU time kept is finite and
        /// non-negative, at most MAX_VCPUS per domain.
        #[test]
        fn fuzz_xl_vcpu_list_parser(text in "([a-z0-9]{0,8} [0-9]{1,3} [0-9]{1,3} [0-9-]{1,2} [rbp-]{3} [0-9.e-]{1,6}( all / all)?\n){0,12}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for t in [format!("header\n{text}"), String::from_utf8_lossy(&raw).into_owned()] {
                for vcpus in parse_xl_vcpu_list(&t).values() {
                    proptest::prop_assert!(vcpus.len() <= MAX_VCPUS);
                    proptest::prop_assert!(vcpus.values().all(|t| t.is_finite() && *t >= 0.0));
                }
            }
        }

        /// Fuzz target (scripts/fuzz): any /proc/net/dev text (a kernel
        /// with other columns, garbage) never makes the reader panic, and
        /// it keeps netback's vifs only.
        #[test]
        fn fuzz_proc_net_dev_reader(text in "(( ?vif[0-9]{1,3}\\.[0-9x]| *[a-z0-9.-]{0,8}):?( [0-9-]{1,4}){0,17}\n){0,12}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for t in [text.into_bytes(), raw] {
                for (domid, vifs) in parse_proc_net_dev(&t) {
                    for name in vifs.keys() {
                        proptest::prop_assert_eq!(vif_domid(name), Some(domid));
                    }
                }
            }
        }

        /// Every combination of state letters is read without panic, and
        /// only letters in their own column are accepted.
        #[test]
        fn state_letters(s in "[rbpscwSd-]{6}", reason in proptest::option::of(0u32..10)) {
            let parsed = RunState::parse(&s, reason);
            let allowed: [&[u8]; 6] = [b"r", b"b", b"p", b"s", b"rscwS", b"d"];
            let valid = s.bytes().zip(allowed).all(|(c, a)| c == b'-' || a.contains(&c));
            proptest::prop_assert_eq!(parsed.is_some(), valid);
        }
    }

    #[test]
    fn the_labs_xl_list_v_parses() {
        let d = parse_xl_list(XL_LIST_V);
        assert_eq!(d.len(), 10);
        assert_eq!(d[&0].name, "Domain-0");
        assert_eq!(d[&0].mem_mib, 1024);
        assert_eq!(d[&1].name, "pv01");
        assert_eq!(d[&1].state, RunState::Blocked);
        assert_eq!(d[&1].vcpus, 1);
        assert_eq!(
            d[&1].uuid.as_deref(),
            Some("6293150e-2166-46c0-8216-150e2166f6c0")
        );
        assert!(d.values().all(|x| x.state.runs()));
    }

    #[test]
    fn the_labs_paused_crashed_and_rebooting_domains() {
        let d = parse_xl_list(XL_LIST_V_STATES);
        let by_name = |n: &str| d.values().find(|x| x.name == n).unwrap().state;
        assert_eq!(by_name("pvhx5"), RunState::Paused);
        assert_eq!(by_name("pvhx3"), RunState::Crashed);
        assert_eq!(by_name("pvhx4"), RunState::Shutdown(Reason::Reboot));
        assert_eq!(by_name("pvhx6"), RunState::Blocked);
        assert!(!by_name("pvhx3").runs());
    }

    #[test]
    fn plain_xl_list_still_parses() {
        let d = parse_xl_list(XL_LIST);
        assert_eq!(d.len(), 4);
        assert_eq!(d[&0].cpu_time_s, 93245.1);
        assert!(d.values().all(|x| x.uuid.is_none()));
    }

    #[test]
    fn states_and_reasons() {
        let p = |s, r| RunState::parse(s, r).unwrap();
        assert_eq!(p("r-----", None), RunState::Running);
        assert_eq!(p("------", None), RunState::Running);
        assert_eq!(p("-b----", None), RunState::Blocked);
        assert_eq!(p("--p---", None), RunState::Paused);
        assert_eq!(p("-bp---", None), RunState::Paused);
        assert_eq!(p("---sc-", Some(3)), RunState::Crashed);
        assert_eq!(p("---sc-", None), RunState::Crashed);
        assert_eq!(p("---sr-", None), RunState::Shutdown(Reason::Reboot));
        assert_eq!(p("---ss-", None), RunState::Shutdown(Reason::Suspend));
        assert_eq!(p("---sw-", None), RunState::Shutdown(Reason::Watchdog));
        assert_eq!(p("---s--", Some(0)), RunState::Shutdown(Reason::Poweroff));
        assert_eq!(p("---s--", Some(2)), RunState::Shutdown(Reason::Suspend));
        assert_eq!(p("---s--", None), RunState::Shutdown(Reason::Poweroff));
        assert_eq!(p("---s--", Some(9)), RunState::Shutdown(Reason::Unknown));
        assert_eq!(p("-----d", None), RunState::Dying);
        assert_eq!(p("---s-d", Some(0)), RunState::Dying);
        assert_eq!(RunState::parse("xb----", None), None);
        assert_eq!(RunState::parse("r----", None), None);
        assert_eq!(p("---sw-", Some(4)).word(), "shutdown-watchdog");
        assert_eq!(RunState::parse("bbps--", None), None);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let d = parse_xl_list(
            "Name ID Mem VCPUs State Time(s)\nnonsense\nx y z w v u\nweb 3 512 1 -b---- nan\nweb 4 512 1 -q---- 1.0\n",
        );
        assert!(d.is_empty());
    }

    /// `/proc/net/dev` captured on the Xen lab's dom0: seven guests' vifs
    /// beside lo, eth0 and the bridge.
    const PROC_NET_DEV: &[u8] = include_bytes!("../../tests/fixtures/xen/proc-net-dev.txt");

    #[test]
    fn the_labs_proc_net_dev() {
        let v = parse_proc_net_dev(PROC_NET_DEV);
        assert_eq!(v.len(), 7);
        assert_eq!(
            v[&2]["vif2.0"],
            VifCounters {
                rx_bytes: 5744,
                rx_packets: 97,
                rx_dropped: 0,
                tx_bytes: 14183,
                tx_packets: 210,
                tx_dropped: 0,
            }
        );
        assert!(v.values().all(|m| m.len() == 1));
    }

    #[test]
    fn device_counters() {
        let dev = b"Inter-|   Receive |  Transmit\n face |bytes ...\n\
            vif7.0: 100 1 0 3 0 0 0 0 200 2 0 4 0 0 0 0\n\
            vif7.1:5 1 0 0 0 0 0 0 6 1 0 0 0 0 0 0\n\
            vif12.0: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n\
            vif12.x: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n\
            vif12.+1: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n\
            vif12.1-emux: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n\
            vif13.0-emu: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n\
            vif14.0: 1 1 0 0 0 0 0 0 2 1 0 0\n\
            vif15.0: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 -1\n\
            eth0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0\n";
        let v = parse_proc_net_dev(dev);
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[&13]["vif13.0-emu"].tx_bytes, 2);
        assert_eq!(v[&7]["vif7.0"].rx_bytes, 100);
        assert_eq!(v[&7]["vif7.0"].rx_dropped, 3);
        assert_eq!(v[&7]["vif7.0"].tx_dropped, 4);
        assert_eq!(v[&7]["vif7.1"].tx_bytes, 6);
        assert_eq!(v[&12]["vif12.0"].tx_packets, 1);
        let dir = tempfile::tempdir().unwrap();
        let be = dir.path().join("be");
        let s = be.join("vbd-3-51728").join("statistics");
        std::fs::create_dir_all(&s).unwrap();
        for (f, v) in [
            ("rd_req", 5),
            ("wr_req", 1),
            ("rd_sect", 40),
            ("wr_sect", 8),
            ("oo_req", 0),
        ] {
            std::fs::write(s.join(f), format!("{v}\n")).unwrap();
        }
        std::fs::create_dir_all(be.join("vif-3-0")).unwrap();
        std::fs::create_dir_all(be.join("qdisk-4-768")).unwrap();
        std::fs::create_dir_all(be.join("qdisk-4-5632")).unwrap();
        std::fs::create_dir_all(be.join("qdisk-x-5632")).unwrap();
        assert_eq!(
            read_qdisks(&be),
            BTreeMap::from([(4, vec!["5632".to_string(), "768".to_string()])])
        );
        let b = read_vbds(&be);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[&3]["51728"],
            VbdCounters {
                rd_req: 5,
                wr_req: 1,
                rd_sect: 40,
                wr_sect: 8,
                oo_req: 0
            }
        );
    }

    #[test]
    fn missing_xl_is_reported_unavailable() {
        let h = read_devices(
            Path::new("/nonexistent/proc/net/dev"),
            Path::new("/nonexistent/sys"),
        )
        .with_domains(Path::new("/nonexistent/xl"));
        assert!(!h.knows_states());
        assert_eq!(h.unavailable.len(), 2);
        // xl's line first, then the devices'.
        assert!(h.unavailable[0].starts_with("domain states and CPU time unavailable"));
        assert!(h.unavailable[0].contains("/nonexistent/xl"));
        assert!(h.unavailable[1].contains("cannot read /nonexistent/proc/net/dev"));
    }
}
