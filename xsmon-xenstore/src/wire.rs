//! The xenstore wire protocol, as in Xen's public header `io/xs_wire.h`.
//!
//! Every message is a 16-byte header (`type`, `req_id`, `tx_id`, `len`, each a
//! 32-bit integer in the host's byte order) followed by `len` bytes of payload,
//! at most [`PAYLOAD_MAX`]. Nothing here trusts the peer: [`Header::decode`]
//! rejects a length over the bound before anything is allocated for it.

use std::fmt;

/// Size of the fixed message header.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the largest payload either side may send.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: longest absolute path xenstored accepts.
pub const ABS_PATH_MAX: usize = 3072;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    /// Decodes a type number; unknown numbers are `None` (the caller decides
    /// whether that is fatal).
    pub fn from_u32(n: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match n {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// The fixed header of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub msg_type: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

/// A frame the peer sent that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("payload length {} exceeds the protocol's limit of {PAYLOAD_MAX} bytes", .0.len)]
    TooLong(Header),
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.msg_type.to_ne_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_ne_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_ne_bytes());
        out[12..16].copy_from_slice(&self.len.to_ne_bytes());
        out
    }

    /// Decodes a header and checks its length against [`PAYLOAD_MAX`].
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        Header::decode_within(bytes, PAYLOAD_MAX)
    }

    /// Decodes a header and checks its length against `max` bytes.
    pub fn decode_within(bytes: &[u8; HEADER_LEN], max: usize) -> Result<Header, FrameError> {
        let word =
            |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let header = Header {
            msg_type: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        };
        if header.len as usize > max {
            return Err(FrameError::TooLong(header));
        }
        Ok(header)
    }
}

/// Encodes a whole request (header and payload) into one buffer, so that it
/// goes out in a single `write`: `/dev/xen/xenbus` requires that.
pub fn encode_request(msg_type: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= PAYLOAD_MAX);
    let header = Header {
        msg_type: msg_type as u32,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// An incremental frame decoder over bytes read from the peer.
///
/// Bytes go in with [`FrameReader::push`]; complete frames come out of
/// [`FrameReader::next_frame`]. A frame whose header announces more than
/// [`PAYLOAD_MAX`] bytes is reported once as [`FrameError::TooLong`] (with
/// its header, so the caller knows which request it answered) and its
/// payload is then discarded as it arrives, never buffered: the stream stays
/// in step with the peer and nothing is allocated from the peer's number.
/// (oxenstored answers a directory listing longer than 4096 bytes on its
/// unix socket with such a frame.) A caller that trusts its peer with more
/// for one request (dom0's listing of every domain) raises the bound with
/// [`FrameReader::set_max_payload`] for that request only.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes received; those before `start` are already returned.
    buf: Vec<u8>,
    /// Where the next frame begins in `buf`: frames are taken by moving
    /// it, and the bytes before it are dropped only when that is cheap
    /// (a read of many replies is not shifted once per reply).
    start: usize,
    skip: u64,
    max_payload: usize,
}

impl Default for FrameReader {
    fn default() -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            skip: 0,
            max_payload: PAYLOAD_MAX,
        }
    }
}

/// One complete message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// The largest payload accepted (default [`PAYLOAD_MAX`]).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let dropped = self.skip.min(bytes.len() as u64) as usize;
        self.skip -= dropped as u64;
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(&bytes[dropped..]);
    }

    /// Bytes of an over-long payload still to be discarded.
    pub fn skipping(&self) -> u64 {
        self.skip
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed,
    /// or an error if the header announces an over-long payload.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.start..];
        if rest.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&rest[..HEADER_LEN]);
        let header = match Header::decode_within(&head, self.max_payload) {
            Ok(h) => h,
            Err(e) => {
                let here = (header_len_of(&e) as usize).min(rest.len() - HEADER_LEN);
                self.skip = header_len_of(&e) - here as u64;
                self.consume(HEADER_LEN + here);
                return Err(e);
            }
        };
        let total = HEADER_LEN + header.len as usize;
        if rest.len() < total {
            return Ok(None);
        }
        let payload = rest[HEADER_LEN..total].to_vec();
        self.consume(total);
        Ok(Some(Frame { header, payload }))
    }

    /// Marks `n` more bytes as returned; an emptied buffer starts over.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

fn header_len_of(e: &FrameError) -> u64 {
    match e {
        FrameError::TooLong(h) => u64::from(h.len),
    }
}

/// Error names a xenstore daemon sends in an `XS_ERROR` reply
/// (`xsd_errors` in `xs_wire.h`, plus oxenstored's `EQUOTA`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XsErrno {
    Einval,
    Eacces,
    Eexist,
    Eisdir,
    Enoent,
    Enomem,
    Enospc,
    Eio,
    Enotempty,
    Enosys,
    Erofs,
    Ebusy,
    Eagain,
    Eisconn,
    E2big,
    Eperm,
    Equota,
    /// Anything else, kept verbatim (already bounded by the frame size).
    Other(String),
}

