//! The service's writes: one cycle of the site per transaction.

use rusqlite::params;

use super::*;

/// What a cycle changed of a dom0's served text (only what changed is
/// written: a dom0 serves the same lines until its collector cycles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedChange {
    pub name: String,
    /// Its state's lines, and the guests they list (the scoped read's index).
    pub state: Option<(String, Vec<GuestRow>)>,
    /// Its figures, or why there are none.
    pub figures: Option<std::result::Result<String, String>>,
}

/// One cycle of the site, as the service writes it.
pub struct CycleWrite<'a> {
    pub cycle: &'a Cycle,
    /// Every dom0 polled (the others are forgotten).
    pub dom0s: &'a [Dom0Row],
    pub changed: &'a [ServedChange],
    /// Where each guest's .cfg is, as (guest, dom0), when it changed.
    pub homes: Option<&'a [(String, String)]>,
    /// Every problem that stands after this cycle (with its `since`).
    pub problems: &'a [Problem],
    /// What changed in this cycle.
    pub transitions: &'a [Transition],
}

impl SiteDb {
    /// Begins a cycle: one write transaction, from before the poll to its
    /// end, so that what the poll reads can be written as it comes (the
    /// figures of 10,000 dom0s need not be held in memory) and readers
    /// still see whole cycles only. Dropped without `finish`, nothing of it
    /// was written.
    pub fn begin_cycle(&mut self) -> Result<CycleTx<'_>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(at("beginning a cycle in", &self.path))?;
        Ok(CycleTx {
            tx,
            path: &self.path,
        })
    }

    /// Records that a poll failed at `time`, and why (the first failure's
    /// time is kept until a cycle succeeds).
    pub fn record_failure(&mut self, time: i64, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO failure (id, since, time, message) VALUES (1, ?1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET time = excluded.time, message = excluded.message",
                params![time, message],
            )
            .map_err(at("recording a failed poll in", &self.path))?;
        Ok(())
    }

    /// Records how a push to `consumer` went at `time`: a failure is kept
    /// (its first time too) until a push works.
    pub fn record_push(
        &mut self,
        consumer: &str,
        time: i64,
        outcome: std::result::Result<(), &str>,
    ) -> Result<()> {
        let done = match outcome {
            Ok(()) => self
                .conn
                .execute("DELETE FROM push WHERE consumer = ?1", [consumer]),
            Err(error) => self.conn.execute(
                "INSERT INTO push (consumer, since, time, error) VALUES (?1, ?2, ?2, ?3)
                 ON CONFLICT (consumer) DO UPDATE SET time = excluded.time, error = excluded.error",
                params![consumer, time, error],
            ),
        };
        done.map_err(at("recording a push in", &self.path))?;
        Ok(())
    }

    /// A whole cycle at once (`begin_cycle`, then `finish`).
    pub fn write_cycle(&mut self, w: &CycleWrite<'_>, keep: Keep) -> Result<()> {
        self.begin_cycle()?.finish(w, keep)
    }
}

/// A cycle being written (see `SiteDb::begin_cycle`).
pub struct CycleTx<'c> {
    tx: Transaction<'c>,
    path: &'c Path,
}

impl CycleTx<'_> {
    /// The problems that stood after the last cycle written.
    pub fn standing_problems(&self) -> Result<Vec<Problem>> {
        let mut st = self
            .tx
            .prepare("SELECT dom0, host, check_id, severity, message, since FROM problem")?;
        let rows = st.query_map([], problem_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A dom0's figures as served, or why there are none.
    pub fn write_figures(
        &self,
        name: &str,
        figures: &std::result::Result<String, String>,
    ) -> Result<()> {
        let (text, error) = match figures {
            Ok(t) => (Some(t.as_str()), None),
            Err(e) => (None, Some(e.as_str())),
        };
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO served_figures (name, text, error) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![name, text, error]))
            .map_err(at("writing figures to", self.path))?;
        Ok(())
    }

    /// Replaces the site's state with this cycle's and appends its
    /// transitions, cuts the log to `keep`, and commits: all or nothing.
    pub fn finish(self, w: &CycleWrite<'_>, keep: Keep) -> Result<()> {
        let path = self.path;
        write_state(&self.tx, w).map_err(at("writing a cycle to", path))?;
        cut_log(&self.tx, w.cycle.time, keep).map_err(at("cutting the transition log of", path))?;
        self.tx.commit().map_err(at("committing a cycle to", path))
    }
}

