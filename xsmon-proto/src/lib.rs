//! The contracts between xsmon's programs.
//!
//! * [`check`]: what one check yields (status, message, numeric values);
//! * [`layout`]: the xenstore key layout guest-probe writes and
//!   host-collector reads, with the validation dom0 applies to guest data;
//! * [`resume`]: the run line's `resumed` and `boot` fields, by which dom0
//!   tells a restore, a migration and a reboot apart;
//! * [`text`]: the rules for text that crosses a trust boundary.

pub mod check;
pub mod cluster;
pub mod layout;
pub mod prom;
pub mod rawline;
pub mod resume;
pub mod snmpline;
mod source;
pub mod text;
pub mod values;

pub use check::{CheckResult, Limit, Status, Value};
