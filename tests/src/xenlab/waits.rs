//! Waits on the lab: conditions with deadlines, never sleeps or single
//! tries. Each wait names what it waits for, keeps the last value it saw,
//! and on a timeout says both, with the tails of the Xen, dom0 and guest
//! consoles: enough to fix a failure from CI's log alone.
//!
//! After every lifecycle operation (`xl create`, `restore`, `migrate`,
//! `reboot`, `unpause`) a scenario calls [`XenLab::settled`] before it talks
//! to the guest: a new domain's vif is not on the bridge the moment `xl`
//! returns, and dom0's first packets to it then fail with "No route to
//! host" until ARP tries again.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{LabGuest, XenLab};

/// How often a condition is looked at again. Each look is a request to
/// dom0's agent at least (a shell in dom0, often a relay to a guest's);
/// seven scenarios look side by side on two emulated CPUs.
const POLL_EVERY: Duration = Duration::from_secs(1);

impl XenLab {
    /// Polls `look` until it returns a value; `look` writes what it saw
    /// into its argument (kept for the timeout's message). Fails after
    /// `within` with what it waited for, the last value seen, the last
    /// error and the consoles.
    pub fn wait_until<T>(
        &self,
        what: &str,
        within: Duration,
        mut look: impl FnMut(&mut String) -> Result<Option<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut seen = String::from("(nothing yet)");
        let mut last_err = String::from("(none)");
        loop {
            match look(&mut seen) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_err = format!("{e:#}"),
            }
            if start.elapsed() > within {
                bail!(
                    "waited {:.0} s for {what}\n  last seen: {seen}\n  last error: {last_err}\n{}",
                    within.as_secs_f64(),
                    self.consoles()
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Polls `ready` until it returns true; fails after `within` with the
    /// last error and the consoles.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        self.wait_until(what, within, |seen| {
            let r = ready()?;
            *seen = format!("not yet ({r})");
            Ok(r.then_some(()))
        })
    }

    /// After a lifecycle operation (`after`, for messages): waits until
    /// `g` runs in a domain of its own (xl list), each of its vifs is
    /// connected (`hotplug-status`) and on the bridge, and its agent
    /// answers (a refused or unrouted connection is tried again until the
    /// deadline). Returns the domain's id.
    pub fn settled(&self, g: &LabGuest, after: &str, within: Duration) -> Result<u32> {
        let deadline = Instant::now() + within;
        let left = || deadline.saturating_duration_since(Instant::now());
        let what = format!(
            "{} after {after}: running, vifs connected and bridged",
            g.name
        );
        let domid = self.wait_until(&what, left(), |seen| {
            let e = self.dom0(&settled_script(&g.name))?;
            *seen = e.out.trim().to_string();
            Ok(if e.rc == 0 {
                seen.split_whitespace()
                    .find_map(|w| w.strip_prefix("domid="))
                    .and_then(|d| d.parse::<u32>().ok())
            } else {
                None
            })
        })?;
        let what = format!(
            "{} after {after}: its agent answering (domain {domid})",
            g.name
        );
        self.wait_until(&what, left(), |seen| {
            let e = self.guest_within(g, "echo up", 20)?;
            *seen = format!("exit {}: {}", e.rc, e.out.trim());
            Ok((e.rc == 0 && e.out.contains("up")).then_some(()))
        })?;
        Ok(domid)
    }
}

/// A dom0 script that says `domid=<n> state=<xl state> vif<n>=<status>,<bridged>...`
/// and exits 0 only when the domain runs (no p, c, d or s flag) and every
/// vif is connected and on xenbr0.
fn settled_script(name: &str) -> String {
    format!(
        r#"d=$(xl domid {name} 2>/dev/null) || {{ echo "no domain {name} in xl list"; exit 1; }}
st=$(xl list {name} 2>/dev/null | awk 'NR==2 {{print $5}}')
line="domid=$d state=$st"; rc=0
case "$st" in *p*|*c*|*d*|*s*|"") rc=1 ;; esac
vifs=$(xenstore-list /local/domain/0/backend/vif/$d 2>/dev/null)
[ -n "$vifs" ] || {{ line="$line no-vif-in-xenstore"; rc=1; }}
for n in $vifs; do
  hs=$(xenstore-read /local/domain/0/backend/vif/$d/$n/hotplug-status 2>/dev/null || echo absent)
  if [ -e /sys/class/net/xenbr0/brif/vif$d.$n ]; then br=bridged; else br=not-bridged; fi
  line="$line vif$d.$n=$hs,$br"
  [ "$hs" = connected ] && [ $br = bridged ] || rc=1
done
echo "$line"; exit $rc"#
    )
}
