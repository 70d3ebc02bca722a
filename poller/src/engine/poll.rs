//! The poll loop: every dom0's requests over a few non-blocking sockets,
//! paced (requests in flight, packets per second) and timed out; the
//! replies are read in `reply.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::job::{Flight, Job, Limits, Step};
use crate::ber;
use crate::snmp::{FetchError, Served, BULK};
use crate::usm;

/// Sockets per address family.
pub(super) const SOCKETS: usize = 4;

/// The credentials as the engine uses them (v3 keys derived once).
pub(super) enum Auth {
    V2c(Vec<u8>),
    V3(usm::User),
}

pub(super) struct Poll<'a> {
    pub(super) jobs: &'a mut [Job],
    /// Every distinct credential of the poll; each job names its own.
    pub(super) auths: &'a [Auth],
    pub(super) extend: &'a str,
    pub(super) limits: &'a Limits,
    pub(super) progress: &'a dyn Fn(usize, usize),
    pub(super) v4: Vec<UdpSocket>,
    pub(super) v6: Vec<UdpSocket>,
    /// Jobs with a new request to send, in order (capped by in-flight).
    pub(super) ready: VecDeque<usize>,
    /// Jobs whose request went unanswered, to send again (their slot is
    /// already held; only the pace applies; after the new requests).
    pub(super) resend: VecDeque<usize>,
    /// Jobs with a request in flight.
    pub(super) busy: usize,
    /// Request id -> job, for every attempt of the requests in flight.
    pub(super) pending: HashMap<i32, usize>,
    /// Round trips over all dom0s (srtt, rttvar), seconds.
    pub(super) global: Option<(f64, f64)>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, i32)>>,
    pub(super) next_id: i32,
    pub(super) salt: u64,
    pub(super) tokens: f64,
    pub(super) refilled: Instant,
    pub(super) done: usize,
    pub(super) asked: usize,
    pub(super) started: Instant,
    pub(super) stats: Stats,
}

/// What a poll did, for `-v`.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) sent: u64,
    pub(super) resent: u64,
    /// When the last dom0 got its first request.
    pub(super) all_asked: Option<Duration>,
    pub(super) answers: u64,
    /// Replies to abandoned attempts, from elsewhere, or unreadable.
    pub(super) ignored: u64,
}

pub(super) fn bind_sockets(any: &str, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind(any)?;
            s.set_nonblocking(true)?;
            // Room for bursts of replies; root may exceed rmem_max.
            let fd = s.as_fd();
            let want = 8 << 20;
            if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBufForce, &want)
                .is_err()
            {
                let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &want);
            }
            Ok(s)
        })
        .collect()
}

