-- xsmon history: the SQLite schema, version 10.
--
-- This file is the contract between host-collector (which writes),
-- snmp-extend (which serves the latest state) and `host-collector history`;
-- the crate xsmon-store is the only code that reads or writes it. A new
-- database is created from this file; an older one is brought up to it by
-- the numbered migrations in xsmon-store/src/lib.rs (PRAGMA user_version
-- holds the version). Version 2 identifies guests by their VM's UUID rather
-- than by name, and records dom0's own observation of each guest's runs.
-- Version 3 keeps each host's latest figures with their thresholds
-- (host.figures), which snmp-extend serves and charts draw as lines.
-- Version 4 keeps what the hypervisor says of each domain: its state since
-- when and its CPU time (host.xen_*, host.cpu_*), and each status row's
-- domain state, so a paused or crashed guest is never shown as fresh.
-- Versions 5 to 9: see each table's comments and xsmon-store/src/migrations/
-- (7 keys the figures, 8 the status and finding rows, cycle first: a
-- cycle's rows are appended instead of touching a page per host, which
-- rewrote the whole status table every cycle; 9 keeps each running
-- domain's start time, read once per domain; 10 keeps each VM's restarts
-- and the names it had before).
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
    error       TEXT,                       -- set when the cycle could not read xenstore
    problems    TEXT                        -- per-guest failures to store, one per line
);
CREATE INDEX cycle_time ON cycle (time);

-- Every host ever seen: the guests, and dom0 itself (ident 'dom0', name
-- 'Domain-0', domid 0). A guest is identified by its VM's UUID (the
-- toolstack's /local/domain/<id>/vm -> /vm/<uuid>), which survives reboots,
-- renames and migrations: ident 'uuid:<uuid>'. Without a readable UUID the
-- ident is 'name:<name>' (adopted by the UUID once one is seen), or
-- 'domid:<n>' when the name is unusable too. Names are for humans and need
-- not be unique. `figures` holds the latest cycle's figures when the host's
-- run was current (NULL otherwise): one line per check, in the SNMP line
-- format's `M` record fields after the host (xsmon-proto's CheckFigures),
-- thresholds included; overwritten every cycle (the history is in
-- sample and rollup).
CREATE TABLE host (
    id         INTEGER PRIMARY KEY,
    ident      TEXT    NOT NULL UNIQUE,
    uuid       TEXT,
    name       TEXT    NOT NULL,            -- the toolstack's name, last seen
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,            -- last cycle it was running here
    domid      INTEGER,                     -- last known
    -- 'running'; 'gone' (vanished, not migrated: reported until it runs
    -- again, its config is removed or it is forgotten), 'migrated', 'absent'
    -- (has a config here, never seen running), 'retired' (its config was
    -- removed), 'forgotten' (`host-collector forget`)
    state      TEXT    NOT NULL,
    config     INTEGER NOT NULL DEFAULT 0,  -- had a .cfg under this dom0 when last running
    -- dom0's observation of the guest's probe: the last run seen (its seq,
    -- a digest of its content, the time it claims) and when dom0 first saw
    -- that run (dom0's clock: freshness never trusts the guest's clock)
    run_seq    INTEGER,
    run_digest INTEGER,
    run_time   INTEGER,
    run_seen   INTEGER,
    run_domid  INTEGER,                     -- the domain that run was read from
    run_boot   TEXT,                        -- the guest kernel's boot id that run carried (layout 5)
    figures    TEXT,                        -- the latest figures: see above
    -- the hypervisor's view last cycle (xl list -v): the domain's state
    -- word ('running', 'blocked', 'paused', 'crashed', 'dying',
    -- 'shutdown-<reason>') since when, and its CPU time (x1000) when read,
    -- from which the next cycle computes CPU %
    xen_state   TEXT,
    xen_since   INTEGER,
    cpu_time_ms INTEGER,
    cpu_at      INTEGER,
    -- more counters read at cpu_at, from which the next cycle computes
    -- rates: `name=value` pairs separated by spaces (`vcpu0=12.5
    -- vif0.tx_dropped=3`)
    xen_counters TEXT,
    -- new domains of this VM dom0 took for reboots (or, for a guest
    -- without the probe, any new domain: restores cannot be told apart)
    reboots     INTEGER NOT NULL DEFAULT 0,
    -- when the toolstack created the domain `domid` (/vm/<uuid>/start_time,
    -- dom0's clock), read once per domain: its uptime
    started     REAL
);
CREATE INDEX host_name ON host (name);

-- One row per host per cycle: the summary the poller shows for a guest.
CREATE TABLE status (
    cycle_id   INTEGER NOT NULL REFERENCES cycle (id) ON DELETE CASCADE,
    host_id    INTEGER NOT NULL REFERENCES host (id),
    label      TEXT    NOT NULL,            -- the name shown, unique in the cycle
    domid      INTEGER,
    -- 'fresh' (a current probe run), 'stale' (no new run seen for too long),
    -- 'missing' (nothing written), 'invalid' (written but breaks the key
    -- layout), 'host' (dom0), 'down' (should run here and does not),
    -- 'stopped' (not running, as the admin said it should be)
    probe      TEXT    NOT NULL,
    probe_time INTEGER,                     -- the run's own timestamp, if any
    probe_seq  INTEGER,
    seen_time  INTEGER,                     -- when dom0 first saw that run
    status     TEXT    NOT NULL,            -- worst of the checks: ok, warning, unknown, error
    message    TEXT    NOT NULL,            -- one line for a human
    -- the hypervisor's word for the domain this cycle (see host.xen_state),
    -- NULL when unknown (no xl, or not a running domain)
    domain_state TEXT,
    -- Keyed cycle first (schema 8), like sample: a cycle's rows are
    -- appended, and every reader reads them by cycle.
    PRIMARY KEY (cycle_id, host_id)
) WITHOUT ROWID;

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
    PRIMARY KEY (cycle_id, host_id, check_id)
) WITHOUT ROWID;

