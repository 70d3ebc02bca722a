//! SNMPv3 with the User-based Security Model (RFC 3414), as the poller
//! uses it: authPriv, authenticated with HMAC-SHA-96 (RFC 3414) or
//! HMAC-SHA-2 (RFC 7860: SHA-224, SHA-256, SHA-384, SHA-512) and encrypted
//! with AES-CFB (RFC 3826's AES-128; AES-192 and AES-256 as net-snmp
//! implements them, draft-blumenthal-aes-usm-04 with its key extension):
//! the pairs net-snmp's `createUser NAME SHA-512 ... AES-256 ...` sets up.
//! Engine discovery (a reportable, unauthenticated request that the agent
//! answers with a Report carrying its engine id, boots and time) comes
//! first; then every request is encrypted and authenticated, and every
//! response is checked before it is read.
//!
//! The cryptography is RustCrypto's (`sha1`, `sha2`, `hmac`, `aes`,
//! `cfb-mode`).

use std::time::Instant;

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::{Sha224, Sha256, Sha384, Sha512};

use crate::ber::{self, BerError, Reader, Response, TAG_OCTET_STRING};

const FLAG_AUTH: u8 = 0x01;
const FLAG_PRIV: u8 = 0x02;
const FLAG_REPORTABLE: u8 = 0x04;
const USM: i64 = 3;
const MAX_SIZE: i64 = 65507;

/// The authentication protocol: HMAC with one of these hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol (RFC 3414): SHA-1, 12 octets of MAC.
    #[default]
    Sha1,
    /// usmHMAC128SHA224AuthProtocol (RFC 7860).
    Sha224,
    /// usmHMAC192SHA256AuthProtocol (RFC 7860).
    Sha256,
    /// usmHMAC256SHA384AuthProtocol (RFC 7860).
    Sha384,
    /// usmHMAC384SHA512AuthProtocol (RFC 7860).
    Sha512,
}

impl AuthProtocol {
    pub const ALL: [AuthProtocol; 5] = [
        AuthProtocol::Sha1,
        AuthProtocol::Sha224,
        AuthProtocol::Sha256,
        AuthProtocol::Sha384,
        AuthProtocol::Sha512,
    ];

    /// The name net-snmp gives it (`createUser`, `snmpget -a`).
    pub fn name(self) -> &'static str {
        match self {
            AuthProtocol::Sha1 => "SHA",
            AuthProtocol::Sha224 => "SHA-224",
            AuthProtocol::Sha256 => "SHA-256",
            AuthProtocol::Sha384 => "SHA-384",
            AuthProtocol::Sha512 => "SHA-512",
        }
    }

    /// Reads net-snmp's name for it (any case; "SHA-1" for "SHA").
    pub fn parse(s: &str) -> Result<AuthProtocol, String> {
        let up = s.to_ascii_uppercase();
        if up == "SHA-1" || up == "SHA1" {
            return Ok(AuthProtocol::Sha1);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.name() == up || p.name().replace('-', "") == up)
            .ok_or_else(|| {
                format!("unknown SNMPv3 authentication protocol {s:?}: SHA, SHA-224, SHA-256, SHA-384 or SHA-512")
            })
    }

    /// Octets of the MAC sent in msgAuthenticationParameters.
    fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha224 => 16,
            AuthProtocol::Sha256 => 24,
            AuthProtocol::Sha384 => 32,
            AuthProtocol::Sha512 => 48,
        }
    }

    /// The hash of the parts, one after the other.
    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn h<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            AuthProtocol::Sha1 => h::<Sha1>(parts),
            AuthProtocol::Sha224 => h::<Sha224>(parts),
            AuthProtocol::Sha256 => h::<Sha256>(parts),
            AuthProtocol::Sha384 => h::<Sha384>(parts),
            AuthProtocol::Sha512 => h::<Sha512>(parts),
        }
    }

    /// The MAC of `data` under `key`, cut to [`Self::mac_len`].
    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn m<D: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <D as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            AuthProtocol::Sha1 => m::<Hmac<Sha1>>(key, data),
            AuthProtocol::Sha224 => m::<Hmac<Sha224>>(key, data),
            AuthProtocol::Sha256 => m::<Hmac<Sha256>>(key, data),
            AuthProtocol::Sha384 => m::<Hmac<Sha384>>(key, data),
            AuthProtocol::Sha512 => m::<Hmac<Sha512>>(key, data),
        };
        full.truncate(self.mac_len());
        full
    }

    /// RFC 3414 A.2 (RFC 7860 for SHA-2): a password stretched over 1 MiB
    /// into a key.
    fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        if password.is_empty() {
            return self.hash(&[]);
        }
        let stretched: Vec<u8> = password.iter().copied().cycle().take(1_048_576).collect();
        self.hash(&[&stretched])
    }

    /// RFC 3414 A.2: the key localised to one engine.
    fn localize(self, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        self.hash(&[ku, engine_id, ku])
    }
}

