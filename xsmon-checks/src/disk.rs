//! Disk: space and inodes of every real mounted filesystem, from
//! /proc/self/mountinfo and statvfs. Pseudo filesystems, NetApp
//! `.snapshot` mounts, bind mounts of an already-seen filesystem and
//! configured exclusions are skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xsmon_proto::CheckResult;

use serde::Deserialize;

use crate::sys::Sys;
use crate::thresholds::Thresholds;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Space used, percent (as df counts it).
    pub used_pct: Thresholds,
    /// Inodes used, percent.
    pub inodes_pct: Thresholds,
    /// Mount points not to check (exact paths).
    pub exclude: Vec<PathBuf>,
    /// Filesystem types not to check, beyond the built-in pseudo types.
    pub exclude_fstypes: Vec<String>,
    /// How long one statvfs may take (a hung NFS server blocks it).
    pub statvfs_timeout_ms: u64,
    /// Per-mount thresholds.
    pub mount: Vec<MountConfig>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            used_pct: Thresholds::new(85.0, 95.0),
            inodes_pct: Thresholds::new(85.0, 95.0),
            exclude: Vec::new(),
            exclude_fstypes: Vec::new(),
            statvfs_timeout_ms: 2000,
            mount: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub path: PathBuf,
    pub used_pct: Option<Thresholds>,
    pub inodes_pct: Option<Thresholds>,
}

/// At most this many filesystems are reported (the xenstore layout allows
/// 100 checks per run, and a few go to cpu, swap and gateways).
pub const MAX_DISKS: usize = 80;

/// Filesystem types that hold no user data worth watching.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "securityfs",
    "cgroup",
    "cgroup2",
    "pstore",
    "bpf",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nfsd",
    "efivarfs",
    "selinuxfs",
    "xenfs",
    "nsfs",
    "squashfs",
    "iso9660",
    "overlay",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "fuse.lxcfs",
    "rootfs",
];

/// One filesystem to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub point: PathBuf,
    pub fs_type: String,
}

/// The mounts worth checking, in mountinfo order.
pub fn real_mounts(sys: &Sys, cfg: &DiskConfig) -> anyhow::Result<Vec<Mount>> {
    let infos = sys.mountinfo()?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for m in infos.0 {
        let point = unescape_octal(&m.mount_point.to_string_lossy());
        let skip = PSEUDO.contains(&m.fs_type.as_str())
            || cfg.exclude_fstypes.contains(&m.fs_type)
            || cfg.exclude.contains(&point)
            || point.to_string_lossy().contains(".snapshot")
            // A filesystem mounted twice (bind mounts, also of a
            // subdirectory) has the same figures: it is checked once.
            || !seen.insert(m.majmin.clone());
        if !skip {
            out.push(Mount {
                point,
                fs_type: m.fs_type,
            });
        }
    }
    Ok(out)
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
pub fn unescape_octal(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

pub fn checks(sys: &Sys, cfg: &DiskConfig) -> Vec<CheckResult> {
    let mounts = match real_mounts(sys, cfg) {
        Ok(m) => m,
        Err(e) => return vec![CheckResult::unknown("disk0", "disk", "", format!("{e:#}"))],
    };
    if mounts.is_empty() {
        return vec![CheckResult::unknown(
            "disk0",
            "disk",
            "",
            "no real filesystem found in mountinfo",
        )];
    }
    let extra = mounts.len().saturating_sub(MAX_DISKS);
    let mounts = &mounts[..mounts.len().min(MAX_DISKS)];
    let timeout = Duration::from_millis(cfg.statvfs_timeout_ms);
    let stats = statvfs_all(sys, mounts, timeout);
    let mut out: Vec<CheckResult> = mounts
        .iter()
        .zip(stats)
        .enumerate()
        .map(|(i, (m, st))| grade_mount(format!("disk{i}"), m, st, cfg))
        .collect();
    if extra > 0 {
        if let Some(last) = out.last_mut() {
            last.message.push_str(&format!(
                " (and {extra} more filesystems not checked: limit {MAX_DISKS})"
            ));
        }
    }
    out
}

/// Space figures of one filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub size_bytes: f64,
    pub used_pct: f64,
    /// None where the filesystem has no inode count (vfat, btrfs).
    pub inodes_pct: Option<f64>,
}

fn usage_of(path: &Path) -> Result<Usage, String> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let frsize = st.fragment_size() as f64;
    let blocks = st.blocks() as f64;
    let free = st.blocks_free() as f64;
    let avail = st.blocks_available() as f64;
    let used = blocks - free;
    // As df counts it: the root-reserved blocks are not available to users.
    let used_pct = if used + avail > 0.0 {
        100.0 * used / (used + avail)
    } else {
        0.0
    };
    let files = st.files() as f64;
    let inodes_pct = (files > 0.0).then(|| 100.0 * (files - st.files_free() as f64) / files);
    Ok(Usage {
        size_bytes: blocks * frsize,
        used_pct,
        inodes_pct,
    })
}

