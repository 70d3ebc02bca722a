//! host-collector's library half: the history database (also read by
//! snmp-extend) and one collection cycle.

pub mod collect;
pub mod config;
pub mod db;
pub mod gather;
pub mod hostfig;
