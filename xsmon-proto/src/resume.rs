//! The run line's two fields that tell how a run continues its VM's life
//! (key layout 4 and 5, see `layout.rs`): `resumed`, the probe's evidence
//! that its domain was suspended (saved, restored, migrated) since its
//! previous run, and `boot`, the guest kernel's boot id, the same across
//! suspensions and new with every boot. Each has its printer (`field`)
//! and its parser (`parse_field`, strict and bounded: guest data) side by
//! side.

use std::fmt;

use crate::text;

/// Length of the run line's `boot` field (a boot id's hex digits).
pub const BOOT_ID_LEN: usize = 32;

/// A guest kernel's boot id: 32 lowercase hex digits (the kernel's
/// `boot_id` UUID without its dashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootId(String);

impl BootId {
    /// From the kernel's `boot_id` file (`xxxxxxxx-xxxx-...`, a newline
    /// after it); `None` unless it is a UUID's 32 hex digits.
    pub fn from_kernel(text: &str) -> Option<BootId> {
        let hex: String = text
            .trim()
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Self::parse_hex(&hex)
    }

    fn parse_hex(hex: &str) -> Option<BootId> {
        (hex.len() == BOOT_ID_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| BootId(hex.to_string()))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The run line's field: `-` or the hex digits.
    pub fn field(b: Option<&BootId>) -> &str {
        b.map_or("-", |b| b.as_str())
    }

    /// Parses the run line's field (guest data: strict and bounded).
    pub fn parse_field(s: &str) -> Result<Option<BootId>, String> {
        if s == "-" {
            return Ok(None);
        }
        Self::parse_hex(s).map(Some).ok_or_else(|| {
            format!(
                "boot field {:?} is not - or {BOOT_ID_LEN} lowercase hex digits",
                text::clean(s, 40)
            )
        })
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The probe's evidence that its domain was suspended since its previous
/// run: the run's interval figures start afresh after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resumed {
    /// The domid the previous run was written from, when it differs from
    /// this run's (a restore and a migration both give a new domain).
    pub from_domid: Option<u32>,
    /// How long the guest's kernel was suspended, in ms (the growth of
    /// CLOCK_BOOTTIME over CLOCK_MONOTONIC, which a Xen resume books),
    /// when it grew.
    pub suspended_ms: Option<u64>,
}

/// Largest domid a guest may name (`DOMID_FIRST_RESERVED` - 1).
const MAX_DOMID: u32 = 0x7FEF;

impl Resumed {
    /// The run line's field: `-`, or `<from_domid>,<suspended_ms>` with
    /// `?` for what is unknown.
    pub fn field(r: Option<&Resumed>) -> String {
        match r {
            None => "-".into(),
            Some(r) => format!(
                "{},{}",
                r.from_domid.map_or("?".into(), |d| d.to_string()),
                r.suspended_ms.map_or("?".into(), |m| m.to_string())
            ),
        }
    }

    /// Parses the run line's field (guest data: strict and bounded).
    pub fn parse_field(s: &str) -> Result<Option<Resumed>, String> {
        if s == "-" {
            return Ok(None);
        }
        let bad = || {
            format!(
                "resumed field {:?} is not - or <domid>,<ms>",
                text::clean(s, 24)
            )
        };
        let (d, m) = s.split_once(',').ok_or_else(bad)?;
        let num = |v: &str, digits: usize| -> Result<Option<u64>, String> {
            match v {
                "?" => Ok(None),
                v if !v.is_empty()
                    && v.len() <= digits
                    && v.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    v.parse().map(Some).map_err(|_| bad())
                }
                _ => Err(bad()),
            }
        };
        let from_domid = num(d, 5)?
            .map(|d| {
                u32::try_from(d)
                    .ok()
                    .filter(|d| *d <= MAX_DOMID)
                    .ok_or_else(bad)
            })
            .transpose()?;
        let suspended_ms = num(m, 12)?;
        Ok(Some(Resumed {
            from_domid,
            suspended_ms,
        }))
    }
}