/// statvfs every mount in parallel with one deadline: a hung NFS server
/// blocks statvfs forever, and must not block the probe.
fn statvfs_all(sys: &Sys, mounts: &[Mount], timeout: Duration) -> Vec<Result<Usage, String>> {
    let (tx, rx) = mpsc::channel();
    for (i, m) in mounts.iter().enumerate() {
        let path = sys.path(&m.point);
        let thread_tx = tx.clone();
        // Detached on purpose: a thread stuck in the kernel is left behind
        // and ends with the process.
        let spawned = std::thread::Builder::new()
            .name(format!("statvfs-{i}"))
            .spawn(move || {
                let _ = thread_tx.send((i, usage_of(&path)));
            });
        if let Err(e) = spawned {
            let _ = tx.send((i, Err(format!("cannot start statvfs: {e}"))));
        }
    }
    drop(tx);
    let mut out: Vec<Result<Usage, String>> = mounts
        .iter()
        .map(|m| {
            Err(format!(
                "statvfs {} did not return within {timeout:?} (hung network filesystem?)",
                m.point.display()
            ))
        })
        .collect();
    let deadline = Instant::now() + timeout;
    while let Ok((i, r)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out[i] = r;
    }
    out
}

fn thresholds_for(cfg: &DiskConfig, point: &Path) -> (Thresholds, Thresholds) {
    let specific = cfg.mount.iter().find(|m| m.path == point);
    (
        specific.and_then(|m| m.used_pct).unwrap_or(cfg.used_pct),
        specific
            .and_then(|m| m.inodes_pct)
            .unwrap_or(cfg.inodes_pct),
    )
}

fn grade_mount(
    id: String,
    m: &Mount,
    usage: Result<Usage, String>,
    cfg: &DiskConfig,
) -> CheckResult {
    let target = m.point.to_string_lossy().into_owned();
    let u = match usage {
        Ok(u) => u,
        Err(e) => return CheckResult::unknown(id, "disk", target, e),
    };
    let (space_t, inode_t) = thresholds_for(cfg, &m.point);
    let mut r = CheckResult::new(id, "disk", target.clone());
    r.status = space_t.judge(&mut r, "used_pct", u.used_pct);
    r.message = format!(
        "{target} ({}) {:.0}% used of {}",
        m.fs_type,
        u.used_pct,
        human_bytes(u.size_bytes)
    );
    r.value("used_pct", u.used_pct)
        .value("size_bytes", u.size_bytes);
    if let Some(ip) = u.inodes_pct {
        r.status = r.status.worst(inode_t.judge(&mut r, "inodes_pct", ip));
        r.message.push_str(&format!(", inodes {ip:.0}% used"));
        r.value("inodes_pct", ip);
    }
    r
}

fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_in_mount_points() {
        assert_eq!(
            unescape_octal(r"/mnt/with\040space"),
            PathBuf::from("/mnt/with space")
        );
        assert_eq!(unescape_octal(r"/a\012b"), PathBuf::from("/a\nb"));
        assert_eq!(
            unescape_octal(r"/trailing\04"),
            PathBuf::from(r"/trailing\04")
        );
        assert_eq!(unescape_octal(r"/x\777"), PathBuf::from(r"/x\777"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512.0), "512.0 B");
        assert_eq!(human_bytes(10.0 * 1024.0 * 1024.0 * 1024.0), "10.0 GiB");
    }

    #[test]
    fn per_mount_thresholds_override() {
        let cfg: DiskConfig =
            toml::from_str("[[mount]]\npath = \"/var\"\nused_pct = { warning = 50, error = 60 }\n")
                .unwrap();
        let m = Mount {
            point: "/var".into(),
            fs_type: "ext4".into(),
        };
        let u = Usage {
            size_bytes: 1e9,
            used_pct: 55.0,
            inodes_pct: Some(1.0),
        };
        assert_eq!(
            grade_mount("disk0".into(), &m, Ok(u), &cfg).status,
            xsmon_proto::Status::Warning
        );
        let other = Mount {
            point: "/srv".into(),
            fs_type: "ext4".into(),
        };
        assert_eq!(
            grade_mount("disk1".into(), &other, Ok(u), &cfg).status,
            xsmon_proto::Status::Ok
        );
        let hung = grade_mount(
            "disk2".into(),
            &other,
            Err("statvfs /srv did not return".into()),
            &cfg,
        );
        assert_eq!(hung.status, xsmon_proto::Status::Unknown);
        assert!(hung.message.contains("did not return"));
    }
}
