//! Network: can the guest reach its gateways? Gateways come from the
//! config, the routing table, and optionally the 2010 MAC convention
//! (MAC = 00:16 + the NIC's IPv4 address in hex; the gateway is the one a
//! configured rule gives for that address's network). All are pinged at
//! once.

use std::net::Ipv4Addr;
use std::time::Duration;

use xsmon_proto::{CheckResult, Status};

use crate::config::NetConfig;
use crate::ping::{ping_all, PingStats};
use xsmon_checks::Sys;

/// At most this many gateways are pinged.
pub const MAX_GATEWAYS: usize = 16;
const RTF_GATEWAY: u16 = 0x2;

/// The gateways to ping, without duplicates, config first. Problems reading
/// the sources are returned beside them.
pub fn gateways(sys: &Sys, cfg: &NetConfig) -> (Vec<Ipv4Addr>, Vec<String>) {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    let mut problems = Vec::new();
    let add = |ip: Ipv4Addr, out: &mut Vec<Ipv4Addr>| {
        if !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    };
    for ip in &cfg.gateways {
        add(*ip, &mut out);
    }
    if cfg.from_routes {
        match sys.routes() {
            Ok(routes) => {
                for r in routes.0.iter().filter(|r| r.flags & RTF_GATEWAY != 0) {
                    add(r.gateway, &mut out);
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !cfg.mac_rules.is_empty() {
        match mac_convention_gateways(sys, cfg) {
            Ok(gws) => gws.into_iter().for_each(|g| add(g, &mut out)),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    out.truncate(MAX_GATEWAYS);
    (out, problems)
}

/// The IPv4 address a MAC encodes under the convention, if it follows it.
pub fn ip_from_mac(mac: &str) -> Option<Ipv4Addr> {
    let bytes: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    (bytes.len() == 6 && bytes[0] == 0x00 && bytes[1] == 0x16)
        .then(|| Ipv4Addr::new(bytes[2], bytes[3], bytes[4], bytes[5]))
}

fn mac_convention_gateways(sys: &Sys, cfg: &NetConfig) -> anyhow::Result<Vec<Ipv4Addr>> {
    let dir = sys.path("sys/class/net");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Ok(mac) = sys.read_string(&format!("sys/class/net/{name}/address")) else {
            continue;
        };
        let Some(ip) = ip_from_mac(&mac) else {
            continue;
        };
        for rule in &cfg.mac_rules {
            if rule.contains(ip)? {
                out.push(rule.gateway);
                break;
            }
        }
    }
    Ok(out)
}

/// Echoes sent to wait for the link after a resume, one round at a time,
/// before the measured ones: at most this many rounds.
const SETTLE_ROUNDS: u32 = 3;

/// Pings every gateway and grades each. After a resume (`resumed`: a save
/// and restore, a migration, during this run or since the last), the
/// guest's vif has just reconnected to its backend and its bridge, and
/// the first echoes may be lost there (seen on the lab's Xen 4.20: a run
/// measured again right after a restore read 2 of 3 replies as 33% loss):
/// it first waits, unmeasured, for one reply from each gateway, up to
/// [`SETTLE_ROUNDS`] rounds of one echo, then measures as always. A
/// gateway that never answers costs those rounds and is still graded
/// unreachable.
pub fn checks(sys: &Sys, cfg: &NetConfig, resumed: bool) -> Vec<CheckResult> {
    let (gws, problems) = gateways(sys, cfg);
    if gws.is_empty() {
        let why = if problems.is_empty() {
            "no gateway found (no default route, none configured)".to_string()
        } else {
            problems.join("; ")
        };
        return vec![CheckResult::unknown("net0", "net", "", why)];
    }
    let timeout = Duration::from_millis(cfg.timeout_ms);
    if resumed {
        wait_for_replies(&gws, timeout);
    }
    let stats = ping_all(&gws, cfg.count, timeout);
    for s in stats.iter().filter(|s| s.received < s.sent) {
        tracing::info!(
            gateway = %s.target,
            sent = s.sent,
            received = s.received,
            unanswered = ?s.unanswered,
            error = ?s.error,
            resumed,
            "echoes without a reply"
        );
    }
    stats
        .iter()
        .enumerate()
        .map(|(i, s)| grade_ping(format!("net{i}"), s, cfg))
        .collect()
}

/// Up to [`SETTLE_ROUNDS`] rounds of one echo to the gateways that have
/// not answered yet, until each has.
fn wait_for_replies(gws: &[Ipv4Addr], timeout: Duration) {
    let mut waiting = gws.to_vec();
    for round in 1..=SETTLE_ROUNDS {
        let answered: Vec<Ipv4Addr> = ping_all(&waiting, 1, timeout)
            .into_iter()
            .filter(|s| s.received > 0)
            .map(|s| s.target)
            .collect();
        waiting.retain(|g| !answered.contains(g));
        if waiting.is_empty() {
            tracing::info!(round, "after the resume, every gateway answered");
            return;
        }
    }
    tracing::info!(
        ?waiting,
        "after the resume, no reply yet from these gateways"
    );
}

fn grade_ping(id: String, s: &PingStats, cfg: &NetConfig) -> CheckResult {
    let target = s.target.to_string();
    if s.not_permitted {
        return CheckResult::unknown(
            id,
            "net",
            target,
            s.error.as_deref().unwrap_or("ICMP not permitted"),
        );
    }
    let mut r = CheckResult::new(id, "net", target.clone());
    let loss = s.loss_pct();
    r.value("loss_pct", loss).value("sent", f64::from(s.sent));
    match s.avg_rtt() {
        Some(rtt) => {
            let ms = rtt.as_secs_f64() * 1000.0;
            r.value("rtt_ms", ms);
            r.status = cfg
                .loss_pct
                .judge(&mut r, "loss_pct", loss)
                .worst(cfg.rtt_ms.judge(&mut r, "rtt_ms", ms));
            r.message = format!(
                "gateway {target}: {}/{} replies, {loss:.0}% loss, rtt {ms:.1} ms",
                s.received, s.sent
            );
        }
        None => {
            r.limit(
                "loss_pct",
                Some(cfg.loss_pct.warning),
                Some(cfg.loss_pct.error),
            );
            r.status = Status::Error;
            r.message = format!(
                "gateway {target} unreachable: {}/{} replies",
                s.received, s.sent
            );
            if let Some(e) = &s.error {
                r.message.push_str(&format!(" ({e})"));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_convention() {
        assert_eq!(
            ip_from_mac("00:16:ac:13:0a:05\n"),
            Some(Ipv4Addr::new(172, 19, 10, 5))
        );
        assert_eq!(ip_from_mac("52:54:00:12:34:56"), None);
        assert_eq!(ip_from_mac("00:16:zz:13:0a:05"), None);
        assert_eq!(ip_from_mac("00:16:ac"), None);
    }
}