impl<'a> Poll<'a> {
    pub(super) fn new(
        jobs: &'a mut [Job],
        auths: &'a [Auth],
        extend: &'a str,
        limits: &'a Limits,
        progress: &'a dyn Fn(usize, usize),
    ) -> std::io::Result<Poll<'a>> {
        let want_v6 = jobs
            .iter()
            .any(|j| matches!(j.addr, Some(SocketAddr::V6(_))));
        let want_v4 = jobs
            .iter()
            .any(|j| matches!(j.addr, Some(SocketAddr::V4(_))));
        let v4 = if want_v4 {
            bind_sockets("0.0.0.0:0", SOCKETS)?
        } else {
            Vec::new()
        };
        let v6 = if want_v6 {
            bind_sockets("[::]:0", SOCKETS)?
        } else {
            Vec::new()
        };
        let mut ready = VecDeque::with_capacity(jobs.len());
        let mut done = 0;
        for (i, j) in jobs.iter_mut().enumerate() {
            j.sock = i % SOCKETS;
            if j.step == Step::Done {
                done += 1;
            } else {
                ready.push_back(i);
            }
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()) << 32;
        Ok(Poll {
            jobs,
            auths,
            extend,
            limits,
            progress,
            v4,
            v6,
            ready,
            resend: VecDeque::new(),
            busy: 0,
            pending: HashMap::new(),
            global: None,
            timers: BinaryHeap::new(),
            next_id: (seed as i32 & 0x3fff_ffff).max(1),
            salt: seed,
            tokens: 1.0,
            refilled: Instant::now(),
            done,
            asked: 0,
            started: Instant::now(),
            stats: Stats::default(),
        })
    }

    pub(super) fn run(&mut self) {
        let started = Instant::now();
        let total = self.jobs.len();
        let mut buf = vec![0u8; 65536];
        while self.done < total {
            let now = Instant::now();
            self.expire(now);
            let throttled = self.send_ready();
            let wait = self.next_wait(throttled);
            if self.wait_readable(wait) {
                self.receive(&mut buf);
            }
        }
        let failed = self
            .jobs
            .iter()
            .filter(|j| matches!(j.outcome, Some(Err(_))))
            .count();
        tracing::info!(
            "polled {total} dom0s in {} ms: {} requests sent ({} resent), {} answers, {} replies ignored, {failed} dom0s failed",
            started.elapsed().as_millis(),
            self.stats.sent,
            self.stats.resent,
            self.stats.answers,
            self.stats.ignored
        );
        tracing::debug!(
            "every dom0 had its first request after {} ms",
            self.stats.all_asked.map_or(0, |d| d.as_millis())
        );
    }

    /// Sends what is ready, within the caps. True if the pace held some back.
    pub(super) fn send_ready(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.limits.max_pps.max(1));
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate)
            .min((rate / 4.0).max(1.0)); // bursts of at most 250 ms worth
        self.refilled = now;
        loop {
            if self.tokens < 1.0 {
                return !(self.resend.is_empty() && self.ready.is_empty());
            }
            // New requests first: a dom0's silence is timed from its first
            // request, so every dom0 should have one as early as the pace
            // allows; a resend only repeats a question already asked.
            let fresh = if self.busy < self.limits.max_in_flight.max(1) {
                self.ready.pop_front()
            } else {
                None
            };
            let i = match fresh.or_else(|| self.resend.pop_front()) {
                Some(i) => i,
                None => return false,
            };
            if self.jobs[i].step == Step::Done {
                continue;
            }
            let again = self.jobs[i].inflight.is_some();
            match self.send(i, now) {
                Ok(()) => self.tokens -= 1.0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if again {
                        self.resend.push_front(i);
                    } else {
                        self.ready.push_front(i);
                    }
                    return true;
                }
                Err(e) => {
                    let t = self.jobs[i].target.clone();
                    self.complete(i, Err(FetchError::Protocol(format!("{t}: {e}"))));
                }
            }
        }
    }

    pub(super) fn send(&mut self, i: usize, now: Instant) -> std::io::Result<()> {
        let id = self.next_id;
        self.next_id = if self.next_id >= 0x7fff_fff0 {
            1
        } else {
            self.next_id + 1
        };
        let bytes = self.request_bytes(i, id);
        let job = &self.jobs[i];
        let Some(addr) = job.addr else {
            return Err(std::io::Error::other("no address"));
        };
        let sock = match addr {
            SocketAddr::V4(_) => &self.v4[job.sock],
            SocketAddr::V6(_) => &self.v6[job.sock],
        };
        sock.send_to(&bytes, addr)?;
        self.stats.sent += 1;
        let budget = self.limits.timeout * (self.limits.retries + 1);
        let global = self.global;
        let job = &mut self.jobs[i];
        job.attempts += 1;
        let heard = *job.heard.get_or_insert(now);
        job.first_sent.get_or_insert(now);
        // Resend after the RTO, but look again no later than the end of
        // the silence budget.
        let due = (now + job.rto(self.limits, global))
            .min(heard + budget)
            .max(now);
        match &mut job.inflight {
            Some(f) => {
                f.ids.push(id);
                self.stats.resent += 1;
            }
            None => {
                job.inflight = Some(Flight {
                    ids: vec![id],
                    first_sent: now,
                });
                self.busy += 1;
                if job.attempts == 1 {
                    self.asked += 1;
                    if self.asked == self.jobs.len() {
                        self.stats.all_asked = Some(self.started.elapsed());
                    }
                }
            }
        }
        self.pending.insert(id, i);
        self.timers.push(Reverse((due, id)));
        Ok(())
    }

    /// The request of job `i` is answered or abandoned: forget its ids.
    pub(super) fn land(&mut self, i: usize) -> Option<Flight> {
        let f = self.jobs[i].inflight.take()?;
        for id in &f.ids {
            self.pending.remove(id);
        }
        self.busy -= 1;
        Some(f)
    }

    pub(super) fn request_bytes(&mut self, i: usize, id: i32) -> Vec<u8> {
        let job = &self.jobs[i];
        let pdu = match job.step {
            Step::Discover => return usm::discovery(id),
            Step::Walk if job.result.is_none() && job.cursor == job.line_base => {
                // The first walk request also asks for nsExtendResult (as a
                // non-repeater, GETNEXT on the OID just before it): one
                // round trip for a small dom0's whole answer.
                let mut before = job.result_oid.clone();
                before.pop();
                ber::request_pdu(
                    ber::TAG_GETBULK,
                    id,
                    1,
                    i64::from(BULK),
                    &[&before, &job.cursor],
                )
            }
            Step::Walk => {
                ber::request_pdu(ber::TAG_GETBULK, id, 0, i64::from(BULK), &[&job.cursor])
            }
            Step::Result | Step::Done => {
                ber::request_pdu(ber::TAG_GET, id, 0, 0, &[&job.result_oid])
            }
        };
        match &self.auths[job.auth] {
            Auth::V2c(c) => ber::v2c_message(c, &pdu),
            Auth::V3(user) => {
                self.salt = self.salt.wrapping_add(1);
                match &job.engine {
                    Some(e) => usm::request(user, e, id, self.salt, &pdu),
                    None => usm::discovery(id),
                }
            }
        }
    }

    /// Handles attempts whose time ran out: resend within the silence
    /// budget, or give up.
    pub(super) fn expire(&mut self, now: Instant) {
        let budget = self.limits.timeout * (self.limits.retries + 1);
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(&i) = self.pending.get(&id) else {
                continue;
            };
            // Only the latest attempt's timer counts.
            if self.jobs[i].inflight.as_ref().map(Flight::last_id) != Some(id) {
                continue;
            }
            let silent_for = self.jobs[i]
                .heard
                .map_or(Duration::ZERO, |h| now.duration_since(h));
            if silent_for >= budget {
                self.land(i);
                self.jobs[i].give_up(self.limits);
                self.count_done();
            } else {
                self.resend.push_back(i);
            }
        }
    }

    pub(super) fn count_done(&mut self) {
        self.done += 1;
        (self.progress)(self.done, self.jobs.len());
    }

    pub(super) fn complete(&mut self, i: usize, outcome: Result<Served, FetchError>) {
        self.land(i);
        self.jobs[i].finish(outcome);
        self.count_done();
    }

    pub(super) fn next_wait(&self, throttled: bool) -> Duration {
        let now = Instant::now();
        let timer = self
            .timers
            .peek()
            .map(|Reverse((t, _))| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100));
        if throttled {
            timer.min(Duration::from_millis(1))
        } else {
            timer
        }
    }

    pub(super) fn wait_readable(&self, wait: Duration) -> bool {
        let mut fds: Vec<PollFd<'_>> = self
            .v4
            .iter()
            .chain(&self.v6)
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = wait.as_millis().min(1000) as u16;
        matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
    }
}
