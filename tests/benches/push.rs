//! `poller serve`'s push to a real Nagios 4 at the scale of a large site:
//! 1,000 real snmpd endpoints, each serving a real collector database of
//! 100 guests of their own names (100,000 guests, one in ten in
//! error), the objects `poller nagios-objects` generates loaded into
//! Debian's Nagios 4 (`nagios4 -v` timed), then one cycle of the service
//! pushing every result through Nagios's command file: the time of the
//! push, and the time until Nagios's own status file holds every guest's
//! service with the state pushed (Nagios rewrites it every second here).
//! Then the same results written into Nagios's check result spool (its
//! other way in for passive results), timed the same way, to compare.
//!
//!     cargo build --release --workspace && cargo bench -p xsmon-tests --bench push
//!
//! XSMON_BENCH_GUESTS changes the number of guests (default 100000, in
//! dom0s of 100). Prints figures; asserts nothing about speed.

use std::path::Path;
use std::time::{Duration, Instant};

use host_collector::gather::{Found, Guest};
use xsmon_proto::Status;
use xsmon_store as db;
use xsmon_tests::nagios::{Nagios, Status as Held};
use xsmon_tests::{bin_dir, sample_run, store_cycle_of, Snmpd, COMMUNITY};

/// Guests per dom0: snmpd keeps at most 100 KiB of an extend's output
/// (net-snmp's extend.c), and the figures of a guest take about 500 bytes:
/// the figures of a dom0 of 1,000 guests come cut (the poller then says
/// "figures unavailable", a warning of that dom0). 100 per dom0 fit.
const PER_DOM0: usize = 100;

