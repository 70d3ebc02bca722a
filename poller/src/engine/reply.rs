//! The poll's reply side: each datagram matched to the dom0 and the
//! attempt it answers, authenticated, and the dom0's walk advanced.

use std::net::SocketAddr;
use std::time::Instant;

use super::job::Step;
use super::poll::{Auth, Poll};
use crate::ber::{self, Value};
use crate::snmp::{take_lines, FetchError};
use crate::usm;

impl Poll<'_> {
    pub(super) fn receive(&mut self, buf: &mut [u8]) {
        for s in 0..self.v4.len() + self.v6.len() {
            loop {
                let sock = if s < self.v4.len() {
                    &self.v4[s]
                } else {
                    &self.v6[s - self.v4.len()]
                };
                let (n, from) = match sock.recv_from(buf) {
                    Ok(x) => x,
                    Err(_) => break,
                };
                let datagram = buf[..n].to_vec();
                self.handle(&datagram, from);
            }
        }
    }

    /// One datagram: find whose request it answers, check it, advance.
    pub(super) fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        // Request ids are unique across the poll's dom0s, whatever their
        // credentials: the id finds the job, the job's credentials check it.
        let id =
            ber::peek_v2c_req_id(datagram).or_else(|| usm::parse(datagram).ok().map(|m| m.msg_id));
        let Some(&i) = id.and_then(|id| self.pending.get(&id)) else {
            self.stats.ignored += 1; // a late reply to an abandoned attempt, or noise
            return;
        };
        let id = id.unwrap_or_default();
        if self.jobs[i].addr != Some(from) {
            self.stats.ignored += 1; // not from the dom0 we asked: keep waiting
            return;
        }
        let auths = self.auths;
        let response = match &auths[self.jobs[i].auth] {
            Auth::V2c(community) => match ber::decode_v2c(datagram) {
                Ok((c, r)) if c == *community => Ok(r),
                Ok(_) => return,
                Err(e) => Err(format!("garbled response: {e}")),
            },
            Auth::V3(user) => self.open_v3(i, user, datagram),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_empty() => return,
            Err(e) => {
                let t = self.jobs[i].target.clone();
                self.complete(i, Err(FetchError::Protocol(format!("{t}: {e}"))));
                return;
            }
        };
        if response.req_id != id && !matches!(auths[self.jobs[i].auth], Auth::V3(_)) {
            self.stats.ignored += 1;
            return;
        }
        let flight = self.land(i);
        self.stats.answers += 1;
        let now = Instant::now();
        // Karn's rule: round trips are sampled from single attempts only.
        if let Some(f) = flight.filter(|f| f.ids.len() == 1) {
            let rtt = now.duration_since(f.first_sent);
            self.jobs[i].sample_rtt(rtt);
            let r = rtt.as_secs_f64();
            self.global = Some(match self.global {
                None => (r, r / 2.0),
                Some((s, v)) => (0.875 * s + 0.125 * r, 0.75 * v + 0.25 * (s - r).abs()),
            });
        }
        let job = &mut self.jobs[i];
        job.answered = true;
        job.heard = Some(now);
        self.advance(i, response);
    }

    /// Opens a v3 response. `Err("")` means: ignore this datagram.
    pub(super) fn open_v3(
        &mut self,
        i: usize,
        user: &usm::User,
        datagram: &[u8],
    ) -> Result<ber::Response, String> {
        let m = usm::parse(datagram).map_err(|e| format!("garbled response: {e}"))?;
        let job = &mut self.jobs[i];
        if job.step == Step::Discover {
            let r = usm::plain_pdu(&m).map_err(|e| format!("engine discovery: {e}"))?;
            if m.engine_id.is_empty() {
                return Err("engine discovery: the agent sent no engine id".into());
            }
            job.engine = Some(usm::Engine::new(user, m.engine_id, m.boots, m.time));
            return Ok(r);
        }
        let Some(engine) = job.engine.as_mut() else {
            return Err(String::new());
        };
        match usm::open(datagram, &m, engine) {
            Ok(r) => Ok(r),
            // An unauthenticated report: the agent could not check us.
            Err(_) => match usm::plain_pdu(&m) {
                Ok(r) if r.tag == ber::TAG_REPORT => {
                    Err(format!("{} ({})", usm::report_reason(&r), user.describe()))
                }
                // A packet that fails authentication is not the agent's
                // answer: ignore it and keep waiting.
                _ => Err(String::new()),
            },
        }
    }

    pub(super) fn advance(&mut self, i: usize, r: ber::Response) {
        let extend = self.extend;
        let job = &mut self.jobs[i];
        let target = job.target.clone();
        if r.tag == ber::TAG_REPORT && job.step != Step::Discover {
            if usm::is_time_window(&r) && job.resyncs < 2 {
                job.resyncs += 1;
                self.ready.push_back(i);
                return;
            }
            self.complete(
                i,
                Err(FetchError::Protocol(format!(
                    "{target}: {}",
                    usm::report_reason(&r)
                ))),
            );
            return;
        }
        if r.error_status != 0 {
            self.complete(
                i,
                Err(FetchError::Protocol(format!(
                    "{target}: SNMP error status {}",
                    r.error_status
                ))),
            );
            return;
        }
        match job.step {
            Step::Discover => job.step = Step::Walk,
            Step::Walk => {
                let mut binds = r.varbinds;
                let first_request = job.result.is_none() && job.cursor == job.line_base;
                if first_request && !binds.is_empty() {
                    let (oid, v) = binds.remove(0);
                    if oid == job.result_oid {
                        if let Value::Integer(n) = v {
                            job.result = Some(n);
                        }
                    }
                }
                let batch = binds
                    .into_iter()
                    .map(|(oid, v)| {
                        let s = match v {
                            Value::Octets(b) => Some(b),
                            _ => None,
                        };
                        (oid, s)
                    })
                    .collect();
                match take_lines(&target, &job.line_base, &job.cursor, batch, &mut job.lines) {
                    Err(e) => {
                        self.complete(i, Err(e));
                        return;
                    }
                    Ok(Some(next)) => job.cursor = next,
                    Ok(None) => {
                        if job.result.is_some() {
                            job.done_reading(extend);
                            self.count_done();
                            return;
                        }
                        job.step = Step::Result;
                    }
                }
            }
            Step::Result => {
                job.result = r.varbinds.iter().find_map(|(o, v)| match v {
                    Value::Integer(n) if *o == job.result_oid => Some(*n),
                    _ => None,
                });
                job.done_reading(extend);
                self.count_done();
                return;
            }
            Step::Done => return,
        }
        self.ready.push_back(i);
    }
}
