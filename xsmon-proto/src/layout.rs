//! # The xenstore key layout, versions 1 to 6
//!
//! This page is the contract between `guest-probe` (which writes) and
//! `host-collector` (which reads). Each probe run replaces the whole tree
//! in one xenstore transaction, so a reader never sees half a run.
//!
//! **Where.** By default under the guest's own home, which Xen toolstacks
//! make writable by that guest only:
//!
//! ```text
//! /local/domain/<domid>/data/xsmon/          (BASE; "data/xsmon" relative to the home)
//! ```
//!
//! Optionally (for sites running the 2010 scripts) also or instead under the
//! legacy shared path, which every guest can write, so dom0 reads it only
//! when told to and never trusts the `<name>` in it to identify a guest:
//!
//! ```text
//! /tool/myManagement/domUunsecureFiles/basicMonitoring/<name>/
//! ```
//!
//! **Keys** (relative to BASE; every value is printable UTF-8, no control
//! characters, at most the bytes shown):
//!
//! | key | value | max |
//! |---|---|---|
//! | `version` | layout version, `1` | 8 |
//! | `probe` | the writer, e.g. `guest-probe 0.1.0` | 64 |
//! | `time` | end of the run, Unix seconds (UTC) | 20 |
//! | `seq` | run sequence number, +1 each run | 20 |
//! | `check/<id>/kind` | `cpu`, `swap`, `disk`, `net` (or another `[a-z]` word) | 16 |
//! | `check/<id>/status` | `ok`, `warning`, `error`, `unknown` | 8 |
//! | `check/<id>/target` | what was checked: a mount point, a gateway; may be empty | 512 |
//! | `check/<id>/message` | one line for a human | 256 |
//! | `check/<id>/values` | space-separated `name=number`, name `[a-z0-9_]`, number a finite decimal | 1024 |
//!
//! | `check/<id>/limits` | optional, since layout 3: space-separated `name=warning,error`, a threshold empty when unset | 512 |
//!
//! `<id>` is `[a-z0-9]`, 1 to 16 characters (`cpu`, `swap`, `disk0`..,
//! `net0`..). At most [`MAX_CHECKS`] checks per run.
//!
//! **Quota.** A run uses at most 6 + 7 per check xenstore entries (BASE,
//! its 4 keys, `check`; each check node and its 5 or 6 keys): a guest with
//! 50 filesystems and 8 gateways (61 checks with cpu, swap and mem) writes 433
//! entries, well inside
//! Xen's default of 1000 per domain; every value is far below the default
//! 2048-byte limit.
//!
//! **Version 2** (written by default since xsmon 0.2) keeps the same
//! fields in far fewer keys, because a dom0 pays its xenstore daemon per
//! key read (oxenstored: about 14 µs each; a 1,000-guest dom0 read 32,000
//! keys in version 1):
//!
//! | key | value | max |
//! |---|---|---|
//! | `version` | `2` | 8 |
//! | `run` | `<time> <seq> <chunks> <probe>` | 200 |
//! | `chunk/<n>` for n = 0 .. chunks-1 | six fields per check: `<id> <kind> <status> <target> <message> <values>` | 2000 |
//!
//! **Version 3** (written by default since xsmon 0.3) is version 2 with a
//! seventh field per check, `<limits>`: the thresholds the guest graded its
//! figures against (`used_pct=85,95 inodes_pct=85,95`), which dom0 passes
//! on to graphs and Nagios performance data. Its `version` key is `3`;
//! chunks hold fields in sevens. A version 1 writer may add the same
//! `check/<id>/limits` key, which readers before xsmon 0.3 ignore.
//!
//! **Version 4** (written by default since xsmon 0.4) is version 3 with a
//! fifth field in the run line, before the probe:
//! `<time> <seq> <chunks> <resumed> <probe>`. `resumed` is `-`, or
//! `<from_domid>,<suspended_ms>` (either part `?` when unknown) when the
//! probe found that its domain was suspended since its previous run or
//! during this one: saved and restored, or migrated, both of which give
//! the VM a new domain. The run's interval figures then start afresh (no
//! delta spans the suspension) and its steal is not graded (the guest's
//! kernel books the time its new domain spent being restored as steal).
//! `from_domid` is the domid of the previous run's domain; `suspended_ms`
//! how much CLOCK_BOOTTIME grew over CLOCK_MONOTONIC (Linux books a Xen
//! suspension there, as it does a sleep). Readers keep reading versions 1
//! to 3 (where `resumed` is unknown).
//!
//! **Version 5** (introduced in xsmon 0.5, whose default is version 6) is version 4 with a
//! sixth field in the run line, before the probe:
//! `<time> <seq> <chunks> <resumed> <boot> <probe>`. `boot` is the guest
//! kernel's boot id (`/proc/sys/kernel/random/boot_id`, 32 lowercase hex
//! digits without its dashes), or `-` when the probe cannot read it. It
//! stays the same for the whole life of a kernel: across saves,
//! restores and migrations, whatever domain the kernel runs in, and it
//! changes with every boot. So dom0 tells a reboot from a restore by
//! comparing the boot of a new domain's run with the boot of the VM's
//! previous run, whichever run of the new domain it happens to read
//! first (`resumed` is only in the first run after a suspension, which a
//! cycle may not see). Readers keep reading versions 1 to 4 (where `boot`
//! is unknown).
//!
//! **Version 6** (written by default since xsmon 0.6) has the same fields
//! as version 5 in one key fewer, and lets dom0 read a typical guest with
//! one key instead of three, checked whole without a second read: the run
//! line moves to the head of `chunk/0`, and every chunk names its run.
//!
//! | key | value | max |
//! |---|---|---|
//! | `version` | `6` (for readers of versions 1 to 5, which then say the layout is newer than theirs) | 8 |
//! | `chunk/0` | `xsmon/6 <time> <seq> <chunks> <resumed> <boot> <probe>`, then the checks' fields | 2000 |
//! | `chunk/<n>` for n = 1 .. chunks-1 | `xsmon/6 <time> <seq>`, then the checks' fields | 2000 |
//!
//! `xsmon/6` ([`RUN_MARK`]) cannot be a check id (ids have no `/`), so a
//! reader that reads `chunk/0` first knows from it alone that it holds a
//! version 6 run, and needs `version` only when it does not. A run has at
//! least `chunk/0`, even with no check. A reader takes the chunks for one
//! run only when each names the `<time> <seq>` of `chunk/0` (the probe
//! replaces them all in one transaction; a reader between two runs may
//! read `chunk/0` of one and `chunk/1` of the next).
//!
//! Fields are separated by single spaces and escaped as in the SNMP line
//! format (`\\`, `\s`, `\xHH`, the empty field `\e`), so a chunk holds
//! printable ASCII only, and its fields come in sixes (sevens from
//! version 3); a check is never
//! split across chunks; at most [`MAX_CHUNKS`] chunks. Once unescaped, every field obeys
//! exactly the rules of version 1 (the decoder feeds them through the same
//! checks), and an id may appear once. A typical guest writes 3 keys.
//! Readers accept both versions; [`encode_v1`] still writes version 1 for
//! sites whose dom0s are not upgraded yet (`[xenstore] layout = 1` in the
//! probe's config).
//!
//! **Trust.** Everything under BASE was written by the guest and is hostile
//! input to dom0: [`decode`] accepts only the keys and syntax above, bounds
//! every size before looking at the content, and reports the first key that
//! breaks a rule.