fn write_state(tx: &Transaction<'_>, w: &CycleWrite<'_>) -> rusqlite::Result<()> {
    let c = w.cycle;
    tx.execute(
        "INSERT OR REPLACE INTO cycle (id, time, elapsed_ms, interval_secs, stale_after_secs, problems)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)",
        params![c.time, c.elapsed_ms, c.interval_secs, c.stale_after_secs, c.problems],
    )?;
    if let Some(homes) = w.homes {
        tx.execute("DELETE FROM home", [])?;
        let mut st = tx.prepare("INSERT OR IGNORE INTO home (guest, dom0) VALUES (?1, ?2)")?;
        for (guest, dom0) in homes {
            st.execute(params![guest, dom0])?;
        }
    }
    tx.execute_batch("DELETE FROM dom0; DELETE FROM problem; DELETE FROM failure;")?;
    let mut st = tx.prepare(
        "INSERT INTO dom0 (name, target, error, elapsed_ms, extend_result, served_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for d in w.dom0s {
        st.execute(params![
            d.name,
            d.target,
            d.error,
            d.elapsed_ms,
            d.extend_result,
            d.served_time
        ])?;
    }
    // What dom0s no longer polled served goes with them.
    tx.execute_batch(
        "DELETE FROM served_state WHERE name NOT IN (SELECT name FROM dom0);
         DELETE FROM served_figures WHERE name NOT IN (SELECT name FROM dom0);
         DELETE FROM guest WHERE dom0 NOT IN (SELECT name FROM dom0);",
    )?;
    write_changes(tx, w.changed)?;
    let mut st = tx.prepare(
        "INSERT OR REPLACE INTO problem (dom0, host, check_id, severity, message, since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for p in w.problems {
        st.execute(params![
            p.dom0, p.host, p.check, p.severity, p.message, p.since
        ])?;
    }
    let mut st = tx.prepare(
        "INSERT INTO transition (time, dom0, host, base, check_id, old, new, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for t in w.transitions {
        st.execute(params![
            t.time,
            t.dom0,
            t.host,
            base_name(&t.host),
            t.check,
            t.old,
            t.new,
            t.message
        ])?;
    }
    Ok(())
}

fn write_changes(tx: &Transaction<'_>, changed: &[ServedChange]) -> rusqlite::Result<()> {
    let mut state =
        tx.prepare("INSERT OR REPLACE INTO served_state (name, text) VALUES (?1, ?2)")?;
    let mut forget = tx.prepare("DELETE FROM guest WHERE dom0 = ?1")?;
    let mut guest = tx.prepare(
        "INSERT OR REPLACE INTO guest (base, dom0, name, status, probe) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut figures = tx
        .prepare("INSERT OR REPLACE INTO served_figures (name, text, error) VALUES (?1, ?2, ?3)")?;
    for c in changed {
        if let Some((text, guests)) = &c.state {
            state.execute(params![c.name, text])?;
            forget.execute([&c.name])?;
            for g in guests {
                guest.execute(params![g.base, g.dom0, g.name, g.status, g.probe])?;
            }
        }
        match &c.figures {
            Some(Ok(text)) => figures.execute(params![c.name, text, None::<String>])?,
            Some(Err(why)) => figures.execute(params![c.name, None::<String>, why])?,
            None => 0,
        };
    }
    Ok(())
}

/// Drops transitions older than `keep.secs`, then the oldest past
/// `keep.max_transitions` rows.
fn cut_log(tx: &Transaction<'_>, now: i64, keep: Keep) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM transition WHERE time < ?1", [now - keep.secs])?;
    tx.execute(
        "DELETE FROM transition WHERE id <= (SELECT max(id) FROM transition) - ?1",
        [keep.max_transitions],
    )?;
    Ok(())
}

pub(super) fn problem_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Problem> {
    Ok(Problem {
        dom0: r.get(0)?,
        host: r.get(1)?,
        check: r.get(2)?,
        severity: r.get(3)?,
        message: r.get(4)?,
        since: r.get(5)?,
    })
}
