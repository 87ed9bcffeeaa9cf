//! Transport framing without the transport: how many bytes a TCP stream needs for its next
//! message, and the 512-byte UDP datagram split and reassembly of the reference server.

use std::collections::BTreeMap;

use crate::error::DecodeError;
use crate::message::{ENVELOPE_LEN, Envelope, envelope_flags};
use crate::wire::MAX_MESSAGE_LENGTH;

/// Largest datagram the reference sends or expects.
pub const MAX_UDP_PACKET: usize = 512;
/// Message bytes per datagram after the repeated envelope.
pub const UDP_DATA_PER_PACKET: usize = MAX_UDP_PACKET - ENVELOPE_LEN;

/// For a TCP stream: the length of the first complete message in `buf` (envelope included),
/// `Ok(None)` when more bytes are needed, or an error when the envelope announces more than
/// [`MAX_MESSAGE_LENGTH`] (the connection should then be answered and closed).
pub fn tcp_frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < ENVELOPE_LEN {
        return Ok(None);
    }
    let env = Envelope::decode(&buf[..ENVELOPE_LEN])?;
    let len = env.message_length as usize;
    if len > MAX_MESSAGE_LENGTH {
        return Err(DecodeError::TooLong {
            what: "message",
            len,
            max: MAX_MESSAGE_LENGTH,
        });
    }
    let total = ENVELOPE_LEN + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Splits an encoded message into datagrams as the reference does: one datagram when it fits
/// in 512 bytes, else fragments of 492 message bytes, each with the envelope repeated, the TC
/// flag set, `sequence` = fragment number and `message_length` = the whole message's length.
pub fn udp_split(message: &[u8]) -> Vec<Vec<u8>> {
    if message.len() <= MAX_UDP_PACKET || message.len() < ENVELOPE_LEN {
        return vec![message.to_vec()];
    }
    let Ok(env) = Envelope::decode(&message[..ENVELOPE_LEN]) else {
        return vec![message.to_vec()];
    };
    message[ENVELOPE_LEN..]
        .chunks(UDP_DATA_PER_PACKET)
        .enumerate()
        .map(|(i, chunk)| {
            let mut e = env;
            e.flags |= envelope_flags::TC;
            e.sequence = i as u32;
            let mut d = Vec::with_capacity(ENVELOPE_LEN + chunk.len());
            e.encode_into(&mut d);
            d.extend_from_slice(chunk);
            d
        })
        .collect()
}

/// What feeding a datagram to a [`UdpReassembler`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembly {
    /// The whole message (envelope with TC cleared and sequence 0, then the message bytes).
    Complete(Vec<u8>),
    /// More fragments are needed.
    Pending,
}

/// Collects the fragments of one multi-datagram message (one request id). Sans-IO: the caller
/// decides how long to wait and, when it gives up, [`UdpReassembler::missing`] says which
/// fragments never came.
#[derive(Debug)]
pub struct UdpReassembler {
    envelope: Option<Envelope>,
    fragments: BTreeMap<u32, Vec<u8>>,
    received: usize,
}

impl Default for UdpReassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpReassembler {
    pub fn new() -> Self {
        UdpReassembler {
            envelope: None,
            fragments: BTreeMap::new(),
            received: 0,
        }
    }

    /// Adds one datagram. Fragments of another request id, a length that disagrees with the
    /// first fragment, a sequence number past the end or a fragment of the wrong size are
    /// decode errors; a repeated fragment is ignored.
    pub fn push(&mut self, datagram: &[u8]) -> Result<Reassembly, DecodeError> {
        if datagram.len() < ENVELOPE_LEN {
            return Err(DecodeError::Truncated {
                what: "datagram envelope",
                needed: ENVELOPE_LEN,
                available: datagram.len(),
            });
        }
        let env = Envelope::decode(&datagram[..ENVELOPE_LEN])?;
        let total = env.message_length as usize;
        if total > MAX_MESSAGE_LENGTH {
            return Err(DecodeError::TooLong {
                what: "message",
                len: total,
                max: MAX_MESSAGE_LENGTH,
            });
        }
        let data = &datagram[ENVELOPE_LEN..];
        if let Some(first) = &self.envelope {
            if first.request_id != env.request_id || first.message_length != env.message_length {
                return Err(DecodeError::invalid(
                    "datagram",
                    "fragment belongs to another message",
                ));
            }
        }
        let n = Self::fragment_count(total);
        let seq = env.sequence as usize;
        if seq >= n {
            return Err(DecodeError::invalid(
                "datagram",
                format!("sequence {seq} past the last fragment {}", n - 1),
            ));
        }
        let expected = if seq + 1 == n {
            total - seq * UDP_DATA_PER_PACKET
        } else {
            UDP_DATA_PER_PACKET
        };
        if data.len() != expected {
            return Err(DecodeError::invalid(
                "datagram",
                format!(
                    "fragment {seq} has {} bytes, expected {expected}",
                    data.len()
                ),
            ));
        }
        // Only a fragment that fits fixes the message's envelope: a bogus first datagram
        // must not lock out the genuine fragments that follow it.
        self.envelope.get_or_insert(env);
        if let std::collections::btree_map::Entry::Vacant(e) = self.fragments.entry(env.sequence) {
            self.received += data.len();
            e.insert(data.to_vec());
        }
        if self.received < total {
            return Ok(Reassembly::Pending);
        }
        let mut e = self.envelope.unwrap_or(env);
        e.flags &= !envelope_flags::TC;
        e.sequence = 0;
        let mut out = Vec::with_capacity(ENVELOPE_LEN + total);
        e.encode_into(&mut out);
        for f in self.fragments.values() {
            out.extend_from_slice(f);
        }
        Ok(Reassembly::Complete(out))
    }

