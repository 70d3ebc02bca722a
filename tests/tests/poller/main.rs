//! The poller against a simulated site: several dom0s in network
//! namespaces, each with real oxenstored, collector database and snmpd; one
//! down, one slow, one serving garbage; a shared config directory with a
//! migrated guest.

mod modes;
mod nagios;
mod prometheus;
mod push;
mod service;
mod state_damage;

use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xsmon_tests::cluster::{demo_specs, Ailment, Behaviour, Dom0Spec, GuestSpec, SimCluster};

pub(crate) fn guest(name: &str, ailment: Ailment) -> GuestSpec {
    GuestSpec {
        name: name.into(),
        ailment,
        cfg_under: None,
    }
}

/// The site, built once for all tests of this file (tests only read it).
pub(crate) fn site() -> &'static SimCluster {
    static SITE: OnceLock<SimCluster> = OnceLock::new();
    SITE.get_or_init(|| {
        // The demo's site (so the demo's scenario is tested here too), plus
        // a slow dom0 and one serving garbage.
        let mut specs = demo_specs();
        specs.push(Dom0Spec {
            name: "xen04".into(),
            behaviour: Behaviour::Slow(1500),
            guests: vec![guest("slow01", Ailment::Healthy)],
        });
        specs.push(Dom0Spec {
            name: "xen05".into(),
            behaviour: Behaviour::Garbage,
            guests: vec![guest("junk01", Ailment::Healthy)],
        });
        let site = SimCluster::build(specs, 3000, &|m| eprintln!("site: {m}"))
            .expect("building the simulated site");
        if !site.namespaces {
            eprintln!("NOTE: network namespaces unavailable; the dom0s run on loopback ports");
        }
        site
    })
}

pub(crate) fn run(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = site().poller(args).output().unwrap();
    (out, t.elapsed())
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A sample of the exposition format: (name, labels, value).
type Sample = (String, Vec<(String, String)>, f64);
