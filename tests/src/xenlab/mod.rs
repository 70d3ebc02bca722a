//! The Xen lab: Debian's real Xen 4.17 under `qemu-system-x86_64`
//! (`scripts/xen-lab`), with a real PV dom0 and real PV and PVH domUs.
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

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xsmon_proto::Status;

use crate::{repo_root, spawn_tied_to_process};

pub mod scenarios;
mod waits;

/// Which xenstore daemon dom0 runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xenstored {
    /// Xen's OCaml daemon (Debian's default).
    Oxenstored,
    /// Xen's C daemon.
    C,
}

/// What a command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Exec {
    pub out: String,
    pub rc: i32,
}

impl Exec {
    /// Fails unless the command exited 0.
    pub fn ok(self, what: &str) -> Result<String> {
        if self.rc != 0 {
            bail!("{what}: exit {}\n{}", self.rc, self.out);
        }
        Ok(self.out)
    }
}

/// A guest to create on the lab.
#[derive(Debug, Clone)]
pub struct LabGuest {
    pub name: String,
    /// `pv` or `pvh`.
    pub kind: &'static str,
    /// 1..=200: the guest's address is 10.77.0.<10+index>.
    pub index: u32,
    /// Seconds between probe runs (the lab's collector calls a guest stale
    /// after 30 s without a new run).
    pub probe_every: u32,
    /// `on_crash` (preserve, destroy, restart...).
    pub on_crash: &'static str,
    /// The guest's gateway (10.77.0.1, dom0's bridge, unless told).
    pub gateway: String,
    /// A block device of dom0's (`/dev/ram1`..`/dev/ram7`) given to the
    /// guest as `xvdb` through blkback, used as its swap.
    pub swap_disk: Option<&'static str>,
    /// Lines added to the xl config.
    pub extra_cfg: String,
    /// The domain's memory, MiB. Every save, restore and migration copies
    /// it on an emulated CPU, so the lab's guests get what they need, no
    /// more.
    pub memory_mib: u32,
}

impl LabGuest {
    pub fn new(name: &str, kind: &'static str, index: u32) -> LabGuest {
        LabGuest {
            name: name.into(),
            kind,
            index,
            probe_every: 10,
            on_crash: "preserve",
            gateway: "10.77.0.1".into(),
            swap_disk: None,
            extra_cfg: String::new(),
            memory_mib: 96,
        }
    }

    pub fn ip(&self) -> String {
        format!("10.77.0.{}", 10 + self.index)
    }

    /// The VM's UUID, fixed in its config (so `xl create` again is the
    /// same VM, as on a real site).
    pub fn uuid(&self) -> String {
        crate::uuid_for(&self.name)
    }

    /// The xl configuration, as an admin would write it. `tsc_early_khz`:
    /// without it, one PVH boot in four to six, under software emulation
    /// and load, triple-faults in the kernel's early TSC calibration (Xen
    /// then reboots the domain: `---sr-`, and xl gives up after two); with
    /// it, none in the lab's runs.
    pub fn xl_config(&self) -> String {
        let (swap_arg, disk) = match self.swap_disk {
            Some(dev) => (
                " xsmon.swap=/dev/xvdb",
                format!("disk = [ 'vdev=xvdb, access=rw, script=/etc/xen/scripts/lab-block, target={dev}' ]\n"),
            ),
            None => ("", String::new()),
        };
        format!(
            "name = \"{name}\"\nuuid = \"{uuid}\"\ntype = \"{kind}\"\nkernel = \"/lab/vmlinux\"\nramdisk = \"/lab/guest.cpio.gz\"\n\
             extra = \"console=hvc0 quiet tsc_early_khz=2000000 xsmon.name={name} xsmon.ip={ip} xsmon.every={every} xsmon.gw={gw}{swap_arg}\"\n{disk}\
             memory = {memory}\nvcpus = 1\non_crash = \"{crash}\"\n\
             vif = [ 'bridge=xenbr0,script=/etc/xen/scripts/lab-vif,mac=00:16:0a:4d:00:{mac:02x}' ]\n{extra}",
            name = self.name,
            uuid = self.uuid(),
            gw = self.gateway,
            kind = self.kind,
            ip = self.ip(),
            every = self.probe_every,
            crash = self.on_crash,
            mac = 10 + self.index,
            extra = self.extra_cfg,
            memory = self.memory_mib,
        )
    }
}

