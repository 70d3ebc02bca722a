//! Reading an `extend` command's output from a dom0's snmpd.
//!
//! The output is read line by line from nsExtendOutLine with GETBULK (a
//! 200-guest dom0 prints more than one SNMP response comfortably holds),
//! then nsExtendResult. Each attempt uses a fresh UDP socket, so a late
//! reply to an attempt that timed out cannot be mistaken for the next one.
//!
//! Uses the `snmp2` crate: the design card's `snmp` crate (0.2, last
//! released years ago) has no SNMPv1/v3 and no maintenance; `snmp2` is its
//! maintained fork with v3 (auth and privacy) and the same small API.

use std::time::Duration;

use snmp2::{Oid, SyncSession, Value};

/// NET-SNMP-EXTEND-MIB::nsExtendObjects.
const NS_EXTEND: [u64; 10] = [1, 3, 6, 1, 4, 1, 8072, 1, 3, 2];
/// Lines fetched per GETBULK request.
const BULK: u32 = 40;
/// Most lines read from one dom0 (a runaway agent must not hold us).
const MAX_LINES: usize = 20_000;

#[derive(Debug, Clone)]
pub enum Credentials {
    V2c {
        community: String,
    },
    V3 {
        user: String,
        auth: String,
        privacy: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No answer at all (after the retries).
    Timeout(String),
    /// The agent answered, but not with what we need.
    Protocol(String),
    /// The agent has no such extend configured.
    NoSuchExtend(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(s) | FetchError::Protocol(s) | FetchError::NoSuchExtend(s) => {
                f.write_str(s)
            }
        }
    }
}

/// What an extend served.
#[derive(Debug, Clone)]
pub struct Served {
    pub lines: Vec<String>,
    /// nsExtendResult: the command's exit status.
    pub result: Option<i64>,
}

/// The extend table index of a name: its length, then its bytes.
fn index(name: &str) -> Vec<u64> {
    let mut v = vec![name.len() as u64];
    v.extend(name.bytes().map(u64::from));
    v
}

fn oid_of(parts: &[u64]) -> Oid<'static> {
    Oid::from(parts).expect("a well-formed OID").to_owned()
}

fn parts_of(oid: &Oid<'_>) -> Option<Vec<u64>> {
    oid.iter().map(|it| it.collect())
}