mod chunk;
mod rules;

use crate::check::CheckResult;
pub use crate::resume::{BootId, Resumed, BOOT_ID_LEN};
pub use crate::source::Source;
#[cfg(feature = "xenstore")]
pub use crate::source::XenstoreSource;
use crate::text;
use crate::values::{encode_limits, encode_values, valid_word};
pub use crate::values::{
    parse_limits, parse_values, round3, valid_value_name, MAX_LIMITS, MAX_NUMBER, MAX_VALUES,
};
use chunk::{check_records, pack, ChunkChecks};
use rules::{
    check_from, check_id, check_order, err, parse_seq, parse_time, read_text, require, text_field,
};
pub use rules::{
    DecodeError, EncodeError, MAX_CHECKS, MAX_ID, MAX_KIND, MAX_MESSAGE, MAX_PROBE, MAX_TARGET,
};

/// The newest layout version, written by default.
pub const VERSION: u32 = 6;
/// The first field of every chunk of a version 6 run (see the module's
/// page): never a check id, which has no `/`.
pub const RUN_MARK: &str = "xsmon/6";
/// Most `chunk/<n>` keys of a version 2 run.
pub const MAX_CHUNKS: usize = 64;
/// Longest `chunk/<n>` value (xenstored's default quota is 2048 bytes).
pub const MAX_CHUNK: usize = 2000;
/// Longest `run` value.
pub const MAX_RUN: usize = 200;
/// Longest check in a chunk, escaped: what a chunk holds beside the
/// longest run line version 6 puts at its head.
const RECORD_MAX: usize = MAX_CHUNK - MAX_RUN;
/// BASE, relative to a domain's home (`/local/domain/<domid>`).
pub const DATA_SUBPATH: &str = "data/xsmon";
/// The 2010 design's shared directory (one subdirectory per guest name).
pub const LEGACY_ROOT: &str = "/tool/myManagement/domUunsecureFiles/basicMonitoring";

/// xenstore entries one run uses, for a number of checks.
pub fn entries_for(checks: usize) -> usize {
    // BASE, version, probe, time, seq; `check`; per check its node + 6 keys
    // (`limits` included).
    5 + 1 + checks * 7
}

/// One probe run, as stored under BASE.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub probe: String,
    /// Unix seconds when the run finished.
    pub time: i64,
    pub seq: u64,
    pub checks: Vec<CheckResult>,
    /// Set when the probe found that its domain was suspended (saved and
    /// restored, or migrated) since its previous run, or during this one
    /// (layout 4; `None` in older layouts).
    pub resumed: Option<Resumed>,
    /// The guest kernel's boot id (layout 5; `None` in older layouts or
    /// when the probe could not read it): the same across suspensions, new
    /// with every boot.
    pub boot: Option<BootId>,
}

/// Encodes a run in the newest layout (version 6).
pub fn encode(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    encode_v6(run)
}

/// Encodes a run in layout version 6: version 5's fields, the run line at
/// the head of `chunk/0` and each chunk naming its run.
pub fn encode_v6(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    let records = check_records(&run.checks, &encode_v1(run)?, true, RECORD_MAX)?;
    let probe = text::escape(&text::clean(&run.probe, MAX_PROBE));
    let tail = format!(
        "{} {} {probe}",
        Resumed::field(run.resumed.as_ref()),
        BootId::field(run.boot.as_ref())
    );
    let head = format!("{RUN_MARK} {} {}", run.time, run.seq);
    // chunk/0's head holds the chunk count, at most two digits.
    let first_head = head.len() + " 64 ".len() + tail.len();
    let chunks = pack(
        records,
        MAX_CHUNK - first_head - 1,
        MAX_CHUNK - head.len() - 1,
    );
    let count = chunks.len().max(1);
    if count > MAX_CHUNKS {
        return Err(EncodeError {
            key: "chunk".into(),
            problem: format!("{count} chunks, at most {MAX_CHUNKS}"),
        });
    }
    let mut out = vec![("version".to_string(), b"6".to_vec())];
    for i in 0..count {
        let mut chunk = if i == 0 {
            format!("{head} {count} {tail}")
        } else {
            head.clone()
        };
        if let Some(checks) = chunks.get(i) {
            chunk.push(' ');
            chunk.push_str(checks);
        }
        out.push((format!("chunk/{i}"), chunk.into_bytes()));
    }
    Ok(out)
}

