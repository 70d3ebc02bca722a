//! Guests that cannot run guest-probe (Windows, the BSDs, appliances):
//! what the standard guest agents already publish in the guest's own
//! xenstore area, read for the guests the configuration names
//! (`[without_probe] guests`, globs).
//!
//! The keys are those XAPI reads and the agents write (checked against
//! xe-guest-utilities' `guestmetric` and xen-guest-agent's "std" xenstore
//! schema; the Windows PV tools write the same):
//!
//! | key | what |
//! |---|---|
//! | `data/meminfo_total`, `data/meminfo_free` | KiB (`free` is MemAvailable) |
//! | `data/os_name`, `data/os_distro`, `data/os_uname` | free text |
//! | `data/updated` | the agent's last write, in the guest's clock and format |
//! | `attr/vif/<n>/ipv4/0` | a vif's first IPv4 address |
//!
//! Everything here was written by the guest and is hostile: sizes are
//! bounded, text must be printable, numbers must be plain KiB counts no
//! larger than the domain's maximum, and at most [`MAX_VIFS`] interfaces
//! are read. Whatever breaks a rule is a finding of its own (check
//! `agent`, a warning) and is otherwise ignored; it never costs another
//! guest anything, and never reaches an output unescaped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;
use xsmon_proto::snmpline::CheckFigures;
use xsmon_proto::{text, CheckResult, Status, Value};
use xsmon_store::HostRecord;
use xsmon_xenstore::{Client, Reply, Request};

use crate::collect::glob_match;
use crate::gather::{kib_count, names_of, Found, Guest};

/// The check id and kind of what dom0 makes of a guest agent's keys.
pub const CHECK_ID: &str = "agent";
pub const KIND: &str = "agent";

/// The agents' single-value keys that are read.
pub const KEYS: [&str; 6] = [
    "data/meminfo_total",
    "data/meminfo_free",
    "data/os_name",
    "data/os_distro",
    "data/os_uname",
    "data/updated",
];

/// Interfaces read from `attr/vif` (a guest has a handful; the listing is
/// the guest's and may hold thousands of entries, or more than the
/// protocol's 4096 bytes, which the client refuses).
pub const MAX_VIFS: usize = 8;

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

/// A guest agent's keys as read: a value, `None` when absent, or the read's
/// error.
#[derive(Debug, Clone, Default)]
pub struct AgentKeys {
    pub values: BTreeMap<String, Result<Option<Vec<u8>>, String>>,
    /// The `attr/vif` listing.
    pub vifs: Option<Result<Vec<String>, String>>,
    /// `attr/vif/<n>/ipv4/0` for the first [`MAX_VIFS`] numeric entries.
    pub ipv4: BTreeMap<String, Result<Option<Vec<u8>>, String>>,
}

/// Reads the agent keys of every running guest `cfg` lists that has no
/// probe results, in two pipelined batches (the keys and the vif listing,
/// then each vif's first address).
pub fn read(xs: &mut Client, guests: &mut [Guest], cfg: &WithoutProbe) {
    let wanted: Vec<usize> = guests
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            matches!(g.found, Found::Nothing) && g.name.as_deref().is_some_and(|n| cfg.lists(n))
        })
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut reqs = Vec::with_capacity(wanted.len() * (KEYS.len() + 1));
    for &i in &wanted {
        let base = format!("/local/domain/{}", guests[i].domid);
        reqs.extend(KEYS.iter().map(|k| Request::Read(format!("{base}/{k}"))));
        reqs.push(Request::Directory(format!("{base}/attr/vif")));
    }
    let mut replies = xs.pipeline(&reqs).into_iter();
    for &i in &wanted {
        let mut keys = AgentKeys::default();
        for k in KEYS {
            keys.values.insert(k.to_string(), value(replies.next()));
        }
        keys.vifs = Some(names_of(replies.next()));
        guests[i].agent = Some(keys);
    }
    let mut reqs = Vec::new();
    let mut asked = Vec::new();
    for &i in &wanted {
        let g = &guests[i];
        let Some(Some(Ok(vifs))) = g.agent.as_ref().map(|a| a.vifs.as_ref()) else {
            continue;
        };
        for n in vifs
            .iter()
            .filter(|n| vif_number(n).is_some())
            .take(MAX_VIFS)
        {
            reqs.push(Request::Read(format!(
                "/local/domain/{}/attr/vif/{n}/ipv4/0",
                g.domid
            )));
            asked.push((i, n.clone()));
        }
    }
    if reqs.is_empty() {
        return;
    }
    for ((i, n), reply) in asked.into_iter().zip(xs.pipeline(&reqs)) {
        if let Some(a) = guests[i].agent.as_mut() {
            a.ipv4.insert(n, value(Some(reply)));
        }
    }
}

