-- Schema version 4 -> 5: the hypervisor's counters a rate is computed
-- from (per-vCPU CPU time, each vif's drops) and the VM's reboot count.
ALTER TABLE host ADD COLUMN xen_counters TEXT;
ALTER TABLE host ADD COLUMN reboots INTEGER NOT NULL DEFAULT 0;
