//! Secrets: the SNMP community, the SNMPv3 passwords, Icinga 2's API
//! password. Owns the value that never prints ([`Secret`]) and the check
//! that refuses a config file holding secrets that others can read
//! ([`check_file`]), as ssh refuses such a private key and psql such a
//! `.pgpass`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Deserialize;

/// A secret value: `Debug` and `Display` never show it; only
/// [`Secret::expose`] does, where it is sent.
#[derive(Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Keys of a section that hold secrets.
const SECRET_KEYS: [&str; 4] = [
    "community",
    "v3_auth_password",
    "v3_priv_password",
    "icinga2_password",
];

/// The secret keys a config's text sets (dotted: `snmp.community`,
/// `snmp.dom0.xen07.v3_auth_password`, `push.icinga2_password`).
pub fn secrets_set(table: &toml::Table) -> Vec<String> {
    let mut found = Vec::new();
    collect(table, "", &mut found);
    found
}

fn collect(table: &toml::Table, prefix: &str, found: &mut Vec<String>) {
    for (k, v) in table {
        let path = format!("{prefix}{k}");
        match v {
            toml::Value::Table(t) => collect(t, &format!("{path}."), found),
            _ if SECRET_KEYS.contains(&k.as_str()) => found.push(path),
            _ => {}
        }
    }
}

/// Who may read a file of secrets besides its owner: `readable_by` is ""
/// (no one), a group's name (that group: mode 0640 with that group), or
/// "anyone" (no check). Refuses a file that group or others can read
/// otherwise, naming it, its mode and the `chmod` that fixes it.
pub fn check_file(path: &Path, secrets: &[String], readable_by: &str) -> Result<(), String> {
    if secrets.is_empty() || readable_by == "anyone" {
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.mode() & 0o777;
    let group = group_name(meta.gid());
    let group_ok = !readable_by.is_empty() && group.as_deref() == Some(readable_by);
    let who = if mode & 0o004 != 0 {
        "anyone on this machine"
    } else if mode & 0o040 != 0 && !group_ok {
        "its group"
    } else {
        return Ok(());
    };
    let p = path.display();
    let group = group.unwrap_or_else(|| meta.gid().to_string());
    Err(format!(
        "{p} holds secrets ({}) and is mode {mode:04o} (group {group}): {who} can read them. \
         Run `chmod 600 {p}`; or, for a group that must read it (Nagios's, when its checks poll live), \
         `chgrp GROUP {p}; chmod 640 {p}` and set `secrets_readable_by = \"GROUP\"` in it; \
         `secrets_readable_by = \"anyone\"` accepts any mode",
        secrets.join(", ")
    ))
}

fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("poller.toml");
        std::fs::write(&p, "[snmp]\ncommunity = \"s3cret\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, p)
    }

    #[test]
    fn a_secret_is_never_printed() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(s.expose(), "s3cret");
    }

    #[test]
    fn secrets_are_found_in_every_section() {
        let t: toml::Table = toml::from_str(
            "hosts = [\"a\"]\n[snmp]\ncommunity = \"x\"\ntimeout_ms = 1\n[snmp.dom0.xen07]\nv3_priv_password = \"p\"\n[push]\nicinga2_password = \"i\"\nicinga2_user = \"u\"\n",
        )
        .unwrap();
        let mut found = secrets_set(&t);
        found.sort();
        assert_eq!(
            found,
            [
                "push.icinga2_password",
                "snmp.community",
                "snmp.dom0.xen07.v3_priv_password"
            ]
        );
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_chmod_named() {
        let secrets = vec!["snmp.community".to_string()];
        let (_d, p) = file(0o644);
        let e = check_file(&p, &secrets, "").unwrap_err();
        assert!(e.contains("is mode 0644"), "{e}");
        assert!(e.contains("anyone on this machine can read them"), "{e}");
        assert!(e.contains(&format!("`chmod 600 {}`", p.display())), "{e}");
        assert!(e.contains("snmp.community"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(check_file(&p, &secrets, "anyone").is_ok());
        assert!(check_file(&p, &[], "").is_ok(), "a file without secrets");
    }

    #[test]
    fn a_group_may_read_only_when_named() {
        let secrets = vec!["snmp.community".to_string()];
        let (_d, p) = file(0o640);
        let e = check_file(&p, &secrets, "").unwrap_err();
        assert!(e.contains("its group can read them"), "{e}");
        let gid = std::fs::metadata(&p).unwrap().gid();
        let own = group_name(gid).expect("the test's group has a name");
        assert!(check_file(&p, &secrets, &own).is_ok());
        assert!(check_file(&p, &secrets, "no-such-group-xsmon").is_err());
        let (_d, p) = file(0o600);
        assert!(check_file(&p, &secrets, "").is_ok());
    }
}
