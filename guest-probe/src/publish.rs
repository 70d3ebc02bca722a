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
        _ => layout::encode_v5,
    };
    xs.transaction(ATTEMPTS, |t| {
        // The previous run's seq, from either layout version.
        let v2 = t
            .read_opt(&format!("{first}/run"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.split(' ').nth(1).and_then(|n| n.parse::<u64>().ok()));
        let v1 = t
            .read_opt(&format!("{first}/seq"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok());
        let prev = v2.or(v1).unwrap_or(0);
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
