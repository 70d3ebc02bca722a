-- Schema version 2 -> 3: each host's latest figures and thresholds.
ALTER TABLE host ADD COLUMN figures TEXT;
