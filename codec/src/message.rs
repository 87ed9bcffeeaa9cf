//! RFC 3652 messages as the Handle.Net 9.x reference speaks them: the 20-byte envelope, the
//! 24-byte header, request and response bodies of every opcode, the request digest and the
//! credential section, plus the exact bytes a credential signs.
//!
//! Decoding and encoding are pure functions over byte slices. Derived fields (the envelope's
//! messageLength, the header's bodyLength) are recomputed on encode, so a message built in code
//! is always self-consistent, and a decoded message re-encodes to the bytes it came from.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::site::SiteInfo;
use crate::value::{HandleValue, decode_values, encode_values};
use crate::wire::{MAX_MESSAGE_LENGTH, Reader, Writer, len_u32};

pub const ENVELOPE_LEN: usize = 20;
pub const HEADER_LEN: usize = 24;

/// The protocol version this codec speaks by default (the reference 9.x's).
pub const PROTOCOL_MAJOR: u8 = 2;
pub const PROTOCOL_MINOR: u8 = 11;
/// The version the reference answers with when it could not read the request's.
pub const COMPATIBILITY_MINOR: u8 = 3;

/// Opcodes (RFC 3652 plus the reference server's and IDIS's extensions).
pub mod opcode {
    pub const RESERVED: u32 = 0;
    pub const RESOLUTION: u32 = 1;
    pub const GET_SITE_INFO: u32 = 2;
    pub const CREATE_HANDLE: u32 = 100;
    pub const DELETE_HANDLE: u32 = 101;
    pub const ADD_VALUE: u32 = 102;
    pub const REMOVE_VALUE: u32 = 103;
    pub const MODIFY_VALUE: u32 = 104;
    pub const LIST_HANDLES: u32 = 105;
    pub const CHALLENGE_RESPONSE: u32 = 200;
    pub const VERIFY_RESPONSE: u32 = 201;
    pub const HOME_NA: u32 = 300;
    pub const UNHOME_NA: u32 = 301;
    pub const LIST_HOMED_NAS: u32 = 302;
    pub const SESSION_SETUP: u32 = 400;
    pub const SESSION_TERMINATE: u32 = 401;
    pub const SESSION_EXCHANGEKEY: u32 = 402;
    pub const GET_NEXT_TXN_ID: u32 = 1000;
    pub const RETRIEVE_TXN_LOG: u32 = 1001;
    pub const DUMP_HANDLES: u32 = 1002;
    pub const BACKUP_SERVER: u32 = 1003;
    pub const LOGIN_ID_SYSTEM: u32 = 2001;

    /// The reference's name of an opcode.
    pub fn name(op: u32) -> Option<&'static str> {
        Some(match op {
            RESERVED => "RESERVED",
            RESOLUTION => "RESOLUTION",
            GET_SITE_INFO => "GET_SITE_INFO",
            CREATE_HANDLE => "CREATE_HANDLE",
            DELETE_HANDLE => "DELETE_HANDLE",
            ADD_VALUE => "ADD_VALUE",
            REMOVE_VALUE => "REMOVE_VALUE",
            MODIFY_VALUE => "MODIFY_VALUE",
            LIST_HANDLES => "LIST_HANDLES",
            CHALLENGE_RESPONSE => "CHALLENGE_RESPONSE",
            VERIFY_RESPONSE => "VERIFY_RESPONSE",
            HOME_NA => "HOME_NA",
            UNHOME_NA => "UNHOME_NA",
            LIST_HOMED_NAS => "LIST_HOMED_NAS",
            SESSION_SETUP => "SESSION_SETUP",
            SESSION_TERMINATE => "SESSION_TERMINATE",
            SESSION_EXCHANGEKEY => "SESSION_EXCHANGEKEY",
            GET_NEXT_TXN_ID => "GET_NEXT_TXN_ID",
            RETRIEVE_TXN_LOG => "RETRIEVE_TXN_LOG",
            DUMP_HANDLES => "DUMP_HANDLES",
            BACKUP_SERVER => "BACKUP_SERVER",
            LOGIN_ID_SYSTEM => "LOGIN_ID_SYSTEM",
            _ => return None,
        })
    }

    /// Opcodes that change state or need an administrator: refused on a query-only interface.
    pub fn is_administrative(op: u32) -> bool {
        matches!(
            op,
            CREATE_HANDLE
                | DELETE_HANDLE
                | ADD_VALUE
                | REMOVE_VALUE
                | MODIFY_VALUE
                | LIST_HANDLES
                | HOME_NA
                | UNHOME_NA
                | LIST_HOMED_NAS
                | GET_NEXT_TXN_ID
                | RETRIEVE_TXN_LOG
                | DUMP_HANDLES
                | BACKUP_SERVER
        )
    }
}

/// Response codes of the reference server (Java `AbstractMessage.RC_*`) and of IDIS.
pub mod rc {
    pub const RESERVED: u32 = 0;
    pub const SUCCESS: u32 = 1;
    pub const ERROR: u32 = 2;
    pub const SERVER_TOO_BUSY: u32 = 3;
    pub const PROTOCOL_ERROR: u32 = 4;
    pub const OPERATION_NOT_SUPPORTED: u32 = 5;
    pub const RECURSION_COUNT_TOO_HIGH: u32 = 6;
    pub const SERVER_BACKUP: u32 = 7;
    pub const HANDLE_NOT_FOUND: u32 = 100;
    pub const HANDLE_ALREADY_EXISTS: u32 = 101;
    pub const INVALID_HANDLE: u32 = 102;
    pub const VALUES_NOT_FOUND: u32 = 200;
    pub const VALUE_ALREADY_EXISTS: u32 = 201;
    pub const INVALID_VALUE: u32 = 202;
    pub const OUT_OF_DATE_SITE_INFO: u32 = 300;
    pub const SERVER_NOT_RESP: u32 = 301;
    pub const SERVICE_REFERRAL: u32 = 302;
    pub const PREFIX_REFERRAL: u32 = 303;
    pub const INVALID_ADMIN: u32 = 400;
    pub const INSUFFICIENT_PERMISSIONS: u32 = 401;
    pub const AUTHENTICATION_NEEDED: u32 = 402;
    pub const AUTHENTICATION_FAILED: u32 = 403;
    pub const INVALID_CREDENTIAL: u32 = 404;
    pub const AUTHEN_TIMEOUT: u32 = 405;
    pub const AUTHEN_ERROR: u32 = 406;
    pub const SESSION_TIMEOUT: u32 = 500;
    pub const SESSION_FAILED: u32 = 501;
    pub const INVALID_SESSION_KEY: u32 = 502;
    pub const NEED_RSAKEY_FOR_SESSIONEXCHANGE: u32 = 503;
    pub const INVALID_SESSIONSETUP_REQUEST: u32 = 504;
    pub const SESSION_MESSAGE_REJECTED: u32 = 505;
    pub const IDIS_CHANNEL_ERROR: u32 = 601;
    pub const IDIS_TIMEOUT: u32 = 602;
    pub const IDIS_DAILY_LIMIT: u32 = 603;
    pub const IDIS_REGISTER_LIMIT: u32 = 604;
    pub const IDIS_PREFIX_LIMIT: u32 = 605;

