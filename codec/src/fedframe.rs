//! Node-to-node frames: what travels on a QUIC stream between nodes that is not a Handle
//! message (a trace request, a checkpoint to witness). A stream carries one request and its
//! answer. A Handle stream starts with the message envelope (its first byte is a protocol
//! major version, 2 or 5); a frame stream starts with the magic `SYF` and a kind byte, then the
//! request body (JSON) up to the end of the stream. The answer is a status (HTTP's codes,
//! big-endian u16) and the answer body up to the end of the stream.

use crate::DecodeError;

/// The first bytes of a frame stream.
pub const MAGIC: &[u8; 3] = b"SYF";
/// The longest request body a node reads.
pub const MAX_REQUEST: usize = 1 << 20;
/// The longest answer body a node reads (a trace of 10,000 nodes with proofs fits).
pub const MAX_ANSWER: usize = 64 << 20;

/// What a frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A trace from a handle of the answering node (the body: [trace request JSON]).
    Trace,
    /// A checkpoint to cosign (the body: the witness endpoint's `add-checkpoint` text).
    Witness,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Trace => b'T',
            Kind::Witness => b'W',
        }
    }

    fn of(b: u8) -> Option<Kind> {
        match b {
            b'T' => Some(Kind::Trace),
            b'W' => Some(Kind::Witness),
            _ => None,
        }
    }
}

/// Whether the bytes a stream starts with are a frame (else a Handle message).
pub fn is_frame(start: &[u8]) -> bool {
    start.starts_with(MAGIC)
}

/// A frame request's bytes.
pub fn encode_request(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(MAGIC);
    out.push(kind.byte());
    out.extend_from_slice(body);
    out
}

/// A frame request: its kind and body.
pub fn decode_request(bytes: &[u8]) -> Result<(Kind, &[u8]), DecodeError> {
    if !is_frame(bytes) {
        return Err(DecodeError::invalid("frame", "does not start with SYF"));
    }
    let &k = bytes.get(3).ok_or(DecodeError::Truncated {
        what: "frame kind",
        needed: 4,
        available: bytes.len(),
    })?;
    let kind =
        Kind::of(k).ok_or_else(|| DecodeError::invalid("frame", format!("unknown kind {k}")))?;
    let body = &bytes[4..];
    if body.len() > MAX_REQUEST {
        return Err(DecodeError::TooLong {
            what: "frame request",
            len: body.len(),
            max: MAX_REQUEST,
        });
    }
    Ok((kind, body))
}

/// A frame answer's bytes.
pub fn encode_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A frame answer: its status and body.
pub fn decode_answer(bytes: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let (status, body) = bytes
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Truncated {
            what: "frame status",
            needed: 2,
            available: bytes.len(),
        })?;
    let status = u16::from_be_bytes(*status);
    if !(100..=599).contains(&status) {
        return Err(DecodeError::invalid("frame", format!("status {status}")));
    }
    if body.len() > MAX_ANSWER {
        return Err(DecodeError::TooLong {
            what: "frame answer",
            len: body.len(),
            max: MAX_ANSWER,
        });
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let r = encode_request(Kind::Trace, b"{\"root\":\"x/y\"}");
        assert!(is_frame(&r));
        assert_eq!(
            decode_request(&r).unwrap(),
            (Kind::Trace, &b"{\"root\":\"x/y\"}"[..])
        );
        assert!(decode_request(b"SYF").is_err());
        assert!(decode_request(b"SYFZ{}").is_err());
        // A Handle envelope (major version 2) is not a frame.
        assert!(!is_frame(&[2, 11, 0, 0]));
        let a = encode_answer(200, b"{}");
        assert_eq!(decode_answer(&a).unwrap(), (200, &b"{}"[..]));
        assert!(decode_answer(&[0]).is_err());
        assert!(decode_answer(&[0, 7]).is_err());
    }
}