/// Encodes a run in layout version 5: version 4 with the kernel's boot id
/// in the run line.
pub fn encode_v5(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    encode_chunked(run, 5)
}

/// Encodes a run in layout version 4: version 3 with the `resumed` field
/// in the run line.
pub fn encode_v4(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    encode_chunked(run, 4)
}

/// Encodes a run in layout version 3: version 2 with each check's limits.
pub fn encode_v3(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    encode_chunked(run, 3)
}

/// Encodes a run in layout version 2: `version`, `run`, `chunk/<n>`
/// (limits are left out: a version 2 reader would refuse them).
pub fn encode_v2(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    encode_chunked(run, 2)
}

fn encode_chunked(run: &Run, version: u32) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    let records = check_records(&run.checks, &encode_v1(run)?, version >= 3, RECORD_MAX)?;
    let chunks = pack(records, MAX_CHUNK, MAX_CHUNK);
    if chunks.len() > MAX_CHUNKS {
        return Err(EncodeError {
            key: "chunk".into(),
            problem: format!("{} chunks, at most {MAX_CHUNKS}", chunks.len()),
        });
    }
    let probe = text::escape(&text::clean(&run.probe, MAX_PROBE));
    let mut out = vec![
        ("version".to_string(), version.to_string().into_bytes()),
        (
            "run".to_string(),
            if version >= 5 {
                format!(
                    "{} {} {} {} {} {probe}",
                    run.time,
                    run.seq,
                    chunks.len(),
                    Resumed::field(run.resumed.as_ref()),
                    BootId::field(run.boot.as_ref())
                )
            } else if version >= 4 {
                format!(
                    "{} {} {} {} {probe}",
                    run.time,
                    run.seq,
                    chunks.len(),
                    Resumed::field(run.resumed.as_ref())
                )
            } else {
                format!("{} {} {} {probe}", run.time, run.seq, chunks.len())
            }
            .into_bytes(),
        ),
    ];
    for (i, c) in chunks.into_iter().enumerate() {
        out.push((format!("chunk/{i}"), c.into_bytes()));
    }
    Ok(out)
}

/// Encodes a run in layout version 1 (one key per field).
///
/// Free text (message, target) is cleaned and cut to size, since a mount
/// point may contain anything; ids, kinds and value names must already be
/// valid.
pub fn encode_v1(run: &Run) -> Result<Vec<(String, Vec<u8>)>, EncodeError> {
    if run.checks.len() > MAX_CHECKS {
        return Err(EncodeError {
            key: "check".into(),
            problem: format!("{} checks, at most {MAX_CHECKS}", run.checks.len()),
        });
    }
    let mut out = vec![
        ("version".to_string(), b"1".to_vec()),
        (
            "probe".to_string(),
            text::clean(&run.probe, MAX_PROBE).into_bytes(),
        ),
        ("time".to_string(), run.time.to_string().into_bytes()),
        ("seq".to_string(), run.seq.to_string().into_bytes()),
    ];
    let mut seen = std::collections::HashSet::new();
    for c in &run.checks {
        let key = |k: &str| format!("check/{}/{k}", c.id);
        if !valid_word(&c.id, MAX_ID, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit()
        }) || !seen.insert(&c.id)
        {
            return Err(EncodeError {
                key: format!("check/{}", text::clean(&c.id, 40)),
                problem: "id must be unique, [a-z0-9], 1 to 16 characters".into(),
            });
        }
        if !valid_word(&c.kind, MAX_KIND, |b| b.is_ascii_lowercase()) {
            return Err(EncodeError {
                key: key("kind"),
                problem: "kind must be [a-z], 1 to 16 characters".into(),
            });
        }
        let values = encode_values(&c.values).map_err(|problem| EncodeError {
            key: key("values"),
            problem,
        })?;
        out.push((key("kind"), c.kind.clone().into_bytes()));
        out.push((key("status"), c.status.as_str().as_bytes().to_vec()));
        out.push((
            key("target"),
            text::clean(&c.target, MAX_TARGET).into_bytes(),
        ));
        out.push((
            key("message"),
            text::clean(&c.message, MAX_MESSAGE).into_bytes(),
        ));
        out.push((key("values"), values.into_bytes()));
        if !c.limits.is_empty() {
            let limits = encode_limits(&c.limits).map_err(|problem| EncodeError {
                key: key("limits"),
                problem,
            })?;
            out.push((key("limits"), limits.into_bytes()));
        }
    }
    Ok(out)
}

/// Reads and validates one run from a guest: `chunk/0` first, which names
/// a version 6 run by itself, else `version`. Returns `Ok(None)` when the
/// guest has written nothing at all (neither), and an error naming the
/// first offending key otherwise.
pub fn decode<S: Source>(src: &mut S) -> Result<Option<Run>, DecodeError> {
    if let Some(first) = read_text(src, "chunk/0", MAX_CHUNK)? {
        if is_run_head(first.as_bytes()) {
            return decode_v6(src, &first).map(Some);
        }
    }
    let Some(version) = read_text(src, "version", 8)? else {
        return Ok(None);
    };
    match version.as_str() {
        "1" => decode_v1(src).map(Some),
        "2" => decode_chunked(src, 2).map(Some),
        "3" => decode_chunked(src, 3).map(Some),
        "4" => decode_chunked(src, 4).map(Some),
        "5" => decode_chunked(src, 5).map(Some),
        "6" => Err(err(
            "chunk/0",
            format!("missing, or not headed by {RUN_MARK} as layout 6 wants"),
        )),
        _ => Err(err(
            "version",
            format!(
                "layout version {:?} is not 1, 2, 3, 4, 5 or 6",
                text::clean(&version, 8)
            ),
        )),
    }
}