fn session(
    target: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<SyncSession, FetchError> {
    let err = |e: String| FetchError::Protocol(format!("{target}: {e}"));
    match creds {
        Credentials::V2c { community } => {
            SyncSession::new_v2c(target, community.as_bytes(), Some(timeout), 1)
                .map_err(|e| err(e.to_string()))
        }
        Credentials::V3 {
            user,
            auth,
            privacy,
        } => {
            let security = snmp2::v3::Security::new(user.as_bytes(), auth.as_bytes())
                .with_auth_protocol(snmp2::v3::AuthProtocol::Sha1)
                .with_auth(snmp2::v3::Auth::AuthPriv {
                    cipher: snmp2::v3::Cipher::Aes128,
                    privacy_password: privacy.as_bytes().to_vec(),
                });
            let mut s = SyncSession::new_v3(target, Some(timeout), 1, security)
                .map_err(|e| err(e.to_string()))?;
            s.init().map_err(|e| classify(target, e))?;
            Ok(s)
        }
    }
}

fn classify(target: &str, e: snmp2::Error) -> FetchError {
    match e {
        snmp2::Error::Receive | snmp2::Error::Send => {
            FetchError::Timeout(format!("{target}: no answer"))
        }
        other => FetchError::Protocol(format!("{target}: {other:?}")),
    }
}

/// Runs `op` on a fresh session, up to `1 + retries` times while it times out.
fn with_retries<T>(
    target: &str,
    creds: &Credentials,
    timeout: Duration,
    retries: u32,
    mut op: impl FnMut(&mut SyncSession) -> Result<T, FetchError>,
) -> Result<T, FetchError> {
    let mut last = FetchError::Timeout(format!("{target}: no answer"));
    for _ in 0..=retries {
        let result = session(target, creds, timeout).and_then(|mut s| op(&mut s));
        match result {
            Err(FetchError::Timeout(m)) => last = FetchError::Timeout(m),
            other => return other,
        }
    }
    Err(match last {
        FetchError::Timeout(_) => FetchError::Timeout(format!(
            "{target}: no answer after {} attempt{} of {} ms",
            retries + 1,
            if retries > 0 { "s" } else { "" },
            timeout.as_millis()
        )),
        other => other,
    })
}

/// Reads extend `name`'s output and result from `target` (host:port).
/// Adds one GETBULK answer's varbinds (OID parts, string value if any) to
/// the extend's output `lines`, checking everything a broken or hostile
/// agent could send: OIDs must stay under `line_base`, one level deep, in
/// increasing order; values must be UTF-8 strings; at most [`MAX_LINES`].
/// Returns the cursor for the next request, or `None` when the walk left
/// the table (or the answer was empty).
pub fn take_lines(
    target: &str,
    line_base: &[u64],
    cursor: &[u64],
    batch: Vec<(Vec<u64>, Option<Vec<u8>>)>,
    lines: &mut Vec<String>,
) -> Result<Option<Vec<u64>>, FetchError> {
    let mut cursor = cursor.to_vec();
    if batch.is_empty() {
        return Ok(None);
    }
    for (parts, value) in batch {
        if !parts.starts_with(line_base) || parts.len() != line_base.len() + 1 {
            return Ok(None);
        }
        if parts <= cursor {
            return Err(FetchError::Protocol(format!(
                "{target}: agent returned OIDs out of order"
            )));
        }
        let bytes = value.ok_or_else(|| {
            FetchError::Protocol(format!("{target}: an output line is not a string"))
        })?;
        lines.push(
            String::from_utf8(bytes).map_err(|_| {
                FetchError::Protocol(format!("{target}: an output line is not UTF-8"))
            })?,
        );
        if lines.len() > MAX_LINES {
            return Err(FetchError::Protocol(format!(
                "{target}: more than {MAX_LINES} lines"
            )));
        }
        cursor = parts;
    }
    Ok(Some(cursor))
}

pub fn fetch_extend(
    target: &str,
    name: &str,
    creds: &Credentials,
    timeout: Duration,
    retries: u32,
) -> Result<Served, FetchError> {
    let idx = index(name);
    let mut line_base = NS_EXTEND.to_vec();
    line_base.extend([4, 1, 2]);
    line_base.extend(&idx);
    let mut lines: Vec<String> = Vec::new();
    let mut cursor = line_base.clone();
    'walk: loop {
        let batch = with_retries(target, creds, timeout, retries, |s| {
            let pdu = s
                .getbulk(&[&oid_of(&cursor)], 0, BULK)
                .map_err(|e| classify(target, e))?;
            if pdu.error_status != 0 {
                return Err(FetchError::Protocol(format!(
                    "{target}: SNMP error status {}",
                    pdu.error_status
                )));
            }
            let mut out = Vec::new();
            for (oid, value) in pdu.varbinds {
                let parts = parts_of(&oid)
                    .ok_or_else(|| FetchError::Protocol(format!("{target}: unreadable OID")))?;
                let v = match value {
                    Value::OctetString(b) => Some(b.to_vec()),
                    _ => None,
                };
                out.push((parts, v));
            }
            Ok(out)
        })?;
        match take_lines(target, &line_base, &cursor, batch, &mut lines)? {
            Some(next) => cursor = next,
            None => break 'walk,
        }
    }
    let mut result_oid = NS_EXTEND.to_vec();
    result_oid.extend([3, 1, 4]);
    result_oid.extend(&idx);
    let result = with_retries(target, creds, timeout, retries, |s| {
        let pdu = s
            .get(&oid_of(&result_oid))
            .map_err(|e| classify(target, e))?;
        Ok(pdu.varbinds.into_iter().find_map(|(_, v)| match v {
            Value::Integer(i) => Some(i),
            _ => None,
        }))
    })?;
    if lines.is_empty() && result.is_none() {
        return Err(FetchError::NoSuchExtend(format!(
            "{target}: no extend named {name} (is snmpd configured for xsmon?)"
        )));
    }
    Ok(Served { lines, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_index() {
        assert_eq!(index("ab"), vec![2, 97, 98]);
    }

    #[test]
    fn oids_round_trip() {
        let o = oid_of(&[1, 3, 6, 1, 4, 1, 8072, 1, 3, 2, 4, 1, 2, 2, 97, 98, 1]);
        assert_eq!(parts_of(&o).unwrap().last(), Some(&1));
    }
}
