//! Nagios performance data from a host's figures, per the monitoring
//! plugins guidelines: `'label'=value[UOM];[warn];[crit];[min];[max]`.
//!
//! Labels must stay the same from run to run, or a graph breaks: they are
//! built from what a figure is (kind, mount point or gateway, name), never
//! from the probe's positional check ids (`disk2` becomes `disk3` when a
//! mount is added), and from the device number for a guest's interfaces
//! (its domid changes on every boot). Everything in a label came from a
//! guest, so it is escaped: no space, `=`, control or non-ASCII character
//! survives, nor any of Nagios's usual `illegal_macro_output_chars`
//! (`` `~$&|'"<> ``, which it strips from `$SERVICEPERFDATA$`: a label
//! must read the same without its quotes); a long or rewritten target
//! keeps a short digest of the original so that two targets never share a
//! label.

use std::fmt::Write as _;

use xsmon_proto::snmpline::CheckFigures;

/// Figures that describe the measurement rather than the guest.
const SKIPPED: &[&str] = &["interval_s", "sent", "cpus"];
/// Longest target kept whole in a label.
const MAX_TARGET: usize = 40;

/// The performance data of one host's figures, space-separated; every
/// label starts with `prefix` (empty for a single host).
pub fn of_host(checks: &[CheckFigures], prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut labels = std::collections::HashSet::new();
    for c in checks {
        for v in c
            .values
            .iter()
            .filter(|v| !SKIPPED.contains(&v.name.as_str()))
        {
            let unit = Unit::of(&c.kind, &v.name);
            let mut label = format!("{prefix}{}_{}", subject(c), unit.short_name(&v.name));
            // Two checks of a kind on the same target: keep both.
            let base = label.clone();
            let mut n = 2;
            while !labels.insert(label.clone()) {
                label = format!("{base}_{n}");
                n += 1;
            }
            let limit = c.limit_of(&v.name);
            let num = |x: Option<f64>| x.map(|x| fmt_num(x, unit)).unwrap_or_default();
            let mut item = format!(
                "'{label}'={}{};{};{};{};{}",
                fmt_num(v.value, unit),
                unit.uom(),
                num(limit.and_then(|l| l.warning)),
                num(limit.and_then(|l| l.error)),
                unit.min().map(|m| m.to_string()).unwrap_or_default(),
                unit.max().map(|m| m.to_string()).unwrap_or_default(),
            );
            // Trailing empty fields may be dropped (and usually are).
            while item.ends_with(';') {
                item.pop();
            }
            out.push(item);
        }
    }
    out
}

/// Nagios keeps only the first few KB of a plugin's output and cuts the
/// rest silently, mid-item if need be (Nagios 4 here kept about 10 KB of a
/// 24 KB line). Keeps the items that fit in `budget` bytes: first those
/// with thresholds (they carry what the status means), then the others,
/// each group in its order; the kept ones stay in their original order.
/// Returns them and how many were left out, for the output to say so.
pub fn fit(items: Vec<String>, budget: usize) -> (Vec<String>, usize) {
    let total: usize = items.iter().map(|i| i.len() + 1).sum();
    if total <= budget {
        return (items, 0);
    }
    let graded = |item: &str| {
        item.rsplit_once("'=")
            .map(|(_, rest)| rest.split(';').skip(1).take(2).any(|t| !t.is_empty()))
            .unwrap_or(false)
    };
    let mut keep = vec![false; items.len()];
    let mut used = 0;
    for pass_graded in [true, false] {
        for (i, item) in items.iter().enumerate() {
            if graded(item) == pass_graded && used + item.len() < budget {
                keep[i] = true;
                used += item.len() + 1;
            }
        }
    }
    let dropped = keep.iter().filter(|k| !**k).count();
    let kept = items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, k)| k.then_some(item))
        .collect();
    (kept, dropped)
}

/// What a figure is about: `cpu`, `mem`, `disk_/var`, `net_10.0.0.1`;
/// for dom0's counters the check id (`xen`, `vif0`).
fn subject(c: &CheckFigures) -> String {
    if c.kind == "xen" {
        return label_safe(&c.check_id);
    }
    if c.target.is_empty() {
        label_safe(&c.kind)
    } else {
        format!("{}_{}", label_safe(&c.kind), label_safe(&c.target))
    }
}

/// Text a label may hold: printable ASCII without `=` or Nagios's usual
/// illegal macro output characters, at most [`MAX_TARGET`] characters;
/// anything rewritten or cut gets a digest of the original.
pub fn label_safe(s: &str) -> String {
    const UNSAFE: &str = "=;`~$&|'\"<>";
    let mut out: String = s
        .chars()
        .map(|c| match c {
            c if c.is_ascii_graphic() && !UNSAFE.contains(c) => c,
            _ => '_',
        })
        .collect();
    if out != s || out.len() > MAX_TARGET {
        out.truncate(MAX_TARGET);
        let _ = write!(out, "-h{:06x}", fnv1a(s.as_bytes()) & 0xff_ffff);
    }
    out
}

/// FNV-1a: a digest that stays the same across runs and Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    Percent,
    Millis,
    Bytes,
    Counter,
    Plain,
}

impl Unit {
    fn of(kind: &str, name: &str) -> Unit {
        if xsmon_proto::check::is_counter(kind, name) {
            Unit::Counter
        } else if name.ends_with("_pct") {
            Unit::Percent
        } else if name.ends_with("_ms") {
            Unit::Millis
        } else if name.ends_with("_bytes") {
            Unit::Bytes
        } else {
            Unit::Plain
        }
    }

