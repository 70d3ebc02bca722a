//! Reading an `extend` command's output from dom0s' snmpd.
//!
//! The output is read line by line from nsExtendOutLine with GETBULK (a
//! 200-guest dom0 prints more than one SNMP response comfortably holds),
//! with nsExtendResult. This module owns the MIB's side (the OIDs, the
//! walk's rules, what a fetch gives); the requests go out from the
//! event-driven engine (`engine`), every dom0 at once, which uses it; the
//! messages are encoded and decoded by `ber` (v2c) and `usm` (v3).
//!
//! SNMP crates: the design card's `snmp` crate (0.2, unmaintained) has no
//! SNMPv3; its maintained fork `snmp2` has v3, but its sessions own one
//! socket and a 64 KiB buffer each and cannot share a socket, which is what
//! polling 10,000 dom0s in one timeout needs. The poller therefore speaks
//! the two messages it needs itself (GET, GETBULK; RFC 3416) with
//! RustCrypto's SHA-1, HMAC and AES for SNMPv3's USM (RFC 3414, 3826),
//! checked against Debian's net-snmp in the tests.

use crate::secret::Secret;
use crate::usm::{AuthProtocol, PrivProtocol};

/// NET-SNMP-EXTEND-MIB::nsExtendObjects.
pub const NS_EXTEND: [u64; 10] = [1, 3, 6, 1, 4, 1, 8072, 1, 3, 2];
/// Lines fetched per GETBULK request.
pub const BULK: u32 = 40;
/// Most lines read from one dom0 (a runaway agent must not hold us).
const MAX_LINES: usize = 20_000;

/// How one dom0 is asked (its secrets never print: [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    V2c {
        community: Secret,
    },
    V3 {
        user: String,
        auth: Secret,
        privacy: Secret,
        auth_protocol: AuthProtocol,
        priv_protocol: PrivProtocol,
    },
}

/// The site's credentials and the dom0s' own (`[snmp.dom0.NAME]`).
#[derive(Debug, Clone)]
pub struct SiteCredentials {
    pub site: Credentials,
    pub per_dom0: std::collections::BTreeMap<String, Credentials>,
}

impl SiteCredentials {
    /// The credentials a dom0 is asked with.
    pub fn for_dom0(&self, name: &str) -> &Credentials {
        self.per_dom0.get(name).unwrap_or(&self.site)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The dom0 answered nothing at all.
    Timeout(String),
    /// The dom0 answered, then went silent before the output was read whole.
    Silent(String),
    Protocol(String),
    NoSuchExtend(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(s)
            | FetchError::Silent(s)
            | FetchError::Protocol(s)
            | FetchError::NoSuchExtend(s) => f.write_str(s),
        }
    }
}

/// An extend's output as served.
#[derive(Debug, Clone)]
pub struct Served {
    pub lines: Vec<String>,
    /// nsExtendResult: the command's exit status.
    pub result: Option<i64>,
}

/// The index of an extend name in NET-SNMP-EXTEND-MIB's tables: its
/// length, then its bytes.
pub fn index(name: &str) -> Vec<u64> {
    let mut v = vec![name.len() as u64];
    v.extend(name.bytes().map(u64::from));
    v
}

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
