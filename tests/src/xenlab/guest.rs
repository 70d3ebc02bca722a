//! A lab guest: what it is (PV or PVH, its address, its probe's timer, its
//! disks) and the xl config an admin would write for it.

/// A guest to create on the lab.
#[derive(Debug, Clone)]
pub struct LabGuest {
    pub name: String,
    /// `pv`, `pvh` or `hvm` (booted directly from the lab's kernel, with
    /// Debian's QEMU in dom0 as its device model).
    pub kind: &'static str,
    /// An HVM guest's PV drivers: with them (the default) it unplugs
    /// QEMU's emulated NIC and uses netfront, and its probe reaches
    /// xenstore; without them (`xen_platform_pci = 0`, an emulated e1000),
    /// as a guest without Xen's drivers runs.
    pub pv_drivers: bool,
    /// An HVM guest's second disk, a file in dom0 served by QEMU (the
    /// `qdisk` backend) rather than blkback.
    pub qdisk: bool,
    /// 1..=200: the guest's address is 10.77.0.<10+index>.
    pub index: u32,
    /// Seconds between probe runs (the lab's collector calls a guest stale
    /// after 75 s without a new run). 30 by default: each run costs the
    /// emulated machine (the guest and dom0's xenstored), and the harness
    /// starts a run at once where a scenario needs one
    /// ([`super::LabSite::probe_runs`]).
    pub probe_every: u32,
    /// `on_crash` (preserve, destroy, restart...).
    pub on_crash: &'static str,
    /// The guest's gateway (10.77.0.1, dom0's bridge, unless told).
    pub gateway: String,
    /// A block device of dom0's (`/dev/ram1`..`/dev/ram7`) given to the
    /// guest as `xvdb` through blkback, used as its swap.
    pub swap_disk: Option<&'static str>,
    /// Lines added to the xl config.
    pub extra_cfg: String,
    /// The domain's memory, MiB. 160 by default: at 96 the guest kernel
    /// runs out of memory unpacking its initramfs (seen in a soak run).
    pub memory_mib: u32,
}

impl LabGuest {
    pub fn new(name: &str, kind: &'static str, index: u32) -> LabGuest {
        LabGuest {
            name: name.into(),
            kind,
            pv_drivers: true,
            qdisk: false,
            index,
            probe_every: 30,
            on_crash: "preserve",
            gateway: "10.77.0.1".into(),
            swap_disk: None,
            extra_cfg: String::new(),
            memory_mib: 160,
        }
    }

    pub fn ip(&self) -> String {
        format!("10.77.0.{}", 10 + self.index)
    }

    /// The VM's UUID, fixed in its config (so `xl create` again is the
    /// same VM, as on a real site).
    pub fn uuid(&self) -> String {
        crate::uuid_for(&self.name)
    }

    /// The xl configuration, as an admin would write it. `tsc_early_khz`:
    /// without it, one PVH boot in four to six, under software emulation
    /// and load, triple-faults in the kernel's early TSC calibration (Xen
    /// then reboots the domain: `---sr-`, and xl gives up after two); with
    /// it, none in the lab's runs.
    ///
    /// On Xen 4.20 (Debian 13's 6.12 kernel) the guests boot with
    /// `noautogroup`, as dom0 does (see scripts/xen-lab).
    pub fn xl_config(&self) -> String {
        if self.kind == "hvm" {
            return self.hvm_config();
        }
        let kernel_args = if super::lab_xen() == "4.17" {
            ""
        } else {
            " noautogroup"
        };
        let (swap_arg, disk) = match self.swap_disk {
            Some(dev) => (
                " xsmon.swap=/dev/xvdb",
                format!("disk = [ 'vdev=xvdb, access=rw, script=/etc/xen/scripts/lab-block, target={dev}' ]\n"),
            ),
            None => ("", String::new()),
        };
        format!(
            "{head}kernel = \"/lab/vmlinux\"\nramdisk = \"/lab/guest.cpio.gz\"\n\
             extra = \"console=hvc0 quiet tsc_early_khz=2000000 {args}{swap_arg}{kernel_args}\"\n{disk}{tail}",
            head = self.head(self.kind),
            args = self.probe_args(),
            tail = self.resources_and_vif(""),
        )
    }
}

impl LabGuest {
    /// An HVM guest's xl config: the lab's kernel booted directly by QEMU
    /// (no disk image to build), its serial console in a file of dom0's
    /// (the console of an HVM guest; [`super::XenLab::consoles`] shows
    /// it), no display; `tsc_early_khz` as for PVH (an HVM guest
    /// triple-faulted at boot without it in the lab's first HVM soak run).
    ///
    /// The PVHVM guest boots with `xen_legacy_crash`, as an admin who
    /// wants a Linux HVM guest's panic kept by `on_crash` sets it: without
    /// it, Linux reports its panic to Xen only as an HVM guest's reboot
    /// (the lab's restored hvm01 went on in a new domain 7 s after sysrq
    /// c), which dom0 cannot tell from an admin's reboot. With it, Linux's
    /// panic notifier tells Xen the domain crashed, as a PV guest's does.
    fn hvm_config(&self) -> String {
        let (nic, platform, crash) = if self.pv_drivers {
            ("", "", " xen_legacy_crash")
        } else {
            (",model=e1000", "xen_platform_pci = 0\n", "")
        };
        let disk = if self.qdisk {
            format!(
                "disk = [ 'format=raw, vdev=xvdb, access=rw, backendtype=qdisk, target={}' ]\n",
                self.qdisk_file()
            )
        } else {
            String::new()
        };
        format!(
            "{head}kernel = \"/lab/vmlinuz\"\nramdisk = \"/lab/guest.cpio.gz\"\n\
             cmdline = \"console=ttyS0 quiet noautogroup tsc_early_khz=2000000{crash} {args}\"\n\
             serial = \"file:/var/log/xen/console/serial-{name}.log\"\nvnc = 0\nsdl = 0\nvga = \"none\"\n{platform}{disk}{tail}",
            head = self.head("hvm"),
            args = self.probe_args(),
            name = self.name,
            tail = self.resources_and_vif(nic),
        )
    }