    fn uom(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::Millis => "ms",
            Unit::Bytes => "B",
            Unit::Counter => "c",
            Unit::Plain => "",
        }
    }

    /// The name without the suffix its unit already says (`used_pct` is
    /// `used` in %). Bytes keep theirs: `used_bytes` beside `used_pct`
    /// must not become a second `used`.
    fn short_name(self, name: &str) -> String {
        let suffix = match self {
            Unit::Percent => "_pct",
            Unit::Millis => "_ms",
            Unit::Counter if name.ends_with("_s") => "_s",
            _ => "",
        };
        name.strip_suffix(suffix).unwrap_or(name).to_string()
    }

    fn min(self) -> Option<u32> {
        Some(0)
    }

    fn max(self) -> Option<u32> {
        (self == Unit::Percent).then_some(100)
    }
}

fn fmt_num(v: f64, unit: Unit) -> String {
    if unit == Unit::Counter {
        format!("{}", v.round() as i64)
    } else {
        xsmon_proto::layout::round3(v).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsmon_proto::{CheckResult, Status};

    fn disk(id: &str, target: &str, used: f64) -> CheckFigures {
        let mut c = CheckResult::new(id, "disk", target);
        c.value("used_pct", used).value("size_bytes", 1e9).limit(
            "used_pct",
            Some(85.0),
            Some(95.0),
        );
        CheckFigures::of(&c)
    }

    #[test]
    fn units_thresholds_and_ranges_follow_the_guidelines() {
        let mut net = CheckResult::new("net0", "net", "10.0.0.1");
        net.value("loss_pct", 0.0)
            .value("sent", 3.0)
            .value("rtt_ms", 0.8)
            .limit("loss_pct", Some(20.0), Some(60.0))
            .limit("rtt_ms", Some(100.0), Some(500.0));
        let mut cpu = CheckResult::new("cpu", "cpu", "");
        cpu.value("load_per_cpu", 0.25)
            .limit("load_per_cpu", Some(2.0), Some(4.0));
        let xen = CheckFigures {
            check_id: "vif0".into(),
            kind: "xen".into(),
            status: Status::Ok,
            target: "vif7.0".into(),
            values: vec![xsmon_proto::Value {
                name: "rx_bytes".into(),
                value: 123456.7,
            }],
            limits: vec![],
        };
        let perf = of_host(
            &[
                disk("disk2", "/var", 95.0),
                CheckFigures::of(&net),
                CheckFigures::of(&cpu),
                xen,
            ],
            "",
        );
        assert_eq!(
            perf,
            [
                "'disk_/var_used'=95%;85;95;0;100",
                "'disk_/var_size_bytes'=1000000000B;;;0",
                "'net_10.0.0.1_loss'=0%;20;60;0;100",
                "'net_10.0.0.1_rtt'=0.8ms;100;500;0",
                "'cpu_load_per_cpu'=0.25;2;4;0",
                "'vif0_rx_bytes'=123457c;;;0",
            ]
        );
    }

    #[test]
    fn what_does_not_fit_leaves_the_ungraded_figures_out_first() {
        let checks: Vec<CheckFigures> = (0..200)
            .map(|i| disk(&format!("disk{i}"), &format!("/srv/volume{i:03}"), 50.0))
            .collect();
        let all = of_host(&checks, "");
        assert_eq!(all.len(), 400);
        let (kept, dropped) = fit(all.clone(), 7000);
        assert_eq!(kept.len() + dropped, 400);
        assert!(kept.iter().map(|k| k.len() + 1).sum::<usize>() <= 7000);
        assert!(
            kept.iter().all(|k| k.contains("_used'=")),
            "sizes (no thresholds) go first"
        );
        // What fits is left alone.
        let few = of_host(&checks[..3], "");
        assert_eq!(fit(few.clone(), 7000), (few, 0));
    }

    #[test]
    fn labels_follow_the_mount_not_the_check_number() {
        let before = of_host(&[disk("disk0", "/", 10.0), disk("disk1", "/var", 20.0)], "");
        let after = of_host(
            &[
                disk("disk0", "/", 10.0),
                disk("disk1", "/srv", 5.0),
                disk("disk2", "/var", 20.0),
            ],
            "",
        );
        assert!(
            before.iter().all(|p| after.contains(p)),
            "{before:?} {after:?}"
        );
    }

    #[test]
    fn guest_chosen_targets_cannot_break_the_syntax() {
        let evil = [
            "/mnt/it's=bad|x",
            "/mnt/a\nb",
            "/mnt/caf\u{e9}",
            &"/very/long".repeat(20),
        ];
        let checks: Vec<CheckFigures> = evil
            .iter()
            .enumerate()
            .map(|(i, t)| disk(&format!("disk{i}"), t, 1.0))
            .collect();
        let perf = of_host(&checks, &format!("{}/", label_safe("web 01")));
        let mut labels = std::collections::HashSet::new();
        for p in &perf {
            let (label, rest) = p.rsplit_once("'=").expect("quoted label");
            let label = label.strip_prefix('\'').unwrap();
            assert!(
                !label.contains(['\'', '=', '|', ' ', '$', '"', '<', '>', '`', '~', '&'])
                    && label.bytes().all(|b| (b'!'..=b'}').contains(&b)),
                "{p}"
            );
            assert!(rest.split(';').count() <= 5, "{p}");
            assert!(labels.insert(label.to_string()), "duplicate {label}");
        }
        // A rewritten target keeps a digest, so /mnt/a\nb and /mnt/a_b differ.
        let a = of_host(&[disk("disk0", "/mnt/a\nb", 1.0)], "");
        let b = of_host(&[disk("disk0", "/mnt/a_b", 1.0)], "");
        assert_ne!(a, b);
    }
}
