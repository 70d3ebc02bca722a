use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};
use crate::perms::Perm;
use crate::wire::{
    encode_request, Frame, FrameError, FrameReader, MsgType, XsErrno, ABS_PATH_MAX, HEADER_LEN,
    PAYLOAD_MAX,
};

/// How long a request may wait for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Xen's own tools look for xenstore, in their order: `XENSTORED_PATH`
/// alone when it is set, otherwise the daemon's sockets, then the guest's
/// xenbus device, then `/proc/xen/xenbus` (kernels before 3.14 have no
/// `/dev/xen/xenbus`; libxenstore falls back to it the same way).
pub fn default_paths() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("XENSTORED_PATH") {
        return vec![PathBuf::from(p)];
    }
    [
        "/run/xenstored/socket",
        "/var/run/xenstored/socket",
        "/dev/xen/xenbus",
        "/proc/xen/xenbus",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// The byte stream to xenstored: a unix socket on dom0, the xenbus character
/// device in a guest. Both carry the same protocol.
trait Stream: Read + Write + AsFd + Send {}
impl<T: Read + Write + AsFd + Send> Stream for T {}

/// A connection to xenstore.
pub struct Client {
    stream: Box<dyn Stream>,
    path: PathBuf,
    reader: FrameReader,
    next_req_id: u32,
    timeout: Duration,
    poisoned: Option<String>,
    /// Watch events received and not yet taken ([`Client::wait_event`]),
    /// at most [`MAX_QUEUED_EVENTS`] (the oldest are dropped).
    events: std::collections::VecDeque<WatchEvent>,
}

/// Watch events kept while nobody waits for them: a flood (thousands of
/// domains starting) must not grow the queue without bound; whoever
/// waits wants to know that something changed, not every event.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// A watch firing: the path that changed (or the special `@releaseDomain`,
/// `@introduceDomain`) and the token given to [`Client::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

impl WatchEvent {
    /// Decodes a `WATCH_EVENT` payload: `path\0token\0`.
    fn decode(payload: &[u8]) -> Option<WatchEvent> {
        let mut parts = payload.split(|b| *b == 0);
        let path = String::from_utf8(parts.next()?.to_vec()).ok()?;
        let token = String::from_utf8(parts.next()?.to_vec()).ok()?;
        Some(WatchEvent { path, token })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects the way Xen's tools do (see [`default_paths`]).
    pub fn open_default() -> Result<Client> {
        let candidates = default_paths();
        let explicit = std::env::var_os("XENSTORED_PATH").is_some();
        for path in &candidates {
            if !explicit && !path.exists() {
                continue;
            }
            return Client::open(path);
        }
        Err(Error::NoConnection {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Connects to a unix socket or opens a xenbus device at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Client> {
        let path = path.as_ref();
        let connect_err = |source| Error::Connect {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(connect_err)?;
        let stream: Box<dyn Stream> = if meta.file_type().is_socket() {
            let s = UnixStream::connect(path).map_err(connect_err)?;
            // A request is at most 4112 bytes; a write that blocks longer
            // than this means the daemon stopped reading.
            s.set_write_timeout(Some(DEFAULT_TIMEOUT))
                .map_err(connect_err)?;
            Box::new(s)
        } else {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(connect_err)?;
            Box::new(f)
        };
        Ok(Client {
            stream,
            path: path.to_path_buf(),
            reader: FrameReader::new(),
            next_req_id: 1,
            timeout: DEFAULT_TIMEOUT,
            poisoned: None,
            events: std::collections::VecDeque::new(),
        })
    }

    /// Asks the daemon to send an event whenever `path` (or anything under
    /// it, or the special `@releaseDomain` / `@introduceDomain`) changes.
    /// The daemon fires each watch once when it is set.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        let mut payload = Vec::with_capacity(path.len() + token.len() + 2);
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(token.as_bytes());
        payload.push(0);
        self.request(0, MsgType::Watch, path, &payload).map(drop)
    }

    /// The next watch event, waiting at most `timeout`; `None` if none came.
    pub fn wait_event(&mut self, timeout: Duration) -> Result<Option<WatchEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if let Some(why) = &self.poisoned {
                return Err(Error::Poisoned(why.clone()));
            }
            match self.next_frame_or_event(deadline, "watch", "", true) {
                // A stale reply (to a request that timed out) or an
                // over-long frame: skipped, as by every request.
                Ok(_) => {}
                Err(Error::Timeout { .. }) => return Ok(self.events.pop_front()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Where this client is connected.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets how long each request may wait for its reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The path of domain `domid`'s home, e.g. `/local/domain/7`.
    pub fn get_domain_path(&mut self, domid: u32) -> Result<String> {
        let arg = domid.to_string();
        let reply = self.request(0, MsgType::GetDomainPath, &arg, &nul_terminated(&arg))?;
        string_reply("get-domain-path", &arg, reply)
    }

    /// Runs `body` in a transaction and commits it, retrying the whole
    /// transaction when xenstored reports a conflict (EAGAIN), at most
    /// `max_attempts` times. An error from `body` aborts the transaction.
    pub fn transaction<T>(
        &mut self,
        max_attempts: u32,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        for attempt in 1..=max_attempts.max(1) {
            let id = self.transaction_start()?;
            let outcome = body(&mut Transaction { client: self, id });
            match outcome {
                Ok(value) => match self.transaction_end(id, true) {
                    Ok(()) => return Ok(value),
                    Err(e) if e.is_conflict() => {
                        tracing::debug!(attempt, "xenstore transaction conflict, retrying");
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    // Abort; the body's error is the one worth reporting.
                    let _ = self.transaction_end(id, false);
                    if !e.is_conflict() {
                        return Err(e);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 5));
        }
        Err(Error::TooManyConflicts {
            attempts: max_attempts.max(1),
        })
    }

    /// Lists a node's children, trusting the daemon with a reply of up to
    /// `max_bytes` (at least the protocol's 4096) for this one request.
    ///
    /// For dom0's own listings that can outgrow 4096 bytes, such as
    /// `/local/domain` on a host with about 900 domains or more: oxenstored
    /// (Xen 4.17) sends such a listing in one long frame on its socket; C
    /// xenstored answers E2BIG, and the listing is then read in parts
    /// (`XS_DIRECTORY_PART`). A reply over `max_bytes` is an error for this
    /// listing (its payload is discarded, never buffered), the connection
    /// stays usable. Never use it for a node a guest controls.
    pub fn directory_trusted(&mut self, path: &str, max_bytes: usize) -> Result<Vec<String>> {
        check_path("directory", path)?;
        let before = self.reader.max_payload();
        self.reader.set_max_payload(max_bytes.max(PAYLOAD_MAX));
        let reply = self.request(0, MsgType::Directory, path, &nul_terminated(path));
        self.reader.set_max_payload(before);
        match reply {
            Ok(reply) => split_names("directory", path, &reply),
            Err(e) if e.errno() == Some(&XsErrno::E2big) => directory_in_parts(self, path),
            Err(e) => Err(e),
        }
    }

    /// Starts a transaction by hand; prefer [`Client::transaction`].
    pub fn transaction_start(&mut self) -> Result<u32> {
        let reply = self.request(0, MsgType::TransactionStart, "", b"\0")?;
        let text = string_reply("transaction-start", "", reply)?;
        text.parse::<u32>().map_err(|_| Error::Protocol {
            op: "transaction-start",
            path: String::new(),
            detail: format!("transaction id {text:?} is not a number"),
        })
    }

    /// Ends transaction `id`, committing it when `commit` is true.
    pub fn transaction_end(&mut self, id: u32, commit: bool) -> Result<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(id, MsgType::TransactionEnd, "", arg).map(drop)
    }

    /// Sends one request and waits for its reply. Every operation goes
    /// through here.
    fn request(
        &mut self,
        tx_id: u32,
        msg_type: MsgType,
        path: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        let op = op_name(msg_type);
        if let Some(why) = &self.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        if payload.len() > PAYLOAD_MAX {
            return Err(Error::RequestTooLarge {
                op,
                path: path.to_string(),
                len: payload.len(),
            });
        }
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        let bytes = encode_request(msg_type, req_id, tx_id, payload);
        if let Err(source) = self.stream.write_all(&bytes) {
            let err = if matches!(
                source.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                Error::Timeout {
                    op,
                    path: path.to_string(),
                    timeout: DEFAULT_TIMEOUT,
                }
            } else {
                Error::Io {
                    op,
                    path: path.to_string(),
                    source,
                }
            };
            return Err(self.poison(err));
        }
        let frame = self.read_reply(req_id, op, path)?;
        match MsgType::from_u32(frame.header.msg_type) {
            Some(MsgType::Error) => Err(Error::Xs {
                op,
                path: path.to_string(),
                errno: XsErrno::from_payload(&frame.payload),
            }),
            Some(t) if t == msg_type => Ok(frame.payload),
            _ => Err(self.poison(Error::Protocol {
                op,
                path: path.to_string(),
                detail: format!("reply of type {} to a {op} request", frame.header.msg_type),
            })),
        }
    }

    /// Reads frames until the reply to `req_id` arrives or the timeout runs
    /// out. Watch events and stale replies (to requests that timed out
    /// earlier) are skipped.
    fn read_reply(&mut self, req_id: u32, op: &'static str, path: &str) -> Result<Frame> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.next_frame(deadline, op, path)? {
                Ok(frame) if frame.header.req_id == req_id => return Ok(frame),
                Ok(frame) => {
                    tracing::debug!(
                        got = frame.header.req_id,
                        want = req_id,
                        "skipping a stale reply"
                    );
                }
                Err(header) if header.req_id == req_id => {
                    // The payload is discarded as it arrives, so the
                    // connection stays usable for the next request.
                    return Err(Error::Protocol {
                        op,
                        path: path.to_string(),
                        detail: FrameError::TooLong(header).to_string(),
                    });
                }
                Err(header) => tracing::debug!(len = header.len, "discarding an over-long frame"),
            }
        }
    }

    /// The next reply frame from the peer (watch events queued for
    /// [`Client::wait_event`]), or the header of an over-long one (its
    /// payload is being discarded).
    fn next_frame(
        &mut self,
        deadline: Instant,
        op: &'static str,
        path: &str,
    ) -> Result<std::result::Result<Frame, crate::wire::Header>> {
        self.next_frame_or_event(deadline, op, path, false)
    }

    /// [`Client::next_frame`]; with `on_event`, it also returns (the event's
    /// frame) once a watch event has been queued.
    fn next_frame_or_event(
        &mut self,
        deadline: Instant,
        op: &'static str,
        path: &str,
        on_event: bool,
    ) -> Result<std::result::Result<Frame, crate::wire::Header>> {
        let mut buf = [0u8; HEADER_LEN + PAYLOAD_MAX];
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) if frame.header.msg_type == MsgType::WatchEvent as u32 => {
                    match WatchEvent::decode(&frame.payload) {
                        Some(e) => {
                            if self.events.len() >= MAX_QUEUED_EVENTS {
                                self.events.pop_front();
                            }
                            self.events.push_back(e);
                        }
                        None => tracing::debug!("skipping a malformed watch event"),
                    }
                    if on_event {
                        return Ok(Ok(frame));
                    }
                    continue;
                }
                Ok(Some(frame)) => return Ok(Ok(frame)),
                Err(FrameError::TooLong(header)) => return Ok(Err(header)),
                Ok(None) => {}
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let readable = !remaining.is_zero()
                && wait_readable(self.stream.as_fd(), remaining).map_err(|source| Error::Io {
                    op,
                    path: path.to_string(),
                    source,
                })?;
            if !readable {
                return Err(Error::Timeout {
                    op,
                    path: path.to_string(),
                    timeout: self.timeout,
                });
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(self.poison(Error::Closed {
                        op,
                        path: path.to_string(),
                    }))
                }
                Ok(n) => self.reader.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(self.poison(Error::Io {
                        op,
                        path: path.to_string(),
                        source,
                    }))
                }
            }
        }
    }

    /// Sends many read-only requests before waiting for their replies,
    /// keeping a window of them outstanding: the daemon always has the next
    /// request queued while the client reads the last reply, so a batch
    /// costs the daemon's work, not a round trip per key. This is how dom0
    /// reads thousands of guests quickly. Each request gets its own result;
    /// a connection failure fails the remaining ones.
    pub fn pipeline(&mut self, requests: &[Request]) -> Vec<Result<Reply>> {
        // Outstanding at most: well under what a daemon queues per
        // connection; refilled this many at a time, in one write.
        const WINDOW: usize = 256;
        const REFILL: usize = 64;
        let mut out: Vec<Result<Reply>> = requests
            .iter()
            .map(|r| {
                let (op, path) = r.op_path();
                check_path(op, path).map(|_| Reply::Value(Vec::new()))
            })
            .collect();
        if let Some(why) = &self.poisoned {
            let why = why.clone();
            for o in out.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(Error::Poisoned(why.clone()));
            }
            return out;
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
                    if out[i].is_err() {
                        continue;
                    }
                    let (msg_type, path) = match &requests[i] {
                        Request::Read(p) => (MsgType::Read, p),
                        Request::Directory(p) => (MsgType::Directory, p),
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
                    fail_from(&mut out, &pending, next, &e);
                    return out;
                }
                if pending.is_empty() {
                    continue;
                }
            }
            if pending.is_empty() {
                if next >= requests.len() {
                    return out;
                }
                continue;
            }
            let frame = match self.next_frame(deadline, "pipeline", "") {
                Ok(f) => f,
                Err(e) => {
                    fail_from(&mut out, &pending, next, &e);
                    return out;
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
                out[i] = result;
            }
        }
    }

    /// Marks the connection unusable: after a broken frame or a closed
    /// stream nothing that follows can be trusted to line up.
    fn poison(&mut self, err: Error) -> Error {
        self.poisoned = Some(err.to_string());
        err
    }
}

/// After a connection failure in a pipeline: the requests waiting for a
/// reply and those not sent yet (from `next` on) fail with `e`.
fn fail_from(
    out: &mut [Result<Reply>],
    pending: &std::collections::HashMap<u32, usize>,
    next: usize,
    e: &Error,
) {
    for &i in pending.values() {
        out[i] = Err(Error::Poisoned(e.to_string()));
    }
    for o in out[next..].iter_mut().filter(|o| o.is_ok()) {
        *o = Err(Error::Poisoned(e.to_string()));
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

/// Waits until `fd` is readable; `Ok(false)` on timeout.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits a little.
        let ms = remaining
            .as_millis()
            .saturating_add(1)
            .min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// A transaction in progress, handed to the body of [`Client::transaction`].
pub struct Transaction<'c> {
    client: &'c mut Client,
    id: u32,
}

impl Transaction<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The node operations, the same inside and outside a transaction.
pub trait Store {
    #[doc(hidden)]
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>>;

    /// Reads a node's value: bytes, not assumed to be UTF-8.
    fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        check_path("read", path)?;
        self.raw_request(MsgType::Read, path, &nul_terminated(path))
    }

    /// Reads a node, `Ok(None)` when it does not exist.
    fn read_opt(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.read(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a value, creating the node and its parents as needed.
    fn write(&mut self, path: &str, value: &[u8]) -> Result<()> {
        check_path("write", path)?;
        let mut payload = Vec::with_capacity(path.len() + 1 + value.len());
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(value);
        self.raw_request(MsgType::Write, path, &payload).map(drop)
    }

    /// Lists a node's children. Lists too long for one reply are read in
    /// parts (`XS_DIRECTORY_PART`), restarting if the node changes meanwhile.
    fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        check_path("directory", path)?;
        match self.raw_request(MsgType::Directory, path, &nul_terminated(path)) {
            Ok(reply) => split_names("directory", path, &reply),
            Err(e) if e.errno() == Some(&XsErrno::E2big) => directory_in_parts(self, path),
            Err(e) => Err(e),
        }
    }

    /// Creates a node (and its parents) with an empty value; fine if it exists.
    fn mkdir(&mut self, path: &str) -> Result<()> {
        check_path("mkdir", path)?;
        self.raw_request(MsgType::Mkdir, path, &nul_terminated(path))
            .map(drop)
    }

    /// Removes a node and everything under it; fine if it does not exist.
    fn rm(&mut self, path: &str) -> Result<()> {
        check_path("rm", path)?;
        match self.raw_request(MsgType::Rm, path, &nul_terminated(path)) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// A node's permission list (owner first).
    fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>> {
        check_path("get-perms", path)?;
        let reply = self.raw_request(MsgType::GetPerms, path, &nul_terminated(path))?;
        split_names("get-perms", path, &reply)?
            .iter()
            .map(|s| {
                s.parse::<Perm>().map_err(|detail| Error::Protocol {
                    op: "get-perms",
                    path: path.to_string(),
                    detail,
                })
            })
            .collect()
    }

    /// Replaces a node's permission list (owner first).
    fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<()> {
        check_path("set-perms", path)?;
        let mut payload = nul_terminated(path);
        for p in perms {
            payload.extend_from_slice(p.to_string().as_bytes());
            payload.push(0);
        }
        self.raw_request(MsgType::SetPerms, path, &payload)
            .map(drop)
    }
}

impl Store for Client {
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.request(0, msg_type, path, payload)
    }
}

impl Store for Transaction<'_> {
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.client.request(self.id, msg_type, path, payload)
    }
}

