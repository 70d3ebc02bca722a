//! Network namespaces the tests create for themselves: a namespace joined
//! to the host by a veth pair on a private /24, so a test has addresses that
//! answer (or do not) without sending anything off this machine.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// A namespace with `host_ip` on the host's end of the veth and `ns_ip` on
/// the namespace's end. Removed (with its veth) on drop.
pub struct Netns {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
    /// An address on the same /24 that nobody holds: ARP goes unanswered,
    /// so pings to it are lost, and nothing leaves the veth.
    pub unused_ip: String,
    host_if: String,
    /// The claim on its /24, held as long as the namespace lives (fields
    /// drop after `Drop::drop` has deleted the namespace).
    _subnet: Flock<std::fs::File>,
}

/// Where the claims on the 10.231.N.0/24 subnets are kept: one lock file
/// per subnet, system-wide, so test processes running side by side (the
/// poller's tests and the demo's site, in `scripts/test`) never put two
/// veths on one /24. The kernel accepts that without a word, and the
/// host's packets to one of the two namespaces then go to the other.
const SUBNET_LOCKS: &str = "/run/lock/xsmon-tests-netns";

/// Claims a free subnet (1..=250), starting from one that depends on the
/// process and the count so far (most claims succeed at the first try). A
/// lock dies with its process: a killed run leaves no claim behind.
fn claim_subnet(start: u32) -> Result<(u32, Flock<std::fs::File>)> {
    std::fs::create_dir_all(SUBNET_LOCKS).with_context(|| format!("creating {SUBNET_LOCKS}"))?;
    for i in 0..250 {
        let subnet = start.wrapping_add(i) % 250 + 1;
        let path = format!("{SUBNET_LOCKS}/10.231.{subnet}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        // flock() locks belong to the open file: a second claim of the
        // same subnet by this very process is refused as well.
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok((subnet, lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => bail!("locking {path}: {e}"),
        }
    }
    bail!("all 250 subnets 10.231.N.0/24 are claimed by live test processes (locks in {SUBNET_LOCKS})")
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Creates a namespace. Each one gets its own 10.231.N.0/24, claimed
    /// against every other test process on the machine.
    pub fn create() -> Result<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let (subnet, claim) = claim_subnet(pid.wrapping_mul(7).wrapping_add(n * 13))?;
        let tag = format!("{:x}{n}", pid % 0xfffff);
        // The full pid in the name lets a later run remove what a killed
        // run left behind (see remove_leftovers).
        let name = format!("xsmon-{pid}-{n}");
        remove_leftovers();
        let host_if = format!("xsh{tag}");
        let ns_if = format!("xsn{tag}");
        let ns = Netns {
            name: name.clone(),
            host_ip: format!("10.231.{subnet}.1"),
            ns_ip: format!("10.231.{subnet}.2"),
            unused_ip: format!("10.231.{subnet}.99"),
            host_if: host_if.clone(),
            _subnet: claim,
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name])?;
        remember(&name);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &host_if,
        ])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.ns_ip),
            "dev",
            &ns_if,
        ])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Can this process create namespaces? (Root in the initial namespace.)
    pub fn available() -> bool {
        match Netns::create() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("network namespaces unavailable: {e:#}");
                false
            }
        }
    }
}

/// Deletes namespaces of earlier runs whose process is gone (deleting a
/// namespace deletes its end of the veth pair, and so the pair).
fn remove_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(pid) = name
                .strip_prefix("xsmon-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    });
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        forget(&self.name);
    }
}

/// Namespaces this process created and has not deleted yet: a site kept in
/// a `static` for several tests is never dropped, so they are deleted when
/// the process exits.
static LIVE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

extern "C" fn delete_live_namespaces() {
    if let Ok(names) = LIVE.lock() {
        for n in names.iter() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn remember(name: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain function with the C library's atexit.
    ONCE.call_once(|| unsafe {
        atexit(delete_live_namespaces);
    });
    if let Ok(mut v) = LIVE.lock() {
        v.push(name.to_string());
    }
}

fn forget(name: &str) {
    if let Ok(mut v) = LIVE.lock() {
        v.retain(|n| n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_subnet_is_refused_to_this_process_and_to_any_other() {
        let (first, _held) = claim_subnet(17).unwrap();
        let (second, _also) = claim_subnet(17).unwrap();
        assert_ne!(first, second, "one process, two claims from one start");
        // Another process (util-linux's flock) cannot take it either.
        let other = Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "99"])
            .arg(format!("{SUBNET_LOCKS}/10.231.{first}.lock"))
            .arg("true")
            .status()
            .unwrap();
        assert_eq!(
            other.code(),
            Some(99),
            "another process took 10.231.{first}.0/24"
        );
    }
}
