//! Is a guest's probe still running? dom0 decides from what it has seen
//! itself, never from the time the guest claims.
//!
//! dom0 remembers, per guest, the last run it saw (its `seq` and a digest
//! of its content) and when it first saw that run, by dom0's clock. A run
//! is new when its `seq` or its content changes. A guest is stale when dom0
//! has seen no new run for `stale_after` seconds, whatever its clock says:
//! a guest whose clock runs a year ahead goes stale like any other.
//!
//! * The first time dom0 sees a guest it has no observation yet; it takes
//!   the run's own time if that is in the past (a probe that died long ago
//!   is stale at once, not after `stale_after`), else now.
//! * `seq` going backwards is a new run with a note (the guest rebooted
//!   without its state file, or was restored from a snapshot).
//! * The same `seq` with different content is a new run and a warning:
//!   something other than one probe is writing.
//! * Clock skew: a run is written between dom0's previous observation and
//!   this one, so a run dated after now, or before the previous cycle, by
//!   more than `skew_max` seconds shows the guest's clock is off: a
//!   warning with the offset, as its own finding (`clock`).

use xsmon_proto::layout::Run;
use xsmon_proto::{CheckResult, Status};
use xsmon_store::SeenRun;

/// The rules, from the collector's config.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub stale_after: i64,
    pub skew_max: i64,
}

/// What dom0 concludes about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The run as dom0 now knows it (stored for the next cycle).
    pub run: SeenRun,
    pub stale: bool,
    /// Notes for the guest's message.
    pub notes: Vec<String>,
    /// Findings of their own (`clock`, `seq`).
    pub findings: Vec<CheckResult>,
}

/// A digest of a run's content: FNV-1a over the decoded run (so key order
/// and formatting in xenstore do not count), its fields in order, strings
/// with their lengths, numbers by their bits.
///
/// Stored as a SQLite INTEGER (signed 64 bits), with the sign bit set: the
/// digests of version 1 (0.4 and before: the same hash over the run's Debug
/// text, whose float formatting cost a tenth of a 1,000-guest cycle's CPU)
/// are never negative, so a stored digest says which version it is
/// ([`same_content`]) and an upgrade reads no run as rewritten.
pub fn digest(run: &Run) -> u64 {
    let mut h = Fnv1a::new();
    h.text(&run.probe);
    h.bytes(&run.time.to_le_bytes());
    h.bytes(&run.seq.to_le_bytes());
    h.bytes(&(run.checks.len() as u64).to_le_bytes());
    for c in &run.checks {
        for t in [&c.id, &c.kind, &c.target] {
            h.text(t);
        }
        h.text(c.status.as_str());
        h.text(&c.message);
        h.bytes(&(c.values.len() as u64).to_le_bytes());
        for v in &c.values {
            h.text(&v.name);
            h.bytes(&v.value.to_bits().to_le_bytes());
        }
        h.bytes(&(c.limits.len() as u64).to_le_bytes());
        for l in &c.limits {
            h.text(&l.name);
            for bound in [l.warning, l.error] {
                h.bytes(&bound.map_or([0xff; 8], |b| b.to_bits().to_le_bytes()));
            }
        }
    }
    (h.0 >> 1) | DIGEST_V2
}

/// The mark of a version-2 digest (the sign bit of the stored INTEGER).
const DIGEST_V2: u64 = 1 << 63;

/// Whether `stored` (a digest of either version) is the digest of `run`:
/// `now` is `run`'s digest as [`digest`] gives it.
pub fn same_content(stored: u64, now: u64, run: &Run) -> bool {
    if stored & DIGEST_V2 != 0 {
        stored == now
    } else {
        stored == digest_v1(run)
    }
}

/// Version 1: FNV-1a over the run's Debug text, as 0.4 stored it.
fn digest_v1(run: &Run) -> u64 {
    use std::fmt::Write;
    let mut h = Fnv1a::new();
    let _ = write!(
        h,
        "{:?}|{}|{}|{:?}",
        run.probe, run.time, run.seq, run.checks
    );
    h.0 >> 1
}