    pub fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            RESERVED => "RESERVED",
            SUCCESS => "SUCCESS",
            ERROR => "ERROR",
            SERVER_TOO_BUSY => "SERVER_TOO_BUSY",
            PROTOCOL_ERROR => "PROTOCOL_ERROR",
            OPERATION_NOT_SUPPORTED => "OPERATION_NOT_SUPPORTED",
            RECURSION_COUNT_TOO_HIGH => "RECURSION_COUNT_TOO_HIGH",
            SERVER_BACKUP => "SERVER_BACKUP",
            HANDLE_NOT_FOUND => "HANDLE_NOT_FOUND",
            HANDLE_ALREADY_EXISTS => "HANDLE_ALREADY_EXISTS",
            INVALID_HANDLE => "INVALID_HANDLE",
            VALUES_NOT_FOUND => "VALUES_NOT_FOUND",
            VALUE_ALREADY_EXISTS => "VALUE_ALREADY_EXISTS",
            INVALID_VALUE => "INVALID_VALUE",
            OUT_OF_DATE_SITE_INFO => "OUT_OF_DATE_SITE_INFO",
            SERVER_NOT_RESP => "SERVER_NOT_RESP",
            SERVICE_REFERRAL => "SERVICE_REFERRAL",
            PREFIX_REFERRAL => "PREFIX_REFERRAL",
            INVALID_ADMIN => "INVALID_ADMIN",
            INSUFFICIENT_PERMISSIONS => "INSUFFICIENT_PERMISSIONS",
            AUTHENTICATION_NEEDED => "AUTHENTICATION_NEEDED",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            INVALID_CREDENTIAL => "INVALID_CREDENTIAL",
            AUTHEN_TIMEOUT => "AUTHEN_TIMEOUT",
            AUTHEN_ERROR => "AUTHEN_ERROR",
            SESSION_TIMEOUT => "SESSION_TIMEOUT",
            SESSION_FAILED => "SESSION_FAILED",
            INVALID_SESSION_KEY => "INVALID_SESSION_KEY",
            NEED_RSAKEY_FOR_SESSIONEXCHANGE => "NEED_RSAKEY_FOR_SESSIONEXCHANGE",
            INVALID_SESSIONSETUP_REQUEST => "INVALID_SESSIONSETUP_REQUEST",
            SESSION_MESSAGE_REJECTED => "SESSION_MESSAGE_REJECTED",
            IDIS_CHANNEL_ERROR => "CHANNEL_ERROR",
            IDIS_TIMEOUT => "TIMEOUT",
            IDIS_DAILY_LIMIT => "DAILY_LIMIT_EXCEEDED",
            IDIS_REGISTER_LIMIT => "REGISTER_LIMIT_EXCEEDED",
            IDIS_PREFIX_LIMIT => "PREFIX_LIMIT_EXCEEDED",
            _ => return None,
        })
    }
}

/// Header op flags.
pub mod flags {
    pub const AT: u32 = 0x8000_0000;
    pub const CT: u32 = 0x4000_0000;
    pub const ENC: u32 = 0x2000_0000;
    pub const REC: u32 = 0x1000_0000;
    pub const CA: u32 = 0x0800_0000;
    pub const CN: u32 = 0x0400_0000;
    pub const KC: u32 = 0x0200_0000;
    pub const PO: u32 = 0x0100_0000;
    pub const RD: u32 = 0x0080_0000;
    pub const OVRW: u32 = 0x0040_0000;
    pub const MINT: u32 = 0x0020_0000;
    pub const DNRF: u32 = 0x0010_0000;
    /// The Java client's default: REC | CA | PO.
    pub const CLIENT_DEFAULT: u32 = REC | CA | PO;

    pub const NAMES: [(&str, u32); 12] = [
        ("AT", AT),
        ("CT", CT),
        ("ENC", ENC),
        ("REC", REC),
        ("CA", CA),
        ("CN", CN),
        ("KC", KC),
        ("PO", PO),
        ("RD", RD),
        ("OVRW", OVRW),
        ("MINT", MINT),
        ("DNRF", DNRF),
    ];

    pub fn names(f: u32) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(_, b)| f & b != 0)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Envelope flag bits (byte 2, high bits).
pub mod envelope_flags {
    pub const CP: u8 = 0x80;
    pub const EC: u8 = 0x40;
    pub const TC: u8 = 0x20;
    /// The bits of byte 2 that are flags; the rest carry the suggested major version.
    pub const MASK: u8 = 0xE0;
    /// The bits of byte 2 the reference reads as the suggested major version
    /// (`Encoder.decodeEnvelope`: `buf[2] & 0x03`); bits 0x1C are reserved.
    pub const SUGGESTED_MAJOR_MASK: u8 = 0x03;
}

/// The 20-byte message envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub major: u8,
    pub minor: u8,
    /// CP/EC/TC bits (see [`envelope_flags`]).
    pub flags: u8,
    /// The low five bits of byte 2, kept as received so that re-encoding is exact. The reference
    /// reads only the low two as the suggested major version, and 0 there means "same as the
    /// message version" whatever byte 3 says: use [`Envelope::suggested_version`].
    pub suggested_major: u8,
    pub suggested_minor: u8,
    pub session_id: u32,
    pub request_id: u32,
    pub sequence: u32,
    /// Bytes after the envelope (header + body + credential), of the whole message even in
    /// each UDP fragment.
    pub message_length: u32,
}

