//! The checks of a chunked run (key layout versions 2 to 6), both ways:
//! each check as one record of escaped fields, records packed into
//! chunks, and a chunk's records decoded by the rules of version 1. The
//! run lines around them, and the layout itself, are in the parent
//! module's page.

use std::collections::HashSet;

use super::rules::{
    check_from, check_id, err, text_field_at, DecodeError, EncodeError, MAX_CHECKS,
};
use crate::check::CheckResult;

/// Each check as a chunk's record: its escaped fields, with its limits
/// when `with_limits` (version 3 on), each record within one chunk.
/// `v1` is the run as version 1 keys, whose fields are cleaned and cut
/// to size; a record may take at most `max` bytes.
pub(super) fn check_records(
    checks: &[CheckResult],
    v1: &[(String, Vec<u8>)],
    with_limits: bool,
    max: usize,
) -> Result<Vec<String>, EncodeError> {
    use crate::text::escape;
    let field = |id: &str, k: &str| -> String {
        let key = format!("check/{id}/{k}");
        v1.iter()
            .find(|(kk, _)| *kk == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let mut records = Vec::with_capacity(checks.len());
    for c in checks {
        let mut fields = vec![escape(&c.id)];
        for k in ["kind", "status", "target", "message", "values"] {
            fields.push(escape(&field(&c.id, k)));
        }
        if with_limits {
            fields.push(escape(&field(&c.id, "limits")));
        }
        let record = fields.join(" ");
        if record.len() > max {
            return Err(EncodeError {
                key: format!("check {}", c.id),
                problem: format!("{} bytes once escaped, at most {max}", record.len()),
            });
        }
        records.push(record);
    }
    Ok(records)
}

/// Records packed in order into chunks of at most `first` bytes for the
/// first and `rest` for the others (a record is never cut); no chunk when
/// there is no record, an empty first one when the first record does not
/// fit in it.
pub(super) fn pack(records: Vec<String>, first: usize, rest: usize) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    for record in records {
        let room = if chunks.len() <= 1 { first } else { rest };
        match chunks.last_mut() {
            Some(last) if last.len() + 1 + record.len() <= room => {
                last.push(' ');
                last.push_str(&record);
            }
            None if record.len() > first => {
                chunks.push(String::new());
                chunks.push(record);
            }
            _ => chunks.push(record),
        }
    }
    chunks
}

/// The checks decoded so far from a run's chunks, and their ids (each
/// may appear once).
#[derive(Default)]
pub(super) struct ChunkChecks {
    ids: HashSet<String>,
    pub(super) checks: Vec<CheckResult>,
}

impl ChunkChecks {
    /// The checks in one chunk's `fields` (its head taken off), `per_check`
    /// fields each, checked by exactly the rules of version 1.
    pub(super) fn add(
        &mut self,
        key: &str,
        fields: &[&str],
        per_check: usize,
        version: u32,
    ) -> Result<(), DecodeError> {
        use crate::text::unescape;
        if !fields.len().is_multiple_of(per_check) {
            return Err(err(
                key,
                format!("{} fields, not {per_check} per check", fields.len()),
            ));
        }
        let in_layout = |e: DecodeError| DecodeError {
            key: format!("{} (layout {version})", e.key),
            problem: e.problem,
        };
        for f in fields.chunks(per_check) {
            let field = |i: usize| unescape(f[i]).map_err(|e| err(key, e));
            let id = field(0)?;
            check_id(&id).map_err(|problem| err(key, problem))?;
            if !self.ids.insert(id.clone()) || self.ids.len() > MAX_CHECKS {
                return Err(err(
                    key,
                    format!("check {id} appears twice, or more than {MAX_CHECKS} checks"),
                ));
            }
            let mut values = Vec::with_capacity(per_check - 1);
            for j in 1..per_check {
                values.push(field(j)?);
            }
            // Version 2 has no limits field: as a version 1 run without
            // the key. An empty field is an absent key, but for the
            // message (which may be empty).
            let check = check_from(&id, |name, max| {
                let v = CHECK_FIELDS
                    .iter()
                    .position(|k| *k == name)
                    .and_then(|j| values.get(j))
                    .filter(|v| !v.is_empty() || name == "message");
                text_field_at(|| format!("check/{id}/{name}"), v.map(String::as_str), max)
            })
            .map_err(in_layout)?;
            self.checks.push(check);
        }
        Ok(())
    }
}

/// A check's fields after its id, in a chunk's order and as version 1's
/// key names.
const CHECK_FIELDS: [&str; 6] = ["kind", "status", "target", "message", "values", "limits"];
