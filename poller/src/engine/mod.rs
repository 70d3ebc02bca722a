//! Event-driven polling: every dom0's requests in flight at once over a
//! few non-blocking UDP sockets, one thread, request ids matched to dom0s.
//!
//! Why not a thread (or a socket, or a tokio task) per dom0: 10,000 dom0s
//! would be 10,000 sockets and receive buffers (snmp2's sessions keep a
//! 64 KiB buffer each), and a pool of threads waits out its dead dom0s
//! `pool size` at a time. Here the whole poll costs about one timeout,
//! whatever the number of dom0s, and memory grows with the dom0s' output,
//! not with their number of sockets.
//!
//! Per dom0 a small state machine: (SNMPv3: engine discovery,) the line
//! walk over nsExtendOutLine with GETBULK, nsExtendResult. Rules:
//! * Every attempt has a fresh request id; only the latest attempt's id is
//!   accepted, so a late reply is never taken for the next request. A reply
//!   must come from the address asked (and, in v2c, carry our community;
//!   in v3, pass authentication).
//! * Silence budget: a dom0 is given up when it has answered nothing for
//!   `(retries + 1) * timeout`. Within it, a request is resent every
//!   `timeout / 4` while the dom0 has never answered, and on an adaptive
//!   timeout (from its measured round trips, at least 100 ms) once it has,
//!   so a lossy link costs retransmissions, not a false alarm.
//! * The walk resumes from the last line received, never restarts.
//! * A dom0 that answered nothing is unreachable; one that answered and
//!   then went silent mid-read is reported as such, with how far it got.
//! * Caps: requests in flight, and packets per second (token bucket), so a
//!   poll of a large site never floods a network.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::snmp::{Credentials, FetchError, Served};
use crate::usm;

mod job;
mod poll;
mod reply;

pub use job::Limits;
use job::{Job, Step};
use poll::{Auth, Poll};

/// What polling one dom0 gave, and how long it took from its first request.
pub struct Fetched {
    pub outcome: Result<Served, FetchError>,
    pub elapsed: Duration,
}

/// Polls `extend` on every target (`host:port`) at once, each with its
/// credentials (`creds`, one per target). Results come back in the order
/// of `targets`. `progress` is called with (done, total).
pub fn fetch_all(
    targets: &[String],
    extend: &str,
    creds: &[&Credentials],
    limits: &Limits,
    progress: &dyn Fn(usize, usize),
) -> Vec<Fetched> {
    // Each distinct credential once: a v3 user's keys cost two 1 MiB
    // hashes to derive.
    let mut distinct: Vec<&Credentials> = Vec::new();
    let mut index: HashMap<&Credentials, usize> = HashMap::new();
    let mut jobs: Vec<Job> = targets.iter().map(|t| Job::new(t, extend)).collect();
    for (job, &c) in jobs.iter_mut().zip(creds) {
        job.auth = *index.entry(c).or_insert_with(|| {
            distinct.push(c);
            distinct.len() - 1
        });
    }
    let auths: Vec<Auth> = distinct.into_iter().map(auth_of).collect();
    let addrs = resolve_all(targets);
    for (job, addr) in jobs.iter_mut().zip(addrs) {
        match addr {
            Ok(a) => job.addr = Some(a),
            Err(e) => job.finish(Err(FetchError::Protocol(e))),
        }
        if matches!(auths[job.auth], Auth::V3(_)) && job.step != Step::Done {
            job.step = Step::Discover;
        }
    }
    match Poll::new(&mut jobs, &auths, extend, limits, progress) {
        Ok(mut p) => p.run(),
        Err(e) => {
            for j in jobs.iter_mut().filter(|j| j.step != Step::Done) {
                j.finish(Err(FetchError::Protocol(format!("{}: {e}", j.target))));
            }
        }
    }
    jobs.into_iter()
        .map(|j| Fetched {
            outcome: j
                .outcome
                .unwrap_or_else(|| Err(FetchError::Protocol("not polled".into()))),
            elapsed: j.elapsed,
        })
        .collect()
}

fn auth_of(creds: &Credentials) -> Auth {
    match creds {
        Credentials::V2c { community } => Auth::V2c(community.expose().as_bytes().to_vec()),
        Credentials::V3 {
            user,
            auth,
            privacy,
            auth_protocol,
            priv_protocol,
        } => Auth::V3(usm::User::new(
            user,
            auth.expose(),
            privacy.expose(),
            *auth_protocol,
            *priv_protocol,
        )),
    }
}

/// Reads one extend from one dom0 (discovery's listXenCluster).
pub fn fetch_extend(
    target: &str,
    name: &str,
    creds: &Credentials,
    timeout: Duration,
    retries: u32,
) -> Result<Served, FetchError> {
    let limits = Limits {
        timeout,
        retries,
        max_in_flight: 1,
        max_pps: 1000,
    };
    fetch_all(&[target.to_string()], name, &[creds], &limits, &|_, _| {})
        .pop()
        .map(|f| f.outcome)
        .unwrap_or_else(|| Err(FetchError::Protocol(format!("{target}: not polled"))))
}

/// Resolves every target, many at once (names go through the system's
/// resolver: /etc/hosts, DNS), literal addresses without a look-up.
fn resolve_all(targets: &[String]) -> Vec<Result<SocketAddr, String>> {
    let resolve = |t: &String| -> Result<SocketAddr, String> {
        if let Ok(a) = t.parse::<SocketAddr>() {
            return Ok(a);
        }
        t.to_socket_addrs()
            .map_err(|e| format!("{t}: cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("{t}: name has no address"))
    };
    let mut out: Vec<Option<Result<SocketAddr, String>>> = vec![None; targets.len()];
    let needs_lookup = targets
        .iter()
        .filter(|t| t.parse::<SocketAddr>().is_err())
        .count();
    if needs_lookup < 8 {
        return targets.iter().map(resolve).collect();
    }
    let chunk = targets.len().div_ceil(16);
    std::thread::scope(|s| {
        for (ts, os) in targets.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (t, o) in ts.iter().zip(os.iter_mut()) {
                    *o = Some(resolve(t));
                }
            });
        }
    });
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Err("not resolved".into())))
        .collect()
}
