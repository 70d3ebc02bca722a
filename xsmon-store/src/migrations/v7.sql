-- Schema version 6 -> 7: samples keyed cycle first, so that a cycle's
-- figures are appended rather than spread over a page per host and
-- metric (see schema.sql). The rows are copied in the new key's order.
CREATE TABLE sample_v7 (
    cycle_id  INTEGER NOT NULL,
    host_id   INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    v         INTEGER NOT NULL,
    PRIMARY KEY (cycle_id, host_id, metric_id)
) WITHOUT ROWID;
INSERT INTO sample_v7 (cycle_id, host_id, metric_id, v)
    SELECT cycle_id, host_id, metric_id, v FROM sample ORDER BY cycle_id, host_id, metric_id;
DROP TABLE sample;
ALTER TABLE sample_v7 RENAME TO sample;
