//! Judge: what dom0 makes of a guest agent's keys, pure (the fuzz target
//! drives exactly what a cycle runs). Both schemas are read side by side:
//! a guest may carry either, or both during an agent's upgrade.

use std::net::Ipv4Addr;

use xsmon_proto::text;

use super::MAX_TEXT;
use crate::agent_keys::{number, AgentKeys, Read, MAX_VIFS};
use crate::gather::kib_count;

/// What dom0 makes of an agent's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentView {
    /// The agent and its version, as far as its keys say
    /// (`xen-guest-agent 0.5.0-dev`, `PV tools 9.1.2`).
    pub agent: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub updated: Option<String>,
    pub mem_total_kib: Option<u64>,
    pub mem_free_kib: Option<u64>,
    /// (interface or vif number, address), sorted, without repeats.
    pub addresses: Vec<(u32, Ipv4Addr)>,
    /// (interface index, MAC) from the rfc schema's `data/net/<index>`.
    pub macs: Vec<(u32, String)>,
    /// What broke the rules, one sentence each (already safe to print).
    pub problems: Vec<String>,
}

impl AgentView {
    /// Did the agent publish anything usable?
    pub fn is_empty(&self) -> bool {
        self.agent.is_none()
            && self.os.is_none()
            && self.kernel.is_none()
            && self.updated.is_none()
            && self.mem_total_kib.is_none()
            && self.addresses.is_empty()
            && self.macs.is_empty()
    }
}

/// Collects a view's problems while reading its keys.
struct Reader<'k> {
    keys: &'k AgentKeys,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn raw(&mut self, k: &str) -> Option<Vec<u8>> {
        match self.keys.values.get(k) {
            Some(Ok(Some(b))) => Some(b.clone()),
            Some(Err(e)) => {
                self.problems
                    .push(format!("cannot read {k}: {}", text::clean(e, 120)));
                None
            }
            _ => None,
        }
    }

    /// A printable text key, trimmed; empty is absent.
    fn text(&mut self, k: &str) -> Option<String> {
        let b = self.raw(k)?;
        match text::validate(&b, MAX_TEXT) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Ok(_) => None,
            Err(e) => {
                self.problems.push(format!("{k} {e}"));
                None
            }
        }
    }

    fn kib(&mut self, k: &str) -> Option<u64> {
        let b = self.raw(k)?;
        let n = kib_count(&b);
        if n.is_none() {
            self.problems.push(format!(
                "{k} {:?} is not a KiB count",
                text::clean(&String::from_utf8_lossy(&b), 24)
            ));
        }
        n
    }

    /// A value read from `key` (an interface's address or MAC), `parse`d;
    /// one that does not parse, or a failed read, is a problem naming the
    /// key and what it should be.
    fn parsed<T>(
        &mut self,
        key: &str,
        read: &Read,
        max: usize,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        match read {
            Ok(Some(b)) => {
                let v = text::validate(b, max).ok().and_then(parse);
                if v.is_none() {
                    self.problems.push(format!(
                        "{key} {:?} is not {what}",
                        text::clean(&String::from_utf8_lossy(b), 40)
                    ));
                }
                v
            }
            Ok(None) => None,
            Err(e) => {
                self.problems
                    .push(format!("cannot read {key}: {}", text::clean(e, 120)));
                None
            }
        }
    }

    /// A small version number (`attr/PVAddons/*`).
    fn version_part(&mut self, k: &str) -> Option<u32> {
        let b = self.raw(k)?;
        let n = (!b.is_empty() && b.len() <= 6 && b.iter().all(u8::is_ascii_digit))
            .then(|| String::from_utf8_lossy(&b).parse().ok())
            .flatten();
        if n.is_none() {
            self.problems.push(format!(
                "{k} {:?} is not a version number",
                text::clean(&String::from_utf8_lossy(&b), 24)
            ));
        }
        n
    }
}

/// Judges the keys. `mem_max_kib` is the toolstack's `memory/static-max`:
/// no guest has more.
pub fn decode(keys: &AgentKeys, mem_max_kib: Option<u64>) -> AgentView {
    let mut r = Reader {
        keys,
        problems: Vec::new(),
    };
    let mut v = AgentView {
        agent: agent_of(&mut r),
        os: os_of(&mut r),
        ..Default::default()
    };
    let xapi_kernel = r.text("data/os_uname");
    v.kernel = xapi_kernel.or_else(|| r.text("data/os/unix/kernel-version"));
    v.updated = r.text("data/updated");
    memory(&mut r, &mut v, mem_max_kib);
    xapi_addresses(&mut r, &mut v);
    rfc_interfaces(&mut r, &mut v);
    v.addresses.sort();
    v.addresses.dedup();
    v.problems = r.problems;
    v
}