    /// The config's first lines: the VM's name, UUID and type.
    fn head(&self, kind: &str) -> String {
        format!(
            "name = \"{}\"\nuuid = \"{}\"\ntype = \"{kind}\"\n",
            self.name,
            self.uuid()
        )
    }

    /// What the lab's guest init reads from its kernel command line.
    fn probe_args(&self) -> String {
        format!(
            "xsmon.name={} xsmon.ip={} xsmon.every={} xsmon.gw={}",
            self.name,
            self.ip(),
            self.probe_every,
            self.gateway
        )
    }

    /// Its memory, vCPU, crash action and vif (`nic`: the emulated
    /// model, if any), then the lines a scenario adds.
    ///
    /// A PVH or HVM guest's vCPU is pinned to Xen's CPU 1 (`cpus`): under
    /// software emulation those guests triple-faulted now and then (about
    /// one a run, several a run with the HVM guests: Xen's dump showing
    /// its own state right after its `vmrun`, or the guest failing to read
    /// its IDT), and with every such vCPU kept on one of the emulator's
    /// two threads a whole run with the HVM guests had none. Turning off
    /// Xen's ASIDs (`asid=0`) or taking QEMU 10 instead of 7.2 did not
    /// help; one emulator thread for both CPUs helped but made the lab too
    /// slow. PV guests (no SVM) float, so a busy one gets a whole CPU.
    fn resources_and_vif(&self, nic: &str) -> String {
        let pin = if self.kind == "pv" {
            ""
        } else {
            "cpus = \"1\"\n"
        };
        format!(
            "memory = {}\nvcpus = 1\n{pin}on_crash = \"{}\"\n\
             vif = [ 'bridge=xenbr0,script=/etc/xen/scripts/lab-vif,mac=00:16:0a:4d:00:{:02x}{nic}' ]\n{}",
            self.memory_mib,
            self.on_crash,
            10 + self.index,
            self.extra_cfg
        )
    }

    /// The file in dom0 behind an HVM guest's qdisk disk.
    pub fn qdisk_file(&self) -> String {
        format!("/var/lib/xen/disk-{}.img", self.name)
    }
}

/// A guest shell test: true when the guest's last probe run took its
/// sample 10 s ago or more, or there is none: the probe saves its sample
/// to its state file (guest-probe's default path) as each run begins
/// measuring, whoever started it (the guest's timer, the harness, a
/// scenario by hand). The probe measures CPU (steal, iowait) over the
/// interval since the run before: a run the harness started 3.5 s after
/// the timer's read steal 61.6% on the lab's busy emulated CPUs, a
/// warning at the lab's 60% (a fresh clone of aa8b178). 10 s: the lab's
/// timer before it went to 30 s, green over many soaks at that
/// threshold. (The guest loop's log, `/run/probe.runs`, would not do: it
/// gains a line each turn of the timer, the probe off or not.)
macro_rules! last_probe_run_10s_ago {
    () => {
        "[ $(( $(date +%s) - $(stat -c %Y /var/lib/xsmon/probe.state 2>/dev/null || echo 0) )) -ge 10 ]"
    };
}
pub(super) const LAST_PROBE_RUN_10S_AGO: &str = last_probe_run_10s_ago!();

/// A guest script's first step where a scenario writes or judges a run of
/// its own: the probe's timer off (`/run/probe.off`, which the guest's
/// loop reads before each run, scripts/xen-lab), then a wait until the
/// loop is in its sleep (the pid it wrote is alive), so that no run of
/// the timer's is under way or to come, and the last run took its sample
/// 10 s ago or more ([`LAST_PROBE_RUN_10S_AGO`]). At most 60 s.
pub const PROBE_TIMER_OFF: &str = concat!(
    "touch /run/probe.off; i=0; \
     until kill -0 \"$(cat /run/probe.sleep 2>/dev/null)\" 2>/dev/null && ",
    last_probe_run_10s_ago!(),
    "; do i=$((i + 1)); [ $i -lt 600 ] || { echo 'the probe loop never reached its sleep 10 s after the last run'; exit 1; }; sleep 0.1; done"
);

/// The lab dom0's name, and its folder of the shared config directory.
pub const LAB_DOM0: &str = "xenlab";
pub const LAB_CONFIG_DIR: &str = "/data/config/auto/xenlab";

pub(super) fn config_path(g: &LabGuest) -> String {
    format!("{LAB_CONFIG_DIR}/{}.cfg", g.name)
}
