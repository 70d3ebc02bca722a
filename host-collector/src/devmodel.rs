//! The device model: the QEMU process the toolstack starts in dom0 for an
//! HVM guest (its emulated disks, NIC, firmware devices) or to serve a
//! guest's disks (the `qdisk` backend). If it dies, the domain goes on
//! running, but every device it served stops answering: the guest hangs
//! on its disk, or loses its network, and nothing in the guest can say so.
//!
//! Observed ([`observe`]) from what the toolstack wrote: the domains
//! listed under `/local/domain/0/device-model` (read by
//! [`crate::gather`] with the rest), each one's process id in its
//! `image/device-model-pid`, and that process in dom0's `/proc`: its
//! command line must name the domain (`-xen-domid <domid>`), so a pid
//! reused by another process does not pass for it. Judged ([`judge`])
//! per running domain: a device model that does not run is an error. A
//! device model in a stub domain is not listed under dom0's key and is not
//! judged (dom0 cannot see its process).

use std::path::Path;

use xsmon_proto::{CheckResult, Status};
use xsmon_store::HostRecord;
use xsmon_xenstore::Client;

use crate::gather::{Guest, DEVICE_MODELS, MAX_DOMAIN_LISTING};
use crate::hypervisor::RunState;

/// The check id and kind of a device model finding.
pub const CHECK_ID: &str = "devmodel";
pub const KIND: &str = "xen";

/// Whether process `pid` (under `proc`, dom0's `/proc`) is the device
/// model of domain `domid`: its command line holds `-xen-domid <domid>`,
/// as libxl starts QEMU. A process that is gone, a zombie (an empty
/// command line) or another program reads as not running.
pub fn runs(proc: &Path, domid: u32, pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(proc.join(pid.to_string()).join("cmdline")) else {
        return false;
    };
    let want = domid.to_string();
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(arg) = args.next() {
        if arg == b"-xen-domid" {
            return args.next() == Some(want.as_bytes());
        }
    }
    false
}

/// Sets each guest's [`Guest::device_model_runs`] from `/proc`. A device
/// model found not running is checked once more against the toolstack's
/// listing, read after `/proc`: a domain being destroyed meanwhile (its
/// device model stopped first) is no longer listed, and is not judged.
pub fn observe(xs: &mut Client, proc: &Path, guests: &mut [Guest]) {
    let mut stopped = Vec::new();
    for (i, g) in guests.iter_mut().enumerate() {
        if let Some(Ok(pid)) = g.device_model {
            let running = runs(proc, g.domid, pid);
            g.device_model_runs = Some(running);
            if !running {
                stopped.push(i);
            }
        }
    }
    if stopped.is_empty() {
        return;
    }
    // dom0's own key, listed as the domains are (its listing may pass the
    // protocol's 4,096 bytes on a large dom0).
    let listed: Option<Vec<String>> = match xs.directory_trusted(DEVICE_MODELS, MAX_DOMAIN_LISTING)
    {
        Ok(names) => Some(names),
        Err(e) if e.is_not_found() => Some(Vec::new()),
        Err(_) => None,
    };
    for i in stopped {
        let g = &mut guests[i];
        if listed
            .as_ref()
            .is_some_and(|l| !l.contains(&g.domid.to_string()))
        {
            g.device_model = None;
            g.device_model_runs = None;
        }
    }
}

/// A running (or paused) domain whose device model does not run: an
/// error. A domain shut down, crashed or dying has lost its device model
/// or is about to: its state says so already. A device model whose
/// process id cannot be read is a warning: dom0 cannot tell.
pub fn judge(rec: &mut HostRecord, g: &Guest, state: Option<RunState>) {
    if state.is_some_and(|s| !s.runs() && s != RunState::Paused) {
        return;
    }
    let (status, message) = match (&g.device_model, g.device_model_runs) {
        (Some(Ok(pid)), Some(false)) => (
            Status::Error,
            format!(
                "its device model (QEMU, pid {pid} in image/device-model-pid) is not running: \
                 the devices it served (emulated disks and NIC, qdisk disks) no longer answer; \
                 the domain must be restarted"
            ),
        ),
        (Some(Err(why)), _) => (
            Status::Warning,
            format!(
                "the toolstack lists a device model for it, but dom0 cannot tell whether it runs: {why}"
            ),
        ),
        _ => return,
    };
    let mut c = CheckResult::new(CHECK_ID, KIND, "");
    c.status = status;
    c.message = message;
    rec.status = rec.status.max(status);
    rec.message.push_str(&format!("; {}", c.message));
    rec.findings.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> HostRecord {
        let mut r = HostRecord::new("uuid:a".into(), "hvm01".into(), "hvm01".into(), "running");
        r.status = Status::Ok;
        r.message = "ok".into();
        r
    }

    #[test]
    fn a_process_is_the_domains_device_model_only_if_it_names_the_domain() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: u32, cmdline: &[u8]| {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cmdline"), cmdline).unwrap();
        };
        write(
            100,
            b"/usr/libexec/xen-qemu-system-i386\0-xen-domid\x0012\0-no-shutdown\0",
        );
        write(101, b"/usr/sbin/sshd\0-D\0");
        write(102, b"");
        write(103, b"qemu\0-xen-domid\0");
        assert!(runs(dir.path(), 12, 100));
        assert!(!runs(dir.path(), 1, 100), "another domain's");
        assert!(!runs(dir.path(), 12, 101), "a reused pid");
        assert!(!runs(dir.path(), 12, 102), "a zombie");
        assert!(!runs(dir.path(), 12, 103));
        assert!(!runs(dir.path(), 12, 999), "gone");
    }

    #[test]
    fn a_stopped_device_model_is_an_error_that_says_what_stopped() {
        let mut g = Guest::named(12, "hvm01");
        g.device_model = Some(Ok(4242));
        g.device_model_runs = Some(false);
        let mut r = record();
        judge(&mut r, &g, Some(RunState::Blocked));
        assert_eq!(r.status, Status::Error);
        let f = &r.findings[0];
        assert_eq!((f.id.as_str(), f.status), (CHECK_ID, Status::Error));
        assert!(
            f.message.starts_with(
                "its device model (QEMU, pid 4242 in image/device-model-pid) is not running"
            ),
            "{}",
            f.message
        );
        assert!(r.message.ends_with(&f.message));

        // Paused: its devices are gone all the same.
        let mut r = record();
        judge(&mut r, &g, Some(RunState::Paused));
        assert_eq!(r.status, Status::Error);
        // Crashed or shut down: the state is the finding.
        for s in [RunState::Crashed, RunState::Dying] {
            let mut r = record();
            judge(&mut r, &g, Some(s));
            assert!(r.findings.is_empty());
        }
        // Running, or no device model at all: nothing.
        g.device_model_runs = Some(true);
        let mut r = record();
        judge(&mut r, &g, Some(RunState::Running));
        assert!(r.findings.is_empty());
        let mut r = record();
        judge(&mut r, &Guest::named(12, "pv01"), None);
        assert!(r.findings.is_empty());
    }

    #[test]
    fn an_unreadable_process_id_is_a_warning() {
        let mut g = Guest::named(12, "hvm01");
        g.device_model = Some(Err(
            "image/device-model-pid \"x\" is not a process id".into()
        ));
        let mut r = record();
        judge(&mut r, &g, None);
        assert_eq!(r.status, Status::Warning);
        assert_eq!(
            r.findings[0].message,
            "the toolstack lists a device model for it, but dom0 cannot tell whether it runs: image/device-model-pid \"x\" is not a process id"
        );
    }
}
