-- Schema version 9 -> 10: each VM's restarts (a domain ended and the
-- toolstack started another), from which a restart loop is counted, and
-- the names a VM had before, by which an old config is recognised.
CREATE TABLE restart (
    host_id   INTEGER NOT NULL REFERENCES host (id),
    new_domid INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    old_domid INTEGER,
    reason    TEXT    NOT NULL,
    action    TEXT,
    PRIMARY KEY (host_id, new_domid)
) WITHOUT ROWID;
CREATE INDEX restart_time ON restart (time);
CREATE TABLE former_name (
    host_id INTEGER NOT NULL REFERENCES host (id),
    name    TEXT    NOT NULL,
    until   INTEGER NOT NULL,
    PRIMARY KEY (host_id, name)
) WITHOUT ROWID;
