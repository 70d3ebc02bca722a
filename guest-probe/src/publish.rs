//! Writing one run into xenstore: all keys in one transaction (retried on
//! conflict), replacing the previous run, so the collector never sees half
//! a run. The key layout is `xsmon_proto::layout`.

use anyhow::{Context, Result};
use xsmon_proto::layout::{self, Run};
use xsmon_xenstore::{Client, Store};

/// Transaction attempts before giving up (conflicts are rare: only this
/// guest writes its area).
const ATTEMPTS: u32 = 5;

/// Writes `run` under each of `bases`, in one transaction. The sequence
/// number is the previous one under the first base plus one, so it keeps
/// counting even if the state file is lost.
pub fn publish(xs: &mut Client, bases: &[String], run: &mut Run, version: u32) -> Result<()> {
    let first = bases
        .first()
        .context("nowhere to write: both home and legacy are off in the config")?;
    let encode = match version {
        1 => layout::encode_v1,
        2 => layout::encode_v2,
        3 => layout::encode_v3,
        4 => layout::encode_v4,
        5 => layout::encode_v5,
        _ => layout::encode_v6,
    };
    xs.transaction(ATTEMPTS, |t| {
        // The previous run's seq, from whichever layout it was written in:
        // the head of chunk/0 (6), the run line (2 to 5) or `seq` (1).
        let v6 = t
            .read_opt(&format!("{first}/chunk/0"))?
            .filter(|c| layout::is_run_head(c))
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.split(' ').nth(2).and_then(|n| n.parse::<u64>().ok()));
        let v2 = t
            .read_opt(&format!("{first}/run"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.split(' ').nth(1).and_then(|n| n.parse::<u64>().ok()));
        let v1 = t
            .read_opt(&format!("{first}/seq"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok());
        let prev = v6.or(v2).or(v1).unwrap_or(0);
        run.seq = prev.wrapping_add(1);
        let pairs = encode(run).map_err(|e| xsmon_xenstore::Error::Protocol {
            op: "write",
            path: first.clone(),
            detail: e.to_string(),
        })?;
        for base in bases {
            t.rm(base)?;
            for (key, value) in &pairs {
                t.write(&format!("{base}/{key}"), value)?;
            }
        }
        Ok(())
    })
    .with_context(|| {
        format!(
            "writing results to xenstore under {} ({})",
            bases.join(" and "),
            xs.path().display()
        )
    })
}