/// The agent and its version: xen-guest-agent says it in its own key; the
/// PV tools (xe-guest-utilities, Windows) in `attr/PVAddons`.
fn agent_of(r: &mut Reader<'_>) -> Option<String> {
    if let Some(v) = r.text("data/xen-guest-agent") {
        return Some(format!("xen-guest-agent {}", text::clean(&v, 32)));
    }
    let major = r.version_part("attr/PVAddons/MajorVersion")?;
    let minor = r.version_part("attr/PVAddons/MinorVersion").unwrap_or(0);
    let micro = r.version_part("attr/PVAddons/MicroVersion").unwrap_or(0);
    Some(format!("PV tools {major}.{minor}.{micro}"))
}

/// The OS: XAPI's `data/os_name` (or `os_distro`), else the rfc schema's
/// `data/os/name` with its version when the name does not already say it.
fn os_of(r: &mut Reader<'_>) -> Option<String> {
    if let Some(os) = r.text("data/os_name") {
        return Some(os);
    }
    if let Some(os) = r.text("data/os_distro") {
        return Some(os);
    }
    let name = r.text("data/os/name")?;
    Some(match r.text("data/os/version") {
        Some(ver) if !name.contains(&ver) => format!("{name} {ver}"),
        _ => name,
    })
}

fn memory(r: &mut Reader<'_>, v: &mut AgentView, mem_max_kib: Option<u64>) {
    let total = r.kib("data/meminfo_total");
    let free = r.kib("data/meminfo_free");
    match (total, free) {
        (Some(t), _) if mem_max_kib.is_some_and(|m| t > m + m / 20 + 1024) => r.problems.push(format!(
            "data/meminfo_total claims {} MiB, more than the domain's maximum of {} MiB (memory/static-max)",
            t >> 10,
            mem_max_kib.unwrap_or(0) >> 10
        )),
        (Some(t), Some(f)) if f > t => r.problems.push(format!(
            "data/meminfo_free ({} MiB) is more than data/meminfo_total ({} MiB)",
            f >> 10,
            t >> 10
        )),
        (Some(0), _) => r.problems.push("data/meminfo_total is 0".into()),
        (Some(t), f) => {
            v.mem_total_kib = Some(t);
            v.mem_free_kib = f;
        }
        (None, _) => {}
    }
}

/// A listing's entries that are not numbers, and whether it holds more
/// numbered ones than are read: problems of their own.
fn listing_problems(r: &mut Reader<'_>, key: &str, l: Option<&Result<Vec<String>, String>>) {
    match l {
        Some(Err(e)) => r
            .problems
            .push(format!("cannot list {key}: {}", text::clean(e, 120))),
        Some(Ok(entries)) => {
            let odd = entries.iter().filter(|n| number(n).is_none()).count();
            if odd > 0 {
                r.problems.push(format!(
                    "{key} has {odd} entries that are not interface numbers"
                ));
            }
            let numbered = entries.len() - odd;
            if numbered > MAX_VIFS {
                r.problems.push(format!(
                    "{key} lists {numbered} interfaces; the first {MAX_VIFS} were read"
                ));
            }
        }
        None => {}
    }
}

/// XAPI's `attr/vif/<n>/ipv4/0`.
fn xapi_addresses(r: &mut Reader<'_>, v: &mut AgentView) {
    let keys = r.keys;
    listing_problems(r, "attr/vif", keys.vifs.as_ref());
    for (n, read) in &keys.ipv4 {
        let Some(dev) = number(n) else { continue };
        let key = format!("attr/vif/{dev}/ipv4/0");
        if let Some(ip) = r.parsed(&key, read, 15, "an IPv4 address", |s| s.parse().ok()) {
            v.addresses.push((dev, ip));
        }
    }
}

/// The rfc schema's `data/net/<index>` (the MAC) and
/// `data/net/<index>/ipv4/<a_b_c_d>` (the address is the key's name).
fn rfc_interfaces(r: &mut Reader<'_>, v: &mut AgentView) {
    let keys = r.keys;
    listing_problems(r, "data/net", keys.net.as_ref());
    for (n, read) in &keys.net_mac {
        let Some(index) = number(n) else { continue };
        let key = format!("data/net/{index}");
        let mac = |s: &str| is_mac(s).then(|| s.to_ascii_lowercase());
        if let Some(mac) = r.parsed(&key, read, 17, "a MAC address", mac) {
            v.macs.push((index, mac));
        }
    }
    for (n, listing) in &keys.net_ipv4 {
        let Some(index) = number(n) else { continue };
        match listing {
            Ok(names) => {
                if names.len() > MAX_VIFS {
                    r.problems.push(format!(
                        "data/net/{index}/ipv4 lists {} addresses; the first {MAX_VIFS} were read",
                        names.len()
                    ));
                }
                for name in names.iter().take(MAX_VIFS) {
                    match ipv4_of_key(name) {
                        Some(ip) => v.addresses.push((index, ip)),
                        None => r.problems.push(format!(
                            "data/net/{index}/ipv4/{} is not an IPv4 address written a_b_c_d",
                            text::clean(name, 40)
                        )),
                    }
                }
            }
            Err(e) => r.problems.push(format!(
                "cannot list data/net/{index}/ipv4: {}",
                text::clean(e, 120)
            )),
        }
    }
    v.macs.sort();
}

