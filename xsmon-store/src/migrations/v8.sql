-- Schema version 7 -> 8: status and finding rows keyed cycle first, as
-- samples are since 7. Keyed host first, a cycle's 1,000 status rows went
-- one into each host's range: the whole table (443 of the 855 pages a
-- cycle of 1,000 guests wrote) was rewritten every cycle. Every reader
-- reads them by cycle, which the new key serves without the indexes.
-- The rows are copied in the new key's order; the view on status is made
-- again over the new table (as schema.sql has it).
DROP VIEW latest;
CREATE TABLE status_v8 (
    cycle_id   INTEGER NOT NULL REFERENCES cycle (id) ON DELETE CASCADE,
    host_id    INTEGER NOT NULL REFERENCES host (id),
    label      TEXT    NOT NULL,
    domid      INTEGER,
    probe      TEXT    NOT NULL,
    probe_time INTEGER,
    probe_seq  INTEGER,
    seen_time  INTEGER,
    status     TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    domain_state TEXT,
    PRIMARY KEY (cycle_id, host_id)
) WITHOUT ROWID;
INSERT INTO status_v8 (cycle_id, host_id, label, domid, probe, probe_time, probe_seq, seen_time, status, message, domain_state)
    SELECT cycle_id, host_id, label, domid, probe, probe_time, probe_seq, seen_time, status, message, domain_state
      FROM status ORDER BY cycle_id, host_id;
DROP TABLE status;
ALTER TABLE status_v8 RENAME TO status;

CREATE TABLE finding_v8 (
    cycle_id INTEGER NOT NULL REFERENCES cycle (id) ON DELETE CASCADE,
    host_id  INTEGER NOT NULL REFERENCES host (id),
    check_id TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    PRIMARY KEY (cycle_id, host_id, check_id)
) WITHOUT ROWID;
INSERT INTO finding_v8 (cycle_id, host_id, check_id, kind, target, status, message)
    SELECT cycle_id, host_id, check_id, kind, target, status, message
      FROM finding ORDER BY cycle_id, host_id, check_id;
DROP TABLE finding;
ALTER TABLE finding_v8 RENAME TO finding;

CREATE VIEW latest AS
    SELECT c.id AS cycle_id, c.time AS cycle_time, s.label AS name, h.uuid,
           s.domid, s.probe, s.probe_time, s.probe_seq, s.seen_time,
           s.status, s.message
      FROM cycle c
      JOIN status s ON s.cycle_id = c.id
      JOIN host h ON h.id = s.host_id
     WHERE c.id = (SELECT max(id) FROM cycle);
