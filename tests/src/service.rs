//! The poller as a service (`poller serve`) and a real Prometheus server,
//! each a daemon of the harness; and a plain HTTP GET for their endpoints.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::bin;
use crate::daemon::{instance_dir, Daemon};

/// A free TCP port on 127.0.0.1 (bound, then let go, for a daemon to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` on 127.0.0.1:port: (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Percent-encodes a query parameter.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `ready` every 100 ms until it returns `Some`, or fails at
/// `within` with what it last said.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let last = match ready() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("not yet"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not within {} s (last: {last})", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `poller serve --config CONFIG`, owned by the test.
pub struct PollerService {
    daemon: Daemon,
    dir: PathBuf,
}

impl PollerService {
    pub fn start(config: &Path) -> Result<PollerService> {
        let dir = instance_dir("poller-serve")?;
        let mut cmd = Command::new(bin("poller"));
        cmd.arg("serve").arg("--config").arg(config).arg("-v");
        let daemon = Daemon::spawn("poller serve", dir.clone(), dir.join("stdout.log"), cmd)?;
        Ok(PollerService { daemon, dir })
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid().context("poller serve has stopped")?;
        kill(Pid::from_raw(pid as i32), signal)?;
        Ok(())
    }

    /// Its log (stderr and stdout).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.daemon.stop_and_wait(Signal::SIGTERM)
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.check_alive().is_ok()
    }
}

/// Debian's Prometheus server on a local port, scraping what the test
/// says, with the rule files it gives.
pub struct Prometheus {
    daemon: Daemon,
    pub port: u16,
}

impl Prometheus {
    /// `scrape`: host:port of a /metrics endpoint; `rules`: rule files.
    pub fn start(scrape: &str, rules: &[PathBuf]) -> Result<Prometheus> {
        let dir = instance_dir("prometheus")?;
        let port = free_port()?;
        let rule_list: Vec<String> = rules
            .iter()
            .map(|r| format!("  - {}", r.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\nscrape_configs:\n  - job_name: xsmon\n    static_configs:\n      - targets: ['{scrape}']\n",
            rule_list.join("\n")
        );
        let config_path = dir.join("prometheus.yml");
        crate::write_private(&config_path, config)?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut daemon = Daemon::spawn("prometheus", dir.clone(), dir.join("stdout.log"), cmd)
            .context("starting prometheus (Debian package prometheus)")?;
        daemon.wait_until(|| match http_get(port, "/-/ready")? {
            (200, _) => Ok(()),
            (s, b) => bail!("{s} {b}"),
        })?;
        Ok(Prometheus { daemon, port })
    }

    /// An API call's JSON `data`, failing on an error status.
    pub fn api(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let (status, body) = http_get(self.port, path_and_query)?;
        let v: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{status}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            bail!("{path_and_query}: {status} {body}");
        }
        Ok(v["data"].clone())
    }

    pub fn logs(&self) -> String {
        self.daemon.logs()
    }
}