/// The privacy protocol: AES in CFB-128 mode, with a key of this size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PrivProtocol {
    /// usmAesCfb128Protocol (RFC 3826).
    #[default]
    Aes128,
    /// AES-192 as net-snmp's "AES-192" (draft-blumenthal-aes-usm-04).
    Aes192,
    /// AES-256 as net-snmp's "AES-256" (draft-blumenthal-aes-usm-04).
    Aes256,
}

impl PrivProtocol {
    pub const ALL: [PrivProtocol; 3] = [
        PrivProtocol::Aes128,
        PrivProtocol::Aes192,
        PrivProtocol::Aes256,
    ];

    /// The name net-snmp gives it (`createUser`, `snmpget -x`).
    pub fn name(self) -> &'static str {
        match self {
            PrivProtocol::Aes128 => "AES",
            PrivProtocol::Aes192 => "AES-192",
            PrivProtocol::Aes256 => "AES-256",
        }
    }

    /// Reads net-snmp's name for it (any case; "AES-128" for "AES").
    pub fn parse(s: &str) -> Result<PrivProtocol, String> {
        let up = s.to_ascii_uppercase();
        if up == "AES-128" || up == "AES128" {
            return Ok(PrivProtocol::Aes128);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.name() == up || p.name().replace('-', "") == up)
            .ok_or_else(|| {
                format!("unknown SNMPv3 privacy protocol {s:?}: AES (AES-128), AES-192 or AES-256 (DES is not offered)")
            })
    }

    fn key_len(self) -> usize {
        match self {
            PrivProtocol::Aes128 => 16,
            PrivProtocol::Aes192 => 24,
            PrivProtocol::Aes256 => 32,
        }
    }

    /// The privacy key from the localised key: its first octets, extended
    /// first when the hash is shorter than the cipher's key (SHA-1 with
    /// AES-192 or AES-256, SHA-224 with AES-256) as Blumenthal's draft
    /// does it: the key so far, hashed, appended, until long enough.
    fn key(self, auth: AuthProtocol, localized: &[u8]) -> Vec<u8> {
        let mut key = localized.to_vec();
        while key.len() < self.key_len() {
            let more = auth.hash(&[&key]);
            key.extend_from_slice(&more);
        }
        key.truncate(self.key_len());
        key
    }

    fn crypt(self, key: &[u8], iv: &[u8; 16], data: &mut [u8], encrypt: bool) {
        macro_rules! run {
            ($aes:ty) => {
                if encrypt {
                    cfb_mode::Encryptor::<$aes>::new_from_slices(key, iv)
                        .expect("key and IV of the cipher's size")
                        .encrypt(data)
                } else {
                    cfb_mode::Decryptor::<$aes>::new_from_slices(key, iv)
                        .expect("key and IV of the cipher's size")
                        .decrypt(data)
                }
            };
        }
        match self {
            PrivProtocol::Aes128 => run!(aes::Aes128),
            PrivProtocol::Aes192 => run!(aes::Aes192),
            PrivProtocol::Aes256 => run!(aes::Aes256),
        }
    }
}