/// The lab dom0's name, and its folder of the shared config directory.
pub const LAB_DOM0: &str = "xenlab";
pub const LAB_CONFIG_DIR: &str = "/data/config/auto/xenlab";

fn config_path(g: &LabGuest) -> String {
    format!("{LAB_CONFIG_DIR}/{}.cfg", g.name)
}

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
}

fn free_port() -> Result<u16> {
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
    pub fn boot(xenstored: Xenstored) -> Result<XenLab> {
        images()?;
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
        };
        lab.wait_booted(started, Duration::from_secs(240))?;
        lab.boot_time = started.elapsed();
        lab.accel = fs::read_to_string(lab.dir.join("accel"))
            .unwrap_or_default()
            .trim()
            .to_string();
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
        let b64 = base64(script.as_bytes());
        // nc's idle timeout: 20 s, since a guest starved of CPU for
        // seconds (a dozen scenarios on two emulated CPUs) is slow, not
        // gone; but a connection that a save or a migration cut must end.
        let relay = format!("echo '{b64}' | timeout {secs} nc -w 20 {} 2323", g.ip());
        let mut attempt = 1;
        loop {
            let e = self.dom0(&relay)?;
            // The guest's agent ends its output with its own exit code;
            // dom0's agent adds the relay's.
            match parse_agent_output(&e.out) {
                Ok(answer) => return Ok(answer),
                // The guest's agent never started the script (its busybox
                // nc between two connections, ARP after a new domain): the
                // request is sent again, the script runs once.
                Err(_) if !e.out.contains(BEGIN) && attempt < 3 => {
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
        let mut script = String::new();
        for g in guests {
            script.push_str(&self.write_config(g));
            script.push_str(&format!(
                "\n(xl create {} > /tmp/create-{n}.log 2>&1; echo $? > /tmp/create-{n}.rc) &\n",
                config_path(g),
                n = g.name
            ));
        }
        script.push_str("wait\nrc=0\nfor f in /tmp/create-*.rc; do [ \"$(cat $f)\" = 0 ] || { cat ${f%.rc}.log; rc=1; }; done\nrm -f /tmp/create-*\nexit $rc");
        // xl builds guests side by side, on an emulated CPU.
        self.dom0_within(&script, Duration::from_secs(100 + 30 * guests.len() as u64))?
            .ok("xl create")
            .map(|_| ())
    }

    fn write_config(&self, g: &LabGuest) -> String {
        format!(
            "mkdir -p {LAB_CONFIG_DIR} && cat > {} <<'XSMON_EOF'\n{}XSMON_EOF",
            config_path(g),
            g.xl_config()
        )
    }

    /// Waits until the guest's agent answers and its probe ran once (a
    /// guest without a probe: until its agent answers).
    pub fn wait_guest_up(&self, g: &LabGuest, within: Duration) -> Result<()> {
        let (what, script, expect) = if g.probe_every == 0 {
            ("to boot", "echo up", "up")
        } else {
            ("to run its probe", "cat /run/probe.runs", "probe rc=")
        };
        self.wait_until(&format!("guest {} {what}", g.name), within, |seen| {
            let e = self.guest(g, script)?;
            *seen = format!("exit {}: {}", e.rc, tail(e.out.trim(), 3));
            Ok((e.rc == 0 && e.out.contains(expect)).then_some(()))
        })
    }

    /// The domain's state letters from `xl list` (`r-----`, `--p---`...).
    pub fn xl_state(&self, name: &str) -> Result<Option<String>> {
        let out = self.dom0_ok("xl list")?;
        Ok(out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.first() == Some(&name) && c.len() >= 6)
            .map(|c| c[4].to_string()))
    }

    /// The tail of the serial console (Xen and dom0) and, where dom0
    /// answers, of every guest console and of dom0's daemons' logs.
    /// How many times Xen has logged a guest's triple fault (`(XEN) d7v0
    /// Triple fault - invoking HVM shutdown action`) on the serial console.
    pub fn triple_faults(&self) -> usize {
        fs::read(self.dir.join("console.log"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter(|l| l.contains("Triple fault - invoking HVM shutdown action"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Runs `f`, and once more if it failed while Xen logged a triple
    /// fault of a PVH guest: under software emulation, PVH guests of this
    /// lab triple-fault now and then (Xen then reboots them), which is the
    /// emulation's defect, not xsmon's. The guest is waited for and the
    /// retry said on stderr; any other failure stands.
    pub fn tolerating_triple_faults(
        &self,
        g: &LabGuest,
        what: &str,
        f: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let before = self.triple_faults();
        match f() {
            Ok(()) => Ok(()),
            Err(e) if self.triple_faults() > before => {
                eprintln!(
                    "xen lab: {what}: Xen logged a PVH triple fault meanwhile ({e:#}); once more after {} is back",
                    g.name
                );
                self.wait_guest_up(g, Duration::from_secs(180))?;
                f()
            }
            Err(e) => Err(e),
        }
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
            "for f in /var/log/xen/console/guest-*.log /var/log/collector.log /var/log/snmpd.log; do [ -e \"$f\" ] && { echo \"--- dom0:$f ---\"; tail -n 25 \"$f\"; }; done; xl list",
            Duration::from_secs(10),
        );
        match guests {
            Ok(e) => s.push_str(&e.out),
            Err(e) => s.push_str(&format!("--- dom0's agent did not answer: {e:#} ---\n")),
        }
        s
    }
}

/// A lab seen from the central host: the real poller, with a shared config
/// directory holding the lab dom0's folder, polls dom0's real snmpd.
pub struct LabSite {
    pub lab: XenLab,
    /// From dom0 up to every guest of [`LabSite::boot_with`] reporting.
    pub ready_after: Duration,
    dir: tempfile::TempDir,
    poller_config: PathBuf,
    /// One collector cycle at a time (the collector refuses a second one).
    collect_lock: Mutex<()>,
    /// When the latest cycle started, by dom0's clock.
    last_cycle: Mutex<i64>,
    /// When the latest cycle was asked of dom0, by the host's clock.
    last_asked: Mutex<Option<Instant>>,
}

impl LabSite {
    pub fn new(lab: XenLab) -> Result<LabSite> {
        let dir = tempfile::tempdir()?;
        let auto = dir.path().join("auto");
        fs::create_dir_all(auto.join(LAB_DOM0))?;
        let poller_config = dir.path().join("poller.toml");
        fs::write(
            &poller_config,
            format!(
                "config_dirs = [\"{}\"]\n[snmp]\ncommunity = \"{}\"\ntimeout_ms = 15000\nretries = 2\n[addresses]\n{LAB_DOM0} = \"{}\"\n",
                auto.display(),
                crate::COMMUNITY,
                lab.snmp_target()
            ),
        )?;
        Ok(LabSite {
            lab,
            ready_after: Duration::ZERO,
            dir,
            poller_config,
            collect_lock: Mutex::new(()),
            last_cycle: Mutex::new(0),
            last_asked: Mutex::new(None),
        })
    }

    /// Creates guests on the lab, with their configs in the shared config
    /// directory both dom0 and the poller read.
    pub fn create_all(&self, guests: &[&LabGuest]) -> Result<()> {
        for g in guests {
            fs::write(
                self.dir
                    .path()
                    .join("auto")
                    .join(LAB_DOM0)
                    .join(format!("{}.cfg", g.name)),
                g.xl_config(),
            )?;
        }
        self.lab.create_all(guests)
    }

    /// Boots a lab with `xenstored`, creates `guests` on it and waits
    /// until each has booted (and run its probe once, where it has one);
    /// then runs one collector cycle, so that the next has CPU % from it.
    pub fn boot_with(xenstored: Xenstored, guests: &[&LabGuest]) -> Result<LabSite> {
        let lab = XenLab::boot(xenstored)?;
        eprintln!(
            "xen lab ({xenstored:?}): dom0 up {:.1} s after QEMU started ({})",
            lab.boot_time.as_secs_f64(),
            lab.accel
        );
        let mut site = LabSite::new(lab)?;
        let t = Instant::now();
        site.create_all(guests)?;
        for g in guests {
            site.lab.wait_guest_up(g, Duration::from_secs(240))?;
        }
        site.ready_after = t.elapsed();
        eprintln!(
            "xen lab ({xenstored:?}): {} guests created and reporting in {:.1} s",
            guests.len(),
            site.ready_after.as_secs_f64()
        );
        site.collect()?;
        // What one cycle costs on the real dom0, as the collector measures
        // it (logged at -v: "ms=...").
        let out = site.lab.dom0_ok("host-collector -v collect 2>&1")?;
        if let Some(ms) = out.split_whitespace().find_map(|w| w.strip_prefix("ms=")) {
            eprintln!(
                "xen lab ({xenstored:?}): one collector cycle on the real dom0 ({} guests): {ms} ms",
                guests.len()
            );
        }
        Ok(site)
    }

    /// Waits until the guest has run its probe `n` more times.
    pub fn probe_runs(&self, g: &LabGuest, n: usize) -> Result<()> {
        let count = || -> Result<usize> {
            Ok(self
                .lab
                .guest_ok(g, "cat /run/probe.runs")?
                .lines()
                .filter(|l| l.starts_with("probe rc="))
                .count())
        };
        let start = count()?;
        self.lab.wait_for(
            &format!("{n} more probe runs in {}", g.name),
            Duration::from_secs(30 + 30 * n as u64),
            || Ok(count()? >= start + n),
        )
    }

    /// The guest's entry in `poller json` after a fresh collector cycle.
    pub fn collected(&self, name: &str) -> Result<serde_json::Value> {
        self.collect()?;
        match self.guest_json(name)? {
            Some(j) => Ok(j),
            None => {
                // Say what the poller said of the lab's dom0 instead.
                let (out, code) = self.run_poller(&["json"])?;
                let dom0 = serde_json::from_str::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|j| {
                        let mut d = lab_dom0(&j)?.clone();
                        d["guests"] = serde_json::Value::Null;
                        Some(d.to_string())
                    });
                bail!("{name} is not in poller json (exit {code}; the lab's dom0: {dom0:?})")
            }
        }
    }

    /// The domain's id now (`xl domid`).
    pub fn domid(&self, name: &str) -> Result<u32> {
        let out = self.lab.dom0_ok(&format!("xl domid {name}"))?;
        out.trim()
            .parse()
            .with_context(|| format!("xl domid {name}: {out}"))
    }

    /// With `XSMON_LAB_BEFORE` (an older xsmon's collector and snmp-extend
    /// in dom0 beside the current ones, see scripts/xen-lab): one cycle of
    /// the older collector, on its own config and database, and the line
    /// that version's basic-monitoring gives `name`: what it reported of
    /// the same domain at the same moment (its probe word, status and
    /// message). `None` in a lab without it.
    pub fn before(&self, name: &str) -> Result<Option<(String, Status, String)>> {
        let out = self.lab.dom0(
            "[ -x /usr/lib/xsmon-before/host-collector ] || exit 10; \
             /usr/lib/xsmon-before/host-collector --config /etc/xsmon/before.toml collect >/dev/null 2>&1; \
             /usr/lib/xsmon-before/snmp-extend basic-monitoring --db /var/lib/xsmon/before.db",
        )?;
        if out.rc == 10 {
            return Ok(None);
        }
        let text = out.ok("the older xsmon's basic-monitoring")?;
        // Today's reader reads that version's lines, as the poller does.
        let records = xsmon_proto::snmpline::parse_all(&text)
            .map_err(|e| anyhow::anyhow!("the older xsmon's lines: {e}: {text}"))?;
        let said = records
            .into_iter()
            .find_map(|r| match r {
                xsmon_proto::snmpline::Record::Guest {
                    host,
                    probe,
                    status,
                    message,
                    ..
                } if host == name => Some((probe, status, message)),
                _ => None,
            })
            .with_context(|| format!("the older xsmon says nothing of {name}: {text}"))?;
        eprintln!(
            "xen lab: the older xsmon (XSMON_LAB_BEFORE) said of {name}: {} {}: {}",
            said.0,
            said.1.as_str(),
            said.2
        );
        Ok(Some(said))
    }

    /// `poller raw`'s lines about one guest.
    pub fn raw_for(&self, name: &str) -> Result<Vec<xsmon_proto::rawline::RawLine>> {
        Ok(self.raw()?.into_iter().filter(|l| l.host == name).collect())
    }

    /// Runs one collector cycle on the lab's dom0: a cycle that starts
    /// after this call. Tests run side by side: one that waited for
    /// another's cycle, asked after its own call began, takes that cycle
    /// (one emulated cycle costs seconds).
    ///
    /// Cycles asked this way start at least [`CYCLE_SPACING`] apart: the
    /// scenarios' waits ask for one per look, and back-to-back cycles on
    /// the emulated dom0 slowed the whole lab; a caller that arrives
    /// during the spacing shares the next cycle.
    pub fn collect(&self) -> Result<String> {
        let called = Instant::now();
        let _one = self.collect_lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = *self.last_asked.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t > called) {
            return Ok("(a cycle that started after this call)".into());
        }
        if let Some(t) = last {
            // Not a wait for a condition: the lab's pace.
            std::thread::sleep(CYCLE_SPACING.saturating_sub(t.elapsed()));
        }
        self.cycle()
    }

    /// Runs `f` while no other test can run a collector cycle; `f` runs
    /// its own with the function it is given. For a scenario whose words
    /// appear only in the first cycle after an event (a VM's new domain).
    pub fn cycles_held<T>(
        &self,
        f: impl FnOnce(&dyn Fn() -> Result<String>) -> Result<T>,
    ) -> Result<T> {
        let _one = self.collect_lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&|| self.cycle())
    }

    /// One cycle, now (the caller holds `collect_lock`).
    fn cycle(&self) -> Result<String> {
        CYCLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // A `host-collector watch` running in dom0 may hold the lock (exit
        // 3): wait for its cycle to end.
        let out = self.lab.dom0_ok(
            "date +%s; for i in $(seq 60); do host-collector collect 2>&1; rc=$?; \
             [ $rc = 3 ] || break; sleep 0.5; done; exit $rc",
        )?;
        let started: i64 = out
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("dom0's clock: {out}"))?;
        let mut last = self.last_cycle.lock().unwrap_or_else(|e| e.into_inner());
        *last = (*last).max(started);
        Ok(out)
    }

    /// snmpd keeps an extend's output for 5 s (NET-SNMP-EXTEND-MIB's
    /// nsExtendCacheTime, not settable from snmpd.conf): waits until what
    /// it serves comes from a cycle no older than the last [`collect`], so
    /// that a poll right after a cycle reads that cycle.
    ///
    /// [`collect`]: LabSite::collect
    fn wait_served_current(&self) -> Result<()> {
        let want = *self.last_cycle.lock().unwrap_or_else(|e| e.into_inner());
        let what = format!("snmpd to serve dom0's cycle of {want} (dom0's clock) or a later one");
        self.lab.wait_until(&what, Duration::from_secs(60), |seen| {
            let (out, code) = self.run_poller(&["json"])?;
            let served = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|j| lab_dom0(&j)?["cycle_time"].as_i64());
            *seen = format!("poller json exit {code}, cycle_time {served:?}");
            Ok(served.is_some_and(|t| t >= want).then_some(()))
        })
    }

    /// `lab.settled` for a guest of this site, after `after` (which may
    /// include a whole boot of the guest's kernel: `xl create`, `xl
    /// reboot`, under emulation and load up to minutes).
    pub fn settled(&self, g: &LabGuest, after: &str) -> Result<u32> {
        self.lab.settled(g, after, Duration::from_secs(240))
    }

    /// Runs the real poller against the lab (after the served state caught
    /// up with the last cycle): stdout and exit code.
    ///
    /// The poller reads a dom0's state and its figures in two reads; when
    /// a cycle (another scenario's) ended between them, or the figures'
    /// read timed out on the emulated dom0, it shows no figures and says so
    /// (a warning, "figures unavailable: ..."). The scenarios judge one
    /// cycle's state and figures together, so such a poll is made again,
    /// until one reads both.
    pub fn poll(&self, args: &[&str]) -> Result<(String, i32)> {
        self.wait_served_current()?;
        let what = format!(
            "poller {} reading the state and the figures of one cycle",
            args.join(" ")
        );
        self.lab
            .wait_until(&what, Duration::from_secs(120), |seen| {
                let (out, code) = self.run_poller(args)?;
                // As json and nagios print it, and as raw lines escape it.
                let unavailable = ["figures unavailable", "figures\\sunavailable"];
                if let Some(line) = out
                    .lines()
                    .find(|l| unavailable.iter().any(|m| l.contains(m)))
                {
                    *seen = format!(
                        "exit {code}: {}",
                        line.chars().take(300).collect::<String>()
                    );
                    return Ok(None);
                }
                Ok(Some((out, code)))
            })
    }

    fn run_poller(&self, args: &[&str]) -> Result<(String, i32)> {
        let out = Command::new(crate::bin("poller"))
            .args(args)
            .arg("--config")
            .arg(&self.poller_config)
            .output()
            .context("running the poller")?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        ))
    }

    /// `poller raw`, parsed.
    pub fn raw(&self) -> Result<Vec<xsmon_proto::rawline::RawLine>> {
        let (out, _) = self.poll(&["raw"])?;
        out.lines()
            .map(|l| {
                xsmon_proto::rawline::parse(l)
                    .map_err(|e| anyhow::anyhow!("unreadable raw line {l:?}: {e}"))
            })
            .collect()
    }

    /// `poller json`'s entry for one guest of the lab dom0.
    pub fn guest_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let (out, _) = self.poll(&["json"])?;
        let j: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("poller json: {out}"))?;
        Ok(lab_dom0(&j)
            .and_then(|d| d["guests"].as_array())
            .and_then(|guests| guests.iter().find(|g| g["name"] == name))
            .cloned())
    }
}

