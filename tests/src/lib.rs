//! The test harness: real daemons for xsmon's integration tests and demo.
//!
//! [`Xenstored`] runs Xen's own oxenstored (via `scripts/xenstored-run`) and
//! [`Snmpd`] runs Debian's net-snmp snmpd (via `scripts/snmpd-run`), each in a
//! private directory under `target/xsmon-harness/`. A daemon is started when
//! a test asks for it, is waited for until it answers (never a fixed sleep),
//! and is stopped by its pid when the handle drops, also when the test
//! panics. A run that was killed outright leaves pid files behind; the next
//! run finds those daemons by pid file (checked against the instance
//! directory in their command line, never by process name) and stops them.
//!
//! Every test gets its own daemon, so tests run in parallel safely.
//! If a daemon cannot start, the error carries its own log: tests fail, they
//! never skip.

use std::fs;
use std::io::Read as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub mod cluster;
pub mod dom0;
pub mod nagios;
pub mod netns;
pub use netns::Netns;

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the workspace's binaries were built (`target/debug` in tests).
pub fn bin_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("exe dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// A workspace binary, built by `cargo build --workspace` before the tests.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` before the tests (scripts/test does)",
        p.display()
    );
    p
}

fn harness_root() -> PathBuf {
    repo_root().join("target").join("xsmon-harness")
}

