//! Reading every running guest's results from xenstore.
//!
//! Everything under a guest's `data/xsmon` was written by the guest and is
//! hostile: the key layout's decoder (`xsmon_proto::layout::decode`)
//! accepts only documented keys and syntax with bounded sizes. The guest's
//! name comes from `/local/domain/<id>/name`, which the toolstack writes
//! and the guest may only read; never from guest data.
//!
//! The guest's identity is its VM's UUID, from `/local/domain/<id>/vm`
//! (`/vm/<uuid>`), which the toolstack writes (xl and XAPI alike) and the
//! guest cannot change.
//!
//! Reads are pipelined (`Client::pipeline`): all guests' top keys in one
//! batch, then all their checks' keys in another, so 200 guests cost a few
//! round trips, not thousands. Every per-guest read has its own result: a
//! key that cannot be read costs that guest alone (an `invalid` finding),
//! never the cycle.

use std::collections::BTreeMap;

use xsmon_proto::layout::{self, Run, DATA_SUBPATH, LEGACY_ROOT, MAX_CHECKS};
use xsmon_proto::text;
use xsmon_xenstore::{Client, Reply, Request, Store};

mod prefetch;

use prefetch::{
    read_whole, reread_runs_written_meanwhile, reread_torn_v6_runs, v6_whole, value_of, Batch,
    Read, RUN_AFTER,
};
pub use prefetch::{Identity, Prefetched};

/// Longest toolstack name accepted (XAPI's name-labels are free text).
pub const MAX_GUEST_NAME: usize = 128;

/// Most domains read in one cycle: every domid a Xen host can hand out
/// (`DOMID_FIRST_RESERVED` is 0x7FF0), so no running domain is ever cut.
pub const MAX_DOMAINS: usize = 0x7FF0;

/// The largest `/local/domain` listing accepted from dom0's xenstore
/// daemon (the trusted side; guest-controlled listings keep the protocol's
/// 4096 bytes). 32,752 domids take at most 196 KiB; 1 MiB leaves room and
/// still bounds what the daemon can make us allocate.
pub const MAX_DOMAIN_LISTING: usize = 1 << 20;

/// What was found for one running domain.
#[derive(Debug, Clone)]
pub struct Guest {
    pub domid: u32,
    /// The VM's UUID (lower case), from the toolstack's `vm` link.
    pub uuid: Option<String>,
    /// Why the UUID could not be read, when it could not.
    pub uuid_problem: Option<String>,
    /// The toolstack's name, or `None` if it was missing or unusable.
    pub name: Option<String>,
    /// Why the name could not be used, when it could not.
    pub name_problem: Option<String>,
    pub found: Found,
    /// The toolstack's balloon target and maximum (`memory/target`,
    /// `memory/static-max`, KiB): written by dom0, read-only to the guest.
    pub mem_target_kib: Option<u64>,
    pub mem_max_kib: Option<u64>,
    /// When the toolstack created this domain (`/vm/<uuid>/start_time`,
    /// dom0's clock, Unix seconds): its uptime, restarted by every new
    /// domain (reboot, restore, migration).
    pub start_time: Option<f64>,
    /// A guest agent's keys, read for guests listed in `[without_probe]`
    /// that have no probe results ([`crate::agent_keys::read`]).
    pub agent: Option<crate::agent_keys::AgentKeys>,
    /// The device model (QEMU) the toolstack started for this domain, if
    /// it started one (an HVM guest's, or one serving a PV guest's disks):
    /// listed under `/local/domain/0/device-model/<domid>`, its process id
    /// in the domain's `image/device-model-pid`, or why that is unreadable.
    pub device_model: Option<Result<u32, String>>,
    /// Whether that process runs ([`crate::devmodel::observe`]).
    pub device_model_runs: Option<bool>,
    /// The `on_crash` action libxl keeps for this domain, read for a
    /// crashed domain only ([`crate::xl_records::on_crash`]).
    pub on_crash: Option<String>,
}