fn value(r: Option<xsmon_xenstore::Result<Reply>>) -> Result<Option<Vec<u8>>, String> {
    match r {
        Some(Ok(Reply::Value(v))) => Ok(Some(v)),
        Some(Err(e)) if e.is_not_found() => Ok(None),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(Reply::Names(_))) | None => Err("no reply".into()),
    }
}

/// A vif entry's number: plain digits, as the toolstack numbers devices.
fn vif_number(n: &str) -> Option<u32> {
    (!n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// What dom0 makes of an agent's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentView {
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub updated: Option<String>,
    pub mem_total_kib: Option<u64>,
    pub mem_free_kib: Option<u64>,
    pub addresses: Vec<(u32, Ipv4Addr)>,
    /// What broke the rules, one sentence each (already safe to print).
    pub problems: Vec<String>,
}

impl AgentView {
    /// Did the agent publish anything usable?
    pub fn is_empty(&self) -> bool {
        self.os.is_none()
            && self.kernel.is_none()
            && self.updated.is_none()
            && self.mem_total_kib.is_none()
            && self.addresses.is_empty()
    }
}

/// Judges the keys (pure, so the fuzz target drives what a cycle runs).
/// `mem_max_kib` is the toolstack's `memory/static-max`: no guest has more.
pub fn decode(keys: &AgentKeys, mem_max_kib: Option<u64>) -> AgentView {
    let mut v = AgentView::default();
    let mut problems = Vec::new();
    let mut get = |k: &str| -> Option<Vec<u8>> {
        match keys.values.get(k) {
            Some(Ok(Some(b))) => Some(b.clone()),
            Some(Err(e)) => {
                problems.push(format!("cannot read {k}: {}", text::clean(e, 120)));
                None
            }
            _ => None,
        }
    };
    let total = get("data/meminfo_total");
    let free = get("data/meminfo_free");
    let os_name = get("data/os_name");
    let os_distro = get("data/os_distro");
    let uname = get("data/os_uname");
    let updated = get("data/updated");
    let mut text_of = |k: &str, b: Option<Vec<u8>>| -> Option<String> {
        let b = b?;
        match text::validate(&b, MAX_TEXT) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Ok(_) => None,
            Err(e) => {
                problems.push(format!("{k} {e}"));
                None
            }
        }
    };
    v.os = text_of("data/os_name", os_name).or_else(|| text_of("data/os_distro", os_distro));
    v.kernel = text_of("data/os_uname", uname);
    v.updated = text_of("data/updated", updated);
    let mut kib_of = |k: &str, b: Option<Vec<u8>>| -> Option<u64> {
        let b = b?;
        match kib_count(&b) {
            Some(n) => Some(n),
            None => {
                problems.push(format!(
                    "{k} {:?} is not a KiB count",
                    text::clean(&String::from_utf8_lossy(&b), 24)
                ));
                None
            }
        }
    };
    let total = kib_of("data/meminfo_total", total);
    let free = kib_of("data/meminfo_free", free);
    match (total, free) {
        (Some(t), _) if mem_max_kib.is_some_and(|m| t > m + m / 20 + 1024) => problems.push(format!(
            "data/meminfo_total claims {} MiB, more than the domain's maximum of {} MiB (memory/static-max)",
            t >> 10,
            mem_max_kib.unwrap_or(0) >> 10
        )),
        (Some(t), Some(f)) if f > t => problems.push(format!(
            "data/meminfo_free ({} MiB) is more than data/meminfo_total ({} MiB)",
            f >> 10,
            t >> 10
        )),
        (Some(0), _) => problems.push("data/meminfo_total is 0".into()),
        (Some(t), f) => {
            v.mem_total_kib = Some(t);
            v.mem_free_kib = f;
        }
        (None, _) => {}
    }
    match &keys.vifs {
        Some(Err(e)) => problems.push(format!("cannot list attr/vif: {}", text::clean(e, 120))),
        Some(Ok(entries)) => {
            let odd = entries.iter().filter(|n| vif_number(n).is_none()).count();
            if odd > 0 {
                problems.push(format!(
                    "attr/vif has {odd} entries that are not device numbers"
                ));
            }
            let numbered = entries.len() - odd;
            if numbered > MAX_VIFS {
                problems.push(format!(
                    "attr/vif lists {numbered} interfaces; the first {MAX_VIFS} were read"
                ));
            }
        }
        None => {}
    }
    for (n, r) in &keys.ipv4 {
        let Some(dev) = vif_number(n) else { continue };
        match r {
            Ok(Some(b)) => match text::validate(b, 15).ok().and_then(|s| s.parse().ok()) {
                Some(ip) => v.addresses.push((dev, ip)),
                None => problems.push(format!(
                    "attr/vif/{dev}/ipv4/0 {:?} is not an IPv4 address",
                    text::clean(&String::from_utf8_lossy(b), 40)
                )),
            },
            Ok(None) => {}
            Err(e) => problems.push(format!(
                "cannot read attr/vif/{dev}/ipv4/0: {}",
                text::clean(e, 120)
            )),
        }
    }
    v.addresses.sort();
    v.problems = problems;
    v
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
    let mut message = format!("guest agent: {}", said.join(", "));
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

    #[test]
    fn xe_guest_utilities_keys_are_read() {
        let mut k = keys(&[
            ("data/meminfo_total", "151552"),
            ("data/meminfo_free", "75776"),
            ("data/os_name", "Debian GNU/Linux 12 (bookworm)"),
            ("data/os_uname", "6.1.0-57-amd64"),
            ("data/updated", "Wed Dec  2 01:00:00 2026"),
        ]);
        k.vifs = Some(Ok(vec!["0".into()]));
        k.ipv4.insert("0".into(), Ok(Some(b"10.77.0.24".to_vec())));
        let v = decode(&k, MAX);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.mem_total_kib, Some(151_552));
        assert_eq!(v.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(v.addresses, vec![(0, Ipv4Addr::new(10, 77, 0, 24))]);
    }

    #[test]
    fn hostile_agent_keys_are_findings_not_figures() {
        // 4 GiB in a 160 MiB domain.
        let v = decode(&keys(&[("data/meminfo_total", "4194304")]), MAX);
        assert_eq!(v.mem_total_kib, None);
        assert!(
            v.problems[0].contains("more than the domain's maximum"),
            "{:?}",
            v.problems
        );
        let v = decode(
            &keys(&[("data/meminfo_total", "-5"), ("data/meminfo_free", "1e9")]),
            MAX,
        );
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        assert!(v.problems[0].contains("\"-5\" is not a KiB count"));
        let v = decode(&keys(&[("data/os_name", "Evil\nG pv01 - - fresh ok")]), MAX);
        assert_eq!(v.os, None);
        assert!(
            v.problems[0].contains("control character"),
            "{:?}",
            v.problems
        );
        let k = AgentKeys {
            vifs: Some(Ok((0..10_000).map(|n| n.to_string()).collect())),
            ..Default::default()
        };
        let v = decode(&k, MAX);
        assert!(
            v.problems[0].contains("10000 interfaces"),
            "{:?}",
            v.problems
        );
        let k = AgentKeys {
            vifs: Some(Err("reply is 48890 bytes, more than 4096".into())),
            ..Default::default()
        };
        assert!(decode(&k, MAX).problems[0].starts_with("cannot list attr/vif"));
        let mut k = AgentKeys::default();
        k.ipv4.insert("0".into(), Ok(Some(b"999.1.1.1".to_vec())));
        assert!(decode(&k, MAX).problems[0].contains("not an IPv4 address"));
    }

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

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): whatever a guest writes under its
        /// agent keys, decoding never panics, keeps memory within the
        /// domain's maximum, and every text it keeps is printable.
        #[test]
        fn fuzz_agent_keys(
            total in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
            free in "[0-9-]{0,14}",
            name in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            vifs in proptest::collection::vec("[0-9a-z]{0,6}", 0..40),
            ip in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
        ) {
            let mut k = AgentKeys::default();
            k.values.insert("data/meminfo_total".into(), Ok(Some(total)));
            k.values.insert("data/meminfo_free".into(), Ok(Some(free.into_bytes())));
            k.values.insert("data/os_name".into(), Ok(Some(name)));
            k.vifs = Some(Ok(vifs.clone()));
            if let Some(first) = vifs.first() {
                k.ipv4.insert(first.clone(), Ok(Some(ip)));
            }
            let v = decode(&k, MAX);
            if let Some(t) = v.mem_total_kib {
                proptest::prop_assert!(t <= 163_840 + 163_840 / 20 + 1024);
                proptest::prop_assert!(v.mem_free_kib.unwrap_or(0) <= t);
            }
            for s in v.os.iter().chain(&v.problems) {
                proptest::prop_assert!(!s.chars().any(char::is_control), "{s:?}");
            }
        }
    }
}
