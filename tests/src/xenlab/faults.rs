//! What software emulation breaks in a guest, and how the lab tells it
//! from xsmon's doing: Xen's triple faults, a guest kernel's faults on its
//! console, and the steps run once more after one of them, each said on
//! stderr as an [`super::EnvironmentFault`] (docs/testing.md, "Environment
//! faults"). Anything else fails.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};

use super::guest::LabGuest;
use super::lab::XenLab;

impl XenLab {
    /// [`Self::wait_guest_up`] for a guest just created, tolerating once
    /// what software emulation has shown at a boot, each said on
    /// stderr:
    /// - it is still booting, or up without its probe's first run yet
    ///   (its domain running, no fault on its console): waited for once
    ///   more, the emulator's slowness;
    /// - its kernel panicked before its init said it was ready (Debian
    ///   13's 6.12 PV kernel faulting in `text_poke_early` at 6 s; the HVM
    ///   guest's, at 73 s, a NULL pointer in `down_write` under ACPI's
    ///   scan with `EFLAGS: 419cc66e`, reserved bits set, a state no CPU
    ///   gives a guest; its domain left crashed): the guest is destroyed
    ///   and created again;
    /// - Xen logged a triple fault since `triple_faults_before` (an HVM
    ///   guest early in its boot, under the suite's load): Xen resets the
    ///   domain and xl creates it again (`on_reboot`), which took the guest
    ///   past the first wait: it is waited for once more.
    ///
    /// Any other failure, or a second fault, fails.
    pub fn wait_guest_up_after_a_boot_fault(
        &self,
        g: &LabGuest,
        triple_faults_before: usize,
    ) -> Result<()> {
        let first = match self.wait_guest_up_or_ended(g, Duration::from_secs(240), true) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if self.triple_faults() > triple_faults_before {
            eprintln!(
                "xen lab: environment fault: {} not up in 240 s while Xen logged a triple fault under emulation; waiting once more for the domain Xen reset",
                g.name
            );
            return self
                .wait_guest_up(g, Duration::from_secs(240))
                .with_context(|| format!("{} after a triple fault at boot", g.name));
        }
        let console = self.guest_console(g).unwrap_or_default();
        let not_ready = !console.contains("xsmon-lab-guest ready");
        let panicked_at_boot = not_ready && console.contains("Kernel panic");
        let state = self.xl_state(&g.name)?;
        let running = state
            .as_deref()
            .is_some_and(|s| s.contains('r') || s.contains('b'));
        // Crashed before its kernel wrote a single line to its console (a
        // fresh clone's run: hvm01, `---sc-` after 9.3 s of CPU, both its
        // consoles empty, no triple fault logged): nothing of the guest's
        // userland, the probe least of all, had run. The emulator's.
        if state.as_deref().is_some_and(|s| s.contains('c')) && console.trim().is_empty() {
            eprintln!(
                "xen lab: environment fault: guest {} crashed at boot before its kernel printed anything (xl list: {}); destroyed and created once more",
                g.name,
                state.as_deref().unwrap_or("")
            );
            return self
                .recreate(g)
                .with_context(|| format!("{} after it crashed silently at boot once", g.name));
        }
        if !panicked_at_boot && running && !console.trim().is_empty() {
            // Still booting: under the lab's load an HVM guest's kernel
            // was seen still loading its modules 260 s after its start,
            // and another ready only at 226 s, its probe not yet run when
            // the wait ended (its console with no fault in it). The
            // emulator's slowness, waited out once.
            eprintln!(
                "xen lab: {} not up after 240 s under emulation, its domain running and no fault on its console (its last line: {}); waiting once more",
                g.name,
                console.lines().last().unwrap_or("").trim()
            );
            return self
                .wait_guest_up(g, Duration::from_secs(240))
                .with_context(|| format!("{} still booting after 240 s, then 240 s more", g.name))
                .with_context(|| self.xl_logs(g));
        }
        if !panicked_at_boot {
            let logs = self.xl_logs(g);
            return Err(first.context(format!(
                "{} not up; what dom0 logged of it:\n{logs}",
                g.name
            )));
        }
        let fault_line = console
            .lines()
            .find(|l| l.contains("RIP:") || l.contains("Kernel panic"))
            .unwrap_or("")
            .trim()
            .to_string();
        eprintln!(
            "xen lab: environment fault: guest {}'s kernel panicked at boot under emulation ({fault_line}); destroyed and created once more",
            g.name
        );
        self.recreate(g)
            .with_context(|| format!("{} after its kernel panicked at boot once", g.name))
    }