impl Envelope {
    /// An envelope at this codec's version, suggesting the same.
    pub fn new(request_id: u32) -> Self {
        Envelope {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            flags: 0,
            suggested_major: PROTOCOL_MAJOR,
            suggested_minor: PROTOCOL_MINOR,
            session_id: 0,
            request_id,
            sequence: 0,
            message_length: 0,
        }
    }

    /// The envelope of an answer: at `version`, suggesting ours, for `request_id`.
    pub fn reply(version: (u8, u8), session_id: u32, request_id: u32) -> Self {
        Envelope {
            major: version.0,
            minor: version.1,
            flags: 0,
            suggested_major: PROTOCOL_MAJOR,
            suggested_minor: PROTOCOL_MINOR,
            session_id,
            request_id,
            sequence: 0,
            message_length: 0,
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let major = r.u8("envelope")?;
        let minor = r.u8("envelope")?;
        let b2 = r.u8("envelope")?;
        let suggested_minor = r.u8("envelope")?;
        Ok(Envelope {
            major,
            minor,
            flags: b2 & envelope_flags::MASK,
            suggested_major: b2 & !envelope_flags::MASK,
            suggested_minor,
            session_id: r.u32("envelope")?,
            request_id: r.u32("envelope")?,
            sequence: r.u32("envelope")?,
            message_length: r.u32("envelope")?,
        })
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.major);
        out.put_u8(self.minor);
        out.put_u8(
            (self.flags & envelope_flags::MASK) | (self.suggested_major & !envelope_flags::MASK),
        );
        out.put_u8(self.suggested_minor);
        out.put_u32(self.session_id);
        out.put_u32(self.request_id);
        out.put_u32(self.sequence);
        out.put_u32(self.message_length);
    }

    pub fn encode(&self) -> [u8; ENVELOPE_LEN] {
        let mut v = Vec::with_capacity(ENVELOPE_LEN);
        self.encode_into(&mut v);
        let mut a = [0u8; ENVELOPE_LEN];
        a.copy_from_slice(&v);
        a
    }

    pub fn version(&self) -> (u8, u8) {
        (self.major, self.minor)
    }

    /// The version the sender suggests for the answer, read as `Encoder.decodeEnvelope` does:
    /// the low two bits of byte 2 are the major version, and when they are 0 the sender suggests
    /// its own version (byte 3 is then ignored, so `0, 5` does not make a version 0.5).
    pub fn suggested_version(&self) -> (u8, u8) {
        let major = self.suggested_major & envelope_flags::SUGGESTED_MAJOR_MASK;
        if major == 0 {
            (self.major, self.minor)
        } else {
            (major, self.suggested_minor)
        }
    }

    pub fn truncated(&self) -> bool {
        self.flags & envelope_flags::TC != 0
    }

    pub fn encrypted(&self) -> bool {
        self.flags & envelope_flags::EC != 0
    }
}

/// The version a server answers with: the lower of what the client suggested and ours. Major
/// version 5 is the reference's legacy alias of 2.0.
pub fn negotiate_version(env: &Envelope) -> (u8, u8) {
    let (mut maj, mut min) = env.suggested_version();
    if maj == 5 {
        (maj, min) = (2, 0);
    }
    if (maj, min) > (PROTOCOL_MAJOR, PROTOCOL_MINOR) {
        (PROTOCOL_MAJOR, PROTOCOL_MINOR)
    } else {
        (maj, min)
    }
}

/// The 24-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub op_code: u32,
    /// 0 in requests.
    pub response_code: u32,
    pub op_flags: u32,
    pub site_info_serial: u16,
    pub recursion_count: u8,
    pub reserved: u8,
    /// Epoch seconds after which the message is stale.
    pub expiration: u32,
    pub body_length: u32,
}

impl Header {
    pub fn request(op_code: u32, op_flags: u32, expiration: u32) -> Self {
        Header {
            op_code,
            response_code: 0,
            op_flags,
            site_info_serial: 0xFFFF,
            recursion_count: 0,
            reserved: 0,
            expiration,
            body_length: 0,
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        Ok(Header {
            op_code: r.u32("header")?,
            response_code: r.u32("header")?,
            op_flags: r.u32("header")?,
            site_info_serial: r.u16("header")?,
            recursion_count: r.u8("header")?,
            reserved: r.u8("header")?,
            expiration: r.u32("header")?,
            body_length: r.u32("header")?,
        })
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u32(self.op_code);
        out.put_u32(self.response_code);
        out.put_u32(self.op_flags);
        out.put_u16(self.site_info_serial);
        out.put_u8(self.recursion_count);
        out.put_u8(self.reserved);
        out.put_u32(self.expiration);
        out.put_u32(self.body_length);
    }

    pub fn is_request(&self) -> bool {
        self.response_code == 0
    }

    pub fn has(&self, flag: u32) -> bool {
        self.op_flags & flag != 0
    }
}

/// Digest algorithms of the request digest (and of the legacy secret-key answer).
pub mod digest_alg {
    /// Pre-2.1: `u32 16, MD5`. There is no separate algorithm byte: the reference's decoder
    /// reads one, sees 0 (the high byte of the length), steps back and reads `u32 len + bytes`
    /// (`Encoder.decodeMessage`, `bodyOffset--`).
    pub const MD5_OLD_FORMAT: u8 = 0;
    pub const MD5: u8 = 1;
    pub const SHA1: u8 = 2;
    pub const SHA256: u8 = 3;
}

/// A request digest as carried at the start of a response body (RD).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestDigest {
    pub alg: u8,
    pub digest: Vec<u8>,
}

impl RequestDigest {
    /// The digest algorithm the reference uses at a negotiated version:
    /// <2.1 MD5 (old format), 2.1–2.6 SHA-1, ≥2.7 SHA-256.
    pub fn alg_for_version(major: u8, minor: u8) -> u8 {
        match (major, minor) {
            v if v < (2, 1) => digest_alg::MD5_OLD_FORMAT,
            v if v < (2, 7) => digest_alg::SHA1,
            _ => digest_alg::SHA256,
        }
    }

