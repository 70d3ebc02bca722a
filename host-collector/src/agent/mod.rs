//! Guests that cannot run guest-probe (Windows, the BSDs, appliances):
//! what the standard guest agents already publish in the guest's own
//! xenstore area, read for the guests the configuration names
//! (`[without_probe] guests`, globs). A guest with no probe results that
//! is not listed stays an error, with a hint when an agent writes there.
//!
//! Two schemas are read side by side. XAPI's (what xe-guest-utilities,
//! the Windows PV tools and xen-guest-agent by default write):
//!
//! | key | what |
//! |---|---|
//! | `data/meminfo_total`, `data/meminfo_free` | KiB (`free` is MemAvailable) |
//! | `data/os_name`, `data/os_distro`, `data/os_uname` | free text |
//! | `data/updated` | the agent's last write, in the guest's clock and format |
//! | `attr/vif/<n>/ipv4/0` | a vif's first IPv4 address |
//! | `attr/PVAddons/{Major,Minor,Micro}Version` | the PV tools' version |
//!
//! xen-guest-agent's `rfc` schema (`XENSTORE_SCHEMA=rfc`, the layout its
//! upstream proposes):
//!
//! | key | what |
//! |---|---|
//! | `data/xen-guest-agent` | the agent's version |
//! | `data/os/name`, `data/os/version`, `data/os/unix/kernel-version` | free text |
//! | `data/net/<index>` | the interface's MAC |
//! | `data/net/<index>/ipv4/<a_b_c_d>` | an address, in the key's name |
//!
//! Everything here was written by the guest and is hostile: sizes are
//! bounded, text must be printable, numbers must be plain KiB counts no
//! larger than the domain's maximum, and at most [`MAX_VIFS`] interfaces
//! (and addresses per interface) are read. Whatever breaks a rule is a
//! finding of its own (check `agent`, a warning) and is otherwise
//! ignored; it never costs another guest anything, and never reaches an
//! output unescaped.

mod view;

pub use crate::agent_keys::{AgentKeys, KEYS, MAX_VIFS};
pub use view::{decode, AgentView};

use serde::Deserialize;
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{text, CheckResult, Status, Value};
use xsmon_store::HostRecord;

use crate::gather::Guest;
use crate::glob::glob_match;

/// The check id and kind of what dom0 makes of a guest agent's keys.
pub const CHECK_ID: &str = "agent";
pub const KIND: &str = "agent";

/// Longest agent text kept (an OS name, a kernel release, a date).
pub const MAX_TEXT: usize = 128;

/// `[without_probe]` in collector.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WithoutProbe {
    /// Guests that do not run guest-probe (names; `*` matches any
    /// characters). dom0 reports their hypervisor state and figures and
    /// what their guest agent publishes. A guest not listed here with no
    /// probe results stays an error.
    pub guests: Vec<String>,
    /// Memory in use, of what the guest agent reports (total minus
    /// available), at which such a guest is a warning ...
    pub mem_used_warning_pct: Option<f64>,
    /// ... and an error.
    pub mem_used_error_pct: Option<f64>,
}

impl Default for WithoutProbe {
    fn default() -> Self {
        WithoutProbe {
            guests: Vec::new(),
            mem_used_warning_pct: Some(90.0),
            mem_used_error_pct: Some(98.0),
        }
    }
}

impl WithoutProbe {
    pub fn lists(&self, name: &str) -> bool {
        self.guests.iter().any(|p| glob_match(p, name))
    }
}

/// The record of a running guest listed in `[without_probe]` that has no
/// probe results: what its agent says (or that it says nothing), graded by
/// the memory thresholds. The hypervisor's view is applied after this, as
/// for every guest.
pub fn judge(rec: &mut HostRecord, g: &Guest, cfg: &WithoutProbe) {
    let view = g
        .agent
        .as_ref()
        .map(|k| decode(k, g.mem_max_kib))
        .unwrap_or_default();
    if view.is_empty() && view.problems.is_empty() {
        rec.probe = "none";
        rec.status = Status::Ok;
        rec.message =
            "no probe here (listed in without_probe) and no guest agent data: dom0 reports what Xen sees"
                .into();
        return;
    }
    rec.probe = "agent";
    let mut c = CheckResult::new(CHECK_ID, KIND, "");
    c.status = Status::Ok;
    let mut said = Vec::new();
    if let Some(os) = &view.os {
        said.push(os.clone());
    }
    if let Some(k) = &view.kernel {
        said.push(format!("kernel {k}"));
    }
    if !view.addresses.is_empty() {
        let ips: Vec<String> = view
            .addresses
            .iter()
            .map(|(_, ip)| ip.to_string())
            .collect();
        said.push(ips.join(" "));
    }
    if let Some(t) = view.mem_total_kib {
        c.values.push(Value {
            name: "mem_total_bytes".into(),
            value: (t << 10) as f64,
        });
        if let Some(f) = view.mem_free_kib {
            let used = (t - f) as f64 / t as f64 * 100.0;
            let used = (used * 10.0).round() / 10.0;
            c.values.push(Value {
                name: "mem_available_bytes".into(),
                value: (f << 10) as f64,
            });
            c.values.push(Value {
                name: "mem_used_pct".into(),
                value: used,
            });
            c.status = match (cfg.mem_used_error_pct, cfg.mem_used_warning_pct) {
                (Some(e), _) if used >= e => Status::Error,
                (_, Some(w)) if used >= w => Status::Warning,
                _ => Status::Ok,
            };
            said.push(format!("memory {used:.0}% used of {} MiB", t >> 10));
        } else {
            said.push(format!("memory {} MiB", t >> 10));
        }
    }
    let who = view
        .agent
        .as_ref()
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    let mut message = format!("guest agent{who}: {}", said.join(", "));
    if let Some(u) = &view.updated {
        message.push_str(&format!(" (updated {u}, guest's clock)"));
    }
    if !view.problems.is_empty() {
        c.status = c.status.max(Status::Warning);
        message.push_str(&format!(
            "; guest agent data ignored: {}",
            view.problems.join("; ")
        ));
    }
    c.message = text::clean(&message, 1000);
    if let (Some(w), Some(e)) = (cfg.mem_used_warning_pct, cfg.mem_used_error_pct) {
        c.limits.push(xsmon_proto::Limit {
            name: "mem_used_pct".into(),
            warning: Some(w),
            error: Some(e),
        });
    }
    rec.status = c.status;
    rec.message = c.message.clone();
    for val in &c.values {
        rec.figures
            .push((KIND.into(), String::new(), val.name.clone(), val.value));
    }
    rec.latest.push(CheckFigures::of(&c));
    if c.status != Status::Ok {
        rec.findings.push(c);
    }
}

