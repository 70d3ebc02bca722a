//! Counters kept between runs, so that a 5-minute cron gives 5-minute
//! averages without sleeping. A small `key value` text file, replaced
//! atomically (write to a temporary file, then rename).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use xsmon_proto::layout::{BootId, Resumed};

pub const DEFAULT_PATH: &str = "/var/lib/xsmon/probe.state";

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Wall clock, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Boot time from /proc/stat; a change means the counters restarted.
    pub btime: u64,
    pub cpu_total: u64,
    pub cpu_iowait: u64,
    pub cpu_steal: u64,
    pub pswpin: u64,
    pub pswpout: u64,
    /// The domain the sample was taken in (from xenstore's `domid`), when
    /// known: a restore or a migration gives the VM a new one.
    pub domid: Option<u32>,
    /// CLOCK_BOOTTIME minus CLOCK_MONOTONIC, in ms: Linux adds the time it
    /// was suspended (a Xen save, restore or migration) to the first only.
    pub sleep_ms: Option<u64>,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), when
    /// readable: the one sure sign of the same boot.
    pub boot_id: Option<u128>,
}

/// How far `btime` may move within one boot: /proc/stat's boot time is
/// the wall clock minus CLOCK_BOOTTIME in whole seconds, and a restore
/// sets the wall clock anew, so it can tick by a second. A reboot moves it
/// by the previous boot's whole uptime.
const BTIME_SLACK_S: u64 = 2;

const FIELDS: [&str; 7] = [
    "time_ms",
    "btime",
    "cpu_total",
    "cpu_iowait",
    "cpu_steal",
    "pswpin",
    "pswpout",
];

impl Sample {
    fn fields(&self) -> [u64; 7] {
        [
            self.time_ms,
            self.btime,
            self.cpu_total,
            self.cpu_iowait,
            self.cpu_steal,
            self.pswpin,
            self.pswpout,
        ]
    }

    fn from_map(m: &BTreeMap<&str, u64>) -> Option<Sample> {
        let g = |k: &str| m.get(k).copied();
        // Optional: state files written before xsmon 0.4 have neither.
        let domid = g("domid").and_then(|d| u32::try_from(d).ok());
        let sleep_ms = g("sleep_ms");
        let boot_id = g("boot_id_hi")
            .zip(g("boot_id_lo"))
            .map(|(hi, lo)| (u128::from(hi) << 64) | u128::from(lo));
        Some(Sample {
            domid,
            sleep_ms,
            boot_id,
            time_ms: g("time_ms")?,
            btime: g("btime")?,
            cpu_total: g("cpu_total")?,
            cpu_iowait: g("cpu_iowait")?,
            cpu_steal: g("cpu_steal")?,
            pswpin: g("pswpin")?,
            pswpout: g("pswpout")?,
        })
    }

    /// Was the domain suspended between `self` and `now` (same boot)? A
    /// new domid, or the suspended-time clock grown by more than half a
    /// second, says so; each alone is enough (a guest that cannot read its
    /// domid, or a kernel that does not book the suspension).
    pub fn suspension_before(&self, now: &Sample) -> Option<Resumed> {
        if !self.same_boot(now) {
            return None;
        }
        let from_domid = match (self.domid, now.domid) {
            (Some(a), Some(b)) if a != b => Some(a),
            _ => None,
        };
        let suspended_ms = match (self.sleep_ms, now.sleep_ms) {
            (Some(a), Some(b)) if b > a + 500 => Some(b - a),
            _ => None,
        };
        (from_domid.is_some() || suspended_ms.is_some()).then_some(Resumed {
            from_domid,
            suspended_ms,
        })
    }

    /// Were both samples taken in one boot of the kernel? The boot ids
    /// say so where both are known; otherwise the boot times, within a
    /// second or two (a restore sets the wall clock anew: an exact match
    /// took restores for reboots).
    pub fn same_boot(&self, now: &Sample) -> bool {
        match (self.boot_id, now.boot_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.btime.abs_diff(now.btime) <= BTIME_SLACK_S,
        }
    }

    /// Can `self` serve as the start of an interval ending at `now`? Not
    /// after a reboot, not if the clock went backwards, not if it is from
    /// more than a day ago (the figures would mean nothing).
    pub fn usable_before(&self, now: &Sample) -> bool {
        self.same_boot(now)
            && now.time_ms > self.time_ms
            && now.time_ms - self.time_ms <= 86_400_000
            && now.cpu_total >= self.cpu_total
    }
}

/// Cumulative CPU and swap counters now. A missing vmstat leaves the swap
/// counters at zero; the swap check reports that on its own.
pub fn sample(sys: &xsmon_checks::Sys) -> Result<Sample> {
    let stats = sys.kernel_stats()?;
    let t = &stats.total;
    let cpu_total = t.user
        + t.nice
        + t.system
        + t.idle
        + t.iowait.unwrap_or(0)
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    let vm = sys.vmstat().ok();
    let vmget = |k: &str| {
        vm.as_ref()
            .and_then(|v| v.0.get(k))
            .map(|v| (*v).max(0) as u64)
            .unwrap_or(0)
    };
    Ok(Sample {
        time_ms: xsmon_checks::sys::now_ms(),
        btime: stats.btime,
        cpu_total,
        cpu_iowait: t.iowait.unwrap_or(0),
        cpu_steal: t.steal.unwrap_or(0),
        pswpin: vmget("pswpin"),
        pswpout: vmget("pswpout"),
        domid: None,
        sleep_ms: sleep_ms(),
        boot_id: boot_id(sys).map(|b| u128::from_str_radix(b.as_str(), 16).unwrap_or(0)),
    })
}