/// Whether a `chunk/0` value holds a version 6 run line (it starts with
/// [`RUN_MARK`]): a reader that fetched it first then needs no `version`.
pub fn is_run_head(chunk0: &[u8]) -> bool {
    chunk0
        .strip_prefix(RUN_MARK.as_bytes())
        .is_some_and(|rest| rest.first() == Some(&b' '))
}

/// The number of chunks a version 6 `chunk/0` announces (bounded), for a
/// reader that fetches the others ahead; `None` if it is not well formed.
pub fn chunks_in_head(chunk0: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(chunk0).ok()?;
    let n: usize = s.split(' ').nth(3)?.parse().ok()?;
    (1..=MAX_CHUNKS).contains(&n).then_some(n)
}

/// Whether version 6 chunk `chunk` belongs to the run whose `chunk/0` is
/// `chunk0`: it names the same `<time> <seq>`.
pub fn same_run(chunk0: &[u8], chunk: &[u8]) -> bool {
    let run_of = |c: &[u8]| -> Option<Vec<u8>> {
        let mut f = c.split(|b| *b == b' ');
        if f.next()? != RUN_MARK.as_bytes() {
            return None;
        }
        Some([f.next()?, b" ", f.next()?].concat())
    };
    run_of(chunk0).is_some_and(|r| run_of(chunk) == Some(r))
}

/// Whether a `version` value names a layout with a `run` key and
/// `chunk/<n>` keys (2 to 5), which a reader fetches ahead. (Version 6
/// has its run line in `chunk/0`: see [`is_run_head`].)
pub fn is_chunked(version: &[u8]) -> bool {
    std::str::from_utf8(version)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| (2..=5).contains(&v) && version.len() == 1)
}

/// The number of chunks a version 2 `run` value announces (bounded), for
/// a reader that fetches them ahead; `None` if it is not well formed.
pub fn chunks_announced(run: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(run).ok()?;
    let n: usize = s.split(' ').nth(2)?.parse().ok()?;
    (n <= MAX_CHUNKS).then_some(n)
}

/// A run line's fields as a layout places them, before they are checked:
/// `key` is where the line is kept (`run`, or `chunk/0` in layout 6).
struct RunLine<'a> {
    key: &'a str,
    version: u32,
    time: &'a str,
    seq: &'a str,
    chunks: &'a str,
    /// The fewest chunks the layout allows (6 keeps its line in chunk/0).
    min_chunks: usize,
    /// Absent in the layouts before the field existed.
    resumed: Option<&'a str>,
    boot: Option<&'a str>,
    /// Escaped, as written.
    probe: &'a str,
}

impl RunLine<'_> {
    /// Checks the line by exactly the rules of version 1 (the same
    /// functions: a field read from a line goes through [`text_field`], as
    /// a version 1 key through [`read_text`]), its errors named as version
    /// 1 names its keys, with the layout. Returns the number of chunks it
    /// announces and the run it heads, its checks still to be read.
    fn check(&self) -> Result<(usize, Run), DecodeError> {
        let line_err = |e: String| err(self.key, e);
        let chunks: usize = self
            .chunks
            .parse()
            .ok()
            .filter(|n| (self.min_chunks..=MAX_CHUNKS).contains(n))
            .ok_or_else(|| {
                line_err(format!(
                    "chunk count {:?} is not {} to {MAX_CHUNKS}",
                    text::clean(self.chunks, 20),
                    self.min_chunks
                ))
            })?;
        let resumed = match self.resumed {
            Some(f) => Resumed::parse_field(f).map_err(line_err)?,
            None => None,
        };
        let boot = match self.boot {
            Some(f) => BootId::parse_field(f).map_err(line_err)?,
            None => None,
        };
        let in_layout = |e: DecodeError| DecodeError {
            key: format!("{} (layout {})", e.key, self.version),
            problem: e.problem,
        };
        let probe = crate::text::unescape(self.probe).map_err(line_err)?;
        let probe =
            require(text_field("probe", Some(&probe), MAX_PROBE)?, "probe").map_err(in_layout)?;
        let time =
            parse_time(text_field("time", Some(self.time), MAX_NUMBER)).map_err(in_layout)?;
        let seq = parse_seq(text_field("seq", Some(self.seq), MAX_NUMBER)).map_err(in_layout)?;
        let run = Run {
            probe,
            time,
            seq,
            checks: Vec::new(),
            resumed,
            boot,
        };
        Ok((chunks, run))
    }
}

/// `run` with the checks found in its chunks, in the order every layout
/// gives them.
fn with_checks(mut run: Run, found: ChunkChecks) -> Run {
    run.checks = found.checks;
    run.checks.sort_by_key(check_order);
    run
}

/// Versions 2 to 5: the `run` line, then the chunks it announces; the
/// checks by the rules of version 1.
fn decode_chunked<S: Source>(src: &mut S, version: u32) -> Result<Run, DecodeError> {
    let per_check = if version >= 3 { 7 } else { 6 };
    let line = require(read_text(src, "run", MAX_RUN)?, "run")?;
    let f: Vec<&str> = line.split(' ').collect();
    let want = match version {
        5.. => 6,
        4 => 5,
        _ => 4,
    };
    if f.len() != want {
        return Err(err("run", format!("{} fields, expected {want}", f.len())));
    }
    let (chunks, run) = RunLine {
        key: "run",
        version,
        time: f[0],
        seq: f[1],
        chunks: f[2],
        min_chunks: 0,
        resumed: (version >= 4).then(|| f[3]),
        boot: (version >= 5).then(|| f[4]),
        probe: f[want - 1],
    }
    .check()?;
    let mut found = ChunkChecks::default();
    for i in 0..chunks {
        let key = format!("chunk/{i}");
        let chunk = require(read_text(src, &key, MAX_CHUNK)?, &key)?;
        let fields: Vec<&str> = chunk.split(' ').collect();
        found.add(&key, &fields, per_check, version)?;
    }
    Ok(with_checks(run, found))
}