/// For a running guest with no probe results that `[without_probe]` does
/// not list: when an agent writes in its area, what to do about it.
pub fn unlisted_hint(g: &Guest) -> Option<String> {
    let view = decode(g.agent.as_ref()?, g.mem_max_kib);
    if view.is_empty() {
        return None;
    }
    let who = view.agent.unwrap_or_else(|| "XAPI's keys".into());
    Some(format!(
        "a guest agent writes here ({who}): list it in [without_probe] to be monitored through it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> AgentKeys {
        let mut k = AgentKeys::default();
        for (key, v) in pairs {
            k.values
                .insert(key.to_string(), Ok(Some(v.as_bytes().to_vec())));
        }
        k
    }

    const MAX: Option<u64> = Some(163_840);

    fn guest(agent: Option<AgentKeys>) -> Guest {
        Guest {
            mem_target_kib: MAX,
            mem_max_kib: MAX,
            agent,
            ..Guest::named(7, "win01")
        }
    }

    fn judged(agent: Option<AgentKeys>) -> HostRecord {
        let mut r = HostRecord::new(
            "name:win01".into(),
            "win01".into(),
            "win01".into(),
            "running",
        );
        judge(&mut r, &guest(agent), &WithoutProbe::default());
        r
    }

    #[test]
    fn a_listed_guest_without_an_agent_is_ok_and_says_so() {
        let r = judged(None);
        assert_eq!((r.probe, r.status), ("none", Status::Ok));
        assert!(r.message.contains("no guest agent data"), "{}", r.message);
        assert!(WithoutProbe {
            guests: vec!["win*".into()],
            ..Default::default()
        }
        .lists("win01"));
    }

    #[test]
    fn an_agents_memory_is_graded_and_kept_as_figures() {
        let r = judged(Some(keys(&[
            ("data/meminfo_total", "163840"),
            ("data/meminfo_free", "8192"),
            ("data/os_distro", "windows"),
        ])));
        assert_eq!((r.probe, r.status), ("agent", Status::Warning));
        assert!(
            r.message.contains("windows, memory 95% used of 160 MiB"),
            "{}",
            r.message
        );
        assert_eq!(r.findings.len(), 1);
        assert!(r
            .figures
            .iter()
            .any(|f| f.0 == KIND && f.2 == "mem_used_pct" && f.3 == 95.0));
        let hostile = judged(Some(keys(&[("data/meminfo_free", "-1")])));
        assert_eq!((hostile.probe, hostile.status), ("agent", Status::Warning));
        assert!(
            hostile.message.contains("guest agent data ignored"),
            "{}",
            hostile.message
        );
    }

    #[test]
    fn the_agent_and_its_version_are_shown_for_both_schemas() {
        let mut k = keys(&[
            ("data/xen-guest-agent", "0.5.0-dev"),
            ("data/os/name", "Debian"),
            ("data/os/version", "12.0.0"),
            ("data/os/unix/kernel-version", "6.1.0-57-amd64"),
        ]);
        k.net_mac
            .insert("2".into(), Ok(Some(b"00:16:0a:4d:00:16".to_vec())));
        k.net_ipv4.insert("2".into(), Ok(vec!["10_77_0_22".into()]));
        let r = judged(Some(k));
        assert_eq!(
            r.message,
            "guest agent (xen-guest-agent 0.5.0-dev): Debian 12.0.0, kernel 6.1.0-57-amd64, 10.77.0.22"
        );
        let r = judged(Some(keys(&[
            ("data/os_name", "Windows Server 2022"),
            ("attr/PVAddons/MajorVersion", "9"),
            ("attr/PVAddons/MinorVersion", "4"),
            ("attr/PVAddons/MicroVersion", "0"),
        ])));
        assert_eq!(
            r.message,
            "guest agent (PV tools 9.4.0): Windows Server 2022"
        );
    }

    #[test]
    fn an_unlisted_guest_with_an_agent_gets_a_hint() {
        let k = keys(&[("data/xen-guest-agent", "0.5.0-dev")]);
        assert_eq!(
            unlisted_hint(&guest(Some(k))).as_deref(),
            Some("a guest agent writes here (xen-guest-agent 0.5.0-dev): list it in [without_probe] to be monitored through it")
        );
        let k = keys(&[("data/os_name", "Windows Server 2022")]);
        assert_eq!(
            unlisted_hint(&guest(Some(k))).as_deref(),
            Some("a guest agent writes here (XAPI's keys): list it in [without_probe] to be monitored through it")
        );
        assert_eq!(unlisted_hint(&guest(None)), None);
        assert_eq!(unlisted_hint(&guest(Some(AgentKeys::default()))), None);
    }
}