/// A fresh private directory for one daemon instance, marked with the pid
/// of the process that owns it.
fn instance_dir(kind: &str) -> Result<PathBuf> {
    static ONCE: Once = Once::new();
    ONCE.call_once(reap_leftovers);
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = harness_root().join(format!("{kind}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("owner"), std::process::id().to_string())?;
    Ok(dir)
}

/// Stops daemons left behind by earlier runs whose owning process is gone.
fn reap_leftovers() {
    let Ok(entries) = fs::read_dir(harness_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let owner_alive = owner.is_some_and(|pid| kill(Pid::from_raw(pid), None).is_ok());
        if owner_alive {
            continue;
        }
        if let Some(pid) = fs::read_to_string(dir.join("daemon.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            if pid_runs_in(pid, &dir) {
                eprintln!(
                    "harness: stopping leftover daemon {pid} of {}",
                    dir.display()
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Is `pid` still the daemon started for `dir` (and not a recycled pid)?
fn pid_runs_in(pid: i32, dir: &Path) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            let needle = dir.as_os_str().as_encoded_bytes();
            cmd.windows(needle.len()).any(|w| w == needle)
        })
        .unwrap_or(false)
}

/// Spawns `cmd` so that it is killed when this process ends, however it
/// ends. The kernel's parent-death signal fires when the spawning *thread*
/// exits, so every daemon is spawned from one thread that lives as long as
/// the process (a test thread may build a site that later tests share).
fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;
    type Job = (Command, Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<Sender<Job>>> = std::sync::OnceLock::new();
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the harness's spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// A daemon process owned by a test.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, dir: PathBuf, log: PathBuf, mut cmd: Command) -> Result<Daemon> {
        let out = fs::File::create(dir.join("stdout.log"))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = spawn_tied_to_process(cmd).with_context(|| format!("spawning {name}"))?;
        fs::write(dir.join("daemon.pid"), child.id().to_string())?;
        Ok(Daemon {
            name,
            child: Some(child),
            dir,
            log,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The daemon's logs, for error messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in [self.dir.join("stdout.log"), self.log.clone()] {
            if let Ok(mut file) = fs::File::open(&f) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let tail: String = text
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                s.push_str(&format!("--- {} ---\n{tail}\n", f.display()));
            }
        }
        s
    }

    /// Fails with the logs if the daemon has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status})\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
        Ok(())
    }

    /// Polls `ready` until it succeeds, the daemon dies, or 15 s pass.
    fn wait_until(&mut self, mut ready: impl FnMut() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.check_alive()?;
            match ready() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "{} did not answer within 15 s: {e:#}\n{}",
                        self.name,
                        self.logs()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn stop(&mut self, signal: Signal) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM);
        if !std::thread::panicking() && std::env::var_os("XSMON_KEEP_HARNESS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

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

/// The SNMPv2c community the harness configures.
pub const COMMUNITY: &str = "xsmon-test";

/// A running snmpd on a loopback UDP port.
pub struct Snmpd {
    daemon: Daemon,
    port: u16,
    host: String,
}

impl Snmpd {
    /// Starts snmpd on 127.0.0.1 with a read-only community and the given
    /// extra config lines (e.g. `extend` lines), and waits until it answers.
    pub fn start(extra_conf: &str) -> Result<Snmpd> {
        Snmpd::start_on("127.0.0.1", None, extra_conf)
    }

    /// As [`Snmpd::start`], on `host`, optionally inside network namespace
    /// `netns`.
    pub fn start_on(host: &str, netns: Option<&str>, extra_conf: &str) -> Result<Snmpd> {
        let dir = instance_dir("snmpd")?;
        let port = free_udp_port(host)?;
        let conf = dir.join("snmpd.conf");
        fs::write(
            &conf,
            format!(
                "# written by the xsmon test harness\n\
                 rocommunity {COMMUNITY} default\n\
                 dontLogTCPWrappersConnects yes\n\
                 {extra_conf}\n"
            ),
        )?;
        let script = repo_root().join("scripts/snmpd-run");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&script);
                c
            }
            None => Command::new(&script),
        };
        cmd.arg(&dir).arg(&conf).arg(format!("udp:{host}:{port}"));
        let log = dir.join("snmpd.log");
        let daemon = Daemon::spawn("snmpd", dir, log, cmd)?;
        let mut snmpd = Snmpd {
            daemon,
            port,
            host: host.to_string(),
        };
        let target = snmpd.target();
        let netns = netns.map(str::to_string);
        snmpd.daemon.wait_until(|| {
            // sysUpTime.0 answers as soon as the agent is up.
            snmp_command(
                "snmpget",
                netns.as_deref(),
                &target,
                &[".1.3.6.1.2.1.1.3.0"],
            )
            .map(drop)
        })?;
        Ok(snmpd)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts one snmpd listening on many loopback ports at once (for
    /// benches that need hundreds of endpoints).
    pub fn start_multi(ports: &[u16], extra_conf: &str) -> Result<Snmpd> {
        let dir = instance_dir("snmpd")?;
        let conf = dir.join("snmpd.conf");
        fs::write(
            &conf,
            format!(
                "rocommunity {COMMUNITY} default\ndontLogTCPWrappersConnects yes\n{extra_conf}\n"
            ),
        )?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("udp:127.0.0.1:{p}")).collect();
        let mut cmd = Command::new(repo_root().join("scripts/snmpd-run"));
        cmd.arg(&dir).arg(&conf).arg(addrs.join(","));
        let log = dir.join("snmpd.log");
        let daemon = Daemon::spawn("snmpd", dir, log, cmd)?;
        let mut snmpd = Snmpd {
            daemon,
            port: ports[0],
            host: "127.0.0.1".into(),
        };
        let target = snmpd.target();
        snmpd.daemon.wait_until(|| {
            snmp_command("snmpget", None, &target, &[".1.3.6.1.2.1.1.3.0"]).map(drop)
        })?;
        Ok(snmpd)
    }

    /// `host:port`, as snmpget and the poller take it.
    pub fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Walks `oid` with snmpwalk (numeric OIDs), returning its output lines.
    pub fn walk(&self, oid: &str) -> Result<String> {
        snmp_command("snmpwalk", None, &self.target(), &[oid])
    }

    /// Gets `oids` with snmpget (numeric OIDs).
    pub fn get(&self, oids: &[&str]) -> Result<String> {
        snmp_command("snmpget", None, &self.target(), oids)
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub fn logs(&self) -> String {
        self.daemon.logs()
    }
}

/// Runs a net-snmp client tool with the harness's community and numeric
/// output, optionally inside a network namespace.
pub fn snmp_command(
    tool: &str,
    netns: Option<&str>,
    target: &str,
    args: &[&str],
) -> Result<String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, tool]);
            c
        }
        None => Command::new(tool),
    };
    cmd.env("MIBS", "")
        .args([
            "-v2c",
            "-c",
            COMMUNITY,
            "-On",
            "-t",
            "1",
            "-r",
            "1",
            "-m",
            "",
            "-M",
            "/nonexistent",
        ])
        .arg(target)
        .args(args);
    let out = cmd.output().with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {target} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A UDP port free on `host` right now. snmpd binds it a moment later; a
/// collision would show as a start-up failure with snmpd's log.
fn free_udp_port(host: &str) -> Result<u16> {
    if host != "127.0.0.1" {
        // Inside a namespace of the test's own, any port is free.
        static NEXT: AtomicU32 = AtomicU32::new(16100);
        return Ok(NEXT.fetch_add(1, Ordering::Relaxed) as u16);
    }
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    Ok(sock.local_addr()?.port())
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

/// A guest root for `guest-probe --root`: a copy of one fixture sample
/// (`tests/fixtures/probe/<fixture>/<sample>`) with a routing table whose
/// gateways are `gateways` (so no test ever pings a real gateway).
pub fn probe_root(fixture: &str, sample: &str, gateways: &[&str]) -> Result<tempfile::TempDir> {
    let src = repo_root()
        .join("tests/fixtures/probe")
        .join(fixture)
        .join(sample);
    let dir = tempfile::Builder::new().prefix("xsmon-root-").tempdir()?;
    copy_tree(&src, dir.path())?;
    write_routes(dir.path(), gateways)?;
    Ok(dir)
}

/// Rewrites `<root>/proc/net/route` with one gateway route per address.
pub fn write_routes(root: &Path, gateways: &[&str]) -> Result<()> {
    let mut text = String::from(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
    );
    for (i, gw) in gateways.iter().enumerate() {
        let ip: std::net::Ipv4Addr = gw.parse().with_context(|| format!("gateway {gw}"))?;
        let hex = u32::from_ne_bytes(ip.octets());
        // The first is the default route; others are network routes.
        let dest = if i == 0 {
            0
        } else {
            u32::from_ne_bytes([10, 100, i as u8, 0])
        };
        let mask = if i == 0 {
            0
        } else {
            u32::from_ne_bytes([255, 255, 255, 0])
        };
        text.push_str(&format!(
            "eth{i}\t{dest:08X}\t{hex:08X}\t0003\t0\t0\t0\t{mask:08X}\t0\t0\t0\n"
        ));
    }
    fs::create_dir_all(root.join("proc/net"))?;
    fs::write(root.join("proc/net/route"), text)?;
    Ok(())
}

/// Copies a directory tree (files and directories only).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
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

fn write_pairs(
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
    }
}