fn directory_in_parts<S: Store + ?Sized>(store: &mut S, path: &str) -> Result<Vec<String>> {
    // A guest's home can hold at most ~1000 nodes, dom0 can write far more;
    // give up after a bounded number of restarts rather than loop forever.
    'restart: for _ in 0..8 {
        let mut names = Vec::new();
        let mut offset = 0usize;
        let mut generation: Option<Vec<u8>> = None;
        loop {
            let mut payload = nul_terminated(path);
            payload.extend_from_slice(offset.to_string().as_bytes());
            payload.push(0);
            let reply = store.raw_request(MsgType::DirectoryPart, path, &payload)?;
            let (gen, rest) = match reply.iter().position(|&b| b == 0) {
                Some(i) => (reply[..i].to_vec(), &reply[i + 1..]),
                None => {
                    return Err(protocol(
                        "directory",
                        path,
                        "directory part without generation",
                    ))
                }
            };
            match &generation {
                Some(g) if *g != gen => continue 'restart,
                _ => generation = Some(gen),
            }
            // The list ends with an empty name (two NULs in a row).
            let done = rest.is_empty() || rest.ends_with(b"\0\0") || rest == b"\0";
            let chunk = if done {
                rest.strip_suffix(b"\0").unwrap_or(rest)
            } else {
                rest
            };
            let chunk_names = split_names("directory", path, chunk)?;
            if chunk.is_empty() && !done {
                return Err(protocol("directory", path, "empty directory part"));
            }
            offset += chunk.len();
            names.extend(chunk_names);
            if done {
                return Ok(names);
            }
        }
    }
    Err(protocol(
        "directory",
        path,
        "node kept changing while being listed",
    ))
}

