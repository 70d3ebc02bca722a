//! The readers' queries, each inside a snapshot of one cycle.

use rusqlite::{params, OptionalExtension};

use super::write::problem_of;
use super::*;

/// Which dom0s a read wants in full; the others come as stubs (name,
/// target, error, no result): what a scoped check counts but does not show.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    Dom0(&'a str),
    /// The dom0s that report this guest (by its name or its label).
    Guest(&'a str),
}

impl Snapshot<'_> {
    /// The last cycle, or `None` when the service has not finished one.
    pub fn cycle(&self) -> Result<Option<Cycle>> {
        Ok(self
            .tx
            .query_row(
                "SELECT time, elapsed_ms, interval_secs, stale_after_secs, discovery FROM cycle WHERE id = 1",
                [],
                |r| {
                    Ok(Cycle {
                        time: r.get(0)?,
                        elapsed_ms: r.get(1)?,
                        interval_secs: r.get(2)?,
                        stale_after_secs: r.get(3)?,
                        discovery: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every dom0 of the last poll, in name order, with what it served
    /// when `scope` wants it in full (`None` for the others: what a scoped
    /// check counts but does not show).
    pub fn dom0s(&self, scope: Scope<'_>) -> Result<Vec<(Dom0Row, Option<Served>)>> {
        let (full_sql, args): (&str, Vec<&str>) = match scope {
            Scope::All => ("SELECT name FROM dom0", vec![]),
            Scope::Dom0(d) => ("SELECT name FROM dom0 WHERE name = ?1", vec![d]),
            Scope::Guest(g) => (
                "SELECT DISTINCT dom0 FROM guest WHERE base = ?1 OR (base = ?2 AND name = ?1)",
                vec![g, base_name(g)],
            ),
        };
        let full: std::collections::HashSet<String> = {
            let mut st = self.tx.prepare(full_sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut st = self.tx.prepare(
            "SELECT name, target, error, elapsed_ms, extend_result, served_time FROM dom0 ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Dom0Row {
                name: r.get(0)?,
                target: r.get(1)?,
                error: r.get(2)?,
                elapsed_ms: r.get(3)?,
                extend_result: r.get(4)?,
                served_time: r.get(5)?,
            })
        })?;
        let mut state_of = self
            .tx
            .prepare("SELECT text FROM served_state WHERE name = ?1")?;
        let mut figures_of = self
            .tx
            .prepare("SELECT text, error FROM served_figures WHERE name = ?1")?;
        let mut out = Vec::new();
        for d in rows {
            let d = d?;
            let served = if full.contains(&d.name) {
                let state: Option<String> =
                    state_of.query_row([&d.name], |r| r.get(0)).optional()?;
                let figures = figures_of
                    .query_row([&d.name], |r| {
                        let text: Option<String> = r.get(0)?;
                        let error: Option<String> = r.get(1)?;
                        Ok(text.ok_or_else(|| error.unwrap_or_default()))
                    })
                    .optional()?;
                Some(Served {
                    state: state.unwrap_or_default(),
                    figures,
                })
            } else {
                None
            };
            out.push((d, served));
        }
        Ok(out)
    }

    /// The problems that stand, keyed as `Problem::key`.
    pub fn problems(&self) -> Result<Vec<Problem>> {
        let mut st = self
            .tx
            .prepare("SELECT dom0, host, check_id, severity, message, since FROM problem")?;
        let rows = st.query_map([], problem_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Transitions since `since` (oldest first): all of them, or those of
    /// one guest (by name or label) or one dom0 (its own and its guests').
    pub fn transitions(&self, of: Option<&str>, since: i64) -> Result<Vec<Transition>> {
        let sql = "SELECT time, dom0, host, check_id, old, new, message FROM transition";
        let map = |r: &rusqlite::Row<'_>| {
            Ok(Transition {
                time: r.get(0)?,
                dom0: r.get(1)?,
                host: r.get(2)?,
                check: r.get(3)?,
                old: r.get(4)?,
                new: r.get(5)?,
                message: r.get(6)?,
            })
        };
        let rows: Vec<Transition> = match of {
            None => {
                let mut st = self
                    .tx
                    .prepare(&format!("{sql} WHERE time >= ?1 ORDER BY id"))?;
                let r = st.query_map([since], map)?;
                r.collect::<rusqlite::Result<_>>()?
            }
            Some(name) => {
                let mut st = self.tx.prepare(&format!(
                    "{sql} WHERE time >= ?1 AND (dom0 = ?2 OR base = ?3 AND (host = ?2 OR base = ?2)) ORDER BY id"
                ))?;
                let r = st.query_map(params![since, name, base_name(name)], map)?;
                r.collect::<rusqlite::Result<_>>()?
            }
        };
        Ok(rows)
    }

    /// Is `name` a dom0 or a guest the site's state knows (now or in its
    /// log)?
    pub fn knows(&self, name: &str) -> Result<bool> {
        let n: i64 = self.tx.query_row(
            "SELECT (SELECT count(*) FROM dom0 WHERE name = ?1)
                  + (SELECT count(*) FROM guest WHERE base = ?2)
                  + (SELECT count(*) FROM transition WHERE dom0 = ?1 OR base = ?2)",
            params![name, base_name(name)],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}