/// Version 6: the run line at the head of `chunk/0`, each later chunk
/// headed by the same `<time> <seq>`; the checks as in version 5.
fn decode_v6<S: Source>(src: &mut S, first: &str) -> Result<Run, DecodeError> {
    const HEAD: usize = 7;
    let f: Vec<&str> = first.split(' ').collect();
    if f.len() < HEAD {
        return Err(err(
            "chunk/0",
            format!("{} fields, its run line wants {HEAD}", f.len()),
        ));
    }
    let (chunks, run) = RunLine {
        key: "chunk/0",
        version: 6,
        time: f[1],
        seq: f[2],
        chunks: f[3],
        min_chunks: 1,
        resumed: Some(f[4]),
        boot: Some(f[5]),
        probe: f[6],
    }
    .check()?;
    let mut found = ChunkChecks::default();
    found.add("chunk/0", &f[HEAD..], 7, 6)?;
    for i in 1..chunks {
        let key = format!("chunk/{i}");
        let chunk = require(read_text(src, &key, MAX_CHUNK)?, &key)?;
        if !same_run(first.as_bytes(), chunk.as_bytes()) {
            return Err(err(
                &key,
                format!(
                    "not headed by chunk/0's {RUN_MARK} {} {}: a chunk of another run",
                    f[1], f[2]
                ),
            ));
        }
        let fields: Vec<&str> = chunk.split(' ').skip(3).collect();
        found.add(&key, &fields, 7, 6)?;
    }
    Ok(with_checks(run, found))
}

