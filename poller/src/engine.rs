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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::ber::{self, Value};
use crate::snmp::{index, take_lines, Credentials, FetchError, Served, BULK, NS_EXTEND};
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

/// Sockets per address family.
const SOCKETS: usize = 4;
/// Retransmission timeout floor once a dom0 has answered.
const MIN_RTO: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Discover,
    Walk,
    Result,
    Done,
}

/// One request and its attempts. A reply to any attempt of it answers it
/// (they ask the same thing); a reply to an earlier request of the dom0 is
/// never taken for this one (its ids are forgotten when it is answered).
struct Flight {
    ids: Vec<i32>,
    first_sent: Instant,
}

impl Flight {
    fn last_id(&self) -> i32 {
        *self.ids.last().unwrap_or(&0)
    }
}

struct Job {
    target: String,
    addr: Option<SocketAddr>,
    sock: usize,
    step: Step,
    line_base: Vec<u64>,
    result_oid: Vec<u64>,
    cursor: Vec<u64>,
    lines: Vec<String>,
    result: Option<i64>,
    engine: Option<usm::Engine>,
    resyncs: u8,
    /// When the dom0 last answered (or, before that, when we first asked).
    heard: Option<Instant>,
    answered: bool,
    srtt: Option<f64>,
    rttvar: f64,
    /// The request in flight, with every attempt at it.
    inflight: Option<Flight>,
    attempts: u32,
    /// When the first request went out, and how long the dom0 took from
    /// then to its outcome.
    first_sent: Option<Instant>,
    elapsed: Duration,
    outcome: Option<Result<Served, FetchError>>,
}

impl Job {
    fn new(target: &str, extend: &str) -> Job {
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
    fn rto(&self, limits: &Limits, global: Option<(f64, f64)>) -> Duration {
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

    fn sample_rtt(&mut self, rtt: Duration) {
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

    fn finish(&mut self, outcome: Result<Served, FetchError>) {
        self.elapsed = self.first_sent.map_or(Duration::ZERO, |t| t.elapsed());
        self.step = Step::Done;
        self.inflight = None;
        self.outcome = Some(outcome);
    }

    /// The walk and the result are read: the dom0's answer.
    fn done_reading(&mut self, extend: &str) {
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
    fn give_up(&mut self, limits: &Limits) {
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

/// The credentials as the engine uses them (v3 keys derived once).
enum Auth {
    V2c(Vec<u8>),
    V3(usm::User),
}

/// What polling one dom0 gave, and how long it took from its first request.
pub struct Fetched {
    pub outcome: Result<Served, FetchError>,
    pub elapsed: Duration,
}

/// Polls `extend` on every target (`host:port`) at once. Results come back
/// in the order of `targets`. `progress` is called with (done, total).
pub fn fetch_all(
    targets: &[String],
    extend: &str,
    creds: &Credentials,
    limits: &Limits,
    progress: &dyn Fn(usize, usize),
) -> Vec<Fetched> {
    let auth = match creds {
        Credentials::V2c { community } => Auth::V2c(community.as_bytes().to_vec()),
        Credentials::V3 {
            user,
            auth,
            privacy,
        } => Auth::V3(usm::User::new(user, auth, privacy)),
    };
    let mut jobs: Vec<Job> = targets.iter().map(|t| Job::new(t, extend)).collect();
    let addrs = resolve_all(targets);
    for (job, addr) in jobs.iter_mut().zip(addrs) {
        match addr {
            Ok(a) => job.addr = Some(a),
            Err(e) => job.finish(Err(FetchError::Protocol(e))),
        }
        if matches!(auth, Auth::V3(_)) && job.step != Step::Done {
            job.step = Step::Discover;
        }
    }
    match Poll::new(&mut jobs, &auth, extend, limits, progress) {
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
    fetch_all(&[target.to_string()], name, creds, &limits, &|_, _| {})
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

struct Poll<'a> {
    jobs: &'a mut [Job],
    auth: &'a Auth,
    extend: &'a str,
    limits: &'a Limits,
    progress: &'a dyn Fn(usize, usize),
    v4: Vec<UdpSocket>,
    v6: Vec<UdpSocket>,
    /// Jobs with a new request to send, in order (capped by in-flight).
    ready: VecDeque<usize>,
    /// Jobs whose request went unanswered, to send again (their slot is
    /// already held; only the pace applies; after the new requests).
    resend: VecDeque<usize>,
    /// Jobs with a request in flight.
    busy: usize,
    /// Request id -> job, for every attempt of the requests in flight.
    pending: HashMap<i32, usize>,
    /// Round trips over all dom0s (srtt, rttvar), seconds.
    global: Option<(f64, f64)>,
    timers: BinaryHeap<Reverse<(Instant, i32)>>,
    next_id: i32,
    salt: u64,
    tokens: f64,
    refilled: Instant,
    done: usize,
    asked: usize,
    started: Instant,
    stats: Stats,
}

/// What a poll did, for `-v`.
#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    resent: u64,
    /// When the last dom0 got its first request.
    all_asked: Option<Duration>,
    answers: u64,
    /// Replies to abandoned attempts, from elsewhere, or unreadable.
    ignored: u64,
}

fn bind_sockets(any: &str, n: usize) -> std::io::Result<Vec<UdpSocket>> {
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
    fn new(
        jobs: &'a mut [Job],
        auth: &'a Auth,
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
            auth,
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

    fn run(&mut self) {
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
    fn send_ready(&mut self) -> bool {
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

    fn send(&mut self, i: usize, now: Instant) -> std::io::Result<()> {
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
    fn land(&mut self, i: usize) -> Option<Flight> {
        let f = self.jobs[i].inflight.take()?;
        for id in &f.ids {
            self.pending.remove(id);
        }
        self.busy -= 1;
        Some(f)
    }

    fn request_bytes(&mut self, i: usize, id: i32) -> Vec<u8> {
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
        match self.auth {
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
    fn expire(&mut self, now: Instant) {
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

    fn count_done(&mut self) {
        self.done += 1;
        (self.progress)(self.done, self.jobs.len());
    }

    fn complete(&mut self, i: usize, outcome: Result<Served, FetchError>) {
        self.land(i);
        self.jobs[i].finish(outcome);
        self.count_done();
    }

    fn next_wait(&self, throttled: bool) -> Duration {
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

    fn wait_readable(&self, wait: Duration) -> bool {
        let mut fds: Vec<PollFd<'_>> = self
            .v4
            .iter()
            .chain(&self.v6)
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = wait.as_millis().min(1000) as u16;
        matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
    }

    fn receive(&mut self, buf: &mut [u8]) {
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
    fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        let id = match self.auth {
            Auth::V2c(_) => ber::peek_v2c_req_id(datagram),
            Auth::V3(_) => usm::parse(datagram).ok().map(|m| m.msg_id),
        };
        let Some(&i) = id.and_then(|id| self.pending.get(&id)) else {
            self.stats.ignored += 1; // a late reply to an abandoned attempt, or noise
            return;
        };
        let id = id.unwrap_or_default();
        if self.jobs[i].addr != Some(from) {
            self.stats.ignored += 1; // not from the dom0 we asked: keep waiting
            return;
        }
        let response = match self.auth {
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
        if response.req_id != id && !matches!(self.auth, Auth::V3(_)) {
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
    fn open_v3(
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
                Ok(r) if r.tag == ber::TAG_REPORT => Err(usm::report_reason(&r)),
                // A packet that fails authentication is not the agent's
                // answer: ignore it and keep waiting.
                _ => Err(String::new()),
            },
        }
    }

    fn advance(&mut self, i: usize, r: ber::Response) {
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
