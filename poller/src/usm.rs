//! SNMPv3 with the User-based Security Model (RFC 3414), as the poller
//! uses it: authPriv with HMAC-SHA-96 authentication and AES-128-CFB
//! privacy (RFC 3826), the pair net-snmp's `createUser NAME SHA ... AES ...`
//! sets up. Engine discovery (a reportable, unauthenticated request that
//! the agent answers with a Report carrying its engine id, boots and time)
//! comes first; then every request is encrypted and authenticated, and
//! every response is checked before it is read.
//!
//! The cryptography is RustCrypto's (`sha1`, `hmac`, `aes`, `cfb-mode`).

use std::time::Instant;

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::ber::{self, BerError, Reader, Response, TAG_OCTET_STRING};

const FLAG_AUTH: u8 = 0x01;
const FLAG_PRIV: u8 = 0x02;
const FLAG_REPORTABLE: u8 = 0x04;
const USM: i64 = 3;
const MAX_SIZE: i64 = 65507;

/// A user's keys before localisation (the expensive part, once per poll).
#[derive(Clone)]
pub struct User {
    pub name: Vec<u8>,
    auth_ku: [u8; 20],
    priv_ku: [u8; 20],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &String::from_utf8_lossy(&self.name))
            .finish_non_exhaustive()
    }
}

/// RFC 3414 A.2.2: a password stretched over 1 MiB into a SHA-1 key.
fn password_to_key(password: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    if !password.is_empty() {
        let mut chunk = [0u8; 64];
        let mut at = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in &mut chunk {
                *b = password[at % password.len()];
                at += 1;
            }
            h.update(chunk);
        }
    }
    h.finalize().into()
}

/// RFC 3414 A.2.2: the key localised to one engine.
fn localize(ku: &[u8; 20], engine_id: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(ku);
    h.update(engine_id);
    h.update(ku);
    h.finalize().into()
}

impl User {
    pub fn new(name: &str, auth_password: &str, priv_password: &str) -> User {
        User {
            name: name.as_bytes().to_vec(),
            auth_ku: password_to_key(auth_password.as_bytes()),
            priv_ku: password_to_key(priv_password.as_bytes()),
        }
    }
}

/// What is known of one agent's engine, and the user's keys for it.
#[derive(Debug, Clone)]
pub struct Engine {
    pub id: Vec<u8>,
    boots: i64,
    time: i64,
    at: Instant,
    auth_key: [u8; 20],
    priv_key: [u8; 16],
}

impl Engine {
    pub fn new(user: &User, id: &[u8], boots: i64, time: i64) -> Engine {
        let auth_key = localize(&user.auth_ku, id);
        let p = localize(&user.priv_ku, id);
        let mut priv_key = [0u8; 16];
        priv_key.copy_from_slice(&p[..16]);
        Engine {
            id: id.to_vec(),
            boots,
            time,
            at: Instant::now(),
            auth_key,
            priv_key,
        }
    }

    /// The engine's time now, by its clock as last reported.
    fn time_now(&self) -> i64 {
        self.time + self.at.elapsed().as_secs() as i64
    }

    fn resync(&mut self, boots: i64, time: i64) {
        self.boots = boots;
        self.time = time;
        self.at = Instant::now();
    }
}

fn usm_params(
    engine: &[u8],
    boots: i64,
    time: i64,
    user: &[u8],
    auth: &[u8],
    privp: &[u8],
) -> Vec<u8> {
    ber::sequence(&[
        &ber::octets(engine),
        &ber::integer(boots),
        &ber::integer(time),
        &ber::octets(user),
        &ber::octets(auth),
        &ber::octets(privp),
    ])
}

fn message(msg_id: i32, flags: u8, params: &[u8], data: &[u8]) -> Vec<u8> {
    ber::sequence(&[
        &ber::integer(3),
        &ber::sequence(&[
            &ber::integer(i64::from(msg_id)),
            &ber::integer(MAX_SIZE),
            &ber::octets(&[flags]),
            &ber::integer(USM),
        ]),
        &ber::octets(params),
        data,
    ])
}