/// The kernel's boot id, where it has one (Linux 2.6.x and later).
pub fn boot_id(sys: &xsmon_checks::Sys) -> Option<BootId> {
    BootId::from_kernel(&sys.read_string("proc/sys/kernel/random/boot_id").ok()?)
}

/// CLOCK_BOOTTIME - CLOCK_MONOTONIC, in ms.
fn sleep_ms() -> Option<u64> {
    use nix::sys::time::TimeValLike;
    use nix::time::{clock_gettime, ClockId};
    let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    let mono = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    u64::try_from(boot.num_milliseconds() - mono.num_milliseconds()).ok()
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The previous sample; `None` when there is none or it is unreadable
    /// (a broken state file only costs one short sample, so it is not fatal).
    pub fn load(&self) -> Option<Sample> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut m = BTreeMap::new();
        for line in text.lines().take(64) {
            if let Some((k, v)) = line.split_once(' ') {
                if let Ok(v) = v.trim().parse::<u64>() {
                    m.insert(k, v);
                }
            }
        }
        let s = Sample::from_map(&m);
        if s.is_none() {
            tracing::warn!(path = %self.path.display(), "state file unreadable, sampling afresh");
        }
        s
    }

    pub fn save(&self, s: &Sample) -> Result<()> {
        let mut text = String::from("# xsmon guest-probe counters; safe to delete\n");
        for (k, v) in FIELDS.iter().zip(s.fields()) {
            text.push_str(&format!("{k} {v}\n"));
        }
        if let Some(d) = s.domid {
            text.push_str(&format!("domid {d}\n"));
        }
        if let Some(m) = s.sleep_ms {
            text.push_str(&format!("sleep_ms {m}\n"));
        }
        if let Some(b) = s.boot_id {
            text.push_str(&format!(
                "boot_id_hi {}\nboot_id_lo {}\n",
                (b >> 64) as u64,
                b as u64
            ));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming to {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("sub/probe.state"));
        assert_eq!(f.load(), None);
        let s = Sample {
            time_ms: 1,
            btime: 2,
            cpu_total: 3,
            cpu_iowait: 4,
            cpu_steal: 5,
            pswpin: 6,
            pswpout: 7,
            domid: Some(9),
            sleep_ms: Some(10),
            boot_id: Some(0x0f1e_2d3c_4b5a_6978_8796_a5b4_c3d2_e1f0),
        };
        f.save(&s).unwrap();
        assert_eq!(f.load(), Some(s));
        std::fs::write(dir.path().join("sub/probe.state"), "garbage\n").unwrap();
        assert_eq!(f.load(), None);
    }

    #[test]
    fn reboot_or_old_state_is_not_used() {
        let a = Sample {
            time_ms: 1000,
            btime: 5,
            cpu_total: 10,
            ..Default::default()
        };
        let mut b = Sample {
            time_ms: 301_000,
            btime: 5,
            cpu_total: 20,
            ..Default::default()
        };
        assert!(a.usable_before(&b));
        // A restore may move the boot time by a second; a reboot, by the
        // previous boot's uptime.
        b.btime = 6;
        assert!(a.usable_before(&b));
        b.btime = 65;
        assert!(!a.usable_before(&b));
        // Where both boot ids are known, they alone decide.
        let (mut a, mut b) = (a, b);
        a.boot_id = Some(1);
        b.boot_id = Some(1);
        assert!(a.usable_before(&b));
        b.btime = 5;
        b.boot_id = Some(2);
        assert!(!a.usable_before(&b));
        b.boot_id = Some(1);
        b.time_ms = 500;
        assert!(!a.usable_before(&b));
    }

    #[test]
    fn a_new_domid_or_booked_sleep_is_a_suspension() {
        let a = Sample {
            btime: 5,
            domid: Some(7),
            sleep_ms: Some(100),
            ..Default::default()
        };
        let mut b = a;
        assert_eq!(a.suspension_before(&b), None);
        b.domid = Some(9);
        assert_eq!(
            a.suspension_before(&b),
            Some(Resumed {
                from_domid: Some(7),
                suspended_ms: None
            })
        );
        b.domid = Some(7);
        b.sleep_ms = Some(8_600);
        assert_eq!(a.suspension_before(&b).unwrap().suspended_ms, Some(8_500));
        // A restore that ticks the boot time by a second is still one.
        b.btime = 6;
        assert!(a.suspension_before(&b).is_some());
        // A reboot is not a suspension (and the state is not used at all).
        b.btime = 65;
        assert_eq!(a.suspension_before(&b), None);
        // The restore of an image saved long ago: the same boot by its
        // boot id, whatever the clocks did, and a new domain.
        let (mut saved, mut restored) = (a, a);
        saved.boot_id = Some(42);
        restored.boot_id = Some(42);
        restored.btime = 5 + 86_400;
        restored.time_ms = saved.time_ms + 3 * 86_400_000;
        restored.domid = Some(11);
        assert_eq!(
            saved
                .suspension_before(&restored)
                .and_then(|r| r.from_domid),
            Some(7)
        );
        // A reboot with boot ids: another id, whatever btime says.
        restored.boot_id = Some(43);
        restored.btime = 5;
        assert_eq!(saved.suspension_before(&restored), None);
        // A state file from before xsmon 0.4: nothing to compare.
        let old = Sample {
            btime: 5,
            ..Default::default()
        };
        assert_eq!(old.suspension_before(&a), None);
    }
}