/// The lab dom0's entry in `poller json`.
fn lab_dom0(json: &serde_json::Value) -> Option<&serde_json::Value> {
    json["dom0s"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == LAB_DOM0)
}

impl Drop for XenLab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A script's first line, for messages.
fn brief(script: &str) -> String {
    let first = script.lines().next().unwrap_or("");
    let mut s: String = first.chars().take(120).collect();
    if s.len() < script.len() {
        s.push_str(" ...");
    }
    s
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The least time between the starts of two cycles asked with
/// [`LabSite::collect`]: snmpd serves an extend's output for 5 s anyway.
const CYCLE_SPACING: Duration = Duration::from_secs(5);

/// What a lab agent prints before it runs the script (scripts/xen-lab).
const BEGIN: &str = "__XSMON_BEGIN";

/// Requests to dom0's agents and collector cycles run, in this process:
/// the harness's own load on the emulated dom0 (see [`harness_load`]).
static AGENT_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static CYCLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the harness asked of the labs of this process so far: requests
/// to dom0's agent (each one a shell in dom0) and collector cycles.
pub fn harness_load() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (AGENT_CALLS.load(Relaxed), CYCLES.load(Relaxed))
}

/// One request to a lab agent: the script base64-encoded on one line, then
/// `__XSMON_BEGIN`, everything it prints, and `__XSMON_RC=<code>`.
fn agent_call(port: u16, script: &str, timeout: Duration) -> Result<Exec> {
    // QEMU's user network accepts on the host's side before it connects
    // inside; when dom0's agent is between two connections, the host's
    // connection is closed (or reset) at once, without a byte: the script
    // never ran (its answer would start with `__XSMON_BEGIN`), so it is
    // sent again.
    let mut attempt = 1;
    loop {
        AGENT_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = agent_exchange(port, script, timeout)?;
        let text = String::from_utf8_lossy(&out).into_owned();
        if !text.contains(BEGIN) && attempt < 4 {
            eprintln!(
                "xen lab: dom0's agent did not start {:?} ({} bytes back); again ({attempt})",
                brief(script),
                out.len()
            );
            std::thread::sleep(Duration::from_secs(1));
            attempt += 1;
            continue;
        }
        return parse_agent_output(&text)
            .with_context(|| format!("agent's answer to {:?}: {text:?}", brief(script)));
    }
}

