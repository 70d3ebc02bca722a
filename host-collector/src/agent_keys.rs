//! Observe: the guest agents' keys of every running guest without probe
//! results, read as they are (no judgement here: see [`crate::agent`]),
//! in two pipelined batches. Imports nothing of this crate.

use std::collections::BTreeMap;

use xsmon_xenstore::{Client, Reply, Request};

/// Interfaces read from `attr/vif` and `data/net`, and addresses per
/// interface (a guest has a handful; the listing is the guest's and may
/// hold thousands of entries, or more than the protocol's 4096 bytes,
/// which the client refuses).
pub const MAX_VIFS: usize = 8;

/// The agents' single-value keys that are read: XAPI's schema (what
/// xe-guest-utilities, the Windows PV tools and xen-guest-agent's default
/// write), then xen-guest-agent's `rfc` schema, then the PV tools'
/// version XAPI shows as "management agent installed".
pub const KEYS: [&str; 13] = [
    "data/meminfo_total",
    "data/meminfo_free",
    "data/os_name",
    "data/os_distro",
    "data/os_uname",
    "data/updated",
    "data/xen-guest-agent",
    "data/os/name",
    "data/os/version",
    "data/os/unix/kernel-version",
    "attr/PVAddons/MajorVersion",
    "attr/PVAddons/MinorVersion",
    "attr/PVAddons/MicroVersion",
];

/// A read's outcome: a value, `None` when absent, or the read's error.
pub type Read = Result<Option<Vec<u8>>, String>;

/// A guest agent's keys as read.
#[derive(Debug, Clone, Default)]
pub struct AgentKeys {
    pub values: BTreeMap<String, Read>,
    /// The `attr/vif` listing (XAPI schema).
    pub vifs: Option<Result<Vec<String>, String>>,
    /// `attr/vif/<n>/ipv4/0` for the first [`MAX_VIFS`] numeric entries.
    pub ipv4: BTreeMap<String, Read>,
    /// The `data/net` listing (rfc schema: one entry per interface index).
    pub net: Option<Result<Vec<String>, String>>,
    /// `data/net/<index>` (the interface's MAC), first [`MAX_VIFS`].
    pub net_mac: BTreeMap<String, Read>,
    /// The `data/net/<index>/ipv4` listing: each address is a key's name
    /// (`10_77_0_22`).
    pub net_ipv4: BTreeMap<String, Result<Vec<String>, String>>,
}

/// A device or interface number: plain digits, as toolstacks and kernels
/// number them.
pub fn number(n: &str) -> Option<u32> {
    (!n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Reads the agent keys of the running domains `domids` (those without
/// probe results, listed in `[without_probe]` or not: an unlisted one gets
/// a hint).
pub fn read(xs: &mut Client, domids: &[u32]) -> BTreeMap<u32, AgentKeys> {
    let mut found: Vec<(u32, AgentKeys)> = Vec::with_capacity(domids.len());
    if domids.is_empty() {
        return BTreeMap::new();
    }
    let mut reqs = Vec::with_capacity(domids.len() * (KEYS.len() + 2));
    for domid in domids {
        let base = format!("/local/domain/{domid}");
        reqs.extend(KEYS.iter().map(|k| Request::Read(format!("{base}/{k}"))));
        reqs.push(Request::Directory(format!("{base}/attr/vif")));
        reqs.push(Request::Directory(format!("{base}/data/net")));
    }
    let mut replies = xs.pipeline(&reqs).into_iter();
    for &domid in domids {
        let mut keys = AgentKeys::default();
        for k in KEYS {
            keys.values.insert(k.to_string(), value(replies.next()));
        }
        keys.vifs = Some(names_of(replies.next()));
        keys.net = Some(names_of(replies.next()));
        found.push((domid, keys));
    }
    read_interfaces(xs, &mut found);
    found.into_iter().collect()
}

/// What an interface entry asks for in the second batch.
enum Asked {
    VifIpv4(usize, String),
    NetMac(usize, String),
    NetIpv4(usize, String),
}

/// The second batch: each listed interface's addresses (and MAC), for the
/// first [`MAX_VIFS`] numeric entries of each listing.
fn read_interfaces(xs: &mut Client, found: &mut [(u32, AgentKeys)]) {
    let mut reqs = Vec::new();
    let mut asked = Vec::new();
    let numbered = |l: Option<&Result<Vec<String>, String>>| -> Vec<String> {
        match l {
            Some(Ok(names)) => names
                .iter()
                .filter(|n| number(n).is_some())
                .take(MAX_VIFS)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    };
    for (i, (domid, a)) in found.iter().enumerate() {
        let base = format!("/local/domain/{domid}");
        for n in numbered(a.vifs.as_ref()) {
            reqs.push(Request::Read(format!("{base}/attr/vif/{n}/ipv4/0")));
            asked.push(Asked::VifIpv4(i, n));
        }
        for n in numbered(a.net.as_ref()) {
            reqs.push(Request::Read(format!("{base}/data/net/{n}")));
            asked.push(Asked::NetMac(i, n.clone()));
            reqs.push(Request::Directory(format!("{base}/data/net/{n}/ipv4")));
            asked.push(Asked::NetIpv4(i, n));
        }
    }
    if reqs.is_empty() {
        return;
    }
    for (what, reply) in asked.into_iter().zip(xs.pipeline(&reqs)) {
        let (i, n) = match &what {
            Asked::VifIpv4(i, n) | Asked::NetMac(i, n) | Asked::NetIpv4(i, n) => (*i, n.clone()),
        };
        let a = &mut found[i].1;
        match what {
            Asked::VifIpv4(..) => {
                a.ipv4.insert(n, value(Some(reply)));
            }
            Asked::NetMac(..) => {
                a.net_mac.insert(n, value(Some(reply)));
            }
            Asked::NetIpv4(..) => {
                a.net_ipv4.insert(n, names_of(Some(reply)));
            }
        }
    }
}

/// A listing's reply: the names, none when the node is missing, or the
/// read's error.
pub fn names_of(r: Option<xsmon_xenstore::Result<Reply>>) -> Result<Vec<String>, String> {
    match r {
        Some(Ok(Reply::Names(n))) => Ok(n),
        Some(Err(e)) if e.is_not_found() => Ok(Vec::new()),
        Some(Err(e)) => Err(e.to_string()),
        _ => Err("no listing".into()),
    }
}

fn value(r: Option<xsmon_xenstore::Result<Reply>>) -> Read {
    match r {
        Some(Ok(Reply::Value(v))) => Ok(Some(v)),
        Some(Err(e)) if e.is_not_found() => Ok(None),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(Reply::Names(_))) | None => Err("no reply".into()),
    }
}