    /// Digests a request's header and body (no envelope, no credential).
    pub fn compute(alg: u8, header_and_body: &[u8]) -> Self {
        let digest = match alg {
            digest_alg::MD5 | digest_alg::MD5_OLD_FORMAT => Md5::digest(header_and_body).to_vec(),
            digest_alg::SHA1 => Sha1::digest(header_and_body).to_vec(),
            _ => Sha256::digest(header_and_body).to_vec(),
        };
        let alg = if matches!(
            alg,
            digest_alg::MD5 | digest_alg::MD5_OLD_FORMAT | digest_alg::SHA1 | digest_alg::SHA256
        ) {
            alg
        } else {
            digest_alg::SHA256
        };
        RequestDigest { alg, digest }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        if self.alg == digest_alg::MD5_OLD_FORMAT {
            // The length's high byte is the 0 a reader takes for the algorithm. A digest of
            // 2^24 bytes or more cannot be told from another algorithm; none is that long.
            out.put_bytes(&self.digest);
        } else {
            out.put_u8(self.alg);
            out.extend_from_slice(&self.digest);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let alg = r.u8("request digest algorithm")?;
        let digest = match alg {
            digest_alg::MD5_OLD_FORMAT => {
                // The 0 just read was the high byte of a `u32` length.
                let low = r.take(3, "request digest length")?;
                let len = u32::from_be_bytes([0, low[0], low[1], low[2]]) as usize;
                r.take(len, "request digest")?.to_vec()
            }
            digest_alg::MD5 => r.take(16, "request digest")?.to_vec(),
            digest_alg::SHA1 => r.take(20, "request digest")?.to_vec(),
            digest_alg::SHA256 => r.take(32, "request digest")?.to_vec(),
            other => {
                return Err(DecodeError::invalid(
                    "request digest",
                    format!("unknown algorithm {other}"),
                ));
            }
        };
        Ok(RequestDigest { alg, digest })
    }
}

/// Session key-exchange modes of OC 400.
pub mod session_mode {
    pub const CIPHER_CLIENT: u16 = 1;
    pub const CIPHER_SERVER: u16 = 2;
    pub const CIPHER_HDL: u16 = 3;
    pub const DIFFIE_HELLMAN: u16 = 4;
}

/// What a session setup request carries for its key exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExchange {
    /// Modes 1 and 4: the client's public key in HS_PUBKEY encoding.
    PublicKey(Vec<u8>),
    /// Mode 3: the handle and index where the client's public key is.
    KeyRef { handle: String, index: u32 },
    /// Mode 2 and unknown modes: nothing.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetupRequest {
    pub mode: u16,
    /// Seconds.
    pub timeout: u32,
    pub id_handle: String,
    pub id_index: u32,
    pub exchange: KeyExchange,
}

/// OC 1001's request, at ≥2.9 (flag byte) or the older fixed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrieveTxnLogRequest {
    pub state: ReplicationState,
    pub receiver_hash_type: u8,
    pub num_servers: u32,
    pub server_num: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationState {
    /// Flag 0 (or pre-2.9): the last transaction id and query date seen.
    Last { txn_id: u64, query_date: u64 },
    /// Flag 1: a JSON `ReplicationStateInfo`.
    Json(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpHandlesRequest {
    pub hash_type: u8,
    pub num_servers: u32,
    pub server_num: u32,
    /// Where to resume a dump, and which kind of record that is.
    pub resume: Option<(Vec<u8>, u32)>,
}

/// A message body, request or response. Which variant applies is decided by the header's
/// opcode, response code and flags (see [`Body::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    // Requests.
    Resolution {
        handle: String,
        indexes: Vec<u32>,
        types: Vec<String>,
    },
    GetSiteInfo {
        handle: String,
    },
    /// CREATE_HANDLE, ADD_VALUE and MODIFY_VALUE requests.
    HandleValues {
        handle: String,
        values: Vec<HandleValue>,
    },
    RemoveValue {
        handle: String,
        indexes: Vec<u32>,
    },
    /// DELETE_HANDLE, LIST_HANDLES, HOME_NA, UNHOME_NA, LIST_HOMED_NAS, SESSION_TERMINATE,
    /// GET_NEXT_TXN_ID and BACKUP_SERVER requests: one handle.
    Handle {
        handle: String,
    },
    ChallengeResponse {
        auth_type: String,
        id_handle: String,
        id_index: u32,
        signed_response: Vec<u8>,
    },
    VerifyResponse {
        handle: String,
        index: u32,
        nonce: Vec<u8>,
        request_digest: Vec<u8>,
        signed_response: Vec<u8>,
    },
    SessionSetup(SessionSetupRequest),
    SessionExchangeKey {
        encrypted_key: Vec<u8>,
    },
    RetrieveTxnLog(RetrieveTxnLogRequest),
    DumpHandles(DumpHandlesRequest),
    LoginIdSystem {
        handle: String,
        index: u32,
    },

    // Responses.
    ResolutionResponse {
        handle: String,
        values: Vec<HandleValue>,
    },
    SiteInfo(SiteInfo),
    /// CREATE_HANDLE success: the reference always names the created (or minted) handle.
    Created {
        handle: Option<String>,
    },
    HandleList {
        handles: Vec<String>,
    },
    VerifyResult {
        valid: u8,
    },
    SessionSetupResponse {
        mode: u16,
        data: Vec<u8>,
    },
    NextTxnId {
        txn_id: u64,
    },
    /// RETRIEVE_TXN_LOG / DUMP_HANDLES success: the start of the signed stream.
    Stream {
        bytes: Vec<u8>,
    },
    /// RC 402: the server's nonce (the request digest precedes it).
    Challenge {
        nonce: Vec<u8>,
    },
    /// RC 302/303.
    Referral {
        handle: String,
        values: Option<Vec<HandleValue>>,
    },
    /// Any other response code: a message (absent when the body is empty).
    Error {
        message: Option<String>,
    },
    /// No body.
    Empty,
    /// A body this codec does not interpret (an unknown opcode), kept whole.
    Raw(Vec<u8>),
}

const MIN_STR: usize = 4;

fn decode_handle_list(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count(MIN_STR, "handle list")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.str("handle list entry")?.to_string());
    }
    Ok(v)
}

fn decode_indexes(r: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let n = r.count(4, "index list")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.u32("index")?);
    }
    Ok(v)
}

/// An error body: a message, absent when the body is empty.
fn decode_error(r: &mut Reader<'_>) -> Result<Body, DecodeError> {
    Ok(Body::Error {
        message: if r.is_empty() {
            None
        } else {
            Some(r.str("error message")?.to_string())
        },
    })
}

