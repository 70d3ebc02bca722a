//! Xen's real oxenstored for the fast tests (`scripts/xenstored-run`), and
//! what a toolstack and a probe write into it: domains with their `vm`
//! links and permissions, probe runs in the key layouts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::daemon::{instance_dir, Daemon};
use crate::repo_root;

/// A running oxenstored with its own socket.
pub struct Xenstored {
    daemon: Daemon,
    socket: PathBuf,
}

impl Xenstored {
    /// Starts a private oxenstored and waits until it answers.
    pub fn start() -> Result<Xenstored> {
        let dir = instance_dir("xenstored")?;
        let mut cmd = Command::new(repo_root().join("scripts/xenstored-run"));
        cmd.arg(&dir);
        let log = dir.join("xenstored.log");
        let daemon = Daemon::spawn("oxenstored", dir.clone(), log, cmd)?;
        let mut xs = Xenstored {
            daemon,
            socket: dir.join("socket"),
        };
        let socket = xs.socket.clone();
        xs.daemon.wait_until(|| {
            let mut c = xsmon_xenstore::Client::open(&socket)?;
            c.set_timeout(Duration::from_millis(500));
            xsmon_xenstore::Store::directory(&mut c, "/")?;
            Ok(())
        })?;
        Ok(xs)
    }

    /// The daemon's unix socket (what `XENSTORED_PATH` should point at).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A new client connection.
    pub fn client(&self) -> Result<xsmon_xenstore::Client> {
        Ok(xsmon_xenstore::Client::open(&self.socket)?)
    }

    /// A command (e.g. `xenstore-ls`) set up to talk to this daemon.
    pub fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("XENSTORED_PATH", &self.socket);
        cmd
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Kills the daemon outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.daemon.stop(Signal::SIGKILL);
    }

    pub fn logs(&self) -> String {
        self.daemon.logs()
    }
}

/// Sets up `/local/domain/<domid>` as a Xen toolstack does for a running
/// guest: `name`, `domid` and the `vm` link to `/vm/<uuid>` written by
/// dom0, the home readable by the guest, and `data` owned by the guest (so
/// only it, and dom0, may write there). The VM's UUID is derived from the
/// name ([`uuid_for`]): the same name again is the same VM, rebooted.
pub fn add_domain(xs: &mut xsmon_xenstore::Client, domid: u32, name: &str) -> Result<()> {
    add_domain_vm(xs, domid, name, Some(&uuid_for(name)))
}