/// One connection to dom0's agent: the script out, the answer back.
fn agent_exchange(port: u16, script: &str, timeout: Duration) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
        .with_context(|| format!("connecting to the lab's agent on 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{}\n", base64(script.as_bytes())).as_bytes())?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // Reset before a byte came back: as a close without an answer.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && out.is_empty() => Ok(out),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("reading the agent's answer to {:?}", brief(script)))),
    }
}

fn parse_agent_output(text: &str) -> Result<Exec> {
    // What the agent printed before the script is not the script's.
    let text = match text.find(BEGIN) {
        Some(at) => text[at + BEGIN.len()..]
            .strip_prefix('\n')
            .unwrap_or(&text[at + BEGIN.len()..]),
        None => bail!("the agent did not start the script"),
    };
    let marker = "__XSMON_RC=";
    let at = text
        .rfind(marker)
        .context("no exit code in the answer (cut off?)")?;
    // The code's own line; what follows it is the relay's noise (a
    // relay whose connection a save or a migration left hanging is killed
    // by `timeout` after the whole answer came: "Terminated").
    let rc = text[at + marker.len()..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse::<i32>()
        .context("unreadable exit code")?;
    Ok(Exec {
        out: text[..at].to_string(),
        rc,
    })
}

/// Standard base64 (busybox `base64 -d` reads it).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (what busybox `base64` prints), ignoring line
/// breaks; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"xl list\n"), "eGwgbGlzdAo=");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"\x89PNG\r\n\x1a\n\x00\xff"] {
            assert_eq!(base64_decode(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(
            base64_decode("Zm9v\nYmFy\n").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn agent_output_carries_the_exit_code() {
        let e = parse_agent_output("__XSMON_BEGIN\na\nb\n__XSMON_RC=3\n").unwrap();
        assert_eq!((e.out.as_str(), e.rc), ("a\nb\n", 3));
        // A guest's answer relayed by dom0's agent: the guest's own code.
        let relayed =
            parse_agent_output("__XSMON_BEGIN\n__XSMON_BEGIN\nup\n__XSMON_RC=0\n__XSMON_RC=0\n")
                .unwrap();
        let inner = parse_agent_output(&relayed.out).unwrap();
        assert_eq!((inner.out.as_str(), inner.rc), ("up\n", 0));
        // Started, then cut off; never started.
        assert!(parse_agent_output("__XSMON_BEGIN\ncut").is_err());
        assert!(parse_agent_output("").is_err());
        assert!(parse_agent_output("nc: can't connect").is_err());
    }
}
