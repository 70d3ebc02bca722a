//! Retention: raw figures rolled up into hourly rows, hourly into daily,
//! and what is past every retention dropped.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::*;

/// Rolls raw figures older than the raw retention into hourly rows, hourly
/// older than theirs into daily rows, and drops what is past all retention.
/// Cut-offs are aligned to the period, so an hour or a day is rolled up
/// whole, and the work is done once per hour (raw) or day (hourly), not on
/// every cycle.
pub fn apply_retention(tx: &Transaction<'_>, now: i64, keep: Keep) -> Result<()> {
    let raw_cut = (now - keep.raw_secs).div_euclid(3600) * 3600;
    let raw_done = meta_get(tx, "raw_rolled_until")?.unwrap_or(i64::MIN);
    if raw_cut > raw_done {
        roll_up_raw(tx, raw_cut)?;
        meta_set(tx, "raw_rolled_until", raw_cut)?;
    }
    let hourly_cut = (now - keep.hourly_secs).div_euclid(86400) * 86400;
    let hourly_done = meta_get(tx, "hourly_rolled_until")?.unwrap_or(i64::MIN);
    if hourly_cut > hourly_done {
        roll_up_hourly(tx, hourly_cut, now - keep.daily_secs)?;
        tx.execute("DELETE FROM event WHERE time < ?1", [now - keep.daily_secs])?;
        tx.execute(
            "DELETE FROM restart WHERE time < ?1",
            [now - keep.daily_secs],
        )?;
        meta_set(tx, "hourly_rolled_until", hourly_cut)?;
    }
    Ok(())
}

/// Folds a rollup row into one that exists for the same period: counts
/// add up, the average is weighted by them.
const MERGE_ROLLUP: &str = "ON CONFLICT (host_id, metric_id, period, start) DO UPDATE SET
    vavg = CAST(round((rollup.vavg * rollup.n + excluded.vavg * excluded.n) * 1.0 / (rollup.n + excluded.n)) AS INTEGER),
    n = rollup.n + excluded.n,
    vmin = min(rollup.vmin, excluded.vmin),
    vmax = max(rollup.vmax, excluded.vmax)";

fn roll_up_raw(tx: &Transaction<'_>, cut: i64) -> Result<()> {
    let last_old_cycle: Option<i64> =
        tx.query_row("SELECT max(id) FROM cycle WHERE time < ?1", [cut], |r| {
            r.get(0)
        })?;
    let Some(last) = last_old_cycle else {
        return Ok(());
    };
    tx.execute(
        &format!(
            "INSERT INTO rollup (host_id, metric_id, period, start, n, vmin, vavg, vmax)
             SELECT s.host_id, s.metric_id, 3600, (c.time / 3600) * 3600, count(*), min(s.v),
                    CAST(round(avg(s.v)) AS INTEGER), max(s.v)
               FROM sample s JOIN cycle c ON c.id = s.cycle_id
              WHERE s.cycle_id <= ?1
              GROUP BY s.host_id, s.metric_id, (c.time / 3600) * 3600 {MERGE_ROLLUP}"
        ),
        [last],
    )?;
    // One key range: samples are keyed cycle first.
    tx.execute("DELETE FROM sample WHERE cycle_id <= ?1", [last])?;
    tx.execute("DELETE FROM finding WHERE cycle_id <= ?1", [last])?;
    tx.execute("DELETE FROM status WHERE cycle_id <= ?1", [last])?;
    tx.execute("DELETE FROM cycle WHERE id <= ?1", [last])?;
    Ok(())
}

fn roll_up_hourly(tx: &Transaction<'_>, cut: i64, daily_cut: i64) -> Result<()> {
    let pairs = host_metric_pairs(tx)?;
    let mut roll = tx.prepare_cached(&format!(
        "INSERT INTO rollup (host_id, metric_id, period, start, n, vmin, vavg, vmax)
         SELECT host_id, metric_id, 86400, (start / 86400) * 86400, sum(n), min(vmin),
                CAST(round(sum(vavg * n) * 1.0 / sum(n)) AS INTEGER), max(vmax)
           FROM rollup WHERE host_id = ?1 AND metric_id = ?2 AND period = 3600 AND start < ?3
          GROUP BY (start / 86400) * 86400 {MERGE_ROLLUP}"
    ))?;
    let mut del = tx.prepare_cached(
        "DELETE FROM rollup WHERE host_id = ?1 AND metric_id = ?2
            AND ((period = 3600 AND start < ?3) OR (period = 86400 AND start < ?4))",
    )?;
    for (h, m) in pairs {
        roll.execute(params![h, m, cut])?;
        del.execute(params![h, m, cut, daily_cut])?;
    }
    Ok(())
}

fn host_metric_pairs(tx: &Transaction<'_>) -> Result<Vec<(i64, i64)>> {
    let mut st = tx.prepare_cached("SELECT h.id, m.id FROM host h CROSS JOIN metric m")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn meta_get(tx: &Transaction<'_>, key: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn meta_set(tx: &Transaction<'_>, key: &str, value: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
