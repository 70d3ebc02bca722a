//! The collector's sandbox on the real dom0. The lab's dom0 has no
//! systemd: `scripts/xen-lab` builds `tests/harness/unit-sandbox.c` into
//! it, which applies a unit file's sandboxing directives as systemd does
//! (mount namespace, capabilities, no_new_privs, the seccomp filter of
//! `@system-service` and the unit's restrictions), and makes dom0's
//! `host-collector` a wrapper that runs the real one under the shipped
//! unit (`xsmon-host-collector.service`, or `-watch.service` for the
//! watch); the guests' `guest-probe` likewise runs under
//! `xsmon-guest-probe.service`. Every scenario's collect and probe run
//! therefore runs sandboxed; these checks, at every lab's boot, say that
//! the sandboxes are really in force and that what each program needs
//! gets through.

use anyhow::{bail, Result};

use super::{LabGuest, XenLab};

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

/// What the probe's sandbox leaves a process in a real guest.
const PROBE_REPORT: &str = r#"sed -n 's/^\(CapEff\|NoNewPrivs\|Seccomp\):[[:space:]]*/\1=/p' /proc/self/status
touch /usr/xsmon-escape 2>/dev/null && echo write-usr=yes || echo write-usr=no
touch /var/lib/xsmon/.sandbox-check 2>/dev/null && echo write-state=yes || echo write-state=no
rm -f /var/lib/xsmon/.sandbox-check
echo "dev=$(ls /dev | tr '\n' ' ')"
echo "dev-xen=$(ls /dev/xen 2>/dev/null | tr '\n' ' ')"
xenstore-read name >/dev/null 2>&1 && echo xenbus=yes || echo xenbus=no
"#;

/// Checks, in guest `g`, that the probe's unit sandbox holds and leaves it
/// its xenbus device. Returns the report as one line.
pub fn check_probe_sandbox(lab: &XenLab, g: &LabGuest) -> Result<String> {
    let out = lab.guest(
        g,
        &format!(
            "cat > /run/xsmon-sandbox-check <<'XSMON_EOF'\n{PROBE_REPORT}XSMON_EOF\n\
             unit-sandbox /etc/xsmon/units/xsmon-guest-probe.service -- sh /run/xsmon-sandbox-check"
        ),
    )?;
    let out = out.ok(&format!("guest {}: the probe's sandbox", g.name))?;
    let got: Vec<&str> = out.lines().map(str::trim).collect();
    let want = [
        "CapEff=0000000000002000",
        "NoNewPrivs=1",
        "Seccomp=2",
        "write-usr=no",
        "write-state=yes",
        "dev-xen=xenbus",
        "xenbus=yes",
    ];
    let missing: Vec<&str> = want.iter().copied().filter(|w| !got.contains(w)).collect();
    // PrivateDevices: the pseudo devices and the xenbus only.
    let devices = got
        .iter()
        .find_map(|l| l.strip_prefix("dev="))
        .unwrap_or("");
    let foreign: Vec<&str> = devices
        .split_whitespace()
        .filter(|d| {
            !matches!(
                *d,
                "null"
                    | "zero"
                    | "full"
                    | "random"
                    | "urandom"
                    | "tty"
                    | "pts"
                    | "shm"
                    | "fd"
                    | "stdin"
                    | "stdout"
                    | "stderr"
                    | "ptmx"
                    | "xen"
            )
        })
        .collect();
    if !missing.is_empty() || !foreign.is_empty() {
        bail!(
            "the probe's sandbox in guest {}: expected {missing:?}, devices beyond the pseudo ones and xenbus: {foreign:?}; the sandbox reported:\n{out}",
            g.name
        );
    }
    Ok(got.join(" "))
}
