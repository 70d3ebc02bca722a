//! The booted lab: QEMU running Xen, dom0 and its guests; commands in
//! dom0 and in guests, guests created, their states, the consoles.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::agent::{agent_call, brief, parse_agent_output, request_line, tail, Exec, BEGIN};
use super::environment_fault::EnvironmentFault;
use super::guest::{config_path, LabGuest, LAB_CONFIG_DIR};
use super::Xenstored;
use crate::{repo_root, spawn_tied_to_process};

/// A booted lab. QEMU is killed when this is dropped or the test process
/// ends.
pub struct XenLab {
    child: Child,
    dir: PathBuf,
    snmp_port: u16,
    agent_port: u16,
    /// QEMU's start to dom0's agent answering.
    pub boot_time: Duration,
    /// What ran it: `accel=tcg,thread=multi cpu=...`.
    pub accel: String,
    /// The hypervisor's own word for its version (`xl info`), e.g.
    /// `4.20.5-pre`.
    pub xen_version: String,
}

/// The Xen version the lab boots: `XSMON_LAB_XEN` (4.20, Debian 13's, by
/// default; or 4.17, Debian 12's), as scripts/xen-lab reads it.
pub fn lab_xen() -> String {
    std::env::var("XSMON_LAB_XEN").unwrap_or_else(|_| "4.20".into())
}

pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Builds the lab's images (cached under target/xen-lab) and says where.
pub fn images() -> Result<PathBuf> {
    let out = Command::new(repo_root().join("scripts/xen-lab"))
        .arg("images")
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/xen-lab images")?;
    if !out.status.success() {
        bail!("scripts/xen-lab images failed ({})", out.status);
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl XenLab {
    /// Boots the lab and waits (at most 4 minutes: software emulation on a
    /// loaded 2-core machine) until dom0's toolstack and agent are up.
    ///
    /// A dom0 whose kernel panicked in its boot is booted once more, said
    /// on stderr as an environment fault: Debian 13's 6.12 kernel as dom0
    /// under the emulator once hit a breakpoint of its own code patching
    /// at 5 s (`exc_int3` in `sched_clock_cpu`, then the panic), the
    /// fault the lab's PV guests show at boot too (`text_poke_early`). A
    /// second panic, or any other failure to boot, fails.
    pub fn boot(xenstored: Xenstored) -> Result<XenLab> {
        let asked = Instant::now();
        images()?;
        // Built here, or by scripts/test beside the builds (this waited
        // for that builder): time the lab spends before its QEMU starts.
        eprintln!(
            "xen lab: its images ready {:.1} s after the lab asked for them",
            asked.elapsed().as_secs_f64()
        );
        match Self::boot_once(xenstored) {
            Err(e) if e.downcast_ref::<EnvironmentFault>().is_some() => {
                eprintln!("xen lab: environment fault: {e}; the lab booted once more");
                Self::boot_once(xenstored).context("booting the lab a second time")
            }
            other => other,
        }
    }

    fn boot_once(xenstored: Xenstored) -> Result<XenLab> {
        let dir = repo_root().join("target/xen-lab/runs").join(format!(
            "{}-{}",
            std::process::id(),
            free_port()?
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let (snmp_port, agent_port) = (free_udp_port()?, free_port()?);
        let mut cmd = Command::new(repo_root().join("scripts/xen-lab"));
        cmd.arg("boot")
            .arg(&dir)
            .arg(snmp_port.to_string())
            .arg(agent_port.to_string())
            .arg(match xenstored {
                Xenstored::Oxenstored => "oxenstored",
                Xenstored::C => "xenstored",
            })
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("qemu.log"))?)
            .stderr(fs::File::create(dir.join("qemu.err"))?);
        let started = Instant::now();
        let child = spawn_tied_to_process(cmd).context("starting qemu-system-x86_64")?;
        let mut lab = XenLab {
            child,
            dir,
            snmp_port,
            agent_port,
            boot_time: Duration::ZERO,
            accel: String::new(),
            xen_version: String::new(),
        };
        lab.wait_booted(started, Duration::from_secs(240))?;
        lab.boot_time = started.elapsed();
        lab.accel = fs::read_to_string(lab.dir.join("accel"))
            .unwrap_or_default()
            .trim()
            .to_string();
        // The version asked for is the one that runs, or nothing this lab
        // shows is evidence for it.
        let info = lab.dom0_ok("xl info | sed -n 's/^xen_version *: //p'")?;
        lab.xen_version = info.trim().to_string();
        let wanted = lab_xen();
        if !lab.xen_version.starts_with(&format!("{wanted}.")) {
            bail!(
                "the lab runs Xen {:?}, XSMON_LAB_XEN asked for {wanted}\n{}",
                lab.xen_version,
                lab.consoles()
            );
        }
        Ok(lab)
    }

    fn wait_booted(&mut self, started: Instant, within: Duration) -> Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the Xen lab's QEMU exited during boot ({status})\n{}",
                    self.consoles()
                );
            }
            let console = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
            if !console.contains("xsmon-lab: dom0 ready")
                && console.contains("Kernel panic - not syncing")
            {
                let said = |what: &str| {
                    console
                        .lines()
                        .find(|l| l.contains(what))
                        .map(|l| l.trim().to_string())
                        .unwrap_or_default()
                };
                return Err(EnvironmentFault(format!(
                    "dom0's kernel panicked at boot under emulation ({} | {} | {}); its console: {}",
                    said("RIP:"),
                    said(" exc_"),
                    said("Kernel panic"),
                    self.dir.join("console.log").display()
                ))
                .into());
            }
            if console.contains("xsmon-lab: dom0 ready") {
                if let Ok(e) = self.dom0("xl list >/dev/null && echo up") {
                    if e.rc == 0 && e.out.contains("up") {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > within {
                bail!(
                    "the Xen lab did not boot within {within:?}\n{}",
                    self.consoles()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The lab's own directory (console log, QEMU's output).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// dom0's snmpd, as the poller addresses it.
    pub fn snmp_target(&self) -> String {
        format!("127.0.0.1:{}", self.snmp_port)
    }

    /// Runs a shell script in dom0 (90 s at most).
    pub fn dom0(&self, script: &str) -> Result<Exec> {
        self.dom0_within(script, Duration::from_secs(90))
    }

    /// Runs a shell script in dom0, waiting at most `timeout` for it.
    pub fn dom0_within(&self, script: &str, timeout: Duration) -> Result<Exec> {
        agent_call(self.agent_port, script, timeout)
    }

    /// Runs a shell script in dom0 that must succeed; returns its output.
    pub fn dom0_ok(&self, script: &str) -> Result<String> {
        self.dom0(script)?.ok(&format!("dom0: {}", brief(script)))
    }

    /// Runs a shell script in a guest (60 s at most), relayed by dom0 over
    /// the bridge.
    pub fn guest(&self, g: &LabGuest, script: &str) -> Result<Exec> {
        self.guest_within(g, script, 60)
    }

    /// Runs a shell script in a guest, giving up after `secs` (a script
    /// that kills the guest's kernel never answers).
    pub fn guest_within(&self, g: &LabGuest, script: &str, secs: u32) -> Result<Exec> {
        let request = request_line(script);
        // nc's idle timeout: 20 s, since a guest starved of CPU for
        // seconds (a dozen scenarios on two emulated CPUs) is slow, not
        // gone; but a connection that a save or a migration cut must end.
        let relay = format!("echo '{request}' | timeout {secs} nc -w 20 {} 2323", g.ip());
        let mut attempt = 1;
        loop {
            let e = self.dom0(&relay)?;
            // The guest's agent ends its output with its own exit code;
            // dom0's agent adds the relay's.
            match parse_agent_output(&e.out) {
                Ok(answer) => return Ok(answer),
                // The guest's agent took the connection and never started
                // the script (its busybox nc between two connections): the
                // request is sent again, the script runs once. A guest not
                // reachable at all ("can't connect") is the caller's to
                // wait for (`settled`, `wait_guest_up`).
                Err(_)
                    if !e.out.contains(BEGIN)
                        && !e.out.contains("can't connect")
                        && attempt < 3 =>
                {
                    eprintln!(
                        "xen lab: guest {}'s agent did not start {:?} (relay exit {}: {:?}); again ({attempt})",
                        g.name,
                        brief(script),
                        e.rc,
                        e.out.trim()
                    );
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(err) => {
                    let started = if e.out.contains(BEGIN) {
                        "started, then cut off"
                    } else {
                        "never started"
                    };
                    return Err(err.context(format!(
                        "guest {} did not answer ({started}; relay exit {}): {:?}",
                        g.name, e.rc, e.out
                    )));
                }
            }
        }
    }

    pub fn guest_ok(&self, g: &LabGuest, script: &str) -> Result<String> {
        self.guest(g, script)?
            .ok(&format!("guest {}: {}", g.name, brief(script)))
    }

    /// Writes the guest's xl config into the shared config directory's
    /// folder for this dom0 (`/data/config/auto/xenlab/`, so the collector
    /// knows it should run here) and creates it; does not wait for it to
    /// boot (see [`XenLab::wait_guest_up`]).
    pub fn create(&self, g: &LabGuest) -> Result<()> {
        self.dom0_ok(&format!(
            "{}\nxl create {}",
            self.write_config(g),
            config_path(g)
        ))
        .map(|_| ())
    }

    /// Creates several guests, three at a time (xl builds them side by
    /// side; each xl holds ~100 MB of dom0's memory while it loads the
    /// guest's kernel).
    pub fn create_all(&self, guests: &[&LabGuest]) -> Result<()> {
        for batch in guests.chunks(3) {
            self.create_batch(batch)?;
        }
        Ok(())
    }

    fn create_batch(&self, guests: &[&LabGuest]) -> Result<()> {
        // Each xl's words are kept in /var/log/xen/create-<name>.log, for
        // the diagnosis of a guest that never came up.
        let mut script = String::from("d=$(mktemp -d /tmp/create.XXXXXX) || exit 1\n");
        for g in guests {
            script.push_str(&self.write_config(g));
            script.push_str(&format!(
                "\n(xl create {} > $d/{n}.log 2>&1; echo $? > $d/{n}.rc) &\n",
                config_path(g),
                n = g.name
            ));
        }
        script.push_str(
            "wait\nrc=0\nfor f in $d/*.log; do n=${f##*/}; n=${n%.log}; \
             cat $f >> /var/log/xen/create-$n.log; \
             [ \"$(cat ${f%.log}.rc 2>/dev/null)\" = 0 ] || { echo \"xl create $n:\"; cat $f; rc=1; }; done\n\
             rm -rf $d\nexit $rc",
        );
        // xl builds guests side by side, on an emulated CPU.
        self.dom0_within(&script, Duration::from_secs(100 + 30 * guests.len() as u64))?
            .ok("xl create")?;
        // xl create said yes: each domain must be there now (once in a
        // soak run, two HVM guests were waited for in vain, never in xl
        // list and no trace of why).
        let listed = self.dom0_ok("xl list")?;
        for g in guests {
            ensure!(
                xl_list_state(&listed, &g.name).is_some(),
                "xl create {} exited 0, but the domain is not in xl list:\n{listed}\n{}",
                g.name,
                self.xl_logs(g)
            );
        }
        Ok(())
    }

    /// What xl and the device model logged of `g` in dom0: the words of
    /// its `xl create`, of the xl that watches the domain, of its QEMU;
    /// then the tail of its consoles (its kernel's own words: a guest
    /// that never came up may have said why), and what Xen says of it.
    pub fn xl_logs(&self, g: &LabGuest) -> String {
        self.dom0(&format!(
            "for f in /var/log/xen/create-{n}.log /var/log/xen/xl-{n}.log /var/log/xen/qemu-dm-{n}.log; do \
             [ -e $f ] && {{ echo \"--- dom0:$f ---\"; tail -n 25 $f; }}; done; \
             for f in /var/log/xen/console/guest-{n}.log /var/log/xen/console/serial-{n}.log; do \
             [ -e $f ] && {{ echo \"--- dom0:$f (the guest's console) ---\"; tail -n 40 $f; }}; done; \
             echo '--- xl list -v, xl vcpu-list:'; xl list -v {n}; xl vcpu-list {n}; true",
            n = g.name
        ))
        .map(|e| e.out)
        .unwrap_or_else(|e| format!("dom0 did not answer: {e:#}"))
    }

    fn write_config(&self, g: &LabGuest) -> String {
        let disk = if g.qdisk {
            format!("\n[ -e {f} ] || truncate -s 16M {f}", f = g.qdisk_file())
        } else {
            String::new()
        };
        format!(
            "mkdir -p {LAB_CONFIG_DIR} && cat > {} <<'XSMON_EOF'\n{}XSMON_EOF{disk}",
            config_path(g),
            g.xl_config()
        )
    }

    /// Waits until the guest's agent answers and its probe ran once (a
    /// guest without a probe: until its agent answers).
    pub fn wait_guest_up(&self, g: &LabGuest, within: Duration) -> Result<()> {
        self.wait_guest_up_or_ended(g, within, false)
    }

    /// [`Self::wait_guest_up`]; with `end_early`, a domain that crashed or
    /// is gone (its kernel's panic at boot, `on_crash = "destroy"`) ends
    /// the wait at once, as a failure that says so, instead of after
    /// `within`.
    pub(super) fn wait_guest_up_or_ended(
        &self,
        g: &LabGuest,
        within: Duration,
        end_early: bool,
    ) -> Result<()> {
        let (what, script, expect) = if g.probe_every == 0 {
            ("to boot", "echo up", "up")
        } else {
            ("to run its probe", "cat /run/probe.runs", "probe rc=")
        };
        let mut looks = 0u32;
        let ended = self.wait_until(&format!("guest {} {what}", g.name), within, |seen| {
            let e = self.guest(g, script)?;
            *seen = format!("exit {}: {}", e.rc, tail(e.out.trim(), 3));
            if e.rc == 0 && e.out.contains(expect) {
                return Ok(Some(None));
            }
            if !end_early {
                return Ok(None);
            }
            looks += 1;
            Ok(match self.xl_state(&g.name)? {
                None => Some(Some("gone from xl list")),
                Some(s) if s.contains('c') => Some(Some("crashed")),
                // A kernel that panicked before it could tell Xen (a soak
                // run's PV guest at 7.6 s, in its slab setup) leaves the
                // domain running: its console says it, looked at every
                // fifth look.
                Some(_) if looks.is_multiple_of(5) => {
                    let console = self.guest_console(g).unwrap_or_default();
                    (!console.contains("xsmon-lab-guest ready") && console.contains("Kernel panic"))
                        .then_some(Some("running, its kernel panicked (its console)"))
                }
                Some(_) => None,
            })
        })?;
        match ended {
            None => Ok(()),
            Some(how) => bail!(
                "guest {}'s domain {how} while the lab waited for it {what}",
                g.name
            ),
        }
    }

    /// Destroys `g`'s domain and creates it again from its config, its
    /// console so far kept aside (`guest-<name>.fault.log`), and waits
    /// until it is up: for a guest whose kernel the emulation broke.
    pub fn recreate(&self, g: &LabGuest) -> Result<()> {
        self.dom0(&format!(
            "xl destroy {n} 2>/dev/null; for c in guest serial; do f=/var/log/xen/console/$c-{n}.log; \
             [ -e $f ] && mv $f /var/log/xen/console/$c-{n}.fault.log; done; true",
            n = g.name
        ))?;
        self.create(g)?;
        self.wait_guest_up(g, Duration::from_secs(240))
    }

    /// Crashes the guest's kernel (`echo c > /proc/sysrq-trigger`) and
    /// waits until Xen has the domain crashed (`c` in its state), or gone
    /// when its on_crash lets it go. A guest kept on crash ("preserve")
    /// that is gone did not crash as asked: a Linux HVM guest without
    /// `xen_legacy_crash` did that (its panic a reboot to Xen: xl started
    /// it again in a new domain 7 s later), which a wait for "crashed or
    /// gone" had taken for a crash. The trigger never answers; a trigger
    /// whose domain neither crashed nor went (its agent did not take the
    /// connection in time under the lab's load) is sent again, at most
    /// three times in all, and said on stderr.
    pub fn crash_kernel(&self, g: &LabGuest) -> Result<()> {
        let crashed_as_configured = || -> Result<bool> {
            let state = self.xl_state(&g.name)?;
            Ok(match (state, g.on_crash) {
                (Some(state), _) => state.contains('c'),
                (None, kept) => kept != "preserve",
            })
        };
        let mut sent = Vec::new();
        for attempt in 1..=3 {
            let relay = match self.guest_within(g, "echo c > /proc/sysrq-trigger", 5) {
                Ok(e) => format!("exit {}: {}", e.rc, e.out.trim()),
                Err(e) => format!("{e:#}"),
            };
            let what = format!("{} to crash after sysrq c", g.name);
            if self
                .wait_for(&what, Duration::from_secs(60), crashed_as_configured)
                .is_ok()
            {
                return Ok(());
            }
            eprintln!(
                "xen lab: guest {}'s kernel did not crash within 60 s of sysrq c (attempt {attempt}; the relay: {})",
                g.name,
                brief(&relay)
            );
            sent.push(relay);
        }
        bail!(
            "{}",
            self.guest_diagnosis(
                g,
                &format!("sysrq c sent three times, the domain neither crashed nor gone (the relays: {sent:?})")
            )
        )
    }

    /// The domain's state letters from `xl list` (`r-----`, `--p---`...).
    pub fn xl_state(&self, name: &str) -> Result<Option<String>> {
        Ok(xl_list_state(&self.dom0_ok("xl list")?, name))
    }

    /// `g`'s console as dom0 keeps it: xenconsoled's `guest-<name>.log`
    /// for a PV or PVH guest; an HVM guest's kernel writes to its emulated
    /// serial port, `serial-<name>.log` (a soak run's hvm01 panicked at
    /// boot there, unseen by a look at the other).
    pub(super) fn guest_console(&self, g: &LabGuest) -> Result<String> {
        Ok(self
            .dom0(&format!(
                "cat /var/log/xen/console/guest-{n}.log /var/log/xen/console/serial-{n}.log 2>/dev/null; true",
                n = g.name
            ))?
            .out)
    }

    /// What dom0 sees of a guest that stopped answering after `after`:
    /// its domain's state and vCPUs twice 5 s apart (spinning, blocked, or
    /// not scheduled), its neighbour entry on the bridge, the kernel's own
    /// complaints from its console (hung tasks, RCU stalls, lockups, oopses:
    /// with their first lines, which a console's tail cuts off), then every
    /// console. First in the text: a CI log shown by its start and end still
    /// tells a hung kernel from a hung network.
    pub fn guest_diagnosis(&self, g: &LabGuest, after: &str) -> String {
        let script = format!(
            "xl list -v {n}; xl vcpu-list {n}; sleep 5; xl vcpu-list {n}; ip neigh show {ip}; \
             echo '--- the kernel of {n} complained:'; \
             grep -n -A14 -E '{KERNEL_PROBLEMS}' /var/log/xen/console/guest-{n}.log /var/log/xen/console/serial-{n}.log 2>/dev/null | head -n 120; \
             id=$(xl domid {n} 2>/dev/null) && {{ xl debug-keys q; \
             echo \"--- Xen's vCPU state of {n} (d$id: blocked with events pending, masked, polling?):\"; \
             xl dmesg | grep -A8 \"callbacks for d$id:\" | tail -n 9; }}",
            n = g.name,
            ip = g.ip()
        );
        let seen = self
            .dom0(&script)
            .map(|e| e.out)
            .unwrap_or_else(|e| format!("dom0 did not answer: {e:#}"));
        format!(
            "{} after {after}:\n{seen}\n{}{}",
            g.name,
            self.xl_logs(g),
            self.consoles()
        )
    }

    pub fn consoles(&self) -> String {
        let mut s = String::new();
        let console = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        s.push_str(&format!(
            "--- {} (Xen and dom0) ---\n{}\n",
            self.dir.join("console.log").display(),
            tail(&console, 60)
        ));
        for f in ["qemu.err", "qemu.log"] {
            let t = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            if !t.trim().is_empty() {
                s.push_str(&format!("--- {f} ---\n{}\n", tail(&t, 20)));
            }
        }
        let guests = agent_call(
            self.agent_port,
            "for f in /var/log/xen/console/guest-*.log /var/log/xen/console/serial-*.log /var/log/xen/qemu-dm-*.log /var/log/collector.log /var/log/snmpd.log; do [ -e \"$f\" ] && { echo \"--- dom0:$f ---\"; tail -n 25 \"$f\"; }; done; xl list",
            Duration::from_secs(10),
        );
        match guests {
            Ok(e) => s.push_str(&e.out),
            Err(e) => s.push_str(&format!("--- dom0's agent did not answer: {e:#} ---\n")),
        }
        s
    }
}

/// The state column (`-b----`, ...) of domain `name` in `xl list`'s
/// output, or None when it is not listed.
fn xl_list_state(listed: &str, name: &str) -> Option<String> {
    listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&name) && c.len() >= 6)
        .map(|c| c[4].to_string())
}

/// What a Linux kernel prints when something in it is stuck or broken
/// (an extended regular expression for dom0's grep). Not every line with
/// "watchdog" in it: the clocksource watchdog's notes under emulation are
/// harmless and would fill the report; the lockup detectors' own lines
/// say "soft lockup" or "hard LOCKUP", matched here.
const KERNEL_PROBLEMS: &str =
    "blocked for more than|rcu.*(stall|detected)|soft lockup|hard LOCKUP|BUG:|Oops|WARNING:|Kernel panic";

impl Drop for XenLab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
