//! The shared config directory of the 2010 design: one folder per dom0,
//! holding the `.cfg` files of the guests that dom0 runs,
//!
//! ```text
//! /data/config/auto/<dom0>/<domU>.cfg
//! ```
//!
//! Used by host-collector (was a vanished guest migrated?), snmp-extend
//! (`list-cluster`) and the poller (which dom0s to poll). Names found here
//! are checked like any other outside input: a folder or file whose name is
//! not a plain host name is reported, not used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest dom0 or guest name accepted.
pub const MAX_NAME: usize = 64;
/// Most entries read from one directory (a runaway directory must not make
/// the poller or snmpd's extend run for ever).
pub const MAX_ENTRIES: usize = 10_000;

/// Is `s` a plain host or guest name: letters, digits, `.`, `_`, `-`, not
/// starting with a dot?
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What the config directories say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// dom0 name -> its guests' names (sorted).
    pub dom0s: BTreeMap<String, Vec<String>>,
    /// Things that could not be read or were skipped, one line each.
    pub problems: Vec<String>,
}

impl Cluster {
    /// The dom0s whose folder holds `guest`'s `.cfg`.
    pub fn homes_of(&self, guest: &str) -> Vec<&str> {
        self.dom0s
            .iter()
            .filter(|(_, guests)| guests.binary_search_by(|g| g.as_str().cmp(guest)).is_ok())
            .map(|(d, _)| d.as_str())
            .collect()
    }
}

/// Reads one or more config directories (one per datacenter, say).
pub fn scan(dirs: &[PathBuf]) -> Cluster {
    let mut c = Cluster::default();
    for dir in dirs {
        scan_one(dir, &mut c);
    }
    c
}

fn scan_one(dir: &Path, c: &mut Cluster) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            c.problems.push(format!(
                "cannot read config directory {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    for entry in entries.flatten().take(MAX_ENTRIES) {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_name(&name) {
            c.problems.push(format!(
                "skipped {}: not a plain host name",
                crate::text::clean(&path.display().to_string(), 200)
            ));
            continue;
        }
        let guests = match guests_in(&path) {
            Ok(g) => g,
            Err(e) => {
                c.problems.push(e);
                continue;
            }
        };
        let list = c.dom0s.entry(name).or_default();
        list.extend(guests);
        list.sort();
        list.dedup();
    }
}

fn guests_in(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(entries
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".cfg")
                .filter(|g| valid_name(g))
                .map(str::to_string)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("srxen09"));
        assert!(valid_name("www-p02.example.org"));
        assert!(!valid_name(""));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
