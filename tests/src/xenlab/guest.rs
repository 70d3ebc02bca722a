//! A lab guest: what it is (PV or PVH, its address, its probe's timer, its
//! disks) and the xl config an admin would write for it.

/// A guest to create on the lab.
#[derive(Debug, Clone)]
pub struct LabGuest {
    pub name: String,
    /// `pv` or `pvh`.
    pub kind: &'static str,
    /// 1..=200: the guest's address is 10.77.0.<10+index>.
    pub index: u32,
    /// Seconds between probe runs (the lab's collector calls a guest stale
    /// after 30 s without a new run).
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
            index,
            probe_every: 10,
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
            "name = \"{name}\"\nuuid = \"{uuid}\"\ntype = \"{kind}\"\nkernel = \"/lab/vmlinux\"\nramdisk = \"/lab/guest.cpio.gz\"\n\
             extra = \"console=hvc0 quiet tsc_early_khz=2000000 xsmon.name={name} xsmon.ip={ip} xsmon.every={every} xsmon.gw={gw}{swap_arg}{kernel_args}\"\n{disk}\
             memory = {memory}\nvcpus = 1\non_crash = \"{crash}\"\n\
             vif = [ 'bridge=xenbr0,script=/etc/xen/scripts/lab-vif,mac=00:16:0a:4d:00:{mac:02x}' ]\n{extra}",
            name = self.name,
            uuid = self.uuid(),
            gw = self.gateway,
            kind = self.kind,
            ip = self.ip(),
            every = self.probe_every,
            crash = self.on_crash,
            mac = 10 + self.index,
            extra = self.extra_cfg,
            memory = self.memory_mib,
        )
    }
}

/// The lab dom0's name, and its folder of the shared config directory.
pub const LAB_DOM0: &str = "xenlab";
pub const LAB_CONFIG_DIR: &str = "/data/config/auto/xenlab";

pub(super) fn config_path(g: &LabGuest) -> String {
    format!("{LAB_CONFIG_DIR}/{}.cfg", g.name)
}
