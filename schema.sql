-- xsmon history: host-collector's SQLite schema, version 1.
--
-- This file is the contract between host-collector (which writes),
-- snmp-extend (which serves the latest state) and `host-collector history`.
-- host-collector applies it itself (PRAGMA user_version holds the version;
-- later versions add numbered migrations in host-collector/src/db.rs).
--
-- Times are Unix seconds (UTC). Figures are stored as integers, the value
-- times 1000 (three decimals, as the probe rounds them): SQLite stores small
-- integers in 1 to 4 bytes where a REAL always takes 8, which keeps a year
-- of 200 guests in a few hundred MB.
--
-- Retention (configurable): raw rows (cycle, status, finding, sample) for
-- 7 days; then figures are rolled up into hourly min/avg/max (90 days),
-- then daily (2 years). Events are kept 2 years.

-- One row per collection cycle. A cycle is written in one transaction:
-- if its row exists, all of its rows exist.
CREATE TABLE cycle (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,           -- when the cycle started
    duration_ms INTEGER NOT NULL,
    dom0        TEXT    NOT NULL,           -- this dom0's name
    guests      INTEGER NOT NULL,           -- status rows in this cycle (guests + dom0)
    error       TEXT                        -- set when the cycle could not read xenstore
);
CREATE INDEX cycle_time ON cycle (time);

-- Every host ever seen: the guests, and dom0 itself (name 'Domain-0',
-- domid 0). A guest is identified by the name its toolstack gave it.
CREATE TABLE host (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    domid      INTEGER,                     -- last known
    state      TEXT    NOT NULL             -- 'running', 'gone', 'migrated'
);

-- One row per host per cycle: the summary the poller shows for a guest.
CREATE TABLE status (
    cycle_id   INTEGER NOT NULL REFERENCES cycle (id) ON DELETE CASCADE,
    host_id    INTEGER NOT NULL REFERENCES host (id),
    domid      INTEGER,
    -- 'fresh' (a current probe run), 'stale' (too old), 'missing' (nothing
    -- written), 'invalid' (written but breaks the key layout), 'host' (dom0)
    probe      TEXT    NOT NULL,
    probe_time INTEGER,                     -- the run's own timestamp, if any
    probe_seq  INTEGER,
    status     TEXT    NOT NULL,            -- worst of the checks: ok, warning, unknown, error
    message    TEXT    NOT NULL,            -- one line for a human
    PRIMARY KEY (host_id, cycle_id)
) WITHOUT ROWID;
CREATE INDEX status_cycle ON status (cycle_id);

-- The checks of a host in a cycle that are not ok (ok checks keep only
-- their figures, in sample).
CREATE TABLE finding (
    cycle_id INTEGER NOT NULL REFERENCES cycle (id) ON DELETE CASCADE,
    host_id  INTEGER NOT NULL REFERENCES host (id),
    check_id TEXT    NOT NULL,              -- 'cpu', 'disk2', ...
    kind     TEXT    NOT NULL,              -- 'cpu', 'swap', 'disk', 'net', 'mem'
    target   TEXT    NOT NULL,              -- mount point, gateway, or ''
    status   TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    PRIMARY KEY (host_id, cycle_id, check_id)
) WITHOUT ROWID;
CREATE INDEX finding_cycle ON finding (cycle_id);

-- What a figure is: a check kind, its target and the value's name, e.g.
-- ('disk', '/var', 'used_pct'), ('xen', '', 'cpu_time_s').
CREATE TABLE metric (
    id     INTEGER PRIMARY KEY,
    kind   TEXT NOT NULL,
    target TEXT NOT NULL,
    name   TEXT NOT NULL,
    UNIQUE (kind, target, name)
);

-- Raw figures, one per host, metric and cycle. The key serves "history of
-- one host over a range"; there is deliberately no index by cycle (it would
-- double the table): retention deletes by (host, metric) ranges instead.
CREATE TABLE sample (
    host_id   INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    cycle_id  INTEGER NOT NULL,
    v         INTEGER NOT NULL,             -- value * 1000
    PRIMARY KEY (host_id, metric_id, cycle_id)
) WITHOUT ROWID;

-- Rolled-up figures: period 3600 (hourly) or 86400 (daily), starting at
-- `start` (aligned to the period).
CREATE TABLE rollup (
    host_id   INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    period    INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    n         INTEGER NOT NULL,             -- raw samples behind it
    vmin      INTEGER NOT NULL,             -- * 1000, as in sample
    vavg      INTEGER NOT NULL,
    vmax      INTEGER NOT NULL,
    PRIMARY KEY (host_id, metric_id, period, start)
) WITHOUT ROWID;

-- Bookkeeping: 'raw_rolled_until' and 'hourly_rolled_until' (Unix seconds)
-- say how far retention has been applied, so it runs once an hour and once
-- a day rather than every cycle.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Guests appearing, going, migrating; the collector's own failures.
CREATE TABLE event (
    id      INTEGER PRIMARY KEY,
    time    INTEGER NOT NULL,
    host_id INTEGER REFERENCES host (id),
    kind    TEXT    NOT NULL,               -- 'new', 'gone', 'migrated', 'back'
    detail  TEXT    NOT NULL
);
CREATE INDEX event_time ON event (time);

-- The latest cycle's state of every host: what snmp-extend serves.
CREATE VIEW latest AS
    SELECT c.id AS cycle_id, c.time AS cycle_time, h.name, s.domid, s.probe,
           s.probe_time, s.probe_seq, s.status, s.message
      FROM cycle c
      JOIN status s ON s.cycle_id = c.id
      JOIN host h ON h.id = s.host_id
     WHERE c.id = (SELECT max(id) FROM cycle);
