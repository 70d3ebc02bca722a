//! The rules every field of a run obeys, whichever key layout carried it:
//! sizes, the words a check's fields may hold, and the errors that name
//! the offending key. Version 1 reads each field from its own key, later
//! versions from a chunk; both go through these functions.

use thiserror::Error;

use crate::check::{CheckResult, Status};
use crate::source::Source;
use crate::text::{self, TextError};
use crate::values::{parse_limits, parse_values, valid_word, MAX_LIMITS, MAX_VALUES};

pub const MAX_CHECKS: usize = 100;
pub const MAX_ID: usize = 16;
pub const MAX_KIND: usize = 16;
pub const MAX_PROBE: usize = 64;
pub const MAX_TARGET: usize = 512;
pub const MAX_MESSAGE: usize = 256;
/// A run that cannot be encoded (a bug in the writer, not bad luck).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot encode {key}: {problem}")]
pub struct EncodeError {
    pub key: String,
    pub problem: String,
}

/// Guest data that breaks the layout: which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {problem}")]
pub struct DecodeError {
    pub key: String,
    pub problem: String,
}

pub(super) fn parse_time(v: Result<Option<String>, DecodeError>) -> Result<i64, DecodeError> {
    let time = require(v?, "time")?;
    time.parse()
        .map_err(|_| err("time", format!("{time:?} is not Unix seconds")))
}

pub(super) fn parse_seq(v: Result<Option<String>, DecodeError>) -> Result<u64, DecodeError> {
    let seq = require(v?, "seq")?;
    seq.parse()
        .map_err(|_| err("seq", format!("{seq:?} is not a sequence number")))
}

/// A check id: `[a-z0-9]{1,16}`.
pub(super) fn check_id(id: &str) -> Result<(), String> {
    if valid_word(id, MAX_ID, |b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "check id {:?} is not [a-z0-9]{{1,16}}",
            text::clean(id, 40)
        ))
    }
}

/// One check by version 1's rules, its fields given by `field(name,
/// max)`: a key's text (version 1) or a chunk's field, each bounded and
/// validated the same way, `None` when absent.
pub(super) fn check_from(
    id: &str,
    mut field: impl FnMut(&str, usize) -> Result<Option<String>, DecodeError>,
) -> Result<CheckResult, DecodeError> {
    let key = |k: &str| format!("check/{id}/{k}");
    let kind = require(field("kind", MAX_KIND)?, &key("kind"))?;
    if !valid_word(&kind, MAX_KIND, |b| b.is_ascii_lowercase()) {
        return Err(err(&key("kind"), format!("{kind:?} is not [a-z]")));
    }
    let status = require(field("status", 8)?, &key("status"))?;
    let status: Status = status.parse().map_err(|e| err(&key("status"), e))?;
    let target = field("target", MAX_TARGET)?.unwrap_or_default();
    let message = require(field("message", MAX_MESSAGE)?, &key("message"))?;
    let values = field("values", MAX_VALUES)?.unwrap_or_default();
    let values = parse_values(&values).map_err(|e| err(&key("values"), e))?;
    let limits = field("limits", MAX_LIMITS)?.unwrap_or_default();
    let limits = parse_limits(&limits).map_err(|e| err(&key("limits"), e))?;
    Ok(CheckResult {
        id: id.to_string(),
        kind,
        target,
        status,
        message,
        values,
        limits,
    })
}

/// cpu, swap, then disks, then gateways, numbered ids in numeric order.
pub(super) fn check_order(c: &CheckResult) -> (u8, String, usize, String) {
    let rank = match c.kind.as_str() {
        "cpu" => 0,
        "swap" => 1,
        "mem" => 2,
        "disk" => 3,
        "net" => 4,
        _ => 5,
    };
    let digits = c.id.trim_start_matches(|ch: char| ch.is_ascii_lowercase());
    let prefix = c.id[..c.id.len() - digits.len()].to_string();
    (rank, prefix, digits.parse().unwrap_or(0), c.id.clone())
}

pub(super) fn read_text<S: Source>(
    src: &mut S,
    key: &str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    let bytes = src
        .read(key)
        .map_err(|e| err(key, format!("cannot read: {e}")))?;
    match bytes {
        None => Ok(None),
        Some(b) => text_field(key, Some(&b), max),
    }
}

/// A field's text by the layout's rules (bounded, no control
/// characters), whether read from its own key or from a chunk.
pub(super) fn text_field(
    key: &str,
    v: Option<&(impl AsRef<[u8]> + ?Sized)>,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    text_field_at(|| key.to_string(), v, max)
}

/// [`text_field`], its key named only when the field breaks a rule (a
/// thousand guests' checks are decoded every cycle, and almost all pass).
pub(super) fn text_field_at(
    key: impl FnOnce() -> String,
    v: Option<&(impl AsRef<[u8]> + ?Sized)>,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    match v {
        None => Ok(None),
        Some(b) => text::validate(b.as_ref(), max)
            .map(|s| Some(s.to_string()))
            .map_err(|e: TextError| err(&key(), format!("value {e}"))),
    }
}

pub(super) fn require(v: Option<String>, key: &str) -> Result<String, DecodeError> {
    v.ok_or_else(|| err(key, "missing".into()))
}

pub(super) fn err(key: &str, problem: String) -> DecodeError {
    DecodeError {
        key: key.to_string(),
        problem,
    }
}
