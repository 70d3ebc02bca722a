-- Schema version 1 -> 2: guests are identified by ident (VM UUID) rather
-- than by a unique name; dom0 records its own observation of each guest's
-- runs; status rows carry the label shown and when dom0 saw the run.
-- Existing hosts keep their id (so their history stays theirs) and get the
-- ident 'name:<name>', adopted by the VM's UUID at the next cycle.
DROP VIEW latest;
CREATE TABLE host_v2 (
    id         INTEGER PRIMARY KEY,
    ident      TEXT    NOT NULL UNIQUE,
    uuid       TEXT,
    name       TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    domid      INTEGER,
    state      TEXT    NOT NULL,
    config     INTEGER NOT NULL DEFAULT 0,
    run_seq    INTEGER,
    run_digest INTEGER,
    run_time   INTEGER,
    run_seen   INTEGER
);
INSERT INTO host_v2 (id, ident, name, first_seen, last_seen, domid, state)
    SELECT id, CASE WHEN name = 'Domain-0' THEN 'dom0' ELSE 'name:' || name END,
           name, first_seen, last_seen, domid, state
      FROM host;
DROP TABLE host;
ALTER TABLE host_v2 RENAME TO host;
CREATE INDEX host_name ON host (name);
ALTER TABLE cycle ADD COLUMN problems TEXT;
ALTER TABLE status ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE status ADD COLUMN seen_time INTEGER;
UPDATE status SET label = (SELECT name FROM host WHERE host.id = status.host_id);
CREATE VIEW latest AS
    SELECT c.id AS cycle_id, c.time AS cycle_time, s.label AS name, h.uuid,
           s.domid, s.probe, s.probe_time, s.probe_seq, s.seen_time,
           s.status, s.message
      FROM cycle c
      JOIN status s ON s.cycle_id = c.id
      JOIN host h ON h.id = s.host_id
     WHERE c.id = (SELECT max(id) FROM cycle);