fn put_indexes(out: &mut Vec<u8>, idx: &[u32]) {
    out.put_u32(len_u32(idx.len()));
    for i in idx {
        out.put_u32(*i);
    }
}

impl Body {
    /// Decodes a body (after any request digest) for the given header. Returns the body and
    /// leaves unread bytes in `r`: the reference tolerates (and itself writes) trailing bytes
    /// inside bodyLength, so the caller keeps them for an exact re-encoding.
    pub fn decode(
        header: &Header,
        version: (u8, u8),
        r: &mut Reader<'_>,
    ) -> Result<Body, DecodeError> {
        use opcode::*;
        if header.is_request() {
            return Ok(match header.op_code {
                RESOLUTION => {
                    let handle = r.str("handle")?.to_string();
                    let indexes = decode_indexes(r)?;
                    let n = r.count(MIN_STR, "type list")?;
                    let mut types = Vec::with_capacity(n);
                    for _ in 0..n {
                        types.push(r.str("type")?.to_string());
                    }
                    Body::Resolution {
                        handle,
                        indexes,
                        types,
                    }
                }
                GET_SITE_INFO => Body::GetSiteInfo {
                    handle: if r.is_empty() {
                        String::new()
                    } else {
                        r.str("handle")?.to_string()
                    },
                },
                CREATE_HANDLE | ADD_VALUE | MODIFY_VALUE => Body::HandleValues {
                    handle: r.str("handle")?.to_string(),
                    values: decode_values(r)?,
                },
                REMOVE_VALUE => Body::RemoveValue {
                    handle: r.str("handle")?.to_string(),
                    indexes: decode_indexes(r)?,
                },
                DELETE_HANDLE | LIST_HANDLES | HOME_NA | UNHOME_NA | LIST_HOMED_NAS
                | SESSION_TERMINATE | GET_NEXT_TXN_ID | BACKUP_SERVER => Body::Handle {
                    handle: r.str("handle")?.to_string(),
                },
                CHALLENGE_RESPONSE => Body::ChallengeResponse {
                    auth_type: r.str("auth type")?.to_string(),
                    id_handle: r.str("identity handle")?.to_string(),
                    id_index: r.u32("identity index")?,
                    signed_response: r.bytes("signed response")?.to_vec(),
                },
                VERIFY_RESPONSE => Body::VerifyResponse {
                    handle: r.str("handle")?.to_string(),
                    index: r.u32("index")?,
                    nonce: r.bytes("nonce")?.to_vec(),
                    request_digest: r.bytes("request digest")?.to_vec(),
                    signed_response: r.bytes("signed response")?.to_vec(),
                },
                SESSION_SETUP => {
                    let mode = r.u16("session mode")?;
                    let timeout = r.u32("session timeout")?;
                    let id_handle = r.str("session identity handle")?.to_string();
                    let id_index = r.u32("session identity index")?;
                    let exchange = match mode {
                        session_mode::CIPHER_CLIENT | session_mode::DIFFIE_HELLMAN => {
                            KeyExchange::PublicKey(r.bytes("session public key")?.to_vec())
                        }
                        session_mode::CIPHER_HDL => KeyExchange::KeyRef {
                            handle: r.str("session key handle")?.to_string(),
                            index: r.u32("session key index")?,
                        },
                        _ => KeyExchange::None,
                    };
                    Body::SessionSetup(SessionSetupRequest {
                        mode,
                        timeout,
                        id_handle,
                        id_index,
                        exchange,
                    })
                }
                SESSION_EXCHANGEKEY => Body::SessionExchangeKey {
                    encrypted_key: r.bytes("encrypted session key")?.to_vec(),
                },
                RETRIEVE_TXN_LOG => {
                    let state = if version >= (2, 9) {
                        match r.u8("replication state flag")? {
                            0 => ReplicationState::Last {
                                txn_id: r.u64("last txn id")?,
                                query_date: r.u64("last query date")?,
                            },
                            1 => ReplicationState::Json(r.str("replication state")?.to_string()),
                            f => {
                                return Err(DecodeError::invalid(
                                    "replication state flag",
                                    format!("{f}"),
                                ));
                            }
                        }
                    } else {
                        ReplicationState::Last {
                            txn_id: r.u64("last txn id")?,
                            query_date: r.u64("last query date")?,
                        }
                    };
                    Body::RetrieveTxnLog(RetrieveTxnLogRequest {
                        state,
                        receiver_hash_type: r.u8("receiver hash type")?,
                        num_servers: r.u32("number of servers")?,
                        server_num: r.u32("server number")?,
                    })
                }
                DUMP_HANDLES => {
                    let hash_type = r.u8("hash type")?;
                    let num_servers = r.u32("number of servers")?;
                    let server_num = r.u32("server number")?;
                    let resume = if r.is_empty() {
                        None
                    } else {
                        let start = r.bytes("dump starting point")?.to_vec();
                        Some((start, r.u32("dump record type")?))
                    };
                    Body::DumpHandles(DumpHandlesRequest {
                        hash_type,
                        num_servers,
                        server_num,
                        resume,
                    })
                }
                LOGIN_ID_SYSTEM => Body::LoginIdSystem {
                    handle: r.str("login handle")?.to_string(),
                    index: r.u32("login index")?,
                },
                other => return Err(DecodeError::UnknownOpCode(other)),
            });
        }
        Ok(match header.response_code {
            rc::SUCCESS => match header.op_code {
                RESOLUTION => Body::ResolutionResponse {
                    handle: r.str("handle")?.to_string(),
                    values: decode_values(r)?,
                },
                GET_SITE_INFO => Body::SiteInfo(SiteInfo::decode_from(r)?),
                CREATE_HANDLE => Body::Created {
                    handle: if r.is_empty() {
                        None
                    } else {
                        Some(r.str("created handle")?.to_string())
                    },
                },
                LIST_HANDLES | LIST_HOMED_NAS => Body::HandleList {
                    handles: decode_handle_list(r)?,
                },
                VERIFY_RESPONSE => Body::VerifyResult {
                    valid: r.u8("verify result")?,
                },
                SESSION_SETUP => Body::SessionSetupResponse {
                    mode: r.u16("session mode")?,
                    data: r.bytes("session data")?.to_vec(),
                },
                GET_NEXT_TXN_ID => Body::NextTxnId {
                    txn_id: r.u64("next txn id")?,
                },
                RETRIEVE_TXN_LOG | DUMP_HANDLES => Body::Stream {
                    bytes: r.rest().to_vec(),
                },
                _ if r.is_empty() => Body::Empty,
                op if opcode::name(op).is_none() => Body::Raw(r.rest().to_vec()),
                _ => Body::Empty,
            },
            rc::AUTHENTICATION_NEEDED => Body::Challenge {
                nonce: r.bytes("nonce")?.to_vec(),
            },
            // Before 2.5, 303 was SERVER_BACKUP (Java still writes 7 as 303 to such peers) and
            // its body is an error message, as `Encoder.decodeMessage` reads it.
            rc::PREFIX_REFERRAL if version < (2, 5) => decode_error(r)?,
            rc::SERVICE_REFERRAL | rc::PREFIX_REFERRAL => {
                let handle = if r.is_empty() {
                    String::new()
                } else {
                    r.str("referral handle")?.to_string()
                };
                let values = if r.is_empty() {
                    None
                } else {
                    Some(decode_values(r)?)
                };
                Body::Referral { handle, values }
            }
            _ => decode_error(r)?,
        })
    }

