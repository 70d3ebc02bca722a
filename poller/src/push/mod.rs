//! Results pushed to the monitoring systems at each cycle of the service,
//! in the ways each accepts passive results: Nagios's external command
//! file (`nagios`), and the objects they name (`objects`).

pub mod nagios;
pub mod objects;