/// Version 1: one key per field.
fn decode_v1<S: Source>(src: &mut S) -> Result<Run, DecodeError> {
    let probe = require(read_text(src, "probe", MAX_PROBE)?, "probe")?;
    let time = parse_time(read_text(src, "time", MAX_NUMBER))?;
    let seq = parse_seq(read_text(src, "seq", MAX_NUMBER))?;

    let ids = src
        .list("check")
        .map_err(|e| err("check", format!("cannot list: {e}")))?;
    if ids.len() > MAX_CHECKS {
        return Err(err(
            "check",
            format!("{} checks, at most {MAX_CHECKS}", ids.len()),
        ));
    }
    let mut checks = Vec::with_capacity(ids.len());
    for id in ids {
        check_id(&id).map_err(|problem| err("check", problem))?;
        checks.push(check_from(&id, |name, max| {
            read_text(src, &format!("check/{id}/{name}"), max)
        })?);
    }
    checks.sort_by_key(check_order);
    Ok(Run {
        probe,
        time,
        seq,
        checks,
        resumed: None,
        boot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;
    use crate::check::{Limit, Value};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn sample(n_disks: usize, n_gws: usize) -> Run {
        let mut checks = Vec::new();
        let mut cpu = CheckResult::new("cpu", "cpu", "");
        cpu.message = "load 0.52 per cpu, iowait 1.3%, steal 0.0%".into();
        cpu.value("load1", 0.52)
            .value("iowait_pct", 1.3)
            .value("steal_pct", 0.0)
            .limit("iowait_pct", Some(20.0), Some(40.0))
            .limit("steal_pct", Some(10.5), None);
        checks.push(cpu);
        let mut swap = CheckResult::new("swap", "swap", "");
        swap.status = Status::Warning;
        swap.message = "swapping 120 pages/s".into();
        swap.value("pages_per_s", 120.0);
        checks.push(swap);
        for i in 0..n_disks {
            let mut d = CheckResult::new(
                format!("disk{i}"),
                "disk",
                format!("/srv/data/volume-{i:03}/with/a/longish/path"),
            );
            d.message = format!("{i}% used, 12% inodes");
            d.value("used_pct", i as f64)
                .value("inodes_pct", 12.0)
                .value("size_bytes", 1.0e12)
                .limit("used_pct", Some(85.0), Some(95.0))
                .limit("inodes_pct", Some(85.0), Some(95.0));
            checks.push(d);
        }
        for i in 0..n_gws {
            let mut g = CheckResult::new(format!("net{i}"), "net", format!("10.0.{i}.1"));
            g.status = Status::Error;
            g.message = "gateway 10.0.0.1 unreachable (3/3 lost)".into();
            g.value("loss_pct", 100.0);
            checks.push(g);
        }
        Run {
            probe: "guest-probe 0.1.0".into(),
            time: 1_764_097_200,
            seq: 42,
            checks,
            resumed: None,
            boot: None,
        }
    }

    fn to_map(pairs: Vec<(String, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
        pairs.into_iter().collect()
    }

    #[test]
    fn round_trip() {
        let run = sample(3, 2);
        for pairs in [encode(&run).unwrap(), encode_v1(&run).unwrap()] {
            let decoded = decode(&mut to_map(pairs)).unwrap().unwrap();
            assert_eq!(decoded, run);
        }
        // Version 2 has no room for limits; everything else survives.
        let mut without_limits = run.clone();
        without_limits
            .checks
            .iter_mut()
            .for_each(|c| c.limits.clear());
        let pairs = encode_v2(&run).unwrap();
        assert_eq!(pairs[0], ("version".into(), b"2".to_vec()));
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), without_limits);
    }

    #[test]
    fn version_4_carries_the_resumed_field_and_3_still_reads() {
        let mut run = sample(2, 1);
        run.resumed = Some(Resumed {
            from_domid: Some(12),
            suspended_ms: None,
        });
        let pairs = encode_v4(&run).unwrap();
        assert_eq!(pairs[0], ("version".into(), b"4".to_vec()));
        assert!(String::from_utf8_lossy(&pairs[1].1).contains(" 12,? guest-probe"));
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), run);
        // A version 3 writer (an older probe) has no such field.
        let pairs = encode_v3(&run).unwrap();
        let mut old = run.clone();
        old.resumed = None;
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), old);
        for bad in [
            "12",
            "x,1",
            "99999,1",
            "1,1234567890123",
            ",",
            "-1,5",
            "1,\\n",
        ] {
            assert!(Resumed::parse_field(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Resumed::parse_field("?,8450").unwrap(),
            Some(Resumed {
                from_domid: None,
                suspended_ms: Some(8450)
            })
        );
        assert_eq!(Resumed::parse_field("-").unwrap(), None);
    }

    #[test]
    fn run_keyed_versions_are_2_to_5() {
        for v in 2..=5 {
            assert!(is_chunked(v.to_string().as_bytes()), "{v}");
        }
        for v in [&b"1"[..], b"6", b"7", b"05", b"", b"x", b"4 "] {
            assert!(!is_chunked(v), "{v:?}");
        }
    }

    #[test]
    fn version_5_carries_the_boot_id_and_4_still_reads() {
        let mut run = sample(2, 1);
        run.boot = BootId::from_kernel("0F1E2D3C-4B5A-6978-8796-a5b4c3d2e1f0\n");
        assert_eq!(
            run.boot.as_ref().map(BootId::as_str),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
        let pairs = encode_v5(&run).unwrap();
        assert_eq!(pairs[0], ("version".into(), b"5".to_vec()));
        assert!(String::from_utf8_lossy(&pairs[1].1)
            .contains(" - 0f1e2d3c4b5a69788796a5b4c3d2e1f0 guest-probe"));
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), run);
        // Unknown boot: `-`.
        let mut unknown = run.clone();
        unknown.boot = None;
        let pairs = encode_v5(&unknown).unwrap();
        assert!(String::from_utf8_lossy(&pairs[1].1).contains(" - - guest-probe"));
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), unknown);
        // A version 4 writer (an older probe) has no such field.
        let mut old = run.clone();
        old.boot = None;
        assert_eq!(
            decode(&mut to_map(encode_v4(&run).unwrap()))
                .unwrap()
                .unwrap(),
            old
        );
        for bad in [
            "",
            "0f1e",
            "not-a-uuid",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0aa",
        ] {
            assert!(BootId::from_kernel(bad).is_none(), "{bad}");
        }
        // In the run line, exactly the 32 lowercase digits a probe writes.
        for bad in [
            "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "",
        ] {
            assert!(BootId::parse_field(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_limits_are_rejected() {
        let base = to_map(encode_v1(&sample(1, 0)).unwrap());
        for (bad, expect) in [
            ("used_pct=85", "not name=warning,error"),
            ("used_pct=85,inf", "not a finite number"),
            ("Used=1,2", "not [a-z0-9_]"),
            ("used_pct=1,2 used_pct=3,4", "twice"),
        ] {
            let mut m = base.clone();
            m.insert("check/disk0/limits".into(), bad.as_bytes().to_vec());
            let e = decode(&mut m).unwrap_err();
            assert_eq!(e.key, "check/disk0/limits");
            assert!(e.problem.contains(expect), "{bad}: {}", e.problem);
        }
        let mut m = base.clone();
        m.insert("check/disk0/limits".into(), vec![b'a'; MAX_LIMITS + 1]);
        assert!(decode(&mut m).unwrap_err().problem.contains("bytes"));
    }

    #[test]
    fn version_2_is_three_keys_for_a_typical_guest() {
        let run = sample(3, 2);
        let keys: Vec<String> = encode_v5(&run)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["version", "run", "chunk/0"]);
        // 50 filesystems and 8 gateways: a few chunks, each within quota.
        let big = encode_v5(&sample(50, 8)).unwrap();
        assert!(big.len() < 10, "{} keys", big.len());
        assert!(big.iter().all(|(_, v)| v.len() <= MAX_CHUNK));
        assert_eq!(decode(&mut to_map(big)).unwrap().unwrap(), sample(50, 8));
    }

    #[test]
    fn version_2_hostile_chunks_are_rejected_by_the_version_1_rules() {
        let base = to_map(encode_v5(&sample(1, 1)).unwrap());
        let chunk = String::from_utf8(base["chunk/0"].clone()).unwrap();
        let cases: Vec<(&str, String, &str)> = vec![
            // An escaped newline unescapes to a control character.
            (
                "chunk/0",
                chunk.replacen("swapping", "swapping\\x0aFORGED", 1),
                "control character",
            ),
            ("chunk/0", format!("{chunk} extra"), "not 7 per check"),
            (
                "chunk/0",
                chunk.replacen("cpu cpu", "cpu cpu cpu cpu", 1),
                "not 7 per check",
            ),
            (
                "chunk/0",
                format!(
                    "{chunk} {}",
                    chunk.split(' ').take(7).collect::<Vec<_>>().join(" ")
                ),
                "twice",
            ),
            (
                "chunk/0",
                chunk.replacen("steal_pct=10.5,", "steal_pct=10.5;", 1),
                "not name=warning,error",
            ),
            (
                "chunk/0",
                chunk.replacen(" ok ", " fine ", 1),
                "unknown status",
            ),
            ("chunk/0", chunk.replacen("cpu", "\\q", 1), "bad escape"),
            ("run", "1 2 65 - - p".into(), "chunk count"),
            ("run", "1 2 1 - p".into(), "expected 6"),
            ("run", "1 2 1 7;3 - p".into(), "resumed field"),
            ("run", "1 2 1 - XYZ p".into(), "boot field"),
            ("run", format!("1 2 1 - {} p", "a".repeat(33)), "boot field"),
            (
                "run",
                format!("1 2 1 - {}\\n p", "a".repeat(30)),
                "boot field",
            ),
            ("run", "yesterday 2 1 - - p".into(), "not Unix seconds"),
            ("version", "7".into(), "layout version"),
            ("version", "6".into(), "not headed by xsmon/6"),
        ];
        for (key, value, expect) in cases {
            let mut m = base.clone();
            let version_6 = value == "6";
            m.insert(key.to_string(), value.into_bytes());
            let e = decode(&mut m).unwrap_err();
            assert!(
                e.key.starts_with(key) || e.key.contains("layout 5") || version_6,
                "{key}: {e}"
            );
            assert!(e.problem.contains(expect), "{key}: {}", e.problem);
        }
        let mut m = base.clone();
        m.insert("run".into(), b"1 2 2 - - p".to_vec());
        assert_eq!(
            decode(&mut m).unwrap_err().key,
            "chunk/1",
            "a missing chunk"
        );
    }

    #[test]
    fn version_6_is_two_keys_for_a_typical_guest_and_reads_back_whole() {
        let mut run = sample(3, 2);
        run.resumed = Some(Resumed {
            from_domid: Some(12),
            suspended_ms: Some(8450),
        });
        run.boot = BootId::from_kernel("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        let pairs = encode(&run).unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["version", "chunk/0"]);
        assert_eq!(pairs[0].1, b"6");
        let head = String::from_utf8_lossy(&pairs[1].1).into_owned();
        assert!(
            head.starts_with(&format!(
                "xsmon/6 {} {} 1 12,8450 0f1e2d3c4b5a69788796a5b4c3d2e1f0 guest-probe",
                run.time, run.seq
            )),
            "{head}"
        );
        assert!(is_run_head(&pairs[1].1) && chunks_in_head(&pairs[1].1) == Some(1));
        assert_eq!(decode(&mut to_map(pairs.clone())).unwrap().unwrap(), run);
        // A reader needs no `version` for it.
        let mut m = to_map(pairs);
        m.remove("version");
        assert_eq!(decode(&mut m).unwrap().unwrap(), run);
        // No check at all: still chunk/0, with the run line alone.
        let empty = sample(0, 0);
        let mut none = empty.clone();
        none.checks.clear();
        let pairs = encode(&none).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(decode(&mut to_map(pairs)).unwrap().unwrap(), none);
        // 50 filesystems and 8 gateways: every chunk within quota, each
        // headed by the run it belongs to.
        let big = encode(&sample(50, 8)).unwrap();
        assert!(big.len() > 3 && big.len() < 10, "{} keys", big.len());
        assert!(big.iter().all(|(_, v)| v.len() <= MAX_CHUNK));
        assert_eq!(chunks_in_head(&big[1].1), Some(big.len() - 1));
        for (_, chunk) in &big[2..] {
            assert!(same_run(&big[1].1, chunk));
        }
        assert_eq!(decode(&mut to_map(big)).unwrap().unwrap(), sample(50, 8));
    }

    #[test]
    fn version_6_hostile_chunks_and_torn_runs_are_rejected() {
        let base = to_map(encode(&sample(1, 1)).unwrap());
        let chunk = String::from_utf8(base["chunk/0"].clone()).unwrap();
        let head: Vec<&str> = chunk.split(' ').take(7).collect();
        let with_head = |f: &[&str]| -> String {
            let rest: Vec<&str> = chunk.split(' ').skip(7).collect();
            format!("{} {}", f.join(" "), rest.join(" "))
        };
        let mut count65 = head.clone();
        count65[3] = "65";
        let mut count0 = head.clone();
        count0[3] = "0";
        let mut resumed = head.clone();
        resumed[4] = "7;3";
        let mut boot = head.clone();
        boot[5] = "XYZ";
        let mut time = head.clone();
        time[1] = "yesterday";
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "chunk/0",
                chunk.replacen("swapping", "swapping\\x0aG\\svictim\\s7\\sforged", 1),
                "control character",
            ),
            ("chunk/0", format!("{chunk} extra"), "not 7 per check"),
            ("chunk/0", "xsmon/6 1 2".into(), "its run line wants 7"),
            ("chunk/0", with_head(&count65), "chunk count"),
            ("chunk/0", with_head(&count0), "chunk count"),
            ("chunk/0", with_head(&resumed), "resumed field"),
            ("chunk/0", with_head(&boot), "boot field"),
            ("chunk/0", with_head(&time), "not Unix seconds"),
        ];
        for (key, value, expect) in cases {
            let mut m = base.clone();
            m.insert(key.to_string(), value.into_bytes());
            let e = decode(&mut m).unwrap_err();
            assert!(
                e.key.starts_with(key) || e.key.contains("layout 6"),
                "{key}: {e}"
            );
            assert!(e.problem.contains(expect), "{key}: {}", e.problem);
        }
        // Two chunks announced: the second missing, then of another run
        // (the probe wrote between the reader's two reads).
        let mut two = head.clone();
        two[3] = "2";
        let mut m = base.clone();
        m.insert("chunk/0".into(), with_head(&two).into_bytes());
        assert_eq!(decode(&mut m).unwrap_err().key, "chunk/1");
        let next_seq = format!(
            "xsmon/6 {} {}",
            head[1],
            head[2].parse::<u64>().unwrap() + 1
        );
        m.insert("chunk/1".into(), next_seq.clone().into_bytes());
        let e = decode(&mut m).unwrap_err();
        assert_eq!(e.key, "chunk/1");
        assert!(e.problem.contains("a chunk of another run"), "{e}");
        assert!(!same_run(&m["chunk/0"], next_seq.as_bytes()));
        let same = format!("xsmon/6 {} {}", head[1], head[2]);
        m.insert("chunk/1".into(), same.into_bytes());
        assert_eq!(decode(&mut m).unwrap().unwrap(), sample(1, 1));
        // No check id can pass for the mark: an id has no `/`.
        assert!(!is_run_head(b"xsmon6 cpu cpu ok"));
        assert!(!is_run_head(b"xsmon/6"));
        assert!(check_id(RUN_MARK).is_err());
    }

    #[test]
    fn fifty_filesystems_and_eight_gateways_fit_the_default_quotas() {
        let run = sample(50, 8);
        let pairs = encode_v1(&run).unwrap();
        assert_eq!(entries_for(run.checks.len()), 6 + 7 * 60);
        assert!(entries_for(run.checks.len()) < 1000);
        assert!(pairs.iter().all(|(_, v)| v.len() <= 2048));
        // 4 top keys + 5 keys per check + limits where graded, plus the
        // directory nodes counted by entries_for.
        let graded = run.checks.iter().filter(|c| !c.limits.is_empty()).count();
        assert_eq!(pairs.len(), 4 + 5 * run.checks.len() + graded);
    }

    #[test]
    fn nothing_written_is_none() {
        assert_eq!(decode(&mut BTreeMap::new()).unwrap(), None);
    }

    #[test]
    fn hostile_values_are_rejected_with_the_key() {
        let base = to_map(encode_v1(&sample(1, 1)).unwrap());
        let cases: Vec<(&str, &[u8], &str)> = vec![
            (
                "check/disk0/message",
                b"ok\nFORGED line",
                "control character",
            ),
            ("check/disk0/target", b"\xff\xfe", "not valid UTF-8"),
            ("check/cpu/status", b"fine", "unknown status"),
            ("check/cpu/values", b"load1=inf", "not a finite number"),
            ("check/cpu/values", b"load1=1 load1=2", "twice"),
            ("check/cpu/values", b"LOAD=1", "not [a-z0-9_]"),
            ("time", b"yesterday", "not Unix seconds"),
            ("version", b"7", "layout version"),
        ];
        for (key, value, expect) in cases {
            let mut m = base.clone();
            m.insert(key.to_string(), value.to_vec());
            let e = decode(&mut m).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.problem.contains(expect), "{key}: {}", e.problem);
        }
        let mut m = base.clone();
        m.insert("check/cpu/message".into(), vec![b'a'; MAX_MESSAGE + 1]);
        assert!(decode(&mut m).unwrap_err().problem.contains("more than"));
        let mut m = base.clone();
        m.insert("check/BAD/status".into(), b"ok".to_vec());
        assert_eq!(decode(&mut m).unwrap_err().key, "check");
        let mut m = base;
        m.remove("check/net0/status");
        assert_eq!(decode(&mut m).unwrap_err().key, "check/net0/status");
    }

    #[test]
    fn too_many_checks_are_rejected() {
        let mut m = to_map(encode_v1(&sample(0, 0)).unwrap());
        for i in 0..=MAX_CHECKS {
            m.insert(format!("check/x{i}/status"), b"ok".to_vec());
        }
        assert!(decode(&mut m).unwrap_err().problem.contains("at most"));
    }

    #[test]
    fn free_text_is_cleaned_on_encode() {
        let mut run = sample(1, 0);
        run.checks[2].target = "/mnt/evil\nmount".into();
        let m = to_map(encode_v1(&run).unwrap());
        assert_eq!(m["check/disk0/target"], b"/mnt/evil?mount");
        let decoded = decode(&mut to_map(encode(&run).unwrap())).unwrap().unwrap();
        assert_eq!(decoded.checks[2].target, "/mnt/evil?mount");
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_values(
            msg in proptest::collection::vec(any::<u8>(), 0..400),
            values in "[ -~]{0,80}",
            status in "[a-z]{0,10}",
        ) {
            let mut m = to_map(encode_v1(&sample(1, 1)).unwrap());
            m.insert("check/disk0/message".into(), msg);
            m.insert("check/cpu/values".into(), values.into_bytes());
            m.insert("check/net0/status".into(), status.into_bytes());
            let _ = decode(&mut m);
        }

        #[test]
        fn values_round_trip(v in proptest::collection::vec((r"[a-z][a-z0-9_]{0,10}", -1.0e9f64..1.0e9), 0..8)) {
            let mut seen = std::collections::HashSet::new();
            let vals: Vec<Value> = v.into_iter().filter(|(n, _)| seen.insert(n.clone()))
                .map(|(name, value)| Value { name, value: (value * 1000.0).round() / 1000.0 }).collect();
            let s = encode_values(&vals).unwrap();
            prop_assert_eq!(parse_values(&s).unwrap(), vals);
        }

        #[test]
        fn limits_round_trip(v in proptest::collection::vec((r"[a-z][a-z0-9_]{0,10}", proptest::option::of(-1.0e6f64..1.0e6), proptest::option::of(-1.0e6f64..1.0e6)), 0..8)) {
            let mut seen = std::collections::HashSet::new();
            let round = |x: Option<f64>| x.map(|x| (x * 1000.0).round() / 1000.0);
            let limits: Vec<Limit> = v.into_iter().filter(|(n, _, _)| seen.insert(n.clone()))
                .map(|(name, w, e)| Limit { name, warning: round(w), error: round(e) }).collect();
            let s = encode_limits(&limits).unwrap();
            prop_assert_eq!(parse_limits(&s).unwrap(), limits);
        }
    }
}