/// The OID of net-snmp's NET-SNMP-EXTEND-MIB::nsExtendObjects.
pub const NS_EXTEND: &str = ".1.3.6.1.4.1.8072.1.3.2";

/// The index suffix of an extend name in the NET-SNMP-EXTEND-MIB tables:
/// its length, then its bytes.
pub fn extend_index(name: &str) -> String {
    let mut s = format!(".{}", name.len());
    for b in name.bytes() {
        s.push_str(&format!(".{b}"));
    }
    s
}

/// Parses snmpget/snmpwalk output (`-On`) into (OID, value) pairs. String
/// values are unquoted with net-snmp's display escapes (`\"`, `\\`) undone,
/// and may span lines (nsExtendOutputFull); other values are kept as shown
/// (`INTEGER: 0`).
pub fn parse_snmp_output(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find(" = ") {
        let oid = rest[..eq].trim().to_string();
        let after = &rest[eq + 3..];
        if let Some(body) = after.strip_prefix("STRING: \"") {
            let mut value = String::new();
            let mut chars = body.char_indices();
            let mut end = body.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            out.push((oid, value));
            rest = body[end..].trim_start_matches(['\r', '\n']);
        } else {
            let line_end = after.find('\n').unwrap_or(after.len());
            let v = after[..line_end].trim();
            let v = v.strip_prefix("STRING: ").unwrap_or(v);
            out.push((oid, v.to_string()));
            rest = after[line_end..].trim_start_matches('\n');
        }
    }
    out
}

/// What GNU time (`/usr/bin/time`) measured of one command: wall seconds,
/// CPU seconds (user + system) and peak RSS in KiB. Measured by a separate
/// small process, so the peak RSS is the command's own, not inherited from
/// a large parent at fork.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_kib: u64,
    pub success: bool,
}

pub fn measure(program: &Path, args: &[&str]) -> Result<Measured> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "XSMON-TIME %e %U %S %M"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .context("running /usr/bin/time (Debian package `time`)")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("XSMON-TIME "))
        .with_context(|| format!("no figures from /usr/bin/time: {err}"))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() != 4 {
        bail!("unexpected /usr/bin/time output {line:?}");
    }
    Ok(Measured {
        wall_s: f[0],
        cpu_s: f[1] + f[2],
        max_rss_kib: f[3] as u64,
        success: out.status.success(),
    })
}

/// The collector's default retention (7 days raw, 90 hourly, 2 years daily).
pub const DEFAULT_KEEP: xsmon_store::Keep = xsmon_store::Keep {
    raw_secs: 7 * 86400,
    hourly_secs: 90 * 86400,
    daily_secs: 730 * 86400,
};

/// Judges `guests` as the collector does and stores the cycle at time `t`
/// with the default retention (for benches that fill a database without
/// xenstore). Returns how long the database write alone took.
pub fn store_cycle(
    conn: &mut rusqlite::Connection,
    guests: &[host_collector::gather::Guest],
    t: i64,
) -> Result<std::time::Duration> {
    let cluster = xsmon_proto::cluster::Cluster::default();
    let scene = host_collector::collect::Scene {
        dom0: "bench",
        cluster: &cluster,
        expect_stopped: &[],
        now: t,
        rules: host_collector::freshness::Rules {
            stale_after: 600,
            skew_max: 600,
        },
    };
    let known = xsmon_store::hosts(conn)?;
    let hosts = host_collector::collect::judge_all(
        &known,
        guests,
        &host_collector::hostfig::HostFigures::default(),
        &scene,
    );
    let rec = xsmon_store::CycleRecord {
        time: t,
        duration_ms: 0,
        dom0: "bench".into(),
        error: None,
        hosts,
    };
    let start = Instant::now();
    xsmon_store::write_cycle(conn, &rec, DEFAULT_KEEP)?;
    Ok(start.elapsed())
}
