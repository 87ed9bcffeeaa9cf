//! Big-endian primitives of the Handle wire format: a bounds-checked reader and an appending
//! writer. Every length and count read from the wire is checked against what is left of the
//! input before anything is allocated, so hostile input cannot make us reserve memory it does
//! not itself occupy.

use crate::error::DecodeError;

/// The reference server refuses messages longer than this (envelope messageLength).
pub const MAX_MESSAGE_LENGTH: usize = 262_144;

/// A cursor over an input slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes `n` bytes, or fails naming `what` needed them.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(self.u32(what)? as i32)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `u32` length followed by that many bytes.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// A `u32` count of items, each at least `min_item_size` bytes long: the count is refused
    /// when the items could not possibly fit in what is left, which bounds any `Vec` built from it.
    pub fn count(
        &mut self,
        min_item_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(what)? as usize;
        let need = count.saturating_mul(min_item_size.max(1));
        if need > self.remaining() {
            return Err(DecodeError::CountTooLarge {
                what,
                count,
                available: self.remaining(),
            });
        }
        Ok(count)
    }

    /// Fails when bytes are left over.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                what,
                trailing: self.remaining(),
            });
        }
        Ok(())
    }
}

/// Appending writer helpers over a `Vec<u8>`.
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_bytes(&mut self, b: &[u8]);
    fn put_str(&mut self, s: &str) {
        self.put_bytes(s.as_bytes());
    }
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bytes(&mut self, b: &[u8]) {
        self.put_u32(len_u32(b.len()));
        self.extend_from_slice(b);
    }
}

/// Lengths on the wire are u32; nothing we build comes near that, and saturating keeps an
/// impossible case from wrapping into a wrong but plausible length.
pub fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_bounded_by_remaining_input() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0]);
        assert!(matches!(
            r.count(4, "items"),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_string_is_an_error() {
        let mut r = Reader::new(&[0, 0, 0, 9, b'a']);
        assert!(matches!(r.str("s"), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn writer_and_reader_agree() {
        let mut w = Vec::new();
        w.put_u8(7);
        w.put_u16(0x1234);
        w.put_u32(0xdeadbeef);
        w.put_u64(1 << 40);
        w.put_str("88.118.8/meter-0001");
        let mut r = Reader::new(&w);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x1234);
        assert_eq!(r.u32("c").unwrap(), 0xdeadbeef);
        assert_eq!(r.u64("d").unwrap(), 1 << 40);
        assert_eq!(r.str("e").unwrap(), "88.118.8/meter-0001");
        r.finish("end").unwrap();
    }
}
