//! host-collector's library half: one collection cycle (gathering from
//! xenstore, judging freshness and identity) and its configuration. The
//! history database is the crate xsmon-store.

pub mod agent;
pub mod chart;
pub mod collect;
pub mod config;
pub mod continuity;
pub mod domstate;
pub mod freshness;
pub mod gather;
pub mod hypervisor;

#[cfg(test)]
mod fuzz_tests;
