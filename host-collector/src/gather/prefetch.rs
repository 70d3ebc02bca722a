//! How a cycle reads the guests' keys: many reads sent as one pipeline
//! ([`Batch`]), each reply filed in its guest's [`Prefetched`], and the
//! runs found torn (written while read) read again. What to read, and
//! what the keys mean, is the parent's ([`super`]); this module knows
//! only how a run is read whole.

use std::collections::BTreeMap;

use xsmon_proto::layout::{self, Source, DATA_SUBPATH};
use xsmon_xenstore::{Client, Reply, Request};

use crate::agent_keys::names_of;

/// One domain's keys as read: its domid, identity and prefetched keys.
pub(crate) type Read = (u32, Identity, Prefetched);

/// A toolstack key's value, or why it could not be read.
pub(super) fn value_of(r: Option<xsmon_xenstore::Result<Reply>>) -> Result<Vec<u8>, String> {
    match r {
        Some(Ok(Reply::Value(v))) => Ok(v),
        Some(Ok(Reply::Names(_))) => Err("unexpected listing".into()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no reply".into()),
    }
}

/// Whether a version 6 run was read whole: chunk/0 heads one, and every
/// other chunk it announces was read and names the same run.
pub(super) fn v6_whole(p: &Prefetched) -> bool {
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
pub(super) fn read_whole(p: &Prefetched) -> bool {
    p.values
        .get(RUN_AFTER)
        .is_some_and(|after| p.values.get("run") == Some(after))
}

/// What the toolstack wrote about a domain: its name and VM link, as read.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: Result<Vec<u8>, String>,
    pub vm: Result<Vec<u8>, String>,
}

/// Reads for many guests, sent as one pipeline; each reply is filed in
/// its guest's [`Prefetched`].
#[derive(Default)]
pub(super) struct Batch {
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
    pub(super) fn chunks_of(&mut self, guest: usize, base: &str, p: &Prefetched) {
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
    pub(super) fn later_chunks(&mut self, guest: usize, base: &str, first: &[u8]) {
        for c in 1..layout::chunks_in_head(first).unwrap_or(1) {
            self.read(guest, base, &format!("chunk/{c}"));
        }
    }

    pub(super) fn read(&mut self, guest: usize, base: &str, key: &str) {
        self.reqs.push(Request::Read(format!("{base}/{key}")));
        self.wanted.push((guest, key.to_string(), false));
    }

    /// A toolstack key (absolute path) for guest `guest`, filed under its
    /// last component in [`Prefetched::toolstack`], apart from guest data.
    pub(super) fn toolstack(&mut self, guest: usize, path: String) {
        let key = path.rsplit('/').next().unwrap_or_default().to_string();
        self.reqs.push(Request::Read(path));
        self.wanted.push((guest, format!("@{key}"), false));
    }

    pub(super) fn list(&mut self, guest: usize, base: &str, key: &str) {
        self.reqs.push(Request::Directory(format!("{base}/{key}")));
        self.wanted.push((guest, key.to_string(), true));
    }

    pub(super) fn run(self, xs: &mut Client, pre: &mut [Read]) {
        self.run_then(xs, pre, |_, _| {});
    }

    /// Sends the batch and files each reply as it comes; `complete(i,
    /// guest)` is called the moment every read of guest `i` in the batch
    /// has its reply.
    pub(super) fn run_then(
        self,
        xs: &mut Client,
        pre: &mut [Read],
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
pub(super) const RUN_AFTER: &str = "run (read again after its chunks)";

/// Times a guest's run is read again when it was replaced while its
/// chunks were being read (its probe wrote between the reads).
const REREADS: usize = 3;

/// How one layout's torn runs are read again: the key that heads a run,
/// the keys that belong to it (forgotten before it is read again), and the
/// rest of the run to read once its head is in.
struct RunKeys {
    head: &'static str,
    of_run: fn(&str) -> bool,
    rest: fn(&mut Batch, usize, &str, &Prefetched),
}

/// Reads the runs `torn` finds again, head first and then the rest it
/// announces, up to [`REREADS`] times; returns the guests still torn.
fn reread(
    xs: &mut Client,
    pre: &mut [Read],
    keys: &RunKeys,
    torn: impl Fn(&[Read]) -> Vec<usize>,
) -> Vec<usize> {
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
            p.values.retain(|k, _| !(keys.of_run)(k));
            p.errors.retain(|k, _| !(keys.of_run)(k));
            first.read(i, &format!("/local/domain/{id}/{DATA_SUBPATH}"), keys.head);
        }
        first.run(xs, pre);
        let mut rest = Batch::default();
        for &i in &again {
            let (id, _, p) = &pre[i];
            (keys.rest)(
                &mut rest,
                i,
                &format!("/local/domain/{id}/{DATA_SUBPATH}"),
                p,
            );
        }
        rest.run(xs, pre);
        again = torn(pre);
    }
    again
}

/// The guests whose `run` changed between the first read and the one after
/// its chunks (a new run written meanwhile: the chunks may be the new
/// run's under the old `run` line, which would read as that seq
/// rewritten) are read again: `run`, then its chunks and `run` again.
/// One that keeps changing is an error for its `run` key, reported for it
/// alone.
pub(super) fn reread_runs_written_meanwhile(xs: &mut Client, pre: &mut [Read]) {
    let keys = RunKeys {
        head: "run",
        of_run: |k| k.starts_with("chunk/") || k == "run",
        rest: |batch, i, base, p| batch.chunks_of(i, base, p),
    };
    let changed = |pre: &[Read]| -> Vec<usize> {
        pre.iter()
            .enumerate()
            .filter(|(_, (_, _, p))| {
                p.values.contains_key(RUN_AFTER) || p.errors.contains_key(RUN_AFTER)
            })
            .filter(|(_, (_, _, p))| p.values.get("run") != p.values.get(RUN_AFTER))
            .map(|(i, _)| i)
            .collect()
    };
    let still = reread(xs, pre, &keys, changed);
    for (i, (_, _, p)) in pre.iter_mut().enumerate() {
        if still.contains(&i) {
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
pub(super) fn reread_torn_v6_runs<G>(xs: &mut Client, pre: &mut [Read], done: &[Option<G>]) {
    let keys = RunKeys {
        head: "chunk/0",
        of_run: |k| k.starts_with("chunk/"),
        rest: |batch, i, base, p| {
            if let Some(c) = p.values.get("chunk/0").filter(|c| layout::is_run_head(c)) {
                batch.later_chunks(i, base, c);
            }
        },
    };
    let torn = |pre: &[Read]| -> Vec<usize> {
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
    reread(xs, pre, &keys, torn);
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
    pub(super) fn put(&mut self, key: &str, reply: Option<xsmon_xenstore::Result<Reply>>) {
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