    pub fn encode_into(&self, version: (u8, u8), out: &mut Vec<u8>) {
        match self {
            Body::Resolution {
                handle,
                indexes,
                types,
            } => {
                out.put_str(handle);
                put_indexes(out, indexes);
                out.put_u32(len_u32(types.len()));
                for t in types {
                    out.put_str(t);
                }
            }
            Body::GetSiteInfo { handle } => out.put_str(handle),
            Body::HandleValues { handle, values } | Body::ResolutionResponse { handle, values } => {
                out.put_str(handle);
                encode_values(values, out);
            }
            Body::RemoveValue { handle, indexes } => {
                out.put_str(handle);
                put_indexes(out, indexes);
            }
            Body::Handle { handle } => out.put_str(handle),
            Body::ChallengeResponse {
                auth_type,
                id_handle,
                id_index,
                signed_response,
            } => {
                out.put_str(auth_type);
                out.put_str(id_handle);
                out.put_u32(*id_index);
                out.put_bytes(signed_response);
            }
            Body::VerifyResponse {
                handle,
                index,
                nonce,
                request_digest,
                signed_response,
            } => {
                out.put_str(handle);
                out.put_u32(*index);
                out.put_bytes(nonce);
                out.put_bytes(request_digest);
                out.put_bytes(signed_response);
            }
            Body::SessionSetup(s) => {
                out.put_u16(s.mode);
                out.put_u32(s.timeout);
                out.put_str(&s.id_handle);
                out.put_u32(s.id_index);
                match &s.exchange {
                    KeyExchange::PublicKey(k) => out.put_bytes(k),
                    KeyExchange::KeyRef { handle, index } => {
                        out.put_str(handle);
                        out.put_u32(*index);
                    }
                    KeyExchange::None => {}
                }
            }
            Body::SessionExchangeKey { encrypted_key } => out.put_bytes(encrypted_key),
            Body::RetrieveTxnLog(t) => {
                match &t.state {
                    ReplicationState::Last { txn_id, query_date } => {
                        if version >= (2, 9) {
                            out.put_u8(0);
                        }
                        out.put_u64(*txn_id);
                        out.put_u64(*query_date);
                    }
                    ReplicationState::Json(s) => {
                        out.put_u8(1);
                        out.put_str(s);
                    }
                }
                out.put_u8(t.receiver_hash_type);
                out.put_u32(t.num_servers);
                out.put_u32(t.server_num);
            }
            Body::DumpHandles(d) => {
                out.put_u8(d.hash_type);
                out.put_u32(d.num_servers);
                out.put_u32(d.server_num);
                if let Some((start, kind)) = &d.resume {
                    out.put_bytes(start);
                    out.put_u32(*kind);
                }
            }
            Body::LoginIdSystem { handle, index } => {
                out.put_str(handle);
                out.put_u32(*index);
            }
            Body::SiteInfo(s) => out.extend_from_slice(&s.encode()),
            Body::Created { handle } => {
                if let Some(h) = handle {
                    out.put_str(h);
                }
            }
            Body::HandleList { handles } => {
                out.put_u32(len_u32(handles.len()));
                for h in handles {
                    out.put_str(h);
                }
            }
            Body::VerifyResult { valid } => out.put_u8(*valid),
            Body::SessionSetupResponse { mode, data } => {
                out.put_u16(*mode);
                out.put_bytes(data);
            }
            Body::NextTxnId { txn_id } => out.put_u64(*txn_id),
            Body::Stream { bytes } | Body::Raw(bytes) => out.extend_from_slice(bytes),
            Body::Challenge { nonce } => out.put_bytes(nonce),
            Body::Referral { handle, values } => {
                out.put_str(handle);
                if let Some(v) = values {
                    encode_values(v, out);
                }
            }
            Body::Error { message } => {
                if let Some(m) = message {
                    out.put_str(m);
                }
            }
            Body::Empty => {}
        }
    }
}

/// The credential section (HS_SIGNED / HS_MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub version: u8,
    pub reserved: u8,
    pub options: u16,
    /// Java leaves this empty.
    pub signer_handle: String,
    /// Java puts the session counter here.
    pub signer_index: u32,
    /// `HS_SIGNED`, `HS_MAC` or the legacy `HS_DSAPUBKEY`.
    pub cred_type: String,
    /// `SHA1`, `SHA-256`, `HMAC-SHA256`, ...
    pub digest_alg: String,
    pub signature: Vec<u8>,
}

pub mod credential_type {
    pub const HS_SIGNED: &str = "HS_SIGNED";
    pub const HS_MAC: &str = "HS_MAC";
}

