//! host-collector's library half: one collection cycle and its
//! configuration. The history database is the crate xsmon-store.
//!
//! A cycle ([`collect::run_cycle`]) goes:
//! - observe: [`gather`] (the guests' xenstore areas), [`agent_keys`] (the
//!   guest agents' keys), [`hypervisor`] (xl, /proc/net/dev, blkback), the
//!   device models' processes ([`devmodel::observe`]), xl's logs and
//!   libxl's configs of the domains ([`xl_records`]), the shared config
//!   directory (xsmon-proto's `cluster`);
//! - judge: [`judge`], with one module per concern: [`domstate`],
//!   [`freshness`], [`continuity`], [`restarts`], [`absent`], [`agent`],
//!   [`devmodel`];
//! - store: xsmon-store;
//! - export: [`export`] (the Prometheus textfile).
//!
//! [`words`], [`glob`] and [`halves`] are leaves every module may use.

pub mod absent;
pub mod agent;
pub mod agent_keys;
pub mod chart;
pub mod collect;
pub mod config;
pub mod continuity;
pub mod damaged;
pub mod devmodel;
pub mod domstate;
pub mod export;
pub mod freshness;
pub mod gather;
pub mod glob;
pub mod halves;
pub mod hypervisor;
pub mod judge;
pub mod restarts;
pub mod scene;
pub mod watch;
pub mod words;
pub mod xl_records;

#[cfg(test)]
mod fuzz_tests;