    fn fragment_count(total: usize) -> usize {
        total.div_ceil(UDP_DATA_PER_PACKET).max(1)
    }

    /// Sequence numbers not received yet (empty before the first fragment).
    pub fn missing(&self) -> Vec<u32> {
        let Some(env) = &self.envelope else {
            return Vec::new();
        };
        (0..Self::fragment_count(env.message_length as usize) as u32)
            .filter(|s| !self.fragments.contains_key(s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, Message, opcode};

    fn big_message() -> Vec<u8> {
        Message::request(
            opcode::RESOLUTION,
            0,
            77,
            0,
            Body::Resolution {
                handle: format!("12345/{}", "x".repeat(1400)),
                indexes: vec![],
                types: vec![],
            },
        )
        .encode()
    }

    #[test]
    fn split_and_reassemble_in_any_order() {
        let m = big_message();
        let mut parts = udp_split(&m);
        assert_eq!(parts.len(), (m.len() - 20).div_ceil(492));
        assert!(parts.iter().all(|p| p.len() <= MAX_UDP_PACKET));
        parts.reverse();
        let mut r = UdpReassembler::new();
        let mut out = None;
        for p in &parts {
            if let Reassembly::Complete(b) = r.push(p).unwrap() {
                out = Some(b);
            }
        }
        assert_eq!(out.unwrap(), m);
    }

    #[test]
    fn lost_fragment_is_detected() {
        let m = big_message();
        let parts = udp_split(&m);
        let mut r = UdpReassembler::new();
        assert_eq!(r.push(&parts[0]).unwrap(), Reassembly::Pending);
        assert_eq!(r.push(&parts[2]).unwrap(), Reassembly::Pending);
        assert_eq!(r.missing(), vec![1]);
        // A duplicate does not complete anything.
        assert_eq!(r.push(&parts[0]).unwrap(), Reassembly::Pending);
    }

    #[test]
    fn a_bogus_datagram_does_not_lock_out_the_genuine_fragments() {
        let m = big_message();
        let parts = udp_split(&m);
        let mut r = UdpReassembler::new();
        // Same request id, a sequence past the end and a different length: refused, and
        // nothing of it kept.
        let mut bogus = parts[0][..ENVELOPE_LEN].to_vec();
        bogus[12..16].copy_from_slice(&7u32.to_be_bytes());
        bogus[16..20].copy_from_slice(&100u32.to_be_bytes());
        assert!(r.push(&bogus).is_err());
        // A fragment of the right message but the wrong size is refused too.
        assert!(r.push(&parts[0][..ENVELOPE_LEN + 10]).is_err());
        let mut out = None;
        for p in &parts {
            if let Reassembly::Complete(b) = r.push(p).unwrap() {
                out = Some(b);
            }
        }
        assert_eq!(out.unwrap(), m);
    }

    #[test]
    fn tcp_framing() {
        let m = big_message();
        assert_eq!(tcp_frame_len(&m[..10]).unwrap(), None);
        assert_eq!(tcp_frame_len(&m[..100]).unwrap(), None);
        let mut two = m.clone();
        two.extend_from_slice(&m);
        assert_eq!(tcp_frame_len(&two).unwrap(), Some(m.len()));
        let mut bad = m.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(tcp_frame_len(&bad).is_err());
    }
}