-- What a figure is: a check kind, its target and the value's name, e.g.
-- ('disk', '/var', 'used_pct'), ('xen', '', 'cpu_time_s').
CREATE TABLE metric (
    id     INTEGER PRIMARY KEY,
    kind   TEXT NOT NULL,
    target TEXT NOT NULL,
    name   TEXT NOT NULL,
    UNIQUE (kind, target, name)
);

-- Raw figures, one per host, metric and cycle, keyed cycle first: a
-- cycle's figures are appended at the end of the table (a few pages per
-- cycle, whatever the number of guests), and retention drops a range of
-- cycles. "History of one host" walks the cycles in its time range (the
-- cycle_time index) and seeks (cycle, host) in each (schema 7; before it
-- the key was host first, which touched a page per figure per guest).
CREATE TABLE sample (
    cycle_id  INTEGER NOT NULL,
    host_id   INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    v         INTEGER NOT NULL,             -- value * 1000
    PRIMARY KEY (cycle_id, host_id, metric_id)
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

-- A VM's restarts seen here (schema 10): a domain of it ended and the
-- toolstack started another, as xl's log of the VM says (or, without it,
-- another boot of its kernel in a new domain). Saves, restores and
-- migrations are never restarts. What a restart loop is counted from.
CREATE TABLE restart (
    host_id   INTEGER NOT NULL REFERENCES host (id),
    new_domid INTEGER NOT NULL,             -- the domain the toolstack started
    time      INTEGER NOT NULL,             -- when it started (else when dom0 saw it)
    old_domid INTEGER,                      -- the domain that ended, when known
    reason    TEXT    NOT NULL,             -- 'crash', 'reboot', 'watchdog', 'soft_reset', 'unknown'
    action    TEXT,                         -- xl's action ('restart', 'coredump-restart', ...), when its log says
    PRIMARY KEY (host_id, new_domid)
) WITHOUT ROWID;
CREATE INDEX restart_time ON restart (time);

-- The names a VM had before its current one (schema 10), until when: a
-- config under this dom0 named after one of them is that VM's old config,
-- not a guest that should run.
CREATE TABLE former_name (
    host_id INTEGER NOT NULL REFERENCES host (id),
    name    TEXT    NOT NULL,
    until   INTEGER NOT NULL,               -- when dom0 first saw the VM under a new name
    PRIMARY KEY (host_id, name)
) WITHOUT ROWID;

-- Guests appearing, going, migrating; the collector's own failures.
CREATE TABLE event (
    id      INTEGER PRIMARY KEY,
    time    INTEGER NOT NULL,
    host_id INTEGER REFERENCES host (id),
    kind    TEXT    NOT NULL,               -- 'new', 'gone', 'migrated', 'back', 'retired', 'forgotten'
    detail  TEXT    NOT NULL
);
CREATE INDEX event_time ON event (time);

-- The latest cycle's state of every host: what snmp-extend serves.
CREATE VIEW latest AS
    SELECT c.id AS cycle_id, c.time AS cycle_time, s.label AS name, h.uuid,
           s.domid, s.probe, s.probe_time, s.probe_seq, s.seen_time,
           s.status, s.message
      FROM cycle c
      JOIN status s ON s.cycle_id = c.id
      JOIN host h ON h.id = s.host_id
     WHERE c.id = (SELECT max(id) FROM cycle);
