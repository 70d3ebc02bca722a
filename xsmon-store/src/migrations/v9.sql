-- Schema version 8 -> 9: when the toolstack created the domain a running
-- host was last seen in (`/vm/<uuid>/start_time`, dom0's clock), so the
-- collector reads it once per domain instead of once per cycle.
ALTER TABLE host ADD COLUMN started REAL;
