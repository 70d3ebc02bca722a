//! Figures dom0 knows about its guests without asking them: CPU time from
//! the toolstack (`xl list`), network bytes from each guest's vif devices
//! (`/sys/class/net/vif<domid>.<n>/statistics`). A guest cannot forge these.
//! Where the tool or the devices are absent (no hypervisor), the figures are
//! unavailable, and that is said, not hidden.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Per-domain figures, by domid.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HostFigures {
    /// domid -> CPU seconds used since the domain started.
    pub cpu_time_s: BTreeMap<u32, f64>,
    /// domid -> vif name -> (rx bytes, tx bytes), as dom0 counts them (so rx
    /// is what the guest sent).
    pub vifs: BTreeMap<u32, BTreeMap<String, (u64, u64)>>,
    /// Why a figure is unavailable, one line each.
    pub unavailable: Vec<String>,
}

/// Parses `xl list` output: `Name ID Mem VCPUs State Time(s)` columns. The
/// name may not contain spaces (xl refuses them), so columns are counted
/// from the right.
pub fn parse_xl_list(text: &str) -> BTreeMap<u32, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 {
            continue;
        }
        let n = cols.len();
        if let (Ok(id), Ok(t)) = (cols[n - 5].parse::<u32>(), cols[n - 1].parse::<f64>()) {
            if t.is_finite() && t >= 0.0 {
                out.insert(id, t);
            }
        }
    }
    out
}

/// Runs `xl list` with a deadline (xl can block on a busy toolstack lock).
fn run_xl(xl: &Path, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(xl)
        .arg("list")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", xl.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = (&mut o).take(1 << 20).read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = (&mut e).take(4096).read_to_string(&mut err);
                }
                if !status.success() {
                    let first = err.lines().next().unwrap_or("").trim().to_string();
                    return Err(format!("{} list failed ({status}): {first}", xl.display()));
                }
                return Ok(out);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} list did not finish within {timeout:?}",
                    xl.display()
                ));
            }
            Err(e) => return Err(format!("{} list: {e}", xl.display())),
        }
    }
}

/// Reads the vif counters under `sys_class_net` (normally /sys/class/net).
pub fn read_vifs(sys_class_net: &Path) -> BTreeMap<u32, BTreeMap<String, (u64, u64)>> {
    let mut out: BTreeMap<u32, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(sys_class_net) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((domid, _)) = name.strip_prefix("vif").and_then(|r| r.split_once('.')) else {
            continue;
        };
        let Ok(domid) = domid.parse::<u32>() else {
            continue;
        };
        let read = |f: &str| {
            std::fs::read_to_string(e.path().join("statistics").join(f))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        if let (Some(rx), Some(tx)) = (read("rx_bytes"), read("tx_bytes")) {
            out.entry(domid).or_default().insert(name.clone(), (rx, tx));
        }
    }
    out
}

pub fn collect(xl: &Path, sys_class_net: &Path) -> HostFigures {
    let mut f = HostFigures::default();
    match run_xl(xl, Duration::from_secs(5)) {
        Ok(text) => f.cpu_time_s = parse_xl_list(&text),
        Err(e) => f
            .unavailable
            .push(format!("per-domain CPU time unavailable ({e})")),
    }
    f.vifs = read_vifs(sys_class_net);
    if f.vifs.is_empty() {
        f.unavailable.push(format!(
            "no vif devices in {}: per-guest network bytes unavailable",
            sys_class_net.display()
        ));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): any text from `xl list` (a newer xl,
        /// an error message, garbage) never makes the parser panic, and
        /// every figure it keeps is a finite, non-negative CPU time.
        #[test]
        fn fuzz_xl_list_parser(text in "(.{0,40}[ \n\t]){0,12}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for t in [text, String::from_utf8_lossy(&raw).into_owned()] {
                for v in parse_xl_list(&t).values() {
                    proptest::prop_assert!(v.is_finite() && *v >= 0.0);
                }
            }
        }
    }

    /// `xl list` as printed by Xen 4.17's xl (columns and widths of its
    /// printf format), for a dom0 with three guests.
    const XL_LIST: &str = include_str!("../tests/data/xl-list.txt");

    #[test]
    fn xl_list_parses() {
        let m = parse_xl_list(XL_LIST);
        assert_eq!(m.len(), 4);
        assert_eq!(m[&0], 93245.1);
        assert_eq!(m[&7], 1834.2);
        assert_eq!(m[&12], 0.0);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let m = parse_xl_list(
            "Name ID Mem VCPUs State Time(s)\nnonsense\nx y z w v u\nweb 3 512 1 -b---- nan\n",
        );
        assert!(m.is_empty());
    }

    #[test]
    fn vif_counters() {
        let dir = tempfile::tempdir().unwrap();
        for (name, rx, tx) in [
            ("vif7.0", 100, 200),
            ("vif7.1", 5, 6),
            ("vif12.0", 1, 2),
            ("eth0", 9, 9),
        ] {
            let s = dir.path().join(name).join("statistics");
            std::fs::create_dir_all(&s).unwrap();
            std::fs::write(s.join("rx_bytes"), format!("{rx}\n")).unwrap();
            std::fs::write(s.join("tx_bytes"), format!("{tx}\n")).unwrap();
        }
        let v = read_vifs(dir.path());
        assert_eq!(v.len(), 2);
        assert_eq!(v[&7]["vif7.0"], (100, 200));
        assert_eq!(v[&7]["vif7.1"], (5, 6));
    }

    #[test]
    fn missing_xl_is_reported_unavailable() {
        let f = collect(Path::new("/nonexistent/xl"), Path::new("/nonexistent/net"));
        assert!(f.cpu_time_s.is_empty());
        assert_eq!(f.unavailable.len(), 2);
        assert!(f.unavailable[0].contains("/nonexistent/xl"));
    }
}