fn scoped_pdu(engine_id: &[u8], pdu: &[u8]) -> Vec<u8> {
    ber::sequence(&[&ber::octets(engine_id), &ber::octets(b""), pdu])
}

/// The discovery request: unauthenticated, reportable, an empty GET.
pub fn discovery(msg_id: i32) -> Vec<u8> {
    let pdu = ber::request_pdu(ber::TAG_GET, msg_id, 0, 0, &[]);
    message(
        msg_id,
        FLAG_REPORTABLE,
        &usm_params(b"", 0, 0, b"", b"", b""),
        &scoped_pdu(b"", &pdu),
    )
}

fn hmac96(key: &[u8; 20], data: &[u8]) -> [u8; 12] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 12];
    out.copy_from_slice(&full[..12]);
    out
}

fn iv(boots: i64, time: i64, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(time as u32).to_be_bytes());
    iv[8..].copy_from_slice(&salt[..8]);
    iv
}

type AesCfbEnc = cfb_mode::Encryptor<aes::Aes128>;
type AesCfbDec = cfb_mode::Decryptor<aes::Aes128>;

/// An authenticated, encrypted request carrying `pdu` (whose request id is
/// `msg_id` too). `salt` must not repeat for this key.
pub fn request(user: &User, engine: &Engine, msg_id: i32, salt: u64, pdu: &[u8]) -> Vec<u8> {
    let time = engine.time_now();
    let salt = salt.to_be_bytes();
    let mut data = scoped_pdu(&engine.id, pdu);
    AesCfbEnc::new(
        &engine.priv_key.into(),
        &iv(engine.boots, time, &salt).into(),
    )
    .encrypt(&mut data);
    let params = |auth: &[u8]| usm_params(&engine.id, engine.boots, time, &user.name, auth, &salt);
    let blank = message(
        msg_id,
        FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE,
        &params(&[0u8; 12]),
        &ber::octets(&data),
    );
    let mac = hmac96(&engine.auth_key, &blank);
    message(
        msg_id,
        FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE,
        &params(&mac),
        &ber::octets(&data),
    )
}

/// A v3 message as received, before its authentication is checked.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub msg_id: i32,
    flags: u8,
    pub engine_id: &'a [u8],
    pub boots: i64,
    pub time: i64,
    auth: &'a [u8],
    salt: &'a [u8],
    data_tag: u8,
    data: &'a [u8],
}

/// Reads the envelope of a v3 message (nothing is trusted yet).
pub fn parse(datagram: &[u8]) -> Result<Incoming<'_>, BerError> {
    let mut outer = Reader::new(datagram);
    let mut m = outer.sequence()?;
    if m.integer()? != 3 {
        return Err(BerError("not an SNMPv3 message".into()));
    }
    let mut global = m.sequence()?;
    let msg_id = i32::try_from(global.integer()?).map_err(|_| BerError("bad msgID".into()))?;
    let _max = global.integer()?;
    let flags = *global
        .octets()?
        .first()
        .ok_or(BerError("empty msgFlags".into()))?;
    if global.integer()? != USM {
        return Err(BerError("not the user-based security model".into()));
    }
    let mut sp = Reader::new(m.octets()?).sequence()?;
    let engine_id = sp.octets()?;
    let boots = sp.integer()?;
    let time = sp.integer()?;
    let _user = sp.octets()?;
    let auth = sp.octets()?;
    let salt = sp.octets()?;
    let (data_tag, data, _) = m.next_tlv()?;
    Ok(Incoming {
        msg_id,
        flags,
        engine_id,
        boots,
        time,
        auth,
        salt,
        data_tag,
        data,
    })
}

/// The PDU of an unauthenticated message (discovery reports, and the
/// reports an agent sends when it cannot authenticate us).
pub fn plain_pdu(m: &Incoming<'_>) -> Result<Response, BerError> {
    if m.flags & FLAG_PRIV != 0 || m.data_tag != ber::TAG_SEQUENCE {
        return Err(BerError("encrypted, not plain".into()));
    }
    scoped(m.data)
}

