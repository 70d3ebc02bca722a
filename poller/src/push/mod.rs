//! Results pushed to the monitoring systems at each cycle of the service,
//! in the ways each accepts passive results, and the objects they name:
//! one list of results for the site (here), written as Nagios's external
//! commands (`nagios`) or posted to Icinga 2's API (`icinga2`); the
//! objects each tool needs, generated from discovery (`nagios_objects`,
//! `icinga2_objects`).
//!
//! Per dom0: a host result (reachable or not) and its `xsmon` service (the
//! words of `poller nagios --dom0 NAME`); per guest: a host result
//! (running or not) and its `xsmon` service (the words of `poller nagios
//! --guest NAME`). A dom0 that could not be read gets its host result only
//! (DOWN, with the error): one alert; its service's and its guests'
//! results stand until the dom0 answers again or their freshness runs
//! out. A result pushed twice does no harm: the tool takes the later.

pub mod icinga2;
pub mod icinga2_objects;
pub mod nagios;
pub mod nagios_objects;

use crate::outputs::nagios::nagios;
use crate::report;
use crate::site::Site;

/// The service every dom0 and guest host carries.
pub const SERVICE: &str = "xsmon";

/// One passive result: a host's (`service` false: 0 UP, 1 DOWN) or its
/// `xsmon` service's (0 OK .. 3 UNKNOWN, with the plugin output of `poller
/// nagios`, performance data after its first `|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub host: String,
    pub service: bool,
    pub state: u8,
    pub output: String,
}

/// Whether both tools accept `name` as a host name: Nagios refuses the
/// characters of its default `illegal_object_name_chars`, Icinga 2 a `!`
/// (its separator of host and service) and whitespace.
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !"`~!$%^&*|'\"<>?,()=;".contains(c))
}

/// Every result of one push, and the names left out (neither tool would
/// take them), to be said.
pub fn results(site: &Site) -> (Vec<Pushed>, Vec<String>) {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let scoper = site.scoper();
    for (i, d) in site.dom0s.iter().enumerate() {
        if !valid_object_name(&d.name) {
            refused.push(d.name.clone());
            continue;
        }
        let (up, text) = match &d.error {
            None => (0, format!("XSMON UP - {} answered", d.target)),
            Some(e) => (1, format!("XSMON DOWN - {}", e)),
        };
        out.push(host(&d.name, up, text));
        if d.error.is_some() {
            // Its host is DOWN with the error: that is the one alert. Its
            // service and its guests' results stand as they were.
            continue;
        }
        let r = report::build(scoper.scoped(&[i]), Some(&d.name), None);
        let (output, state) = nagios(&r, Some(&d.name), None);
        out.push(service(&d.name, state, output));
    }
    for (guest, at) in site.guest_index() {
        if !valid_object_name(&guest) {
            refused.push(guest);
            continue;
        }
        let running = at.iter().any(|&i| {
            site.dom0s[i].guests.iter().any(|g| {
                crate::poll::base_name(&g.name) == guest
                    && !xsmon_proto::snmpline::probe_is_down(&g.probe)
            })
        });
        let text = if running {
            "XSMON UP - running".to_string()
        } else {
            "XSMON DOWN - should run and does not".to_string()
        };
        out.push(host(&guest, if running { 0 } else { 1 }, text));
        let r = report::build(scoper.scoped(&at), None, Some(&guest));
        let (output, state) = nagios(&r, None, Some(&guest));
        out.push(service(&guest, state, output));
    }
    (out, refused)
}

/// A dom0's address for the tools' host objects: its SNMP target without
/// the port (and an IPv6 address without its brackets).
pub fn address_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn host(name: &str, state: u8, output: String) -> Pushed {
    Pushed {
        host: name.to_string(),
        service: false,
        state,
        output,
    }
}

fn service(name: &str, state: u8, output: String) -> Pushed {
    Pushed {
        host: name.to_string(),
        service: true,
        state,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tools_refuse_are_told_apart() {
        assert!(valid_object_name("web01"));
        assert!(valid_object_name("web01.example.org"));
        assert!(!valid_object_name("web;01"));
        assert!(!valid_object_name("web 01"));
        assert!(!valid_object_name("web!01"));
        assert!(!valid_object_name(""));
    }

    #[test]
    fn an_address_is_the_target_without_its_port() {
        assert_eq!(address_of("10.0.0.1:161"), "10.0.0.1");
        assert_eq!(address_of("[fd00::1]:161"), "fd00::1");
        assert_eq!(address_of("xen01.example.org"), "xen01.example.org");
    }
}
