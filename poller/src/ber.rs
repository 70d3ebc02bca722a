//! The few SNMP messages the poller sends and reads, in BER (X.690), as
//! RFC 3416 (SNMPv2c) and RFC 3412/3414 (SNMPv3 with USM) lay them out.
//!
//! The poller asks one thing of every dom0 (GET and GETBULK on
//! NET-SNMP-EXTEND-MIB), so it encodes those requests itself and decodes
//! responses with a strict, bounded reader: every length is checked against
//! what is left of the datagram, integers are at most 8 bytes, OIDs at most
//! 128 sub-identifiers. Whatever a hostile or broken dom0 sends is an
//! error, never a panic (see the fuzz target in `report`).

use std::fmt;

pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_NULL: u8 = 0x05;
pub const TAG_OID: u8 = 0x06;
pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_GET: u8 = 0xa0;
pub const TAG_RESPONSE: u8 = 0xa2;
pub const TAG_GETBULK: u8 = 0xa5;
pub const TAG_REPORT: u8 = 0xa8;
/// noSuchObject, noSuchInstance, endOfMibView.
pub const TAG_EXCEPTIONS: [u8; 3] = [0x80, 0x81, 0x82];

const MAX_OID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BerError(pub String);

impl fmt::Display for BerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(what: &str) -> Result<T, BerError> {
    Err(BerError(what.to_string()))
}