/// FNV-1a over whatever is written to it.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A string with its length first: ("ab", "c") and ("a", "bc") differ.
    fn text(&mut self, s: &str) {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// Judges `run` against what dom0 saw before (`prev`, and the time of the
/// previous cycle that saw this guest running, `prev_cycle`).
pub fn observe(
    run: &Run,
    prev: Option<SeenRun>,
    prev_cycle: Option<i64>,
    now: i64,
    rules: Rules,
) -> Observation {
    observe_instance(run, prev, prev_cycle, now, rules, false, None)
}

/// [`observe`], for a run that may come from a new domain of the VM:
/// `new_domain` when the domain is not the one the previous run was seen
/// in, `note` how the run continues the VM (from
/// [`crate::continuity::new_instance_note`]). A new domain continues the
/// VM's runs: its seq may repeat or go back (its xenstore area was built
/// afresh, or copied during a migration while a run was being written),
/// which is then no finding; within one domain the seq rules stand, even
/// while the latest run says it resumed.
pub fn observe_instance(
    run: &Run,
    prev: Option<SeenRun>,
    prev_cycle: Option<i64>,
    now: i64,
    rules: Rules,
    new_domain: bool,
    note: Option<String>,
) -> Observation {
    let digest = digest(run);
    let mut notes = Vec::new();
    let mut findings = Vec::new();
    let continues = new_domain;
    let (seen, changed) = match prev {
        None => (run.time.min(now), false),
        Some(p) if p.seq == run.seq && same_content(p.digest, digest, run) => (p.seen, false),
        Some(_) if continues => (now, true),
        Some(p) if p.seq == run.seq => {
            findings.push(finding(
                "seq",
                Status::Warning,
                format!(
                    "run seq {} was rewritten with different content: is more than one probe writing?",
                    run.seq
                ),
            ));
            (now, true)
        }
        Some(p) if run.seq < p.seq => {
            notes.push(format!(
                "seq went back from {} to {} (rebooted without its state, or restored from a snapshot)",
                p.seq, run.seq
            ));
            (now, true)
        }
        Some(_) => (now, true),
    };
    notes.extend(note);
    let ahead = run.time - now;
    if ahead > rules.skew_max {
        findings.push(clock_finding(ahead, "ahead of"));
    } else if let (true, Some(before)) = (changed, prev_cycle) {
        let behind = before - run.time;
        if behind > rules.skew_max {
            findings.push(clock_finding(behind, "behind"));
        }
    }
    Observation {
        run: SeenRun {
            seq: run.seq,
            digest,
            time: run.time,
            seen,
        },
        stale: now - seen > rules.stale_after,
        notes,
        findings,
    }
}

fn finding(id: &str, status: Status, message: String) -> CheckResult {
    let mut c = CheckResult::new(id, id, "");
    c.status = status;
    c.message = message;
    c
}

fn clock_finding(offset: i64, word: &str) -> CheckResult {
    let mut c = finding(
        "clock",
        Status::Warning,
        format!("guest clock is about {offset} s {word} dom0's"),
    );
    c.value("offset_s", offset as f64);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        stale_after: 600,
        skew_max: 600,
    };

    fn run(time: i64, seq: u64, msg: &str) -> Run {
        let mut c = CheckResult::new("cpu", "cpu", "");
        c.message = msg.into();
        Run {
            probe: "p".into(),
            time,
            seq,
            checks: vec![c],
            resumed: None,
            boot: None,
        }
    }

    /// A run whose one check carries a `load` figure.
    fn with_load(message: &str, load: f64) -> Run {
        let mut r = run(1_700_000_000, 42, message);
        r.checks[0].values.push(xsmon_proto::Value {
            name: "load".into(),
            value: load,
        });
        r
    }

    /// Digests are stored: one an earlier version stored (FNV-1a of the
    /// run's Debug text, never negative) must still match the same run,
    /// or every guest would read as a rewritten seq after an upgrade; a
    /// changed run matches neither version.
    #[test]
    fn a_digest_earlier_versions_stored_still_matches_the_same_run() {
        let r = with_load("load 0.5 \u{e9}", 0.125);
        let text = format!("{:?}|{}|{}|{:?}", r.probe, r.time, r.seq, r.checks);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let v1 = h >> 1;
        assert!((v1 as i64) >= 0, "version 1 is never negative");
        assert!((digest(&r) as i64) < 0, "version 2 is stored negative");
        assert!(same_content(v1, digest(&r), &r));
        assert!(same_content(digest(&r), digest(&r), &r));
        let other = run(1_700_000_000, 42, "load 0.6");
        assert!(!same_content(v1, digest(&other), &other));
        assert!(!same_content(digest(&r), digest(&other), &other));
    }

    /// Every part of a run counts: a change in any one field, even a
    /// figure's last bit or a limit, is another digest.
    #[test]
    fn every_field_of_a_run_changes_its_digest() {
        let mut base = with_load("load 0.5", 0.5);
        base.checks[0].limits.push(xsmon_proto::Limit {
            name: "load".into(),
            warning: Some(4.0),
            error: None,
        });
        let changes: &[fn(&mut Run)] = &[
            |r| r.probe.push('x'),
            |r| r.time += 1,
            |r| r.seq += 1,
            |r| r.checks[0].id.push('x'),
            |r| r.checks[0].kind.push('x'),
            |r| r.checks[0].target.push('x'),
            |r| r.checks[0].status = Status::Error,
            |r| r.checks[0].message.push('x'),
            |r| r.checks[0].values[0].name.push('x'),
            |r| r.checks[0].values[0].value = f64::from_bits(0.5f64.to_bits() + 1),
            |r| r.checks[0].limits[0].warning = None,
            |r| r.checks[0].limits[0].error = Some(0.0),
            |r| r.checks.push(r.checks[0].clone()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut r = base.clone();
            change(&mut r);
            assert_ne!(digest(&r), digest(&base), "change {i}");
        }
        // Lengths count: moving a byte from one string to the next is a change.
        let mut a = base.clone();
        a.checks[0].id = "ab".into();
        a.checks[0].kind = "c".into();
        let mut b = base.clone();
        b.checks[0].id = "a".into();
        b.checks[0].kind = "bc".into();
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn a_clock_a_year_ahead_still_goes_stale() {
        let t = 1_700_000_000;
        let year = 365 * 86400;
        let r = run(t + year, 5, "x");
        let first = observe(&r, None, None, t, RULES);
        assert!(!first.stale);
        assert_eq!(first.run.seen, t);
        assert_eq!(first.findings[0].id, "clock");
        assert!(first.findings[0]
            .message
            .contains(&format!("{year} s ahead")));
        // Two hours later, the same run: stale, whatever it claims.
        let later = observe(&r, Some(first.run), Some(t), t + 7200, RULES);
        assert!(later.stale);
        assert_eq!(later.run.seen, t);
    }

    #[test]
    fn a_new_seq_is_a_new_run_and_old_claims_are_stale_at_once() {
        let t = 1_700_000_000;
        let first = observe(&run(t - 86400, 1, "x"), None, None, t, RULES);
        assert!(first.stale, "a probe that died a day ago is not fresh");
        let next = observe(
            &run(t + 250, 2, "x"),
            Some(first.run),
            Some(t),
            t + 300,
            RULES,
        );
        assert!(!next.stale);
        assert_eq!(next.run.seen, t + 300);
        assert!(next.findings.is_empty() && next.notes.is_empty());
    }

    #[test]
    fn seq_back_is_a_note_and_rewritten_seq_a_warning() {
        let t = 1_700_000_000;
        let a = observe(&run(t, 9, "x"), None, None, t, RULES);
        let back = observe(&run(t + 290, 2, "x"), Some(a.run), Some(t), t + 300, RULES);
        assert!(back.notes[0].contains("from 9 to 2"), "{:?}", back.notes);
        assert_eq!(back.run.seen, t + 300);
        let same = observe(&run(t, 9, "y"), Some(a.run), Some(t), t + 300, RULES);
        assert_eq!(same.findings[0].id, "seq");
        assert_eq!(same.findings[0].status, Status::Warning);
        let unchanged = observe(&run(t, 9, "x"), Some(a.run), Some(t), t + 300, RULES);
        assert_eq!(unchanged.run.seen, t);
        assert!(unchanged.findings.is_empty());
    }

    #[test]
    fn a_new_domain_continues_the_runs_without_a_finding() {
        let t = 1_700_000_000;
        let a = observe(&run(t, 9, "x"), None, None, t, RULES);
        let note = || Some("restored (domain 7 -> 9)".to_string());
        // Suspended while writing seq 9: the new domain writes it again.
        let again = observe_instance(
            &run(t + 20, 9, "y"),
            Some(a.run),
            Some(t),
            t + 300,
            RULES,
            true,
            note(),
        );
        assert!(again.findings.is_empty(), "{:?}", again.findings);
        assert_eq!(again.notes, vec!["restored (domain 7 -> 9)".to_string()]);
        assert_eq!(again.run.seen, t + 300);
        let back = observe_instance(
            &run(t + 20, 4, "y"),
            Some(a.run),
            Some(t),
            t + 300,
            RULES,
            true,
            note(),
        );
        assert_eq!(back.notes.len(), 1, "{:?}", back.notes);
        // Within one domain, two writers are still a warning, even while
        // the latest run says it resumed (its note stands).
        let two = observe_instance(
            &run(t, 9, "z"),
            Some(a.run),
            Some(t),
            t + 300,
            RULES,
            false,
            note(),
        );
        assert_eq!(two.findings[0].id, "seq");
    }

    #[test]
    fn a_clock_behind_shows_when_a_new_run_arrives() {
        let t = 1_700_000_000;
        let a = observe(&run(t - 3600, 1, "x"), None, None, t, RULES);
        let b = observe(&run(t - 3300, 2, "x"), Some(a.run), Some(t), t + 300, RULES);
        assert!(!b.stale);
        assert!(
            b.findings[0].message.contains("3300 s behind"),
            "{:?}",
            b.findings
        );
    }
}