/// A user's keys before localisation (the expensive part, once per poll).
#[derive(Clone)]
pub struct User {
    pub name: Vec<u8>,
    auth: AuthProtocol,
    privacy: PrivProtocol,
    auth_ku: Vec<u8>,
    priv_ku: Vec<u8>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("auth", &self.auth)
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Who and how we asked, for an error an admin compares with the
    /// agent's `createUser` line (never a password).
    pub fn describe(&self) -> String {
        format!(
            "asked as user {} with {} and {}",
            String::from_utf8_lossy(&self.name),
            self.auth.name(),
            self.privacy.name()
        )
    }

    pub fn new(
        name: &str,
        auth_password: &str,
        priv_password: &str,
        auth: AuthProtocol,
        privacy: PrivProtocol,
    ) -> User {
        User {
            name: name.as_bytes().to_vec(),
            auth,
            privacy,
            auth_ku: auth.password_to_key(auth_password.as_bytes()),
            // net-snmp derives the privacy key with the auth protocol's hash.
            priv_ku: auth.password_to_key(priv_password.as_bytes()),
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
    auth: AuthProtocol,
    privacy: PrivProtocol,
    auth_key: Vec<u8>,
    priv_key: Vec<u8>,
}

impl Engine {
    pub fn new(user: &User, id: &[u8], boots: i64, time: i64) -> Engine {
        let auth_key = user.auth.localize(&user.auth_ku, id);
        let priv_key = user
            .privacy
            .key(user.auth, &user.auth.localize(&user.priv_ku, id));
        Engine {
            id: id.to_vec(),
            boots,
            time,
            at: Instant::now(),
            auth: user.auth,
            privacy: user.privacy,
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

fn iv(boots: i64, time: i64, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(time as u32).to_be_bytes());
    iv[8..].copy_from_slice(&salt[..8]);
    iv
}

/// An authenticated, encrypted request carrying `pdu` (whose request id is
/// `msg_id` too). `salt` must not repeat for this key.
pub fn request(user: &User, engine: &Engine, msg_id: i32, salt: u64, pdu: &[u8]) -> Vec<u8> {
    let time = engine.time_now();
    let salt = salt.to_be_bytes();
    let mut data = scoped_pdu(&engine.id, pdu);
    engine.privacy.crypt(
        &engine.priv_key,
        &iv(engine.boots, time, &salt),
        &mut data,
        true,
    );
    let params = |auth: &[u8]| usm_params(&engine.id, engine.boots, time, &user.name, auth, &salt);
    let blank = message(
        msg_id,
        FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE,
        &params(&vec![0u8; engine.auth.mac_len()]),
        &ber::octets(&data),
    );
    let mac = engine.auth.mac(&engine.auth_key, &blank);
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
    if m.engine_id != engine.id.as_slice()
        || m.auth.len() != engine.auth.mac_len()
        || m.salt.len() != 8
    {
        return Err(BerError(
            "response's security parameters do not match".into(),
        ));
    }
    // The MAC covers the whole message with the MAC field zeroed.
    let at = m.auth.as_ptr() as usize - datagram.as_ptr() as usize;
    let mut blank = datagram.to_vec();
    blank[at..at + m.auth.len()].fill(0);
    if engine.auth.mac(&engine.auth_key, &blank) != m.auth {
        return Err(BerError(
            "response failed authentication (wrong auth password?)".into(),
        ));
    }
    if m.data_tag != TAG_OCTET_STRING {
        return Err(BerError("encrypted data expected".into()));
    }
    let mut plain = m.data.to_vec();
    engine.privacy.crypt(
        &engine.priv_key,
        &iv(m.boots, m.time, m.salt),
        &mut plain,
        false,
    );
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
        "wrong digest (wrong auth password or protocol?)",
        "decryption error (wrong privacy password or protocol?)",
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
        let sha = AuthProtocol::Sha1;
        let ku = sha.password_to_key(b"maplesyrup");
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&ku), "9fb5cc0381497b3793528939ff788d5d79145211");
        let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        assert_eq!(
            hex(&sha.localize(&ku, &engine)),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
    }

    fn response(id: i64) -> Vec<u8> {
        ber::tlv(
            ber::TAG_RESPONSE,
            &[
                ber::integer(id),
                ber::integer(0),
                ber::integer(0),
                ber::sequence(&[]),
            ]
            .concat(),
        )
    }

    const ENGINE_ID: &[u8] = b"\x80\x00\x1f\x88\x04test";

    #[test]
    fn every_pair_opens_with_the_same_keys_and_not_with_others() {
        for auth in AuthProtocol::ALL {
            for privacy in PrivProtocol::ALL {
                let user = User::new("u", "auth-pass-123", "priv-pass-123", auth, privacy);
                let mut engine = Engine::new(&user, ENGINE_ID, 3, 1000);
                assert_eq!(engine.auth_key.len(), auth.hash(&[]).len());
                assert_eq!(engine.priv_key.len(), privacy.key_len());
                let msg = request(&user, &engine, 77, 5, &response(77));
                let m = parse(&msg).unwrap();
                assert_eq!((m.msg_id, m.auth.len()), (77, auth.mac_len()));
                assert_eq!(
                    open(&msg, &m, &mut engine).unwrap().req_id,
                    77,
                    "{auth:?} {privacy:?}"
                );
                let other = User::new("u", "wrong-pass-456", "priv-pass-123", auth, privacy);
                let err = open(&msg, &m, &mut Engine::new(&other, ENGINE_ID, 3, 1000)).unwrap_err();
                assert!(err.0.contains("wrong auth password"), "{err:?}");
                let other = User::new("u", "auth-pass-123", "wrong-pass-456", auth, privacy);
                let err = open(&msg, &m, &mut Engine::new(&other, ENGINE_ID, 3, 1000)).unwrap_err();
                assert!(err.0.contains("wrong privacy password"), "{err:?}");
            }
        }
    }

    #[test]
    fn a_short_hash_is_extended_to_the_cipher_key_as_blumenthal_says() {
        // SHA-1 makes 20 octets; AES-256 needs 32: Kul || H(Kul), cut.
        let kul: Vec<u8> = (0u8..20).collect();
        let key = PrivProtocol::Aes256.key(AuthProtocol::Sha1, &kul);
        let mut want = kul.clone();
        want.extend_from_slice(&AuthProtocol::Sha1.hash(&[&kul])[..12]);
        assert_eq!(key, want);
        // SHA-256's 32 octets need no extension; AES-128 takes the first 16.
        let kul: Vec<u8> = (0u8..32).collect();
        assert_eq!(PrivProtocol::Aes256.key(AuthProtocol::Sha256, &kul), kul);
        assert_eq!(
            PrivProtocol::Aes128.key(AuthProtocol::Sha256, &kul),
            kul[..16]
        );
    }

    #[test]
    fn protocols_are_read_by_net_snmps_names() {
        assert_eq!(AuthProtocol::parse("sha-512"), Ok(AuthProtocol::Sha512));
        assert_eq!(AuthProtocol::parse("SHA"), Ok(AuthProtocol::Sha1));
        assert_eq!(AuthProtocol::parse("SHA256"), Ok(AuthProtocol::Sha256));
        assert!(AuthProtocol::parse("MD5").unwrap_err().contains("SHA-512"));
        assert_eq!(PrivProtocol::parse("aes-256"), Ok(PrivProtocol::Aes256));
        assert_eq!(PrivProtocol::parse("AES"), Ok(PrivProtocol::Aes128));
        assert!(PrivProtocol::parse("DES").unwrap_err().contains("AES-256"));
    }
}
