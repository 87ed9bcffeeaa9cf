//! The first look at a request's bytes: either a decoded request for the service, or the error
//! answer the reference server gives for bytes it could not take (captured in udp/20-28 and
//! tcp/20-22 of the reference fixtures). The reference answers such errors with version 2.3 and
//! request id 0xFFFFFFFF; we echo the request's id and version whenever we could read them, so
//! that the client can match the answer, and fall back to the reference's values otherwise.

use suyuan_codec::DecodeError;
use suyuan_codec::message::{
    Body, COMPATIBILITY_MINOR, ENVELOPE_LEN, Envelope, HEADER_LEN, Header, Message, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, flags, opcode, rc,
};
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;

/// The transport a request came in on; UDP is query-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// Node-to-node QUIC: a stream, so TCP's rules for what may be asked.
    Quic,
}

/// Request ids the reference uses when it could not read the request's.
pub const UNKNOWN_REQUEST_ID: u32 = 0xFFFF_FFFF;
/// Validity the reference gives its answers (expiration = now + 12 h).
pub const EXPIRATION_SECS: u32 = 12 * 3600;

/// What to do with one request's bytes.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded request for the service.
    Request(Message),
    /// An error answer to send as is.
    Reject(Message),
}

/// What a refusal knew about the request.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    envelope: Option<Envelope>,
    op_code: u32,
}

fn reject(known: Known, response_code: u32, message: String, now: u32) -> Message {
    let (major, minor, request_id) = match known.envelope {
        Some(e) => (e.major, e.minor, e.request_id),
        None => (PROTOCOL_MAJOR, COMPATIBILITY_MINOR, UNKNOWN_REQUEST_ID),
    };
    let (major, minor) = if (major, minor) > (PROTOCOL_MAJOR, PROTOCOL_MINOR) || major != 2 {
        (PROTOCOL_MAJOR, PROTOCOL_MINOR)
    } else {
        (major, minor)
    };
    Message {
        envelope: Envelope::reply((major, minor), 0, request_id),
        header: Header {
            op_code: known.op_code,
            response_code,
            op_flags: flags::CLIENT_DEFAULT,
            site_info_serial: 0xFFFF,
            recursion_count: 0,
            reserved: 0,
            expiration: now.saturating_add(EXPIRATION_SECS),
            body_length: 0,
        },
        request_digest: None,
        body: Body::Error {
            message: Some(message),
        },
        trailing: Vec::new(),
        credential: None,
    }
}

/// An error answer to a request whose envelope we read (for example a TCP read that ended early).
pub fn reject_with_envelope(
    envelope: Option<Envelope>,
    response_code: u32,
    message: String,
    now: u32,
) -> Message {
    reject(
        Known {
            envelope,
            op_code: 0,
        },
        response_code,
        message,
        now,
    )
}

