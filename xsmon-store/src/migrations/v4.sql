-- Schema version 3 -> 4: what the hypervisor says of each domain.
ALTER TABLE host ADD COLUMN xen_state TEXT;
ALTER TABLE host ADD COLUMN xen_since INTEGER;
ALTER TABLE host ADD COLUMN cpu_time_ms INTEGER;
ALTER TABLE host ADD COLUMN cpu_at INTEGER;
ALTER TABLE status ADD COLUMN domain_state TEXT;