impl XsErrno {
    /// Parses the payload of an `XS_ERROR` reply (a name and a NUL).
    pub fn from_payload(payload: &[u8]) -> XsErrno {
        let name = payload.strip_suffix(&[0]).unwrap_or(payload);
        match name {
            b"EINVAL" => XsErrno::Einval,
            b"EACCES" => XsErrno::Eacces,
            b"EEXIST" => XsErrno::Eexist,
            b"EISDIR" => XsErrno::Eisdir,
            b"ENOENT" => XsErrno::Enoent,
            b"ENOMEM" => XsErrno::Enomem,
            b"ENOSPC" => XsErrno::Enospc,
            b"EIO" => XsErrno::Eio,
            b"ENOTEMPTY" => XsErrno::Enotempty,
            b"ENOSYS" => XsErrno::Enosys,
            b"EROFS" => XsErrno::Erofs,
            b"EBUSY" => XsErrno::Ebusy,
            b"EAGAIN" => XsErrno::Eagain,
            b"EISCONN" => XsErrno::Eisconn,
            b"E2BIG" => XsErrno::E2big,
            b"EPERM" => XsErrno::Eperm,
            b"EQUOTA" => XsErrno::Equota,
            other => XsErrno::Other(
                String::from_utf8_lossy(other)
                    .chars()
                    .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                    .take(32)
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            XsErrno::Einval => "EINVAL (invalid argument)",
            XsErrno::Eacces => "EACCES (permission denied)",
            XsErrno::Eexist => "EEXIST (already exists)",
            XsErrno::Eisdir => "EISDIR (is a directory)",
            XsErrno::Enoent => "ENOENT (no such node)",
            XsErrno::Enomem => "ENOMEM (out of memory)",
            XsErrno::Enospc => "ENOSPC (no space)",
            XsErrno::Eio => "EIO (i/o error)",
            XsErrno::Enotempty => "ENOTEMPTY (not empty)",
            XsErrno::Enosys => "ENOSYS (not implemented)",
            XsErrno::Erofs => "EROFS (read-only)",
            XsErrno::Ebusy => "EBUSY (busy)",
            XsErrno::Eagain => "EAGAIN (transaction conflict, try again)",
            XsErrno::Eisconn => "EISCONN (already connected)",
            XsErrno::E2big => "E2BIG (too big)",
            XsErrno::Eperm => "EPERM (operation not permitted)",
            XsErrno::Equota => "EQUOTA (quota exceeded)",
            XsErrno::Other(s) => return write!(f, "{s}"),
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg_type: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            msg_type,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            msg_type: 2,
            req_id: 77,
            tx_id: 9,
            len: 4096,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn over_long_length_is_rejected_before_allocation() {
        let h = Header {
            msg_type: 2,
            req_id: 1,
            tx_id: 0,
            len: u32::MAX,
        };
        assert_eq!(Header::decode(&h.encode()), Err(FrameError::TooLong(h)));
        let mut r = FrameReader::new();
        r.push(&h.encode());
        assert_eq!(r.next_frame(), Err(FrameError::TooLong(h)));
        assert_eq!(r.skipping(), u64::from(u32::MAX));
    }

    #[test]
    fn over_long_payload_is_discarded_and_the_stream_stays_in_step() {
        let big = vec![b'x'; 10_000];
        let mut bytes = frame(1, 4, &big);
        bytes.extend(frame(2, 5, b"next"));
        let mut r = FrameReader::new();
        // Feed in small reads, as a socket would deliver them.
        let mut errors = 0;
        let mut frames = Vec::new();
        for chunk in bytes.chunks(1000) {
            r.push(chunk);
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(FrameError::TooLong(h)) => {
                        assert_eq!(h.req_id, 4);
                        errors += 1;
                    }
                }
            }
            assert!(r.pending() <= 1000 + HEADER_LEN, "buffered {}", r.pending());
        }
        assert_eq!(errors, 1);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload, b"next");
    }