/// Decodes one complete request (`bytes` = envelope + messageLength bytes, as a TCP frame or a
/// reassembled UDP message). Response codes follow the reference: 4 for a bad length or
/// opcode 0, 2 for anything that fails further in, 4 for an administrative request over UDP.
pub fn classify(bytes: &[u8], transport: Transport, now: u32) -> Inbound {
    let mut known = Known::default();
    if bytes.len() < ENVELOPE_LEN {
        return Inbound::Reject(reject(
            known,
            rc::PROTOCOL_ERROR,
            "Invalid message length".into(),
            now,
        ));
    }
    let envelope = match Envelope::decode(&bytes[..ENVELOPE_LEN]) {
        Ok(e) => e,
        Err(e) => {
            return Inbound::Reject(reject(known, rc::PROTOCOL_ERROR, e.to_string(), now));
        }
    };
    known.envelope = Some(envelope);
    let len = envelope.message_length as usize;
    if len > MAX_MESSAGE_LENGTH {
        return Inbound::Reject(reject(
            known,
            rc::ERROR,
            format!("Message length {len} exceeds the maximum of {MAX_MESSAGE_LENGTH}"),
            now,
        ));
    }
    let have = bytes.len() - ENVELOPE_LEN;
    if have != len {
        return Inbound::Reject(reject(
            known,
            rc::PROTOCOL_ERROR,
            format!("Expecting {len} bytes, only received {have}"),
            now,
        ));
    }
    if have >= HEADER_LEN {
        if let Ok(h) = Header::decode(&bytes[ENVELOPE_LEN..ENVELOPE_LEN + HEADER_LEN]) {
            if h.op_code == opcode::RESERVED {
                return Inbound::Reject(reject(
                    known,
                    rc::PROTOCOL_ERROR,
                    "Unknown opCode in message: 0".into(),
                    now,
                ));
            }
            if transport == Transport::Udp && opcode::is_administrative(h.op_code) {
                known.op_code = h.op_code;
                return Inbound::Reject(reject(
                    known,
                    rc::PROTOCOL_ERROR,
                    "Received admin request on non-admin interface".into(),
                    now,
                ));
            }
        }
    }
    match Message::decode(bytes) {
        Ok(m) if !m.header.is_request() => Inbound::Reject(reject(
            known,
            rc::PROTOCOL_ERROR,
            "Expected a request, got a response".into(),
            now,
        )),
        Ok(m) => Inbound::Request(m),
        Err(DecodeError::UnknownOpCode(op)) => Inbound::Reject(reject(
            known,
            rc::ERROR,
            format!("Unknown opCode in message: {op}"),
            now,
        )),
        Err(e @ DecodeError::InvalidUtf8 { what: "handle" }) => {
            Inbound::Reject(reject(known, rc::INVALID_HANDLE, e.to_string(), now))
        }
        Err(e) => Inbound::Reject(reject(
            known,
            rc::ERROR,
            format!("Cannot decode request: {e}"),
            now,
        )),
    }
}

/// A request's bytes in the clear, and the session key its answers are sealed with (when it
/// came encrypted).
pub type Opened = (Vec<u8>, Option<Vec<u8>>);

/// Opens a request sent encrypted in a session (envelope flag EC): the bytes with the message
/// decrypted and EC cleared, and the key to seal the answers with. Requests that are not
/// encrypted pass through unchanged. An encrypted request the service cannot open is answered
/// RC 501, as the reference does.
pub fn open_encrypted<S: crate::service::Service>(
    service: &S,
    bytes: Vec<u8>,
    now: u32,
) -> Result<Opened, Box<Message>> {
    let Some(mut env) = (bytes.len() >= ENVELOPE_LEN)
        .then(|| Envelope::decode(&bytes[..ENVELOPE_LEN]).ok())
        .flatten()
        .filter(Envelope::encrypted)
    else {
        return Ok((bytes, None));
    };
    let fail =
        |why: &str| reject_with_envelope(Some(env), rc::SESSION_FAILED, why.to_string(), now);
    let key = service
        .session_key(env.session_id)
        .ok_or_else(|| fail("Invalid session id. Unable to decrypt request message."))?;
    let plain =
        suyuan_codec::session::decrypt_message(&key, &bytes[ENVELOPE_LEN..]).map_err(|e| {
            fail(&format!(
                "Exception decrypting request with session key: {e}"
            ))
        })?;
    env.flags &= !suyuan_codec::message::envelope_flags::EC;
    env.message_length = suyuan_codec::wire::len_u32(plain.len());
    let mut out = env.encode().to_vec();
    out.extend_from_slice(&plain);
    Ok((out, Some(key)))
}

/// The wire bytes of each answer, sealed with `key` (fresh random IV each) when the request
/// came encrypted.
pub fn encode_reply(messages: &[Message], key: Option<&[u8]>) -> Vec<Vec<u8>> {
    messages
        .iter()
        .map(|m| {
            let plain = m.encode();
            let Some(key) = key else { return plain };
            let mut iv = [0u8; suyuan_codec::session::AES_IV_LEN];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut iv);
            match suyuan_codec::session::encrypt_message(key, &plain[ENVELOPE_LEN..], iv) {
                Ok(sealed) => {
                    let mut env = m.envelope;
                    env.flags |= suyuan_codec::message::envelope_flags::EC;
                    env.message_length = suyuan_codec::wire::len_u32(sealed.len());
                    let mut out = env.encode().to_vec();
                    out.extend_from_slice(&sealed);
                    out
                }
                // A session key shorter than AES needs cannot happen for sessions we made;
                // answer in the clear rather than not at all.
                Err(_) => plain,
            }
        })
        .collect()
}
