-- Schema version 5 -> 6: the guest kernel's boot id the stored run carried
-- (key layout 5), which tells a reboot (another boot) from a restore or a
-- migration (the same boot in a new domain).
ALTER TABLE host ADD COLUMN run_boot TEXT;
