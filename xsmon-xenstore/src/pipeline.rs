//! Many read-only requests in flight at once ([`Client::pipeline`]): how
//! dom0 reads thousands of guests in the daemon's time rather than a
//! round trip per key.

use crate::client::Client;
use crate::codec::{check_path, nul_terminated, split_names};
use crate::error::{Error, Result};
use crate::wire::{encode_request, Frame, FrameError, MsgType, XsErrno};
use std::io::Write;
use std::time::Instant;

impl Client {
    /// Sends many read-only requests before waiting for their replies,
    /// keeping a window of them outstanding: the daemon always has the next
    /// request queued while the client reads the last reply, so a batch
    /// costs the daemon's work, not a round trip per key. This is how dom0
    /// reads thousands of guests quickly. Each request gets its own result;
    /// a connection failure fails the remaining ones.
    pub fn pipeline(&mut self, requests: &[Request]) -> Vec<Result<Reply>> {
        let mut out: Vec<Option<Result<Reply>>> = requests.iter().map(|_| None).collect();
        self.pipeline_each(requests, |i, r| out[i] = Some(r));
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Poisoned("no reply".into()))))
            .collect()
    }

    /// [`Client::pipeline`], handing each request's result to `each` (its
    /// index in `requests`, its result) the moment it is known, once per
    /// request: the caller can work on what has come while the daemon
    /// answers the rest.
    pub fn pipeline_each(
        &mut self,
        requests: &[Request],
        mut each: impl FnMut(usize, Result<Reply>),
    ) {
        // Outstanding at most: well under what a daemon queues per
        // connection; refilled this many at a time, in one write.
        const WINDOW: usize = 256;
        const REFILL: usize = 64;
        if let Some(why) = &self.poisoned {
            let e = Error::Poisoned(why.clone());
            fail_from(&mut each, requests, &Default::default(), 0, &e);
            return;
        }
        let mut pending: std::collections::HashMap<u32, usize> =
            std::collections::HashMap::with_capacity(WINDOW);
        let mut next = 0;
        let mut deadline = Instant::now() + self.timeout;
        loop {
            if pending.len() + REFILL <= WINDOW && next < requests.len() {
                let mut bytes = Vec::with_capacity(REFILL * 64);
                while pending.len() < WINDOW && next < requests.len() {
                    let i = next;
                    next += 1;
                    let (op, path) = requests[i].op_path();
                    if let Err(e) = check_path(op, path) {
                        each(i, Err(e));
                        continue;
                    }
                    let msg_type = match &requests[i] {
                        Request::Read(_) => MsgType::Read,
                        Request::Directory(_) => MsgType::Directory,
                    };
                    let req_id = self.next_req_id;
                    self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
                    bytes.extend_from_slice(&encode_request(
                        msg_type,
                        req_id,
                        0,
                        &nul_terminated(path),
                    ));
                    pending.insert(req_id, i);
                }
                if let Err(source) = self.stream.write_all(&bytes) {
                    let e = self.poison(Error::Io {
                        op: "pipeline",
                        path: String::new(),
                        source,
                    });
                    fail_from(&mut each, requests, &pending, next, &e);
                    return;
                }
                if pending.is_empty() {
                    continue;
                }
            }
            if pending.is_empty() {
                if next >= requests.len() {
                    return;
                }
                continue;
            }
            let frame = match self.next_frame(deadline, "pipeline", "") {
                Ok(f) => f,
                Err(e) => {
                    fail_from(&mut each, requests, &pending, next, &e);
                    return;
                }
            };
            // Each reply resets the wait: the timeout is per request.
            deadline = Instant::now() + self.timeout;
            let (req_id, result) = match frame {
                Ok(frame) => {
                    let Some(&i) = pending.get(&frame.header.req_id) else {
                        continue;
                    };
                    (frame.header.req_id, decode_reply(&requests[i], frame))
                }
                Err(header) => {
                    let Some(&i) = pending.get(&header.req_id) else {
                        continue;
                    };
                    let (op, path) = requests[i].op_path();
                    (
                        header.req_id,
                        Err(Error::Protocol {
                            op,
                            path: path.to_string(),
                            detail: FrameError::TooLong(header).to_string(),
                        }),
                    )
                }
            };
            if let Some(i) = pending.remove(&req_id) {
                each(i, result);
            }
        }
    }
}

/// After a connection failure in a pipeline: the requests waiting for a
/// reply (in their order) and those not sent yet (from `next` on) fail
/// with `e`; one whose path is not valid fails for that, as if sent.
fn fail_from(
    each: &mut impl FnMut(usize, Result<Reply>),
    requests: &[Request],
    pending: &std::collections::HashMap<u32, usize>,
    next: usize,
    e: &Error,
) {
    let mut waiting: Vec<usize> = pending.values().copied().collect();
    waiting.sort_unstable();
    for i in waiting {
        each(i, Err(Error::Poisoned(e.to_string())));
    }
    for (i, r) in requests.iter().enumerate().skip(next) {
        let (op, path) = r.op_path();
        match check_path(op, path) {
            Ok(()) => each(i, Err(Error::Poisoned(e.to_string()))),
            Err(bad) => each(i, Err(bad)),
        }
    }
}

/// A read-only request for [`Client::pipeline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read(String),
    Directory(String),
}

impl Request {
    fn op_path(&self) -> (&'static str, &str) {
        match self {
            Request::Read(p) => ("read", p),
            Request::Directory(p) => ("directory", p),
        }
    }
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Value(Vec<u8>),
    Names(Vec<String>),
}

fn decode_reply(req: &Request, frame: Frame) -> Result<Reply> {
    let (op, path) = req.op_path();
    let expected = match req {
        Request::Read(_) => MsgType::Read,
        Request::Directory(_) => MsgType::Directory,
    };
    match MsgType::from_u32(frame.header.msg_type) {
        Some(MsgType::Error) => Err(Error::Xs {
            op,
            path: path.to_string(),
            errno: XsErrno::from_payload(&frame.payload),
        }),
        Some(t) if t == expected => match req {
            Request::Read(_) => Ok(Reply::Value(frame.payload)),
            Request::Directory(_) => split_names(op, path, &frame.payload).map(Reply::Names),
        },
        _ => Err(Error::Protocol {
            op,
            path: path.to_string(),
            detail: format!("reply of type {} to a {op} request", frame.header.msg_type),
        }),
    }
}