fn protocol(op: &'static str, path: &str, detail: &str) -> Error {
    Error::Protocol {
        op,
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

fn check_path(op: &'static str, path: &str) -> Result<()> {
    let reason = if path.is_empty() {
        "empty"
    } else if path.len() > ABS_PATH_MAX {
        "longer than 3072 bytes"
    } else if path.bytes().any(|b| b == 0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPath {
        op,
        path: path.chars().take(200).collect(),
        reason,
    })
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// Splits a reply made of NUL-terminated names. Node names are restricted
/// by xenstored to a small ASCII set, so anything not UTF-8 is an error.
fn split_names(op: &'static str, path: &str, reply: &[u8]) -> Result<Vec<String>> {
    let body = reply.strip_suffix(&[0]).unwrap_or(reply);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .map(|name| {
            String::from_utf8(name.to_vec()).map_err(|_| Error::Protocol {
                op,
                path: path.to_string(),
                detail: "node name is not UTF-8".into(),
            })
        })
        .collect()
}

fn string_reply(op: &'static str, path: &str, reply: Vec<u8>) -> Result<String> {
    let body = reply.strip_suffix(&[0]).unwrap_or(&reply);
    String::from_utf8(body.to_vec()).map_err(|_| Error::Protocol {
        op,
        path: path.to_string(),
        detail: "reply is not UTF-8".into(),
    })
}

fn op_name(t: MsgType) -> &'static str {
    match t {
        MsgType::Read => "read",
        MsgType::Write => "write",
        MsgType::Directory | MsgType::DirectoryPart => "directory",
        MsgType::Mkdir => "mkdir",
        MsgType::Rm => "rm",
        MsgType::GetPerms => "get-perms",
        MsgType::SetPerms => "set-perms",
        MsgType::GetDomainPath => "get-domain-path",
        MsgType::TransactionStart => "transaction-start",
        MsgType::TransactionEnd => "transaction-end",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_nul() {
        assert_eq!(split_names("d", "/", b"a\0bb\0").unwrap(), vec!["a", "bb"]);
        assert!(split_names("d", "/", b"").unwrap().is_empty());
        assert!(split_names("d", "/", b"\xff\0").is_err());
    }

    #[test]
    fn paths_are_checked_before_sending() {
        assert!(check_path("read", "").is_err());
        assert!(check_path("read", "/a\0b").is_err());
        assert!(check_path("read", &"a".repeat(ABS_PATH_MAX + 1)).is_err());
        assert!(check_path("read", "/local/domain/7/data").is_ok());
    }
}
