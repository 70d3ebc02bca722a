-- Schema version 4 -> 5: the domain the stored run was read from, the
-- hypervisor's counters a rate is computed from (per-vCPU CPU time, each
-- vif's drops) and the VM's reboot count.
ALTER TABLE host ADD COLUMN run_domid INTEGER;
ALTER TABLE host ADD COLUMN xen_counters TEXT;
ALTER TABLE host ADD COLUMN reboots INTEGER NOT NULL DEFAULT 0;
