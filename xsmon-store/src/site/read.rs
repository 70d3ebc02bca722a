//! The readers' queries, each inside a snapshot of one cycle.

use rusqlite::{params, OptionalExtension};

use super::write::problem_of;
use super::*;

/// A dom0 as kept: its row, and what it served when the read shows it.
pub type KeptDom0 = (Dom0Row, Option<Served>);

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
                "SELECT time, elapsed_ms, interval_secs, stale_after_secs, problems FROM cycle WHERE id = 1",
                [],
                |r| {
                    Ok(Cycle {
                        time: r.get(0)?,
                        elapsed_ms: r.get(1)?,
                        interval_secs: r.get(2)?,
                        stale_after_secs: r.get(3)?,
                        problems: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// The consumers whose last push failed: (consumer, since, error).
    pub fn push_failures(&self) -> Result<Vec<(String, i64, String)>> {
        let mut st = self
            .tx
            .prepare("SELECT consumer, since, error FROM push ORDER BY consumer")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Why the service's polls fail, while they do: (since, last, message).
    pub fn failure(&self) -> Result<Option<(i64, i64, String)>> {
        Ok(self
            .tx
            .query_row(
                "SELECT since, time, message FROM failure WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// The dom0s of the last poll a read needs, in name order, with what
    /// each served when `scope` shows it in full; and how many others were
    /// polled. `All`: every dom0 in full. `Dom0`: that one only. `Guest`:
    /// the dom0s that report the guest in full, the dom0s that could not be
    /// polled without what they served (a guest found nowhere may be on
    /// them), the others counted only: a check of one guest reads a few
    /// rows, whatever the size of the site.
    pub fn dom0s(&self, scope: Scope<'_>) -> Result<(Vec<KeptDom0>, usize)> {
        const COLUMNS: &str = "name, target, error, elapsed_ms, extend_result, served_time";
        let (sql, args): (String, Vec<&str>) = match scope {
            Scope::All => (format!("SELECT {COLUMNS}, 1 FROM dom0 ORDER BY name"), vec![]),
            Scope::Dom0(d) => (
                format!("SELECT {COLUMNS}, 1 FROM dom0 WHERE name = ?1"),
                vec![d],
            ),
            Scope::Guest(g) => (
                format!(
                    "SELECT {COLUMNS}, name IN (SELECT dom0 FROM guest WHERE base = ?1 OR (base = ?2 AND name = ?1))
                     FROM dom0
                     WHERE error IS NOT NULL
                        OR name IN (SELECT dom0 FROM guest WHERE base = ?1 OR (base = ?2 AND name = ?1))
                     ORDER BY name"
                ),
                vec![g, base_name(g)],
            ),
        };
        let mut st = self.tx.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                Dom0Row {
                    name: r.get(0)?,
                    target: r.get(1)?,
                    error: r.get(2)?,
                    elapsed_ms: r.get(3)?,
                    extend_result: r.get(4)?,
                    served_time: r.get(5)?,
                },
                r.get::<_, bool>(6)?,
            ))
        })?;
        let mut state_of = self
            .tx
            .prepare("SELECT text FROM served_state WHERE name = ?1")?;
        let mut figures_of = self
            .tx
            .prepare("SELECT text, error FROM served_figures WHERE name = ?1")?;
        let mut out = Vec::new();
        for row in rows {
            let (d, full) = row?;
            let served = if full {
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
        let others = match scope {
            Scope::Guest(_) => {
                let all: i64 = self
                    .tx
                    .query_row("SELECT count(*) FROM dom0", [], |r| r.get(0))?;
                (all as usize).saturating_sub(out.len())
            }
            Scope::All | Scope::Dom0(_) => 0,
        };
        Ok((out, others))
    }

    /// The problems that stand: all of them, or those of these dom0s and
    /// discovery's (a scoped read's).
    pub fn problems(&self, of: Option<&[&str]>) -> Result<Vec<Problem>> {
        let sql = "SELECT dom0, host, check_id, severity, message, since FROM problem";
        match of {
            None => {
                let mut st = self.tx.prepare(sql)?;
                let rows = st.query_map([], problem_of)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Some(dom0s) => {
                let mut st = self.tx.prepare(&format!("{sql} WHERE dom0 = ?1"))?;
                let mut out = Vec::new();
                for d in std::iter::once(&"").chain(dom0s) {
                    for p in st.query_map([d], problem_of)? {
                        out.push(p?);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Where each guest's .cfg is, as (guest, dom0): of every guest, or of
    /// these guests only.
    pub fn homes(&self, of: Option<&[&str]>) -> Result<Vec<(String, String)>> {
        let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        match of {
            None => {
                let mut st = self.tx.prepare("SELECT guest, dom0 FROM home")?;
                let rows = st.query_map([], map)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Some(guests) => {
                let mut st = self
                    .tx
                    .prepare("SELECT guest, dom0 FROM home WHERE guest = ?1")?;
                let mut out = Vec::new();
                for g in guests {
                    for h in st.query_map([g], map)? {
                        out.push(h?);
                    }
                }
                Ok(out)
            }
        }
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
