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

/// What every unit's sandbox is checked for, reported from inside it:
/// its credentials and seccomp, `/usr` read-only, the state writable.
macro_rules! sandbox_report_head {
    () => {
        r#"sed -n 's/^\(CapEff\|NoNewPrivs\|Seccomp\):[[:space:]]*/\1=/p' /proc/self/status
touch /usr/xsmon-escape 2>/dev/null && echo write-usr=yes || echo write-usr=no
touch /var/lib/xsmon/.sandbox-check 2>/dev/null && echo write-state=yes || echo write-state=no
rm -f /var/lib/xsmon/.sandbox-check
"#
    };
}

/// What a collector's sandbox must also let through: xl, /proc/xen,
/// sysfs, xenstore.
const REPORT: &str = concat!(
    sandbox_report_head!(),
    r#"xl list 2>&1 | grep -q '^Domain-0 ' && echo xl-list=yes || echo xl-list=no
grep -qx control_d /proc/xen/capabilities && echo proc-xen=yes || echo proc-xen=no
[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ] && echo sysfs=yes || echo sysfs=no
xenstore-read /local/domain/0/name >/dev/null 2>&1 && echo xenstore=yes || echo xenstore=no
"#
);

/// A shell script that runs `report` inside `unit`'s sandbox: written
/// first where the sandbox can read it (its /tmp is its own).
fn in_sandbox(unit: &str, report: &str) -> String {
    format!(
        "cat > /run/xsmon-sandbox-check <<'XSMON_EOF'\n{report}XSMON_EOF\n\
         unit-sandbox /etc/xsmon/units/{unit} -- sh /run/xsmon-sandbox-check"
    )
}

/// The lines of `want` the report `got` lacks.
fn missing<'a>(got: &[&str], want: &[&'a str]) -> Vec<&'a str> {
    want.iter().copied().filter(|w| !got.contains(w)).collect()
}

/// Checks, for each collector unit, that the sandbox holds and lets
/// through what the collector needs. Returns one line per unit.
pub fn check_collector_sandbox(lab: &XenLab) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for unit in [
        "xsmon-host-collector.service",
        "xsmon-host-collector-watch.service",
    ] {
        let out = lab.dom0_ok(&in_sandbox(unit, REPORT))?;
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
        let missing = missing(&got, &want);
        if !missing.is_empty() {
            bail!("{unit}'s sandbox on the real dom0: expected {missing:?}, the sandbox reported:\n{out}");
        }
        lines.push(format!("{unit}: {}", got.join(" ")));
    }
    Ok(lines)
}

/// What the probe's sandbox must leave it in a real guest: the xenbus
/// device, and which devices it sees.
const PROBE_REPORT: &str = concat!(
    sandbox_report_head!(),
    r#"echo "dev=$(ls /dev | tr '\n' ' ')"
echo "dev-xen=$(ls /dev/xen 2>/dev/null | tr '\n' ' ')"
xenstore-read name >/dev/null 2>&1 && echo xenbus=yes || echo xenbus=no
"#
);

/// Checks, in guest `g`, that the probe's unit sandbox holds and leaves it
/// its xenbus device. Returns the report as one line.
pub fn check_probe_sandbox(lab: &XenLab, g: &LabGuest) -> Result<String> {
    let out = lab.guest(g, &in_sandbox("xsmon-guest-probe.service", PROBE_REPORT))?;
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
    let missing = missing(&got, &want);
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