impl Guest {
    /// A running domain `domid` named `name` with nothing else known: the
    /// start of every test's and bench's guest.
    pub fn named(domid: u32, name: &str) -> Guest {
        Guest {
            domid,
            uuid: None,
            uuid_problem: None,
            name: Some(name.into()),
            name_problem: None,
            found: Found::Nothing,
            mem_target_kib: None,
            mem_max_kib: None,
            start_time: None,
            agent: None,
            device_model: None,
            device_model_runs: None,
            on_crash: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Found {
    /// A run that passed validation; `legacy` when read from the shared path.
    Run { run: Run, legacy: bool },
    /// Nothing written.
    Nothing,
    /// Written, but not by the rules: which key, what is wrong.
    Invalid(String),
}

/// The running domains other than dom0, with their results.
pub fn gather(xs: &mut Client, legacy: bool) -> anyhow::Result<Vec<Guest>> {
    gather_then(xs, legacy, &KnownStarts::new(), || {})
}

/// The start times known of running domains, by domid, with their VM's
/// UUID: a domain's `/vm/<uuid>/start_time` never changes, so a cycle
/// reads it only for a domain it does not know yet.
pub type KnownStarts = BTreeMap<u32, (String, f64)>;

/// The start times kept in the stored rows (`host.started`) of the domains
/// seen running since dom0 last booted (`dom0_booted`, Unix seconds; its
/// domids start over at each boot, so a row from before it, or with no
/// boot time known, knows nothing). A domid names one domain until it is
/// destroyed; the VM's UUID read this cycle must match too.
pub fn known_starts(rows: &[xsmon_store::HostRow], dom0_booted: Option<i64>) -> KnownStarts {
    let Some(booted) = dom0_booted else {
        return KnownStarts::new();
    };
    rows.iter()
        .filter(|h| h.state == "running" && h.last_seen >= booted)
        .filter_map(|h| Some((h.domid?, (h.uuid.clone()?, h.started?))))
        .collect()
}

/// [`gather`], calling `listed` as soon as the domains are listed (the
/// cycle asks xl for their states from then on, beside the rest of the
/// read: see `collect::run_cycle`).
pub fn gather_then(
    xs: &mut Client,
    legacy: bool,
    starts: &KnownStarts,
    listed: impl FnOnce(),
) -> anyhow::Result<Vec<Guest>> {
    let ids = domain_ids(xs)?;
    listed();
    // Batch 1: each guest's name, VM link, first chunk and the
    // toolstack's memory keys. A version 6 run of one chunk (a typical
    // guest) is then read whole: chunk/0 holds its run line and names the
    // layout. What follows depends on what chunk/0 was: more chunks of a
    // version 6 run (batch 2); for older layouts, `version` and `run`
    // (batch 2), then their chunks and `run` again, or a version 1 guest's
    // top keys and check listing (batch 3), then one key per field (batch
    // 4).
    let mut reqs = Vec::with_capacity(ids.len() * 5 + 1);
    for id in &ids {
        let base = format!("/local/domain/{id}/{DATA_SUBPATH}");
        reqs.push(Request::Read(format!("/local/domain/{id}/name")));
        reqs.push(Request::Read(format!("/local/domain/{id}/vm")));
        reqs.push(Request::Read(format!("{base}/chunk/0")));
        reqs.push(Request::Read(format!("/local/domain/{id}/memory/target")));
        reqs.push(Request::Read(format!(
            "/local/domain/{id}/memory/static-max"
        )));
    }
    // The domains the toolstack started a device model for, in the same
    // round trip (dom0's own key: the guests cannot write there).
    reqs.push(Request::Directory(DEVICE_MODELS.into()));
    let mut replies = xs.pipeline(&reqs).into_iter();
    let mut pre: Vec<(u32, Identity, Prefetched)> = Vec::with_capacity(ids.len());
    let mut toolstack: Vec<Toolstack> = Vec::with_capacity(ids.len());
    for &id in &ids {
        let name = value_of(replies.next());
        let vm = value_of(replies.next());
        let mut p = Prefetched::default();
        p.put("chunk/0", replies.next());
        pre.push((id, Identity { name, vm }, p));
        toolstack.push(Toolstack {
            mem_target_kib: kib(value_of(replies.next())),
            mem_max_kib: kib(value_of(replies.next())),
            started: None,
        });
    }
    let with_device_model = device_model_domids(replies.next());

    // Batch 2: the toolstack's start time under the VM's /vm path and the
    // device model's pid; a version 6 run's other chunks; an older run's
    // `version` and `run`.
    let mut batch = Batch::default();
    for (i, (id, identity, p)) in pre.iter().enumerate() {
        if let Some(uuid) = identity.vm.as_deref().ok().and_then(vm_uuid) {
            match starts.get(id) {
                Some((known, at)) if *known == uuid => toolstack[i].started = Some(*at),
                _ => batch.toolstack(i, format!("/vm/{uuid}/start_time")),
            }
        }
        if with_device_model.contains(id) {
            batch.toolstack(i, format!("/local/domain/{id}/image/{DM_PID}"));
        }
        let base = format!("/local/domain/{id}/{DATA_SUBPATH}");
        match p.values.get("chunk/0") {
            Some(first) if layout::is_run_head(first) => batch.later_chunks(i, &base, first),
            _ => {
                batch.read(i, &base, "version");
                batch.read(i, &base, "run");
            }
        }
    }
    // A guest whose run is read whole is decoded the moment its last
    // reply is in, while the daemon answers the others.
    let mut early: Vec<Option<Guest>> = pre.iter().map(|_| None).collect();
    batch.run_then(xs, &mut pre, |i, read| {
        if v6_whole(&read.2) {
            let taken = (read.0, read.1.clone(), std::mem::take(&mut read.2));
            early[i] = Some(decode_read(taken, toolstack[i]));
        }
    });
    reread_torn_v6_runs(xs, &mut pre, &early);

    // Batch 3: chunks of versions 2 to 5 and their `run` again; version 1
    // top keys and check listing.
    let mut batch = Batch::default();
    for (i, (id, _, p)) in pre.iter_mut().enumerate() {
        if early[i].is_some() {
            continue;
        }
        let base = format!("/local/domain/{id}/{DATA_SUBPATH}");
        match p.values.get("version").map(Vec::as_slice) {
            Some(v) if xsmon_proto::layout::is_chunked(v) => {
                // chunk/0 as batch 1 read it may be of an older run.
                p.values.remove("chunk/0");
                p.errors.remove("chunk/0");
                batch.chunks_of(i, &base, p);
            }
            Some(b"1") => {
                for k in ["probe", "time", "seq"] {
                    batch.read(i, &base, k);
                }
                batch.list(i, &base, "check");
            }
            // Its probe moved to layout 6 between batches 1 and 2 (an
            // upgrade): chunk/0 as batch 1 read it is of the older run.
            Some(b"6") => {
                p.values.remove("chunk/0");
                p.errors.remove("chunk/0");
                batch.read(i, &base, "chunk/0");
            }
            _ => {}
        }
    }
    batch.run_then(xs, &mut pre, |i, read| {
        if read_whole(&read.2) {
            read.2.values.remove(RUN_AFTER);
            let taken = (read.0, read.1.clone(), std::mem::take(&mut read.2));
            early[i] = Some(decode_read(taken, toolstack[i]));
        }
    });
    reread_runs_written_meanwhile(xs, &mut pre);
    reread_torn_v6_runs(xs, &mut pre, &early);

    // Batch 4: the keys of every check of every version 1 guest with a
    // sane number of checks (decode rejects the rest).
    let fields = ["kind", "status", "target", "message", "values", "limits"];
    let mut batch = Batch::default();
    for (i, (id, _, p)) in pre.iter().enumerate() {
        let Some(Ok(checks)) = p.lists.get("check") else {
            continue;
        };
        if checks.len() > MAX_CHECKS {
            continue;
        }
        let base = format!("/local/domain/{id}/{DATA_SUBPATH}");
        for c in checks
            .iter()
            .filter(|c| c.len() <= layout::MAX_ID && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            for f in fields {
                batch.read(i, &base, &format!("check/{c}/{f}"));
            }
        }
    }
    batch.run(xs, &mut pre);

    let mut out = decode_all(pre, toolstack, early);
    for guest in &mut out {
        if legacy && matches!(guest.found, Found::Nothing) {
            if let Some(n) = &guest.name {
                guest.found = read_legacy(xs, guest.domid, n);
            }
        }
    }
    Ok(out)
}

/// What the toolstack wrote of a domain beside its name and VM link.
#[derive(Debug, Clone, Copy)]
struct Toolstack {
    /// `memory/target` and `memory/static-max`, KiB.
    mem_target_kib: Option<u64>,
    mem_max_kib: Option<u64>,
    /// Its start time when known from an earlier cycle ([`KnownStarts`]).
    started: Option<f64>,
}

/// Decodes every guest's prefetched keys but those decoded already
/// (`early`), on two threads once there are enough guests to be worth it:
/// decoding is pure and the daemon has answered by now, so a large dom0's
/// cycle need not wait for one core. The guests stay in domid order.
fn decode_all(pre: Vec<Read>, toolstack: Vec<Toolstack>, early: Vec<Option<Guest>>) -> Vec<Guest> {
    let mut out = early;
    let rest: Vec<(usize, Read, Toolstack)> = pre
        .into_iter()
        .zip(toolstack)
        .enumerate()
        .filter(|(i, _)| out[*i].is_none())
        .map(|(i, (read, mem))| (i, read, mem))
        .collect();
    let decoded = crate::halves::in_two_halves(rest, |(i, read, mem)| (i, decode_read(read, mem)));
    for (i, guest) in decoded {
        out[i] = Some(guest);
    }
    out.into_iter().flatten().collect()
}

/// Where the toolstack lists the device models it started (libxl:
/// `<dm domain's home>/device-model/<domid>`; dom0's for a device model
/// in dom0, the only kind dom0 can see the process of).
pub(crate) const DEVICE_MODELS: &str = "/local/domain/0/device-model";
/// The device model's process id, under the domain's `image/`.
const DM_PID: &str = "device-model-pid";

/// The domids listed under [`DEVICE_MODELS`]; none when it is absent (no
/// device model anywhere) or unreadable (the pids are then not read, and
/// no device model is judged this cycle).
fn device_model_domids(
    reply: Option<xsmon_xenstore::Result<Reply>>,
) -> std::collections::BTreeSet<u32> {
    match reply {
        Some(Ok(Reply::Names(names))) => names.iter().filter_map(|n| n.parse().ok()).collect(),
        Some(Err(e)) if !e.is_not_found() => {
            tracing::warn!("cannot list {DEVICE_MODELS}: {e}: device models not checked");
            Default::default()
        }
        _ => Default::default(),
    }
}

/// One guest's keys as read, decoded.
fn decode_read((domid, identity, mut p): Read, known: Toolstack) -> Guest {
    let start_time = match p.toolstack.get("start_time") {
        Some(v) => start_time(v),
        None => known.started,
    };
    let device_model = match (p.toolstack.get(DM_PID), p.toolstack_errors.get(DM_PID)) {
        (Some(v), _) => Some(process_id(v)),
        (None, Some(e)) => Some(Err(format!("cannot read image/{DM_PID}: {e}"))),
        (None, None) => None,
    };
    let mut guest = decode_guest(domid, identity, &mut p);
    guest.device_model = device_model;
    guest.mem_target_kib = known.mem_target_kib;
    guest.mem_max_kib = known.mem_max_kib;
    guest.start_time = start_time;
    guest
}

/// A process id as the toolstack writes it: digits, not 0.
fn process_id(v: &[u8]) -> Result<u32, String> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|pid| *pid > 0)
        .ok_or_else(|| {
            format!(
                "image/{DM_PID} {:?} is not a process id",
                text::clean(&String::from_utf8_lossy(v), 24)
            )
        })
}

/// A KiB figure the toolstack wrote, when it could be read and is one.
fn kib(v: Result<Vec<u8>, String>) -> Option<u64> {
    kib_count(&v.ok()?)
}

/// A plain KiB count: digits only, at most 16 TiB (Xen's largest guest),
/// else nothing. The toolstack's memory keys and the guest agents' meminfo
/// keys are read by this one rule.
pub(crate) fn kib_count(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 12 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|k| *k <= 16 << 30)
}

