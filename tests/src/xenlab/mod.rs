//! The Xen lab: Debian's real Xen under `qemu-system-x86_64`
//! (`scripts/xen-lab`; Debian 13's 4.20, or Debian 12's 4.17 with
//! `XSMON_LAB_XEN=4.17`, see [`lab_xen`]), with a real PV dom0 and real
//! PV and PVH domUs.
//!
//! [`XenLab::boot`] builds (or reuses) the images, boots QEMU tied to the
//! test process, and waits for dom0's toolstack and agent. Commands run in
//! dom0 ([`XenLab::dom0`]) or in a guest ([`XenLab::guest`], relayed by
//! dom0 over the lab bridge); dom0's snmpd is reachable from the host at
//! [`XenLab::snmp_target`]. A lab that does not boot is an error carrying the
//! tail of the serial console (Xen and dom0) and of every guest console it
//! can reach: tests fail, they never skip.
//!
//! Software emulation is slow (dom0's init ~25 s after QEMU starts, a guest
//! ~20 s to boot), so a test file boots one lab and runs its scenarios side
//! by side on it.

use std::sync::atomic::Ordering;

mod agent;
pub mod alerts;
mod environment_fault;
mod faults;
mod guest;
mod lab;
pub mod sandbox;
pub mod scenarios;
mod site;
mod waits;

pub use agent::{base64, base64_decode, Exec};
pub use alerts::LabAlerts;
pub use environment_fault::EnvironmentFault;
pub use guest::{LabGuest, LAB_CONFIG_DIR, LAB_DOM0, PROBE_TIMER_OFF};
pub use lab::{images, lab_xen, XenLab};
pub use site::LabSite;

/// Which xenstore daemon dom0 runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xenstored {
    /// Xen's OCaml daemon (Debian's default).
    Oxenstored,
    /// Xen's C daemon.
    C,
}

/// What the harness asked of the labs of this process so far: requests
/// to dom0's agent (each one a shell in dom0) and collector cycles.
pub fn harness_load() -> (u64, u64) {
    (
        agent::AGENT_CALLS.load(Ordering::Relaxed),
        site::CYCLES.load(Ordering::Relaxed),
    )
}

/// The cycles scenarios held so far in this process: how many holds, the
/// seconds held in all and the longest hold, and the seconds the
/// harness's threads waited in all for the cycles' lock (a hold, or
/// another thread's cycle).
pub fn cycle_holds() -> (u64, f64, f64, f64) {
    let secs = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
    (
        site::HOLDS.load(Ordering::Relaxed),
        secs(&site::HELD_MS),
        secs(&site::LONGEST_HOLD_MS),
        secs(&site::LOCK_WAIT_MS),
    )
}
