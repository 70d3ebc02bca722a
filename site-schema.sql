-- xsmon site state: the SQLite schema of the poller's database, version 1.
--
-- This file is the contract between `poller serve` (which writes one
-- cycle of the whole site per transaction) and every other mode of the
-- poller (which reads it: report, raw, json, prometheus, nagios, history).
-- The crate xsmon-store (src/site/) is the only code that touches it; a new
-- database is created from this file, an older one brought up to it by the
-- numbered migrations in xsmon-store/src/site/migrations/ (PRAGMA
-- user_version holds the version). It lives beside the dom0's history
-- (schema.sql), never in the same file: `/var/lib/xsmon/poller.db`.
--
-- Times are Unix seconds (UTC). Text that came from a dom0 (guest names,
-- messages) is stored as the poller read it; every output escapes it.
--
-- Size: the state tables hold one cycle (what each dom0 served, as served:
-- a reader parses it as a live poll would, and says the same); the
-- transition log grows with changes only (not with polls) and is cut by
-- age and by a row cap ([service] keep_days, max_transitions).

-- The last cycle of the site: one row.
CREATE TABLE cycle (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    time INTEGER NOT NULL,          -- when the poll began
    elapsed_ms INTEGER NOT NULL,    -- how long the poll and the update took
    interval_secs INTEGER NOT NULL, -- the service's interval: readers judge freshness by it
    stale_after_secs INTEGER NOT NULL,
    problems TEXT NOT NULL          -- JSON: discovery's problems (config directories, principals)
);

-- Why the service's polls fail, while they do (a poll that could not be
-- made at all: no dom0 to poll, the database not writable...): a reader of
-- a stale state says this rather than guess. Cleared by the next cycle.
CREATE TABLE failure (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    since INTEGER NOT NULL,         -- the first poll that failed
    time INTEGER NOT NULL,          -- the last
    message TEXT NOT NULL
);

-- Each consumer the service pushes to whose last push failed, since when
-- and why (`poller serve`'s [push]): the report says it. Gone with the
-- first push that works.
CREATE TABLE push (
    consumer TEXT PRIMARY KEY,
    since INTEGER NOT NULL,
    time INTEGER NOT NULL,
    error TEXT NOT NULL
) WITHOUT ROWID;

-- Every dom0 of the last poll: rewritten at each cycle (narrow rows).
CREATE TABLE dom0 (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    error TEXT,                     -- why its state could not be read, or NULL
    elapsed_ms INTEGER NOT NULL,    -- how long it took to answer (or be given up)
    extend_result INTEGER,          -- snmp-extend's exit status, as snmpd said
    served_time INTEGER             -- when its snmp-extend served the state
) WITHOUT ROWID;

-- What each dom0 served, as served (SNMP line format): its state, and its
-- figures. Rewritten only when it changed (a dom0 serves the same lines
-- until its collector completes a cycle), so a cycle writes little.
CREATE TABLE served_state (
    name TEXT PRIMARY KEY,
    text TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE served_figures (
    name TEXT PRIMARY KEY,
    text TEXT,                      -- the figures, as served
    error TEXT                      -- or why there are none
) WITHOUT ROWID;

-- Which dom0 reports which guest (the index of a scoped read), with the
-- guest's last status.
CREATE TABLE guest (
    base TEXT NOT NULL,             -- the name without a `#domid`
    dom0 TEXT NOT NULL,
    name TEXT NOT NULL,             -- the dom0's label for it
    status TEXT NOT NULL,           -- ok, warning, error, unknown
    probe TEXT NOT NULL,            -- fresh, stale, down, starting...
    PRIMARY KEY (dom0, name)
) WITHOUT ROWID;
CREATE INDEX guest_base ON guest (base);

-- Which dom0's folder of the shared config directories holds each guest's
-- .cfg (where it should run): rewritten only when the directories change.
CREATE TABLE home (
    guest TEXT NOT NULL,
    dom0 TEXT NOT NULL,
    PRIMARY KEY (guest, dom0)
) WITHOUT ROWID;

-- Every problem that stands (a finding of severity error, unknown or
-- warning), and since when. A problem of a dom0 that could not be polled
-- is kept as it was: not knowing is not being well.
CREATE TABLE problem (
    dom0 TEXT NOT NULL,
    host TEXT NOT NULL,             -- '' for the dom0 itself or discovery
    check_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    since INTEGER NOT NULL,         -- the first cycle it was seen in (at any severity)
    PRIMARY KEY (dom0, host, check_id)
) WITHOUT ROWID;

-- Every change of a problem's state: appeared (old = 'ok'), changed
-- severity, or cleared (new = 'ok').
CREATE TABLE transition (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    dom0 TEXT NOT NULL,
    host TEXT NOT NULL,
    base TEXT NOT NULL,             -- host without a `#domid`, for `poller history GUEST`
    check_id TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX transition_time ON transition (time);
CREATE INDEX transition_base ON transition (base, time);
CREATE INDEX transition_dom0 ON transition (dom0, time);