impl Credential {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let mut signed_info = Vec::new();
        signed_info.put_str(&self.digest_alg);
        signed_info.put_bytes(&self.signature);
        let mut c = Vec::new();
        c.put_u8(self.version);
        c.put_u8(self.reserved);
        c.put_u16(self.options);
        c.put_str(&self.signer_handle);
        c.put_u32(self.signer_index);
        c.put_str(&self.cred_type);
        c.put_bytes(&signed_info);
        out.put_bytes(&c);
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let version = r.u8("credential version")?;
        let reserved = r.u8("credential reserved")?;
        let options = r.u16("credential options")?;
        let signer_handle = r.str("credential signer")?.to_string();
        let signer_index = r.u32("credential signer index")?;
        let cred_type = r.str("credential type")?.to_string();
        let signed_info = r.bytes("credential signed info")?;
        r.finish("credential")?;
        let mut s = Reader::new(signed_info);
        let digest_alg = s.str("credential digest algorithm")?.to_string();
        let signature = s.bytes("credential signature")?.to_vec();
        s.finish("credential signed info")?;
        Ok(Credential {
            version,
            reserved,
            options,
            signer_handle,
            signer_index,
            cred_type,
            digest_alg,
            signature,
        })
    }
}

/// A whole message: envelope, header, body (with its optional request digest and any trailing
/// bytes the sender put inside bodyLength) and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub envelope: Envelope,
    pub header: Header,
    /// In responses with RD set (and in every 402): the digest of the request.
    pub request_digest: Option<RequestDigest>,
    pub body: Body,
    /// Bytes inside bodyLength after the decoded body (Java's session setup writes two).
    pub trailing: Vec<u8>,
    pub credential: Option<Credential>,
}

impl Message {
    /// A request at this codec's version.
    pub fn request(
        op_code: u32,
        op_flags: u32,
        request_id: u32,
        expiration: u32,
        body: Body,
    ) -> Self {
        Message {
            envelope: Envelope::new(request_id),
            header: Header::request(op_code, op_flags, expiration),
            request_digest: None,
            body,
            trailing: Vec::new(),
            credential: None,
        }
    }

    /// The version whose layout the body follows: the envelope's.
    pub fn version(&self) -> (u8, u8) {
        self.envelope.version()
    }

