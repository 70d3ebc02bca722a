//! One dom0's poll: its state machine (discovery, the walk over the
//! extend's lines, its result), its request in flight and its round trips.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::snmp::{index, FetchError, Served, NS_EXTEND};
use crate::usm;

/// How a poll may use the network.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The first answer may take this long (and the silence budget is
    /// `(retries + 1) * timeout`).
    pub timeout: Duration,
    pub retries: u32,
    /// Requests in flight at once (one per dom0 at most).
    pub max_in_flight: usize,
    /// Packets sent per second at most.
    pub max_pps: u32,
}

/// Retransmission timeout floor once a dom0 has answered.
pub(super) const MIN_RTO: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Discover,
    Walk,
    Result,
    Done,
}

/// One request and its attempts. A reply to any attempt of it answers it
/// (they ask the same thing); a reply to an earlier request of the dom0 is
/// never taken for this one (its ids are forgotten when it is answered).
pub(super) struct Flight {
    pub(super) ids: Vec<i32>,
    pub(super) first_sent: Instant,
}

impl Flight {
    pub(super) fn last_id(&self) -> i32 {
        *self.ids.last().unwrap_or(&0)
    }
}

pub(super) struct Job {
    pub(super) target: String,
    pub(super) addr: Option<SocketAddr>,
    pub(super) sock: usize,
    pub(super) step: Step,
    pub(super) line_base: Vec<u64>,
    pub(super) result_oid: Vec<u64>,
    pub(super) cursor: Vec<u64>,
    pub(super) lines: Vec<String>,
    pub(super) result: Option<i64>,
    pub(super) engine: Option<usm::Engine>,
    /// Which of the poll's credentials this dom0 is asked with.
    pub(super) auth: usize,
    pub(super) resyncs: u8,
    /// When the dom0 last answered (or, before that, when we first asked).
    pub(super) heard: Option<Instant>,
    pub(super) answered: bool,
    pub(super) srtt: Option<f64>,
    pub(super) rttvar: f64,
    /// The request in flight, with every attempt at it.
    pub(super) inflight: Option<Flight>,
    pub(super) attempts: u32,
    /// When the first request went out, and how long the dom0 took from
    /// then to its outcome.
    pub(super) first_sent: Option<Instant>,
    pub(super) elapsed: Duration,
    pub(super) outcome: Option<Result<Served, FetchError>>,
}

impl Job {
    pub(super) fn new(target: &str, extend: &str) -> Job {
        let idx = index(extend);
        let mut line_base = NS_EXTEND.to_vec();
        line_base.extend([4, 1, 2]);
        line_base.extend(&idx);
        let mut result_oid = NS_EXTEND.to_vec();
        result_oid.extend([3, 1, 4]);
        result_oid.extend(&idx);
        Job {
            target: target.to_string(),
            addr: None,
            sock: 0,
            step: Step::Walk,
            cursor: line_base.clone(),
            line_base,
            result_oid,
            lines: Vec::new(),
            result: None,
            engine: None,
            auth: 0,
            resyncs: 0,
            heard: None,
            answered: false,
            srtt: None,
            rttvar: 0.0,
            inflight: None,
            attempts: 0,
            first_sent: None,
            elapsed: Duration::ZERO,
            outcome: None,
        }
    }

    /// How long to wait for this attempt before resending: from this
    /// dom0's round trips once it has answered, else from every dom0's
    /// (agents and links that are busy answer late), at least a quarter of
    /// the timeout.
    pub(super) fn rto(&self, limits: &Limits, global: Option<(f64, f64)>) -> Duration {
        let cap = limits.timeout.max(MIN_RTO);
        match (self.srtt, global) {
            (Some(srtt), _) if self.answered => {
                Duration::from_secs_f64(srtt * 2.0 + 4.0 * self.rttvar).clamp(MIN_RTO, cap)
            }
            (_, Some((srtt, var))) => Duration::from_secs_f64(srtt * 2.0 + 4.0 * var)
                .clamp((limits.timeout / 4).max(Duration::from_millis(10)), cap),
            _ => (limits.timeout / 4).max(Duration::from_millis(10)),
        }
    }

    pub(super) fn sample_rtt(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64();
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(s) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (s - r).abs();
                self.srtt = Some(0.875 * s + 0.125 * r);
            }
        }
    }

    pub(super) fn finish(&mut self, outcome: Result<Served, FetchError>) {
        self.elapsed = self.first_sent.map_or(Duration::ZERO, |t| t.elapsed());
        self.step = Step::Done;
        self.inflight = None;
        self.outcome = Some(outcome);
    }

    /// The walk and the result are read: the dom0's answer.
    pub(super) fn done_reading(&mut self, extend: &str) {
        let outcome = if self.lines.is_empty() && self.result.is_none() {
            Err(FetchError::NoSuchExtend(format!(
                "{}: no extend named {extend} (is snmpd configured for xsmon?)",
                self.target
            )))
        } else {
            Ok(Served {
                lines: std::mem::take(&mut self.lines),
                result: self.result,
            })
        };
        self.finish(outcome);
    }

    /// Given up: unreachable if it never answered, silent mid-read if it did.
    pub(super) fn give_up(&mut self, limits: &Limits) {
        let budget = limits.timeout * (limits.retries + 1);
        let e = if self.answered {
            FetchError::Silent(format!(
                "{}: answered, then went silent mid-read ({} lines read, nothing for {} ms after {} attempts)",
                self.target,
                self.lines.len(),
                budget.as_millis(),
                self.attempts
            ))
        } else {
            FetchError::Timeout(format!(
                "{}: no answer in {} ms ({} attempt{})",
                self.target,
                budget.as_millis(),
                self.attempts,
                if self.attempts == 1 { "" } else { "s" }
            ))
        };
        self.finish(Err(e));
    }
}
