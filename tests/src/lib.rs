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
//!
//! One module per daemon or machine the harness drives: [`daemon`] (what
//! every daemon shares), [`xenstored`], [`snmpd`], [`nagios`], [`netns`]
//! (network namespaces), [`service`] (the poller's service, a Prometheus
//! server), [`dom0`] (one simulated dom0), [`cluster`] (a
//! simulated site), [`xenlab`] (Debian's real Xen under QEMU).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub mod cluster;
pub mod daemon;
pub mod dom0;
pub mod icinga2;
pub mod nagios;
pub mod netns;
pub mod service;
pub mod snmpd;
pub mod xenlab;
pub mod xenstored;
pub(crate) use daemon::spawn_tied_to_process;
pub use netns::Netns;
pub use snmpd::*;
pub use xenstored::*;

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
    store_cycle_with(conn, guests, &Default::default(), t)
}

/// [`store_cycle`] with the hypervisor's view of the domains (states, CPU
/// time, devices), as `xl list -v` and sysfs would give it.
pub fn store_cycle_with(
    conn: &mut rusqlite::Connection,
    guests: &[host_collector::gather::Guest],
    hv: &host_collector::hypervisor::Hypervisor,
    t: i64,
) -> Result<std::time::Duration> {
    store_cycle_of("bench", conn, guests, hv, t)
}

/// [`store_cycle_with`] by a collector that calls its dom0 `dom0`.
pub fn store_cycle_of(
    dom0: &str,
    conn: &mut rusqlite::Connection,
    guests: &[host_collector::gather::Guest],
    hv: &host_collector::hypervisor::Hypervisor,
    t: i64,
) -> Result<std::time::Duration> {
    let hypervisor = host_collector::config::HypervisorConfig::default();
    let cluster = xsmon_proto::cluster::Cluster::default();
    let scene = host_collector::judge::Scene {
        dom0,
        cluster: &cluster,
        expect_stopped: &[],
        now: t,
        rules: host_collector::freshness::Rules {
            stale_after: 600,
            skew_max: 600,
        },
        hypervisor: &hypervisor,
        without_probe: &Default::default(),
        lifecycle: &Default::default(),
        xl_logs: &Default::default(),
        restarts: &Default::default(),
        former_names: &[],
    };
    let known = xsmon_store::hosts(conn)?;
    let hosts = host_collector::judge::judge_all(&known, guests, hv, &scene);
    let rec = xsmon_store::CycleRecord {
        time: t,
        duration_ms: 0,
        dom0: dom0.into(),
        error: None,
        hosts,
    };
    let start = Instant::now();
    xsmon_store::write_cycle(conn, &rec, DEFAULT_KEEP)?;
    Ok(start.elapsed())
}

/// Writes a file only its owner can read (mode 0600), as a config that
/// holds secrets must be: the poller refuses a community or password in a
/// file others can read.
pub fn write_private(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.as_ref();
    // Replaced, not rewritten in place: an existing file keeps its mode.
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_ref())
}

/// The cargo profile the programs under test were built with ("release"
/// or "debug"), for `scripts/package --profile`.
pub fn build_profile() -> &'static str {
    if bin_dir().ends_with("release") {
        "release"
    } else {
        "debug"
    }
}

/// The files set aside as damaged beside database `db`
/// (`NAME.damaged-*`, without their `-wal` and `-shm`), sorted: what
/// host-collector and the poller service leave of a damaged database.
pub fn set_aside_beside(db: &Path) -> Vec<PathBuf> {
    let dir = db.parent().expect("a database in a directory");
    let prefix = format!(
        "{}.damaged-",
        db.file_name().expect("a database file").to_string_lossy()
    );
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.starts_with(&prefix) && !n.ends_with("-wal") && !n.ends_with("-shm")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `cmd` and returns its output; panics, with that output, unless
/// it ran and succeeded.
pub fn output_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`output_ok`]'s stdout, as text.
pub fn stdout_ok(cmd: &mut std::process::Command) -> String {
    String::from_utf8_lossy(&output_ok(cmd).stdout).into_owned()
}