fn scoped(seq_content: &[u8]) -> Result<Response, BerError> {
    let mut s = Reader::new(seq_content);
    s.octets()?;
    s.octets()?;
    let (_, _, pdu) = s.next_tlv()?;
    ber::decode_pdu(pdu)
}

/// Checks an authenticated, encrypted response against `engine`'s keys and
/// returns its PDU; updates the engine's clock from it.
pub fn open(datagram: &[u8], m: &Incoming<'_>, engine: &mut Engine) -> Result<Response, BerError> {
    if m.flags & (FLAG_AUTH | FLAG_PRIV) != (FLAG_AUTH | FLAG_PRIV) {
        return Err(BerError(
            "response is not authenticated and encrypted".into(),
        ));
    }
    if m.engine_id != engine.id.as_slice() || m.auth.len() != 12 || m.salt.len() != 8 {
        return Err(BerError(
            "response's security parameters do not match".into(),
        ));
    }
    // The MAC covers the whole message with the MAC field zeroed.
    let at = m.auth.as_ptr() as usize - datagram.as_ptr() as usize;
    let mut blank = datagram.to_vec();
    blank[at..at + 12].fill(0);
    if hmac96(&engine.auth_key, &blank) != m.auth {
        return Err(BerError(
            "response failed authentication (wrong auth password?)".into(),
        ));
    }
    if m.data_tag != TAG_OCTET_STRING {
        return Err(BerError("encrypted data expected".into()));
    }
    let mut plain = m.data.to_vec();
    AesCfbDec::new(&engine.priv_key.into(), &iv(m.boots, m.time, m.salt).into())
        .decrypt(&mut plain);
    let content = Reader::new(&plain)
        .expect(ber::TAG_SEQUENCE)
        .map_err(|_| BerError("response does not decrypt (wrong privacy password?)".into()))?;
    let r = scoped(content)?;
    engine.resync(m.boots, m.time);
    Ok(r)
}

/// What a Report PDU says, for a human (RFC 3414's usmStats counters).
pub fn report_reason(r: &Response) -> String {
    const STATS: [&str; 6] = [
        "unsupported security level",
        "not in the time window",
        "unknown user name",
        "unknown engine id",
        "wrong digest (wrong auth password?)",
        "decryption error (wrong privacy password?)",
    ];
    for (oid, _) in &r.varbinds {
        if let [1, 3, 6, 1, 6, 3, 15, 1, 1, n, 0] = oid.as_slice() {
            if let Some(s) = STATS.get((*n as usize).wrapping_sub(1)) {
                return format!("SNMPv3: {s}");
            }
        }
    }
    "SNMPv3: the agent sent a report".into()
}

/// Is this report the agent's "not in time window" (resend with its time)?
pub fn is_time_window(r: &Response) -> bool {
    r.varbinds
        .iter()
        .any(|(o, _)| o.as_slice() == [1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3414_a3_2_sha_key_localisation() {
        // RFC 3414 A.3.2: password "maplesyrup", engine 000000000000000000000002.
        let ku = password_to_key(b"maplesyrup");
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&ku), "9fb5cc0381497b3793528939ff788d5d79145211");
        let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        assert_eq!(
            hex(&localize(&ku, &engine)),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
    }

    #[test]
    fn a_request_opens_with_the_same_keys_and_not_with_others() {
        let user = User::new("u", "auth-pass-123", "priv-pass-123");
        let mut engine = Engine::new(&user, b"\x80\x00\x1f\x88\x04test", 3, 1000);
        let pdu = ber::tlv(
            ber::TAG_RESPONSE,
            &[
                ber::integer(77),
                ber::integer(0),
                ber::integer(0),
                ber::sequence(&[]),
            ]
            .concat(),
        );
        let msg = request(&user, &engine, 77, 5, &pdu);
        let m = parse(&msg).unwrap();
        assert_eq!(m.msg_id, 77);
        assert_eq!(open(&msg, &m, &mut engine).unwrap().req_id, 77);
        let other = User::new("u", "wrong-pass-456", "priv-pass-123");
        let mut wrong = Engine::new(&other, b"\x80\x00\x1f\x88\x04test", 3, 1000);
        assert!(open(&msg, &m, &mut wrong).is_err());
    }
}
