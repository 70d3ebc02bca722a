//! The collector's sandbox on the real dom0. The lab's dom0 has no
//! systemd: `scripts/xen-lab` builds `tests/harness/unit-sandbox.c` into
//! it, which applies a unit file's sandboxing directives as systemd does
//! (mount namespace, capabilities, no_new_privs, the seccomp filter of
//! `@system-service` and the unit's restrictions), and makes dom0's
//! `host-collector` a wrapper that runs the real one under the shipped
//! unit (`xsmon-host-collector.service`, or `-watch.service` for the
//! watch). Every scenario's collect therefore runs sandboxed; this check,
//! at every lab's boot, says that the sandbox is really in force and that
//! what the collector needs gets through it.

use anyhow::{bail, Result};

use super::XenLab;

/// What a process in the sandbox of `unit` may do, reported from inside.
const REPORT: &str = r#"sed -n 's/^\(CapEff\|NoNewPrivs\|Seccomp\):[[:space:]]*/\1=/p' /proc/self/status
touch /usr/xsmon-escape 2>/dev/null && echo write-usr=yes || echo write-usr=no
touch /var/lib/xsmon/.sandbox-check 2>/dev/null && echo write-state=yes || echo write-state=no
rm -f /var/lib/xsmon/.sandbox-check
xl list 2>&1 | grep -q '^Domain-0 ' && echo xl-list=yes || echo xl-list=no
grep -qx control_d /proc/xen/capabilities && echo proc-xen=yes || echo proc-xen=no
[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ] && echo sysfs=yes || echo sysfs=no
xenstore-read /local/domain/0/name >/dev/null 2>&1 && echo xenstore=yes || echo xenstore=no
"#;

/// Checks, for each collector unit, that the sandbox holds and lets
/// through what the collector needs. Returns one line per unit.
pub fn check_collector_sandbox(lab: &XenLab) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for unit in [
        "xsmon-host-collector.service",
        "xsmon-host-collector-watch.service",
    ] {
        // The script is written where the sandbox can read it (its /tmp
        // is its own), then run inside it.
        let out = lab.dom0_ok(&format!(
            "cat > /run/xsmon-sandbox-check <<'XSMON_EOF'\n{REPORT}XSMON_EOF\n\
             unit-sandbox /etc/xsmon/units/{unit} -- sh /run/xsmon-sandbox-check"
        ))?;
        let want = [
            "CapEff=0000000000000000",
            "NoNewPrivs=1",
            "Seccomp=2",
            "write-usr=no",
            "write-state=yes",
            "xl-list=yes",
            "proc-xen=yes",
            "sysfs=yes",
            "xenstore=yes",
        ];
        let got: Vec<&str> = out.lines().map(str::trim).collect();
        let missing: Vec<&str> = want.iter().copied().filter(|w| !got.contains(w)).collect();
        if !missing.is_empty() {
            bail!("{unit}'s sandbox on the real dom0: expected {missing:?}, the sandbox reported:\n{out}");
        }
        lines.push(format!("{unit}: {}", got.join(" ")));
    }
    Ok(lines)
}
