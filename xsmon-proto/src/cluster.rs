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
            Ok((g, problems)) => {
                c.problems.extend(problems);
                g
            }
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

fn guests_in(dir: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let names: Vec<std::ffi::OsString> = entries
        .flatten()
        .take(MAX_ENTRIES + 1)
        .map(|e| e.file_name())
        .collect();
    Ok(guests_from_names(dir, &names))
}

/// The guests named by a dom0 folder's file names (`<guest>.cfg`), and a
/// line for each `.cfg` whose name is not a plain host name (skipped, not
/// silently) and for a folder with more than [`MAX_ENTRIES`] entries.
/// Other files (`README`, `.cfg.bak`) are not configs and are ignored.
pub fn guests_from_names(dir: &Path, names: &[std::ffi::OsString]) -> (Vec<String>, Vec<String>) {
    let mut guests = Vec::new();
    let mut problems = Vec::new();
    if names.len() > MAX_ENTRIES {
        problems.push(format!(
            "{} holds more than {MAX_ENTRIES} entries; only the first {MAX_ENTRIES} were read",
            crate::text::clean(&dir.display().to_string(), 200)
        ));
    }
    for name in names.iter().take(MAX_ENTRIES) {
        let name = name.to_string_lossy();
        let Some(guest) = name.strip_suffix(".cfg") else {
            continue;
        };
        if valid_name(guest) {
            guests.push(guest.to_string());
        } else {
            problems.push(format!(
                "skipped {}/{}: not a plain guest name",
                crate::text::clean(&dir.display().to_string(), 200),
                crate::text::clean(&name, 80)
            ));
        }
    }
    (guests, problems)
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

    fn os(names: &[&[u8]]) -> Vec<std::ffi::OsString> {
        use std::os::unix::ffi::OsStringExt;
        names
            .iter()
            .map(|n| std::ffi::OsString::from_vec(n.to_vec()))
            .collect()
    }

    #[test]
    fn odd_config_names_are_reported_not_dropped() {
        let (g, p) = guests_from_names(
            Path::new("/c/xen01"),
            &os(&[
                b"web01.cfg",
                b"a b.cfg",
                b"x\nG.cfg",
                b"README",
                b"old.cfg.bak",
            ]),
        );
        assert_eq!(g, ["web01"]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|l| !l.contains('\n')));
    }

    use proptest::prelude::*;

    proptest! {
        /// Fuzz target (scripts/fuzz): any file names in a dom0 folder
        /// (bytes, not UTF-8, newlines) never make the scan panic; every
        /// guest it accepts is a plain name, and every problem line is one
        /// line of printable text.
        #[test]
        fn fuzz_config_directory_scan(names in proptest::collection::vec(
            proptest::collection::vec(any::<u8>().prop_map(|b| if b == 0 || b == b'/' { b'x' } else { b }), 1..70)
                .prop_map(|mut v| { if v.len() % 2 == 0 { v.extend_from_slice(b".cfg"); } v }),
            0..20,
        )) {
            let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
            let (guests, problems) = guests_from_names(Path::new("/c/xen01"), &os(&refs));
            for g in &guests {
                prop_assert!(valid_name(g));
            }
            for p in &problems {
                prop_assert!(!p.chars().any(char::is_control), "{p:?}");
            }
        }
    }
}