/// A stable, made-up VM UUID for a test guest's name.
pub fn uuid_for(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// [`add_domain`] with an explicit VM UUID, or none (no `vm` link, as a
/// toolstack that writes none).
pub fn add_domain_vm(
    xs: &mut xsmon_xenstore::Client,
    domid: u32,
    name: &str,
    uuid: Option<&str>,
) -> Result<()> {
    use xsmon_xenstore::{Access, Perm, Store};
    let home = format!("/local/domain/{domid}");
    xs.mkdir(&home)?;
    xs.set_perms(
        &home,
        &[Perm::new(0, Access::None), Perm::new(domid, Access::Read)],
    )?;
    xs.write(&format!("{home}/name"), name.as_bytes())?;
    if let Some(u) = uuid {
        xs.write(&format!("{home}/vm"), format!("/vm/{u}").as_bytes())?;
        xs.write(&format!("/vm/{u}/uuid"), u.as_bytes())?;
        xs.write(&format!("/vm/{u}/name"), name.as_bytes())?;
    }
    xs.write(&format!("{home}/domid"), domid.to_string().as_bytes())?;
    xs.mkdir(&format!("{home}/data"))?;
    xs.set_perms(&format!("{home}/data"), &[Perm::new(domid, Access::None)])?;
    Ok(())
}

/// Removes a domain's home, as the toolstack does when a guest goes away.
pub fn remove_domain(xs: &mut xsmon_xenstore::Client, domid: u32) -> Result<()> {
    xsmon_xenstore::Store::rm(xs, &format!("/local/domain/{domid}"))?;
    Ok(())
}

/// Writes a probe run for a guest directly, in the layout guest-probe uses
/// (for tests and benches that need many guests quickly; the probe itself
/// is tested on its own).
pub fn write_run(
    xs: &mut xsmon_xenstore::Client,
    domid: u32,
    run: &xsmon_proto::layout::Run,
) -> Result<()> {
    write_pairs(xs, domid, xsmon_proto::layout::encode(run)?)
}

/// [`write_run`] in key layout version 1 (the one key per field layout a
/// guest not yet upgraded writes).
pub fn write_run_v1(
    xs: &mut xsmon_xenstore::Client,
    domid: u32,
    run: &xsmon_proto::layout::Run,
) -> Result<()> {
    write_pairs(xs, domid, xsmon_proto::layout::encode_v1(run)?)
}

/// [`write_run`] in key layout version 5 (a run line in its own `run`
/// key, which a reader reads again after the chunks).
pub fn write_run_v5(
    xs: &mut xsmon_xenstore::Client,
    domid: u32,
    run: &xsmon_proto::layout::Run,
) -> Result<()> {
    write_pairs(xs, domid, xsmon_proto::layout::encode_v5(run)?)
}

/// Replaces guest `domid`'s data with `pairs` (an encoder's keys, in any
/// layout), in one transaction as the probe does.
pub fn write_pairs(
    xs: &mut xsmon_xenstore::Client,
    domid: u32,
    pairs: Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let base = format!(
        "/local/domain/{domid}/{}",
        xsmon_proto::layout::DATA_SUBPATH
    );
    xs.transaction(5, |t| {
        xsmon_xenstore::Store::rm(t, &base)?;
        for (k, v) in &pairs {
            xsmon_xenstore::Store::write(t, &format!("{base}/{k}"), v)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A plausible run with cpu, swap, `disks` disks and one gateway, all ok
/// unless `status` says otherwise for the first disk, with the probe's
/// default thresholds as it reports them (key layout 3).
pub fn sample_run(
    time: i64,
    disks: usize,
    disk_status: xsmon_proto::Status,
) -> xsmon_proto::layout::Run {
    use xsmon_proto::CheckResult;
    let mut checks = Vec::new();
    let mut cpu = CheckResult::new("cpu", "cpu", "");
    cpu.message = "load 0.10 per cpu (2 cpus), iowait 0.5%, steal 0.2% over 300 s".into();
    cpu.value("load_per_cpu", 0.1)
        .value("iowait_pct", 0.5)
        .value("steal_pct", 0.2)
        .limit("load_per_cpu", Some(2.0), Some(4.0))
        .limit("iowait_pct", Some(20.0), Some(40.0))
        .limit("steal_pct", Some(10.0), Some(25.0));
    checks.push(cpu);
    let mut swap = CheckResult::new("swap", "swap", "");
    swap.message = "0 pages/s swapped in+out, 3% of 1024 MiB swap used".into();
    swap.value("pages_per_s", 0.0)
        .value("used_pct", 3.0)
        .limit("used_pct", Some(80.0), None)
        .limit("pages_per_s", Some(100.0), Some(1000.0));
    checks.push(swap);
    for i in 0..disks {
        let mut d = CheckResult::new(
            format!("disk{i}"),
            "disk",
            if i == 0 {
                "/".to_string()
            } else {
                format!("/srv/{i}")
            },
        );
        d.status = if i == 0 {
            disk_status
        } else {
            xsmon_proto::Status::Ok
        };
        let used = if d.status == xsmon_proto::Status::Ok {
            40.0
        } else {
            97.0
        };
        d.message = format!(
            "{} (ext4) {used:.0}% used of 20.0 GiB, inodes 5% used",
            d.target
        );
        d.value("used_pct", used)
            .value("inodes_pct", 5.0)
            .limit("used_pct", Some(85.0), Some(95.0))
            .limit("inodes_pct", Some(85.0), Some(95.0));
        checks.push(d);
    }
    let mut net = CheckResult::new("net0", "net", "10.0.0.1");
    net.message = "gateway 10.0.0.1: 3/3 replies, 0% loss, rtt 0.4 ms".into();
    net.value("loss_pct", 0.0)
        .value("rtt_ms", 0.4)
        .limit("loss_pct", Some(30.0), Some(100.0))
        .limit("rtt_ms", Some(100.0), Some(500.0));
    checks.push(net);
    xsmon_proto::layout::Run {
        probe: "guest-probe 0.1.0".into(),
        time,
        seq: 1,
        checks,
        resumed: None,
        boot: None,
    }
}