    /// A pipeline's replies arrive by the dozen per read, cut anywhere:
    /// every one comes out once, in order, an over-long one among them is
    /// skipped, and what is kept of returned frames stays bounded.
    #[test]
    fn many_frames_cut_anywhere_come_out_in_order_with_a_bounded_buffer() {
        let mut bytes = Vec::new();
        for i in 0..3000u32 {
            if i == 1500 {
                bytes.extend(frame(2, 99_999, &vec![b'x'; PAYLOAD_MAX + 1]));
            }
            bytes.extend(frame(2, i, format!("value {i}").as_bytes()));
        }
        for read in [7, 4096, 65_536] {
            let mut r = FrameReader::new();
            let mut ids = Vec::new();
            let mut too_long = 0;
            for chunk in bytes.chunks(read) {
                r.push(chunk);
                loop {
                    match r.next_frame() {
                        Ok(Some(f)) => {
                            assert_eq!(f.payload, format!("value {}", f.header.req_id).as_bytes());
                            ids.push(f.header.req_id);
                        }
                        Ok(None) => break,
                        Err(FrameError::TooLong(h)) => {
                            assert_eq!(h.req_id, 99_999);
                            too_long += 1;
                        }
                    }
                }
                assert!(
                    r.buf.len() <= 2 * read + 2 * (HEADER_LEN + PAYLOAD_MAX),
                    "kept {}",
                    r.buf.len()
                );
            }
            assert_eq!(ids, (0..3000).collect::<Vec<_>>(), "reads of {read}");
            assert_eq!(too_long, 1);
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn exactly_payload_max_is_accepted() {
        let payload = vec![b'x'; PAYLOAD_MAX];
        let mut r = FrameReader::new();
        r.push(&frame(2, 1, &payload));
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.payload.len(), PAYLOAD_MAX);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn truncated_frames_wait_for_more_bytes() {
        let bytes = frame(2, 5, b"hello");
        let mut r = FrameReader::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(r.next_frame(), Ok(None), "complete too early at byte {i}");
            r.push(&[*b]);
        }
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.header.req_id, 5);
        assert_eq!(f.payload, b"hello");
    }

    #[test]
    fn several_frames_in_one_read_come_out_in_order() {
        let mut bytes = frame(15, 0, b"path\0token\0");
        bytes.extend(frame(2, 3, b"v"));
        let mut r = FrameReader::new();
        r.push(&bytes);
        assert_eq!(r.next_frame().unwrap().unwrap().header.msg_type, 15);
        assert_eq!(r.next_frame().unwrap().unwrap().payload, b"v");
        assert_eq!(r.next_frame(), Ok(None));
    }

    #[test]
    fn request_encoding_is_header_then_payload() {
        let bytes = encode_request(MsgType::Write, 4, 2, b"/a\0b");
        assert_eq!(bytes.len(), HEADER_LEN + 4);
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&bytes[..HEADER_LEN]);
        let h = Header::decode(&head).unwrap();
        assert_eq!((h.msg_type, h.req_id, h.tx_id, h.len), (11, 4, 2, 4));
        assert_eq!(&bytes[HEADER_LEN..], b"/a\0b");
    }

    #[test]
    fn error_names_map_and_unknown_ones_are_sanitised() {
        assert_eq!(XsErrno::from_payload(b"ENOENT\0"), XsErrno::Enoent);
        assert_eq!(XsErrno::from_payload(b"EQUOTA\0"), XsErrno::Equota);
        assert_eq!(XsErrno::from_payload(b"EAGAIN"), XsErrno::Eagain);
        assert_eq!(
            XsErrno::from_payload(b"EWEIRD\n\x01\0"),
            XsErrno::Other("EWEIRD??".into())
        );
    }

    fn any_chunk() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            // Noise.
            proptest::collection::vec(any::<u8>(), 0..64),
            // A header announcing any length, then part of a payload.
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(t, id, len, p)| {
                    let mut v = Header {
                        msg_type: t % 24,
                        req_id: id,
                        tx_id: 0,
                        len,
                    }
                    .encode()
                    .to_vec();
                    v.extend(p);
                    v
                }),
            // A well-formed frame.
            (
                0u32..24,
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(t, id, p)| frame(t, id, &p)),
        ]
    }

    proptest::proptest! {
        /// Fuzz target (scripts/fuzz): whatever a peer sends, cut however
        /// the socket delivers it, the reader never panics, never hands out
        /// a frame over its bound, and after handing out what is complete it
        /// holds less than one frame (header + bound) for the next one.
        #[test]
        fn fuzz_frame_reader(
            chunks in proptest::collection::vec(any_chunk(), 0..12),
            max in proptest::prop_oneof![proptest::strategy::Just(PAYLOAD_MAX), proptest::strategy::Just(1usize << 20), 0usize..64],
        ) {
            let mut r = FrameReader::new();
            r.set_max_payload(max);
            for c in &chunks {
                r.push(c);
                loop {
                    match r.next_frame() {
                        Ok(Some(f)) => {
                            proptest::prop_assert_eq!(f.payload.len(), f.header.len as usize);
                            proptest::prop_assert!(f.payload.len() <= max);
                        }
                        Ok(None) => break,
                        Err(FrameError::TooLong(h)) => proptest::prop_assert!(h.len as usize > max),
                    }
                }
                proptest::prop_assert!(r.pending() < HEADER_LEN + max, "holds {}", r.pending());
            }
        }
    }

    #[test]
    fn message_types_decode() {
        assert_eq!(MsgType::from_u32(16), Some(MsgType::Error));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(9999), None);
    }
}
