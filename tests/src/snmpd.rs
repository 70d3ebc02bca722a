//! Debian's real net-snmp snmpd on a loopback port or in a namespace
//! (`scripts/snmpd-run`), the client tools with the harness's community,
//! and the NET-SNMP-EXTEND-MIB's OIDs and output.

use std::fs;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use crate::daemon::{instance_dir, Daemon};
use crate::repo_root;

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