fn main() {
    let poller = bin_dir().join("poller");
    let extend = bin_dir().join("snmp-extend");
    assert!(
        poller.exists() && extend.exists(),
        "build first: cargo build --release --workspace"
    );
    let guests: usize = std::env::var("XSMON_BENCH_GUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let n_dom0s = guests.div_ceil(PER_DOM0);
    let dir = tempfile::tempdir().unwrap();
    let now = xsmon_cli_now();
    let ports: Vec<u16> = (12_000u16..32_000)
        .filter(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .take(n_dom0s)
        .collect();
    let t = Instant::now();
    // Each snmpd takes about a second to answer: started 25 at a time.
    let dom0s: Vec<usize> = (0..n_dom0s).collect();
    let _agents: Vec<Snmpd> = std::thread::scope(|s| {
        let handles: Vec<_> = dom0s
            .chunks(n_dom0s.div_ceil(25).max(1))
            .map(|chunk| {
                let (dir, ports, extend) = (dir.path(), &ports, &extend);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&d| {
                            let dbp = dir.join(format!("p{d:04}.db"));
                            fill_store(&dbp, d, now);
                            Snmpd::start_multi(&[ports[d]], &extend_conf(extend, &dbp)).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!(
        "  ({n_dom0s} dom0s of {PER_DOM0} guests stored and served in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let hosts: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(d, p)| format!("\"p{d:04}=127.0.0.1:{p}\""))
        .collect();
    let base = format!(
        "hosts = [{}]\n[snmp]\ncommunity = \"{COMMUNITY}\"\ntimeout_ms = 5000\nretries = 1\n",
        hosts.join(", ")
    );
    let live = dir.path().join("live.toml");
    xsmon_tests::write_private(&live, &base).unwrap();

    // The objects, generated and checked.
    let t = Instant::now();
    let generated = std::process::Command::new(&poller)
        .args(["nagios-objects", "--live", "--config"])
        .arg(&live)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let gen_s = t.elapsed().as_secs_f64();
    let objects = dir.path().join("xsmon-objects.cfg");
    std::fs::write(&objects, &generated.stdout).unwrap();
    let nagios = Nagios::new(&[&objects]).unwrap();
    let t = Instant::now();
    let verified = nagios.verify().unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    assert!(
        verified.status.success(),
        "nagios4 -v: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let t = Instant::now();
    let running = nagios.start_within(Duration::from_secs(900)).unwrap();
    let start_s = t.elapsed().as_secs_f64();
    println!(
        "push to nagios: objects for {n_dom0s} dom0s and {guests} guests ({:.1} MB) generated in {gen_s:.1} s, `nagios4 -v` {verify_s:.1} s, Nagios's command file up {start_s:.1} s after its start",
        generated.stdout.len() as f64 / 1e6
    );

    // One cycle of the service, pushing through the command file.
    let config = dir.path().join("serve.toml");
    xsmon_tests::write_private(
        &config,
        format!(
            "{base}[service]\ninterval_secs = 3600\nstate = \"{}\"\n[push]\nnagios_command_file = \"{}\"\n",
            dir.path().join("poller.db").display(),
            running.command_file().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let began = Instant::now();
    let began_unix = xsmon_cli_now();
    let mut service = std::process::Command::new(&poller)
        .args(["serve", "-v", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pushed = wait("the push", Duration::from_secs(600), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("pushed to Nagios"))
            .map(|l| (l.to_string(), began.elapsed().as_secs_f64()))
    });
    let (held_s, wrong) = all_held(&running, guests, began_unix, began);
    let rss_kib = peak_rss(service.id());
    let _ = service.kill();
    let _ = service.wait();
    let cycle_ms = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("site polled"))
        .and_then(|l| l.rsplit("ms=").next()?.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "push to nagios, {guests} services: {} results written into the command file in {} ms (the service's cycle: {cycle_ms:.0} ms with the poll, the state and the push; peak RSS {:.0} MiB); Nagios's status file held every guest's service in its pushed state {held_s:.1} s after the cycle began ({wrong} wrong)",
        field(&pushed.0, "results="),
        field(&pushed.0, "ms="),
        rss_kib as f64 / 1024.0
    );
    dom0_cost(&poller, &_agents[0], dir.path(), ports[0]);
}

/// What a short interval costs a dom0: its snmpd's CPU and that of the
/// snmp-extend runs it starts (its own and its children's, from
/// /proc/PID/stat), over a minute of `poller serve` polling it every 2 s.
fn dom0_cost(poller: &Path, snmpd: &Snmpd, dir: &Path, port: u16) {
    let pid = snmpd.pid().expect("the dom0's snmpd runs");
    let cpu_s = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<f64> = after.split(' ').map(|v| v.parse().unwrap_or(0.0)).collect();
        // utime, stime, cutime, cstime: fields 14 to 17, in clock ticks.
        (f[11] + f[12] + f[13] + f[14]) / 100.0
    };
    let config = dir.join("one.toml");
    xsmon_tests::write_private(
        &config,
        format!(
            "hosts = [\"one=127.0.0.1:{port}\"]\n[snmp]\ncommunity = \"{COMMUNITY}\"\ntimeout_ms = 5000\nretries = 1\n[service]\ninterval_secs = 2\nstate = \"{}\"\n",
            dir.join("one.db").display()
        ),
    )
    .unwrap();
    let before = cpu_s();
    let t = Instant::now();
    let mut service = std::process::Command::new(poller)
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
    let _ = service.kill();
    let _ = service.wait();
    let used = cpu_s() - before;
    println!(
        "dom0's cost of poller serve every 2 s: snmpd and its snmp-extend runs used {:.2} s of CPU in {:.0} s (a dom0 of {PER_DOM0} guests; snmpd runs each extend at most every 5 s, its cache)",
        used,
        t.elapsed().as_secs_f64()
    );
}

fn xsmon_cli_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn wait<T>(what: &str, within: Duration, mut look: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = look() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until Nagios's status file holds every guest's `xsmon` service
/// with a result taken at `since` or later; the seconds from `began`, and
/// how many are not in the state pushed (CRITICAL for the error guests,
/// OK for the others).
fn all_held(
    running: &xsmon_tests::nagios::Running,
    guests: usize,
    since: i64,
    began: Instant,
) -> (f64, usize) {
    wait(
        "every service in Nagios's status file",
        Duration::from_secs(900),
        || {
            let status: Vec<Held> = running
                .status()
                .into_iter()
                .filter(|s| s.service == "xsmon" && s.host.starts_with('p') && s.host.contains('g'))
                .collect();
            let fresh = status.iter().filter(|s| s.last_check >= since).count();
            (fresh >= guests).then(|| {
                let wrong: Vec<&Held> = status
                    .iter()
                    .filter(|s| s.state != if s.host.ends_with('0') { 2 } else { 0 })
                    .collect();
                if let Some(w) = wrong.first() {
                    eprintln!("  (a service not in the state pushed: {w:?})");
                }
                let wrong = wrong.len();
                (began.elapsed().as_secs_f64(), wrong)
            })
        },
    )
}

fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn guest_name(d: usize, i: usize) -> String {
    format!("p{d:04}g{i:03}")
}

/// A collector database of `PER_DOM0` guests of dom0 `d`, those whose
/// name ends in 0 in error.
fn fill_store(path: &Path, d: usize, now: i64) {
    let mut conn = db::open_rw(path).unwrap();
    let guests: Vec<Guest> = (0..PER_DOM0)
        .map(|i| {
            let name = guest_name(d, i);
            let status = if name.ends_with('0') {
                Status::Error
            } else {
                Status::Ok
            };
            Guest {
                found: Found::Run {
                    run: sample_run(now, 2, status),
                    legacy: false,
                },
                ..Guest::named(i as u32 + 1, &name)
            }
        })
        .collect();
    store_cycle_of(
        &format!("p{d:04}"),
        &mut conn,
        &guests,
        &Default::default(),
        now,
    )
    .unwrap();
}

fn extend_conf(extend: &Path, db: &Path) -> String {
    format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {}\nextend xsmonFigures {} figures --db {} --max-age 999999999\n",
        extend.display(),
        db.display(),
        extend.display(),
        db.display()
    )
}