/// `10_77_0_22` -> 10.77.0.22.
fn ipv4_of_key(name: &str) -> Option<Ipv4Addr> {
    if name.len() > 15 || !name.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    name.replace('_', ".").parse().ok()
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn keys(pairs: &[(&str, &str)]) -> AgentKeys {
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
            ("attr/PVAddons/MajorVersion", "9"),
            ("attr/PVAddons/MinorVersion", "1"),
            ("attr/PVAddons/MicroVersion", "2"),
        ]);
        k.vifs = Some(Ok(vec!["0".into()]));
        k.ipv4.insert("0".into(), Ok(Some(b"10.77.0.24".to_vec())));
        let v = decode(&k, MAX);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.mem_total_kib, Some(151_552));
        assert_eq!(v.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(v.agent.as_deref(), Some("PV tools 9.1.2"));
        assert_eq!(v.addresses, vec![(0, Ipv4Addr::new(10, 77, 0, 24))]);
    }

    #[test]
    fn xen_guest_agents_rfc_schema_is_read() {
        let mut k = keys(&[
            ("data/xen-guest-agent", "0.5.0-dev"),
            ("data/os/name", "Debian"),
            ("data/os/version", "12.0.0"),
            ("data/os/class", "unix"),
            ("data/os/unix/kernel-version", "6.1.0-57-amd64"),
        ]);
        k.net = Some(Ok(vec!["2".into()]));
        k.net_mac
            .insert("2".into(), Ok(Some(b"00:16:0A:4D:00:16".to_vec())));
        k.net_ipv4.insert(
            "2".into(),
            Ok(vec!["10_77_0_22".into(), "10_77_0_99".into()]),
        );
        let v = decode(&k, MAX);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.agent.as_deref(), Some("xen-guest-agent 0.5.0-dev"));
        assert_eq!(v.os.as_deref(), Some("Debian 12.0.0"));
        assert_eq!(v.kernel.as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(v.macs, vec![(2, "00:16:0a:4d:00:16".to_string())]);
        assert_eq!(
            v.addresses,
            vec![
                (2, Ipv4Addr::new(10, 77, 0, 22)),
                (2, Ipv4Addr::new(10, 77, 0, 99))
            ]
        );
        // Its name already says the version: not twice.
        let v = decode(
            &keys(&[
                ("data/os/name", "Debian 12.0.0"),
                ("data/os/version", "12.0.0"),
            ]),
            MAX,
        );
        assert_eq!(v.os.as_deref(), Some("Debian 12.0.0"));
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
        // The rfc schema's, likewise.
        let mut k = keys(&[
            ("data/xen-guest-agent", "1.0\nG pv01 forged"),
            ("attr/PVAddons/MajorVersion", "nine"),
        ]);
        k.net_mac
            .insert("0".into(), Ok(Some(b"not-a-mac".to_vec())));
        k.net_ipv4.insert(
            "0".into(),
            Ok(vec!["10_77_0_999".into(), "evil\nname".into()]),
        );
        let v = decode(&k, MAX);
        assert_eq!(
            (v.agent.as_ref(), v.macs.len(), v.addresses.len()),
            (None, 0, 0)
        );
        let all = v.problems.join(" | ");
        for expect in [
            "data/xen-guest-agent",
            "control character",
            "\"nine\" is not a version number",
            "is not a MAC address",
            "10_77_0_999 is not an IPv4 address",
        ] {
            assert!(all.contains(expect), "{expect}: {all}");
        }
        assert!(!all.contains('\n'), "{all}");
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
            agent in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
            net_names in proptest::collection::vec("[0-9_a-z\n]{0,20}", 0..20),
        ) {
            let mut k = AgentKeys::default();
            k.values.insert("data/meminfo_total".into(), Ok(Some(total)));
            k.values.insert("data/meminfo_free".into(), Ok(Some(free.into_bytes())));
            k.values.insert("data/os/name".into(), Ok(Some(name)));
            k.values.insert("data/xen-guest-agent".into(), Ok(Some(agent)));
            k.vifs = Some(Ok(vifs.clone()));
            if let Some(first) = vifs.first() {
                k.ipv4.insert(first.clone(), Ok(Some(ip.clone())));
                k.net_mac.insert(first.clone(), Ok(Some(ip)));
                k.net_ipv4.insert(first.clone(), Ok(net_names));
            }
            let v = decode(&k, MAX);
            if let Some(t) = v.mem_total_kib {
                proptest::prop_assert!(t <= 163_840 + 163_840 / 20 + 1024);
                proptest::prop_assert!(v.mem_free_kib.unwrap_or(0) <= t);
            }
            for s in v.os.iter().chain(&v.agent).chain(&v.problems) {
                proptest::prop_assert!(!s.chars().any(char::is_control), "{s:?}");
            }
            proptest::prop_assert!(v.addresses.len() <= 2 * MAX_VIFS);
        }
    }
}