    /// Decodes one complete message (envelope + messageLength bytes, nothing more).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < ENVELOPE_LEN {
            return Err(DecodeError::Truncated {
                what: "envelope",
                needed: ENVELOPE_LEN,
                available: bytes.len(),
            });
        }
        let envelope = Envelope::decode(&bytes[..ENVELOPE_LEN])?;
        let len = envelope.message_length as usize;
        if len > MAX_MESSAGE_LENGTH {
            return Err(DecodeError::TooLong {
                what: "message",
                len,
                max: MAX_MESSAGE_LENGTH,
            });
        }
        let rest = &bytes[ENVELOPE_LEN..];
        if rest.len() < len {
            return Err(DecodeError::Truncated {
                what: "message",
                needed: len,
                available: rest.len(),
            });
        }
        if rest.len() > len {
            return Err(DecodeError::TrailingBytes {
                what: "message",
                trailing: rest.len() - len,
            });
        }
        Self::decode_after_envelope(envelope, rest)
    }

    /// Decodes header, body and credential (the message bytes after the envelope).
    pub fn decode_after_envelope(envelope: Envelope, msg: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg);
        let header = Header::decode(r.take(HEADER_LEN, "header")?)?;
        let body_bytes = r.take(header.body_length as usize, "body")?;
        let cred_bytes = r.bytes("credential")?;
        r.finish("message")?;
        let mut b = Reader::new(body_bytes);
        let request_digest = if !header.is_request() && header.has(flags::RD) {
            Some(RequestDigest::decode_from(&mut b)?)
        } else {
            None
        };
        let body = Body::decode(&header, envelope.version(), &mut b)?;
        let trailing = b.rest().to_vec();
        let credential = if cred_bytes.is_empty() {
            None
        } else {
            Some(Credential::decode(cred_bytes)?)
        };
        Ok(Message {
            envelope,
            header,
            request_digest,
            body,
            trailing,
            credential,
        })
    }

    /// The body as it goes on the wire: request digest, body, trailing bytes.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(d) = &self.request_digest {
            d.encode_into(&mut out);
        }
        self.body.encode_into(self.version(), &mut out);
        out.extend_from_slice(&self.trailing);
        out
    }

    /// Header and body with bodyLength filled in: what request digests and signatures cover.
    pub fn header_and_body(&self) -> Vec<u8> {
        let body = self.encode_body();
        let mut h = self.header;
        h.body_length = len_u32(body.len());
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        h.encode_into(&mut out);
        out.extend_from_slice(&body);
        out
    }

    /// The whole message; messageLength and bodyLength are computed.
    pub fn encode(&self) -> Vec<u8> {
        let hb = self.header_and_body();
        let mut cred = Vec::new();
        match &self.credential {
            Some(c) => c.encode_into(&mut cred),
            None => cred.put_u32(0),
        }
        let mut env = self.envelope;
        env.message_length = len_u32(hb.len() + cred.len());
        let mut out = Vec::with_capacity(ENVELOPE_LEN + hb.len() + cred.len());
        env.encode_into(&mut out);
        out.extend_from_slice(&hb);
        out.extend_from_slice(&cred);
        out
    }

    /// The request digest of this message (as a request), at the algorithm its version calls for.
    pub fn digest_as_request(&self, version: (u8, u8)) -> RequestDigest {
        RequestDigest::compute(
            RequestDigest::alg_for_version(version.0, version.1),
            &self.header_and_body(),
        )
    }

    /// The bytes an HS_SIGNED or HS_MAC credential covers (≥2.7): the envelope's version bytes
    /// (with the suggested version from 2.8 on), session id, request id and the session counter,
    /// then header and body.
    pub fn signed_bytes(&self, session_counter: u32) -> Vec<u8> {
        let e = &self.envelope;
        let mut out = Vec::new();
        out.put_u8(e.major);
        out.put_u8(e.minor);
        if (e.major, e.minor) >= (2, 8) {
            // As the reference's message object holds them after decoding the envelope.
            let (major, minor) = e.suggested_version();
            out.put_u8(major);
            out.put_u8(minor);
        }
        out.put_u32(e.session_id);
        out.put_u32(e.request_id);
        out.put_u32(session_counter);
        out.extend_from_slice(&self.header_and_body());
        out
    }

    /// A response to `request` with the given code and body: same request id and session id,
    /// the negotiated version, suggesting ours, RD digest when the request asked for it.
    pub fn response_to(request: &Message, response_code: u32, body: Body) -> Self {
        let (major, minor) = negotiate_version(&request.envelope);
        let mut header = request.header;
        header.response_code = response_code;
        header.body_length = 0;
        header.op_flags = request.header.op_flags & !(flags::CN);
        let request_digest =
            if request.header.has(flags::RD) || response_code == rc::AUTHENTICATION_NEEDED {
                header.op_flags |= flags::RD;
                Some(request.digest_as_request((major, minor)))
            } else {
                None
            };
        Message {
            envelope: Envelope::reply(
                (major, minor),
                request.envelope.session_id,
                request.envelope.request_id,
            ),
            header,
            request_digest,
            body,
            trailing: Vec::new(),
            credential: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of spec section 3.11.
    #[test]
    fn spec_worked_example() {
        let mut m = Message::request(
            opcode::RESOLUTION,
            0x1900_0000,
            0x1234_5678,
            0x6500_0000,
            Body::Resolution {
                handle: "88.100/ABC123".into(),
                indexes: vec![],
                types: vec!["URL".into()],
            },
        );
        m.envelope.minor = 10;
        let expect = concat!(
            "020a020b000000001234567800000000",
            "0000003c",
            "00000001000000001900000",
            "0ffff000065000000",
            "00000020",
            "0000000d38382e3130302f414243313233",
            "00000000",
            "0000000100000003",
            "55524c",
            "00000000"
        );
        let bytes = m.encode();
        assert_eq!(hex::encode(&bytes), expect);
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back.body, m.body);
        assert_eq!(back.header.body_length, 32);
        assert_eq!(back.envelope.message_length, 60);
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn version_negotiation() {
        let mut e = Envelope::new(1);
        (e.suggested_major, e.suggested_minor) = (2, 15);
        assert_eq!(negotiate_version(&e), (2, 11));
        (e.suggested_major, e.suggested_minor) = (2, 1);
        assert_eq!(negotiate_version(&e), (2, 1));
        (e.suggested_major, e.suggested_minor) = (0, 0);
        (e.major, e.minor) = (2, 5);
        assert_eq!(negotiate_version(&e), (2, 5));
    }

    #[test]
    fn suggested_version_is_read_as_the_reference_reads_it() {
        let mut e = Envelope::new(1);
        (e.major, e.minor) = (2, 6);
        // No suggested major: the message's own version, whatever byte 3 says.
        (e.suggested_major, e.suggested_minor) = (0, 5);
        assert_eq!(e.suggested_version(), (2, 6));
        assert_eq!(negotiate_version(&e), (2, 6));
        // Only the low two bits of byte 2 are the major version; the rest are kept as sent.
        (e.suggested_major, e.suggested_minor) = (0x06, 1);
        assert_eq!(e.suggested_version(), (2, 1));
        let mut m = Message::request(opcode::RESOLUTION, 0, 1, 0, Body::Empty);
        m.envelope = e;
        m.body = Body::Resolution {
            handle: "a/b".into(),
            indexes: vec![],
            types: vec![],
        };
        let bytes = m.encode();
        assert_eq!(bytes[2], 0x06);
        assert_eq!(Message::decode(&bytes).unwrap().encode(), bytes);
    }

    /// The pre-2.1 digest is `u32 16, MD5`: what `Encoder.decodeMessage` reads after taking the
    /// length's 0 high byte for the algorithm and stepping back.
    #[test]
    fn old_format_digest_is_a_length_prefixed_md5() {
        let request = [1u8, 2, 3];
        let d = RequestDigest::compute(digest_alg::MD5_OLD_FORMAT, &request);
        let mut m = Message::request(opcode::RESOLUTION, flags::RD, 1, 0, Body::Empty);
        (m.envelope.minor, m.envelope.suggested_minor) = (0, 0);
        m.header.response_code = rc::HANDLE_NOT_FOUND;
        m.request_digest = Some(d.clone());
        m.body = Body::Error {
            message: Some("x".into()),
        };
        let bytes = m.encode();
        let body = &bytes[ENVELOPE_LEN + HEADER_LEN..];
        assert_eq!(&body[..4], &[0, 0, 0, 16]);
        assert_eq!(&body[4..20], Md5::digest(request).as_slice());
        assert_eq!(&body[20..], &[0, 0, 0, 1, b'x', 0, 0, 0, 0]);
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back.request_digest, Some(d));
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn prefix_referral_before_2_5_is_an_error_message() {
        let mut m = Message::request(opcode::RESOLUTION, 0, 1, 0, Body::Empty);
        m.header.response_code = rc::PREFIX_REFERRAL;
        m.body = Body::Error {
            message: Some("backup".into()),
        };
        m.envelope.minor = 4;
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back.body, m.body);
        m.envelope.minor = 5;
        let back = Message::decode(&m.encode()).unwrap();
        assert!(matches!(back.body, Body::Referral { .. }), "{back:?}");
    }

    #[test]
    fn digest_algorithms_by_version() {
        assert_eq!(
            RequestDigest::alg_for_version(2, 0),
            digest_alg::MD5_OLD_FORMAT
        );
        assert_eq!(RequestDigest::alg_for_version(2, 1), digest_alg::SHA1);
        assert_eq!(RequestDigest::alg_for_version(2, 6), digest_alg::SHA1);
        assert_eq!(RequestDigest::alg_for_version(2, 7), digest_alg::SHA256);
        assert_eq!(RequestDigest::alg_for_version(2, 11), digest_alg::SHA256);
    }

    #[test]
    fn oversized_and_truncated_messages_are_refused() {
        let mut b = Envelope::new(1).encode().to_vec();
        b[16..20].copy_from_slice(&(MAX_MESSAGE_LENGTH as u32 + 1).to_be_bytes());
        assert!(matches!(
            Message::decode(&b),
            Err(DecodeError::TooLong { .. })
        ));
        b[16..20].copy_from_slice(&100u32.to_be_bytes());
        assert!(matches!(
            Message::decode(&b),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Message::decode(&b[..5]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_opcode_is_a_distinct_error() {
        let mut m = Message::request(
            999,
            0,
            1,
            0,
            Body::Handle {
                handle: "a/b".into(),
            },
        );
        m.header.op_code = 999;
        assert_eq!(
            Message::decode(&m.encode()),
            Err(DecodeError::UnknownOpCode(999))
        );
    }
}
