//! The connection: opening the daemon's socket or the guest's xenbus
//! device, one request and its reply with a deadline, and watch events.
//! Batches of reads are in [`crate::pipeline`], node operations and
//! transactions in [`crate::store`].

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::codec::{nul_terminated, op_name, string_reply};
use crate::error::{Error, Result};
use crate::wire::{encode_request, Frame, FrameError, FrameReader, MsgType, XsErrno, PAYLOAD_MAX};

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
pub(crate) trait Stream: Read + Write + AsFd + Send {}
impl<T: Read + Write + AsFd + Send> Stream for T {}

/// A connection to xenstore.
pub struct Client {
    pub(crate) stream: Box<dyn Stream>,
    pub(crate) path: PathBuf,
    pub(crate) reader: FrameReader,
    pub(crate) next_req_id: u32,
    pub(crate) timeout: Duration,
    pub(crate) poisoned: Option<String>,
    /// Where the socket is read into: allocated once (a reply's read must
    /// not zero a buffer first), large enough for many replies at once.
    read_buf: Box<[u8]>,
    /// Watch events received and not yet taken ([`Client::wait_event`]),
    /// at most [`MAX_QUEUED_EVENTS`] (the oldest are dropped).
    events: std::collections::VecDeque<WatchEvent>,
}

/// Watch events kept while nobody waits for them: a flood (thousands of
/// domains starting) must not grow the queue without bound; whoever
/// waits wants to know that something changed, not every event.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Bytes read from the daemon at once: a pipeline's replies come in
/// dozens per read when the daemon is ahead.
const READ_BUF: usize = 64 << 10;

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
            read_buf: vec![0u8; READ_BUF].into_boxed_slice(),
            events: std::collections::VecDeque::new(),
        })
    }

    /// Asks the daemon to send an event whenever `path` (or anything under
    /// it, or the special `@releaseDomain` / `@introduceDomain`) changes.
    /// The daemon fires each watch once when it is set.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        self.request(0, MsgType::Watch, path, &watch_payload(path, token))
            .map(drop)
    }

    /// Removes a watch set by [`Client::watch`] with the same path and
    /// token.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<()> {
        self.request(0, MsgType::Unwatch, path, &watch_payload(path, token))
            .map(drop)
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

    /// Sends one request and waits for its reply. Every operation goes
    /// through here.
    pub(crate) fn request(
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
    pub(crate) fn next_frame(
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
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    return Err(self.poison(Error::Closed {
                        op,
                        path: path.to_string(),
                    }))
                }
                Ok(n) => self.reader.push(&self.read_buf[..n]),
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

    /// Marks the connection unusable: after a broken frame or a closed
    /// stream nothing that follows can be trusted to line up.
    pub(crate) fn poison(&mut self, err: Error) -> Error {
        self.poisoned = Some(err.to_string());
        err
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
/// A watch's (or unwatch's) payload: the path and the token, each
/// NUL-terminated.
fn watch_payload(path: &str, token: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(path.len() + token.len() + 2);
    payload.extend_from_slice(path.as_bytes());
    payload.push(0);
    payload.extend_from_slice(token.as_bytes());
    payload.push(0);
    payload
}