// ---- encoding -------------------------------------------------------------

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A TLV with `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

pub fn integer(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // Drop leading bytes that only repeat the sign.
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(TAG_INTEGER, &bytes[start..])
}

pub fn octets(v: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, v)
}

pub fn oid(parts: &[u64]) -> Vec<u8> {
    let mut content = Vec::with_capacity(parts.len() + 2);
    let (first, rest) = match parts {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    for v in std::iter::once(first).chain(rest.iter().copied()) {
        let mut stack = [0u8; 10];
        let mut n = 0;
        let mut x = v;
        loop {
            stack[n] = (x & 0x7f) as u8;
            n += 1;
            x >>= 7;
            if x == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            content.push(stack[i] | if i > 0 { 0x80 } else { 0 });
        }
    }
    tlv(TAG_OID, &content)
}

pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

/// A request PDU (GET or GETBULK): request-id, then error-status and
/// error-index (for GETBULK: non-repeaters and max-repetitions), then the
/// varbinds with NULL values.
pub fn request_pdu(tag: u8, req_id: i32, a: i64, b: i64, oids: &[&[u64]]) -> Vec<u8> {
    let binds: Vec<Vec<u8>> = oids
        .iter()
        .map(|o| sequence(&[&oid(o), &tlv(TAG_NULL, &[])]))
        .collect();
    let binds: Vec<&[u8]> = binds.iter().map(Vec::as_slice).collect();
    tlv(
        tag,
        &[
            integer(i64::from(req_id)),
            integer(a),
            integer(b),
            sequence(&binds),
        ]
        .concat(),
    )
}

/// An SNMPv2c message: version 1 (v2c), community, PDU.
pub fn v2c_message(community: &[u8], pdu: &[u8]) -> Vec<u8> {
    sequence(&[&integer(1), &octets(community), pdu])
}

// ---- decoding -------------------------------------------------------------

/// A bounded reader over one TLV sequence.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next TLV: its tag, its content, and the whole TLV's bytes.
    pub fn next_tlv(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), BerError> {
        let whole = self.buf;
        let (&tag, rest) = whole.split_first().ok_or(BerError("truncated".into()))?;
        let (&first, mut rest) = rest.split_first().ok_or(BerError("truncated".into()))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return err("bad length");
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return err("length past the end of the message");
        }
        let header = whole.len() - rest.len();
        self.buf = &rest[len..];
        Ok((tag, &rest[..len], &whole[..header + len]))
    }

    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], BerError> {
        let (t, content, _) = self.next_tlv()?;
        if t != tag {
            return Err(BerError(format!("expected tag 0x{tag:02x}, got 0x{t:02x}")));
        }
        Ok(content)
    }

    pub fn integer(&mut self) -> Result<i64, BerError> {
        decode_integer(self.expect(TAG_INTEGER)?)
    }

    pub fn octets(&mut self) -> Result<&'a [u8], BerError> {
        self.expect(TAG_OCTET_STRING)
    }

    pub fn sequence(&mut self) -> Result<Reader<'a>, BerError> {
        self.expect(TAG_SEQUENCE).map(Reader::new)
    }
}

pub fn decode_integer(c: &[u8]) -> Result<i64, BerError> {
    if c.is_empty() || c.len() > 8 {
        return err("bad integer");
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in c {
        v = (v << 8) | i64::from(b);
    }
    Ok(v)
}

pub fn decode_oid(c: &[u8]) -> Result<Vec<u64>, BerError> {
    let mut out = Vec::with_capacity(c.len() + 1);
    let mut v: u64 = 0;
    let mut in_progress = false;
    for &b in c {
        if v > (u64::MAX >> 7) {
            return err("OID sub-identifier too large");
        }
        v = (v << 7) | u64::from(b & 0x7f);
        in_progress = b & 0x80 != 0;
        if !in_progress {
            if out.is_empty() {
                let first = (v / 40).min(2);
                out.push(first);
                out.push(v - first * 40);
            } else {
                out.push(v);
            }
            v = 0;
            if out.len() > MAX_OID_LEN {
                return err("OID too long");
            }
        }
    }
    if in_progress || out.is_empty() {
        return err("bad OID");
    }
    Ok(out)
}

/// A varbind's value, as far as the poller cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    Octets(Vec<u8>),
    /// noSuchObject, noSuchInstance or endOfMibView.
    Missing,
    /// Any other type (counters, addresses...).
    Other(u8),
}

/// A response (or report) PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub tag: u8,
    pub req_id: i32,
    pub error_status: i64,
    pub varbinds: Vec<(Vec<u64>, Value)>,
}

/// Decodes a PDU (the `[A2]` response or `[A8]` report TLV).
pub fn decode_pdu(tlv_bytes: &[u8]) -> Result<Response, BerError> {
    let mut r = Reader::new(tlv_bytes);
    let (tag, content, _) = r.next_tlv()?;
    if tag != TAG_RESPONSE && tag != TAG_REPORT {
        return Err(BerError(format!("not a response (tag 0x{tag:02x})")));
    }
    let mut p = Reader::new(content);
    let req_id = p.integer()?;
    let req_id = i32::try_from(req_id).map_err(|_| BerError("request id out of range".into()))?;
    let error_status = p.integer()?;
    let _error_index = p.integer()?;
    let mut binds = p.sequence()?;
    let mut varbinds = Vec::new();
    while !binds.is_empty() {
        let mut b = binds.sequence()?;
        let name = decode_oid(b.expect(TAG_OID)?)?;
        let (t, c, _) = b.next_tlv()?;
        let value = match t {
            TAG_INTEGER => Value::Integer(decode_integer(c)?),
            TAG_OCTET_STRING => Value::Octets(c.to_vec()),
            t if TAG_EXCEPTIONS.contains(&t) => Value::Missing,
            t => Value::Other(t),
        };
        varbinds.push((name, value));
        if varbinds.len() > 1000 {
            return err("too many varbinds");
        }
    }
    Ok(Response {
        tag,
        req_id,
        error_status,
        varbinds,
    })
}

/// Decodes an SNMPv2c message: its community and response PDU.
pub fn decode_v2c(datagram: &[u8]) -> Result<(Vec<u8>, Response), BerError> {
    let mut outer = Reader::new(datagram);
    let mut m = outer.sequence()?;
    if m.integer()? != 1 {
        return err("not an SNMPv2c message");
    }
    let community = m.octets()?.to_vec();
    let (_, _, pdu) = m.next_tlv()?;
    Ok((community, decode_pdu(pdu)?))
}

/// The request id of a v2c message, cheaply, to find whom it answers.
pub fn peek_v2c_req_id(datagram: &[u8]) -> Option<i32> {
    let mut outer = Reader::new(datagram);
    let mut m = outer.sequence().ok()?;
    m.integer().ok()?;
    m.octets().ok()?;
    let (_, content, _) = m.next_tlv().ok()?;
    let id = Reader::new(content).integer().ok()?;
    i32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_oids_round_trip() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
        ] {
            let e = integer(v);
            assert_eq!(Reader::new(&e).integer().unwrap(), v, "{v}");
        }
        let o = [
            1u64,
            3,
            6,
            1,
            4,
            1,
            8072,
            1,
            3,
            2,
            4,
            1,
            2,
            23,
            98,
            4_294_967_295,
        ];
        let e = oid(&o);
        assert_eq!(
            decode_oid(Reader::new(&e).expect(TAG_OID).unwrap()).unwrap(),
            o
        );
    }

    #[test]
    fn a_getbulk_is_byte_for_byte_what_net_snmp_sends() {
        // Captured from Debian 12's net-snmp 5.9 with a UDP listener:
        // `snmpbulkget -v2c -c public -Cn0 -Cr40 127.0.0.1:16999 1.3.6.1.2.1.1`
        // (its request id was 0x089d6d12).
        let captured =
            "302702010104067075626c6963a51a0204089d6d12020100020128300c300a06062b06010201010500";
        let pdu = request_pdu(TAG_GETBULK, 0x089d_6d12, 0, 40, &[&[1, 3, 6, 1, 2, 1, 1]]);
        let msg = v2c_message(b"public", &pdu);
        let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, captured);
        assert_eq!(peek_v2c_req_id(&msg), Some(0x089d_6d12));
    }

    #[test]
    fn truncated_and_oversized_input_is_an_error() {
        let pdu = request_pdu(TAG_GET, 7, 0, 0, &[&[1, 3, 6]]);
        let msg = v2c_message(b"c", &pdu);
        for cut in 0..msg.len() {
            assert!(decode_v2c(&msg[..cut]).is_err());
        }
        assert!(Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff])
            .octets()
            .is_err());
        assert!(decode_integer(&[1; 9]).is_err());
    }
}
