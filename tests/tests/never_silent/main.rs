//! Never silent: the ways a guest could drop out of the report while it
//! still looked complete, each tried against Xen's real oxenstored, the
//! real host-collector, snmp-extend (and snmpd plus the poller where the
//! line must reach Nagios) and a real SQLite history.

mod lifecycle;
mod scale;

use xsmon_proto::snmpline::Record;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `G` record as the tests look at it.
#[derive(Debug, Clone)]
pub(crate) struct G {
    host: String,
    uuid: Option<String>,
    probe: String,
    status: Status,
    message: String,
}

/// The G records snmp-extend serves for this dom0 (the output must parse).
pub(crate) fn served_guests(d: &Dom0) -> Vec<G> {
    d.served_records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Guest {
                host,
                uuid,
                probe,
                status,
                message,
                ..
            } => Some(G {
                host,
                uuid,
                probe,
                status,
                message,
            }),
            _ => None,
        })
        .collect()
}

pub(crate) fn find<'a>(gs: &'a [G], host: &str) -> &'a G {
    gs.iter()
        .find(|g| g.host == host)
        .unwrap_or_else(|| panic!("no G line for {host} in {gs:#?}"))
}

pub(crate) fn collect_ok(d: &Dom0, t: i64) {
    let out = d.collect_at(Some(t));
    assert!(
        out.status.success(),
        "collect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn forget(d: &Dom0, guest: &str) -> std::process::Output {
    d.cmd(&["forget", guest]).output().unwrap()
}
