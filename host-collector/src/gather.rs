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

use xsmon_proto::layout::{self, Run, Source, DATA_SUBPATH, LEGACY_ROOT, MAX_CHECKS};
use xsmon_proto::text;
use xsmon_xenstore::{Client, Reply, Request, Store};

use crate::agent_keys::names_of;

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
}

#[cfg(test)]
impl Guest {
    /// A running domain `domid` named `name` with nothing else known: the
    /// start of every unit test's guest.
    pub(crate) fn named(domid: u32, name: &str) -> Guest {
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

/// One domain's keys as read: its domid, identity and prefetched keys.
type Read = (u32, Identity, Prefetched);
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

/// Whether a version 6 run was read whole: chunk/0 heads one, and every
/// other chunk it announces was read and names the same run.
fn v6_whole(p: &Prefetched) -> bool {
    let Some(first) = p.values.get("chunk/0").filter(|c| layout::is_run_head(c)) else {
        return false;
    };
    let n = layout::chunks_in_head(first).unwrap_or(1);
    (1..n).all(|c| {
        p.values
            .get(&format!("chunk/{c}"))
            .is_some_and(|chunk| layout::same_run(first, chunk))
    })
}

/// Whether a version 2 to 5 run was read whole: its `run` read again after its
/// chunks is the one read before them (see [`Batch::chunks_of`]).
fn read_whole(p: &Prefetched) -> bool {
    p.values
        .get(RUN_AFTER)
        .is_some_and(|after| p.values.get("run") == Some(after))
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

/// What the toolstack wrote about a domain: its name and VM link, as read.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: Result<Vec<u8>, String>,
    pub vm: Result<Vec<u8>, String>,
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

fn value_of(r: Option<xsmon_xenstore::Result<Reply>>) -> Result<Vec<u8>, String> {
    match r {
        Some(Ok(Reply::Value(v))) => Ok(v),
        Some(Ok(Reply::Names(_))) => Err("unexpected listing".into()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no reply".into()),
    }
}

/// Reads for many guests, sent as one pipeline; each reply is filed in
/// its guest's [`Prefetched`].
#[derive(Default)]
struct Batch {
    reqs: Vec<Request>,
    /// (guest index, key relative to BASE, is a listing)
    wanted: Vec<(usize, String, bool)>,
}

impl Batch {
    /// A chunked run's `chunk/<n>` keys, as many as its `run` line
    /// announces, then its `run` once more, filed as [`RUN_AFTER`]: the
    /// daemon answers one connection's requests in order, and a guest
    /// replaces its whole run in one transaction, so the chunks belong to
    /// the `run` read first only if the second read gives the same line.
    fn chunks_of(&mut self, guest: usize, base: &str, p: &Prefetched) {
        let n = p
            .values
            .get("run")
            .and_then(|r| layout::chunks_announced(r))
            .unwrap_or(0);
        for c in 0..n {
            self.read(guest, base, &format!("chunk/{c}"));
        }
        self.reqs.push(Request::Read(format!("{base}/run")));
        self.wanted.push((guest, RUN_AFTER.to_string(), false));
    }

    /// A version 6 run's chunks after `first` (its chunk/0), as many as
    /// it announces: each names its run, so they need no second read of
    /// chunk/0 to be known for the same run's.
    fn later_chunks(&mut self, guest: usize, base: &str, first: &[u8]) {
        for c in 1..layout::chunks_in_head(first).unwrap_or(1) {
            self.read(guest, base, &format!("chunk/{c}"));
        }
    }

    fn read(&mut self, guest: usize, base: &str, key: &str) {
        self.reqs.push(Request::Read(format!("{base}/{key}")));
        self.wanted.push((guest, key.to_string(), false));
    }

    /// A toolstack key (absolute path) for guest `guest`, filed under its
    /// last component in [`Prefetched::toolstack`], apart from guest data.
    fn toolstack(&mut self, guest: usize, path: String) {
        let key = path.rsplit('/').next().unwrap_or_default().to_string();
        self.reqs.push(Request::Read(path));
        self.wanted.push((guest, format!("@{key}"), false));
    }

    fn list(&mut self, guest: usize, base: &str, key: &str) {
        self.reqs.push(Request::Directory(format!("{base}/{key}")));
        self.wanted.push((guest, key.to_string(), true));
    }

    fn run(self, xs: &mut Client, pre: &mut [(u32, Identity, Prefetched)]) {
        self.run_then(xs, pre, |_, _| {});
    }

    /// Sends the batch and files each reply as it comes; `complete(i,
    /// guest)` is called the moment every read of guest `i` in the batch
    /// has its reply.
    fn run_then(
        self,
        xs: &mut Client,
        pre: &mut [(u32, Identity, Prefetched)],
        mut complete: impl FnMut(usize, &mut (u32, Identity, Prefetched)),
    ) {
        if self.reqs.is_empty() {
            return;
        }
        let mut left = vec![0usize; pre.len()];
        for (i, _, _) in &self.wanted {
            left[*i] += 1;
        }
        let wanted = self.wanted;
        xs.pipeline_each(&self.reqs, |k, reply| {
            let (i, key, listing) = &wanted[k];
            let p = &mut pre[*i].2;
            if let Some(name) = key.strip_prefix('@') {
                match value_of(Some(reply)) {
                    Ok(v) => {
                        p.toolstack.insert(name.to_string(), v);
                    }
                    Err(e) => {
                        p.toolstack_errors.insert(name.to_string(), e);
                    }
                }
            } else if *listing {
                p.lists.insert(key.clone(), names_of(Some(reply)));
            } else {
                p.put(key, Some(reply));
            }
            left[*i] -= 1;
            if left[*i] == 0 {
                complete(*i, &mut pre[*i]);
            }
        });
    }
}

/// Where [`Batch::chunks_of`] files its second read of `run`.
const RUN_AFTER: &str = "run (read again after its chunks)";

/// Times a guest's run is read again when it was replaced while its
/// chunks were being read (its probe wrote between the reads).
const REREADS: usize = 3;

/// The guests whose `run` changed between the first read and the one after
/// its chunks (a new run written meanwhile: the chunks may be the new
/// run's under the old `run` line, which would read as that seq
/// rewritten) are read again: `run`, then its chunks and `run` again.
/// One that keeps changing is an error for its `run` key, reported for it
/// alone.
fn reread_runs_written_meanwhile(xs: &mut Client, pre: &mut [(u32, Identity, Prefetched)]) {
    let changed = |pre: &[(u32, Identity, Prefetched)]| -> Vec<usize> {
        pre.iter()
            .enumerate()
            .filter(|(_, (_, _, p))| {
                p.values.contains_key(RUN_AFTER) || p.errors.contains_key(RUN_AFTER)
            })
            .filter(|(_, (_, _, p))| p.values.get("run") != p.values.get(RUN_AFTER))
            .map(|(i, _)| i)
            .collect()
    };
    let mut again = changed(pre);
    for _ in 0..REREADS {
        if again.is_empty() {
            break;
        }
        tracing::debug!(
            guests = again.len(),
            "runs written while read: reading them again"
        );
        let mut first = Batch::default();
        for &i in &again {
            let (id, _, p) = &mut pre[i];
            p.values
                .retain(|k, _| !k.starts_with("chunk/") && k != "run");
            p.errors
                .retain(|k, _| !k.starts_with("chunk/") && k != "run");
            first.read(i, &format!("/local/domain/{id}/{DATA_SUBPATH}"), "run");
        }
        first.run(xs, pre);
        let mut chunks = Batch::default();
        for &i in &again {
            let (id, _, p) = &pre[i];
            chunks.chunks_of(i, &format!("/local/domain/{id}/{DATA_SUBPATH}"), p);
        }
        chunks.run(xs, pre);
        again = changed(pre);
    }
    for (i, (_, _, p)) in pre.iter_mut().enumerate() {
        if again.contains(&i) {
            p.errors.insert(
                "run".into(),
                format!("the run kept changing while it was read ({REREADS} times)"),
            );
        }
        p.values.remove(RUN_AFTER);
        p.errors.remove(RUN_AFTER);
    }
}

/// The version 6 runs not read whole (one of their chunks missing, or of
/// another run: the probe wrote between the reads) are read again: chunk/0,
/// then the chunks it announces. One still torn after [`REREADS`] times is
/// left as read: decoding names the chunk that does not fit, for that
/// guest alone. `done` are the guests decoded already.
fn reread_torn_v6_runs(
    xs: &mut Client,
    pre: &mut [(u32, Identity, Prefetched)],
    done: &[Option<Guest>],
) {
    let torn = |pre: &[(u32, Identity, Prefetched)]| -> Vec<usize> {
        pre.iter()
            .enumerate()
            .filter(|(i, (_, _, p))| {
                done[*i].is_none()
                    && p.values
                        .get("chunk/0")
                        .is_some_and(|c| layout::is_run_head(c))
                    && !v6_whole(p)
            })
            .map(|(i, _)| i)
            .collect()
    };
    let mut again = torn(pre);
    for _ in 0..REREADS {
        if again.is_empty() {
            break;
        }
        tracing::debug!(
            guests = again.len(),
            "runs written while read: reading them again"
        );
        let mut first = Batch::default();
        for &i in &again {
            let (id, _, p) = &mut pre[i];
            p.values.retain(|k, _| !k.starts_with("chunk/"));
            p.errors.retain(|k, _| !k.starts_with("chunk/"));
            first.read(i, &format!("/local/domain/{id}/{DATA_SUBPATH}"), "chunk/0");
        }
        first.run(xs, pre);
        let mut rest = Batch::default();
        for &i in &again {
            let (id, _, p) = &pre[i];
            if let Some(c) = p.values.get("chunk/0").filter(|c| layout::is_run_head(c)) {
                rest.later_chunks(i, &format!("/local/domain/{id}/{DATA_SUBPATH}"), c);
            }
        }
        rest.run(xs, pre);
        again = torn(pre);
    }
}

/// One guest's keys read ahead of decoding: values, listings, and the
/// reads that failed (a failed read is an error for that key, never taken
/// for an absent one).
#[derive(Debug, Default, Clone)]
pub struct Prefetched {
    pub values: BTreeMap<String, Vec<u8>>,
    pub lists: BTreeMap<String, Result<Vec<String>, String>>,
    pub errors: BTreeMap<String, String>,
    /// Keys the toolstack wrote (read-only to the guest), never decoded as
    /// guest data.
    pub toolstack: BTreeMap<String, Vec<u8>>,
    /// The toolstack keys whose read failed, and why.
    pub toolstack_errors: BTreeMap<String, String>,
}

impl Prefetched {
    /// Files one read's reply under `key`.
    fn put(&mut self, key: &str, reply: Option<xsmon_xenstore::Result<Reply>>) {
        match reply {
            Some(Ok(Reply::Value(v))) => {
                self.values.insert(key.to_string(), v);
            }
            Some(Err(e)) if e.is_not_found() => {}
            Some(Err(e)) => {
                self.errors.insert(key.to_string(), e.to_string());
            }
            Some(Ok(Reply::Names(_))) | None => {
                self.errors.insert(key.to_string(), "no reply".into());
            }
        }
    }
}

impl Source for Prefetched {
    type Error = String;
    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(e) = self.errors.get(key) {
            return Err(e.clone());
        }
        Ok(self.values.get(key).cloned())
    }
    fn list(&mut self, key: &str) -> Result<Vec<String>, String> {
        self.lists
            .get(key)
            .cloned()
            .unwrap_or_else(|| Ok(Vec::new()))
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