/// The toolstack's `start_time` (`1796174546.98`): seconds, a dot and
/// hundredths, bounded; else nothing.
fn start_time(v: &[u8]) -> Option<f64> {
    if v.is_empty() || v.len() > 24 || !v.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// Judges one domain's prefetched keys: its identity and its run. Pure (no
/// I/O), so the fuzz targets drive exactly what a cycle runs.
pub fn decode_guest(domid: u32, identity: Identity, p: &mut Prefetched) -> Guest {
    // Any printable name: xl names are plain, XAPI's name-labels are free
    // text ("Web server (old)"). Every output escapes it; only names that
    // are also plain host names can match a .cfg in the config directory.
    let (name, name_problem) = match identity.name {
        Ok(bytes) => match text::validate(&bytes, MAX_GUEST_NAME) {
            Ok(s) if s.trim() == s && !s.is_empty() && !s.contains('#') => {
                (Some(s.to_string()), None)
            }
            Ok(s) => (
                None,
                Some(format!(
                    "domain name {:?} is empty, has a '#' or leading or trailing spaces",
                    text::clean(s, 80)
                )),
            ),
            Err(e) => (None, Some(format!("domain name {e}"))),
        },
        Err(e) => (None, Some(format!("cannot read its name: {e}"))),
    };
    let (uuid, uuid_problem) = match identity.vm {
        Ok(bytes) => match vm_uuid(&bytes) {
            Some(u) => (Some(u), None),
            None => (
                None,
                Some(format!(
                    "its vm link {:?} does not name a VM UUID",
                    text::clean(&String::from_utf8_lossy(&bytes), 80)
                )),
            ),
        },
        // No link at all: a toolstack that does not write one (or a test
        // rig); the name identifies the guest, which is no finding.
        Err(e) if e.contains("ENOENT") => (None, None),
        Err(e) => (None, Some(format!("cannot read its vm link: {e}"))),
    };
    let found = match layout::decode(p) {
        Ok(Some(run)) => Found::Run { run, legacy: false },
        Ok(None) => Found::Nothing,
        Err(e) => Found::Invalid(e.to_string()),
    };
    Guest {
        domid,
        uuid,
        uuid_problem,
        name,
        name_problem,
        found,
        mem_target_kib: None,
        mem_max_kib: None,
        start_time: None,
        agent: None,
        device_model: None,
        device_model_runs: None,
        on_crash: None,
    }
}

/// The VM UUID in a domain's `vm` link: `/vm/<uuid>` (xl, XAPI); older
/// toolstacks appended `-<n>` after a reboot. Lower case, or `None`.
pub fn vm_uuid(link: &[u8]) -> Option<String> {
    let rest = link.strip_prefix(b"/vm/")?;
    let uuid = rest.get(..36)?;
    let tail = &rest[36..];
    if !(tail.is_empty()
        || (tail[0] == b'-' && tail.len() <= 11 && tail[1..].iter().all(u8::is_ascii_digit)))
    {
        return None;
    }
    let shape_ok = uuid.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    shape_ok.then(|| String::from_utf8_lossy(uuid).to_ascii_lowercase())
}

/// The numeric entries of /local/domain except 0. dom0's daemon is trusted
/// with a listing beyond the protocol's 4096 bytes (oxenstored sends one
/// for about 900 domains), up to [`MAX_DOMAIN_LISTING`].
fn domain_ids(xs: &mut Client) -> anyhow::Result<Vec<u32>> {
    // A dom0 with no domain yet may have no /local/domain at all.
    let names = match xs.directory_trusted("/local/domain", MAX_DOMAIN_LISTING) {
        Err(e) if e.is_not_found() => Vec::new(),
        other => other?,
    };
    let mut ids: Vec<u32> = names
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .filter(|&id| id != 0)
        .collect();
    ids.sort_unstable();
    if ids.len() > MAX_DOMAINS {
        anyhow::bail!(
            "/local/domain lists {} domains, more than a Xen host can run ({MAX_DOMAINS})",
            ids.len()
        );
    }
    Ok(ids)
}

/// Reads the 2010 shared path for a guest. Every guest may write anywhere
/// under it, so the entry counts only if the domain named `name` owns it:
/// a guest writing under another guest's name is a forgery, reported.
fn read_legacy(xs: &mut Client, domid: u32, name: &str) -> Found {
    let base = format!("{LEGACY_ROOT}/{name}");
    match xs.get_perms(&base) {
        Err(e) if e.is_not_found() => return Found::Nothing,
        Err(e) => return Found::Invalid(format!("legacy path {base}: {e}")),
        Ok(perms) => {
            let owner = perms.first().map(|p| p.domid);
            if owner != Some(domid) {
                return Found::Invalid(format!(
                    "legacy path {base} is owned by domain {}, not by domain {domid} named {name}: ignored as forged",
                    owner.map(|o| o.to_string()).unwrap_or_else(|| "?".into())
                ));
            }
        }
    }
    let mut src = layout::XenstoreSource {
        client: xs,
        base: base.clone(),
    };
    match layout::decode(&mut src) {
        Ok(Some(run)) => Found::Run { run, legacy: true },
        Ok(None) => Found::Nothing,
        Err(e) => Found::Invalid(format!("legacy path: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): whatever sits in a domain's
        /// `memory/target` or `memory/static-max` (dom0 writes them, but a
        /// broken toolstack or a hand edit may not), the reader never
        /// panics and keeps only plain KiB counts up to 16 TiB.
        #[test]
        fn fuzz_toolstack_memory_keys(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24), digits in "[0-9]{0,14}") {
            for b in [raw, digits.into_bytes()] {
                if let Some(k) = kib(Ok(b.clone())) {
                    proptest::prop_assert!(k <= 16 << 30);
                    proptest::prop_assert_eq!(k.to_string().len() <= b.len(), true);
                }
            }
        }
    }

    #[test]
    fn start_times() {
        assert_eq!(start_time(b"1796174546.98"), Some(1_796_174_546.98));
        assert_eq!(start_time(b"-5"), None);
        assert_eq!(start_time(b""), None);
        assert_eq!(start_time(b"1e9"), None);
        assert_eq!(start_time(b"..."), None);
    }

    #[test]
    fn memory_keys() {
        assert_eq!(kib(Ok(b"163840".to_vec())), Some(163_840));
        assert_eq!(kib(Ok(b"-1".to_vec())), None);
        assert_eq!(kib(Ok(b"".to_vec())), None);
        assert_eq!(kib(Ok(b"99999999999".to_vec())), None);
        assert_eq!(kib(Err("ENOENT".into())), None);
    }
}