    /// How many times Xen has logged a guest's triple fault (`(XEN) d7v0
    /// Triple fault - invoking HVM shutdown action`) on the serial console.
    pub fn triple_faults(&self) -> usize {
        fs::read(self.dir().join("console.log"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter(|l| l.contains("Triple fault - invoking HVM shutdown action"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The lines of `g`'s console (as dom0's xenconsoled keeps it) in
    /// which its kernel said it faulted: an oops, a BUG, a double fault,
    /// a general protection fault, a panic.
    pub fn kernel_faults(&self, g: &LabGuest) -> Result<Vec<String>> {
        Ok(self
            .guest_console(g)?
            .lines()
            .filter(|l| KERNEL_FAULTS.iter().any(|f| l.contains(f)))
            .map(str::to_string)
            .collect())
    }

    /// Runs `f`, and once more if it failed while software emulation broke
    /// the PVH guest `g` (the emulation's defect, not xsmon's), said on
    /// stderr:
    /// - Xen logged a triple fault meanwhile: Xen reboots the guest, which
    ///   is waited for;
    /// - its kernel faulted meanwhile and Xen holds its domain crashed (a
    ///   soak's pvh01, 106 s up, crashed between its probe's fresh report
    ///   and the next poll): destroyed and created again. Not when the
    ///   fault's instruction is in the guest's xenbus code, the one part
    ///   of its kernel the probe drives (that would be xsmon's to answer).
    ///
    /// Any other failure stands; a crashed `g` adds its kernel's fault
    /// lines to it.
    pub fn tolerating_triple_faults(
        &self,
        g: &LabGuest,
        what: &str,
        f: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let kernel_faults_before = self.kernel_faults(g)?.len();
        self.tolerating(self.triple_faults(), kernel_faults_before, g, what, f)
    }

    /// [`Self::tolerating_triple_faults`], counting the faults Xen logged
    /// since `before`, and every fault on `g`'s console (a chain that
    /// starts on a guest another scenario used: a fault may have rebooted
    /// or crashed it in between; a soak's pvh01 died of a double fault, at
    /// `EFLAGS: 04a2b246`, reserved bits set, after its healthy scenario
    /// and before the migrations, the chain's first step).
    pub fn tolerating_triple_faults_since(
        &self,
        before: usize,
        g: &LabGuest,
        what: &str,
        f: impl Fn() -> Result<()>,
    ) -> Result<()> {
        self.tolerating(before, 0, g, what, f)
    }

    fn tolerating(
        &self,
        before: usize,
        kernel_faults_before: usize,
        g: &LabGuest,
        what: &str,
        f: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let e = match f() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if self.triple_faults() > before {
            eprintln!(
                "xen lab: environment fault: {what}: Xen logged a PVH triple fault meanwhile ({e:#}); once more after {} is back",
                g.name
            );
            self.wait_guest_up(g, Duration::from_secs(180))?;
            return f();
        }
        if !self.xl_state(&g.name)?.is_some_and(|s| s.contains('c')) {
            return Err(e);
        }
        let console = self.guest_console(g)?;
        let Some(crash) = kernel_crash(&console, kernel_faults_before) else {
            let tail: Vec<&str> = console.lines().rev().take(5).collect();
            return Err(e.context(format!(
                "{} crashed with no fault on its console; its last lines: {}",
                g.name,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        };
        if crash.in_xenbus {
            return Err(e.context(format!(
                "{}'s kernel faulted in its xenbus code, which the probe drives: {}",
                g.name, crash.lines
            )));
        }
        eprintln!(
            "xen lab: environment fault: {what}: {}'s kernel faulted under emulation and Xen holds it crashed ({}); destroyed and created once more ({e:#})",
            g.name, crash.lines
        );
        self.recreate(g)?;
        f()
    }
}

/// A guest kernel's fault as its console shows it.
#[derive(Debug, PartialEq)]
struct KernelCrash {
    /// Its fault lines and the instruction's (`RIP: ...`), joined by ` | `.
    lines: String,
    /// The instruction is in xenbus's code (`xenbus_*`, `xs_*`, `xb_*`).
    in_xenbus: bool,
}

/// The fault lines of `console` after its first `faults_before`, with
/// the first `RIP:` line after the first of them; `None` when there are
/// none.
fn kernel_crash(console: &str, faults_before: usize) -> Option<KernelCrash> {
    let lines: Vec<&str> = console.lines().collect();
    let faults: Vec<usize> = (0..lines.len())
        .filter(|&i| KERNEL_FAULTS.iter().any(|f| lines[i].contains(f)))
        .skip(faults_before)
        .collect();
    let first = *faults.first()?;
    let rip = lines[first..]
        .iter()
        .find(|l| l.contains("RIP:"))
        .map(|l| l.trim());
    let in_xenbus = rip.is_some_and(|r| {
        r.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w.starts_with("xenbus") || w.starts_with("xs_") || w.starts_with("xb_"))
    });
    let mut said: Vec<&str> = faults.iter().map(|&i| lines[i].trim()).collect();
    said.extend(rip);
    Some(KernelCrash {
        lines: said.join(" | "),
        in_xenbus,
    })
}

/// What a guest kernel prints when it faults (a subset of
/// `lab.rs`'s `KERNEL_PROBLEMS`: no warnings, no stalls).
const KERNEL_FAULTS: &[&str] = &[
    "BUG: ",
    "Oops",
    "double fault",
    "general protection fault",
    "Kernel panic",
];

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str =
        "[    0.000000] Linux version 6.12\n[    3.1] BUG: a fault of an earlier scenario\n";

    #[test]
    fn a_fault_after_the_ones_before_is_named_with_its_instruction() {
        let console = format!(
            "{BEFORE}[  106.2] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
             [  106.2] #PF: supervisor read access in kernel mode\n\
             [  106.2] RIP: 0010:mas_find+0x2c/0x1a0\n\
             [  106.3] Kernel panic - not syncing: Fatal exception\n"
        );
        assert_eq!(kernel_crash(BEFORE, 1), None, "no fault since");
        let crash = kernel_crash(&console, 1).unwrap();
        assert_eq!(
            crash.lines,
            "[  106.2] BUG: kernel NULL pointer dereference, address: 0000000000000008 | \
             [  106.3] Kernel panic - not syncing: Fatal exception | [  106.2] RIP: 0010:mas_find+0x2c/0x1a0"
        );
        assert!(!crash.in_xenbus);
    }

    #[test]
    fn a_fault_in_xenbus_code_is_told_apart() {
        for rip in [
            "xenbus_dev_write+0x51/0x240",
            "xs_talkv+0x10/0x90",
            "xb_read+0x1/0x2",
        ] {
            let console =
                format!("[ 9.1] general protection fault: 0000 [#1] SMP\n[ 9.1] RIP: e030:{rip}\n");
            assert!(kernel_crash(&console, 0).unwrap().in_xenbus, "{rip}");
        }
        let console = "[ 9.1] Oops: 0000 [#1]\n[ 9.1] RIP: e030:xen_hypercall_sched_op+0x9/0x10\n";
        assert!(!kernel_crash(console, 0).unwrap().in_xenbus);
    }
}
