//! Framing and field helpers shared by the startup, frontend and backend codecs: a
//! bounds-checked reader over one message body and writers that back-patch the length word.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// Takes one `type byte + length word + body` frame off the front of `buf`.
///
/// `None` when the frame is not complete yet. The length word counts itself; it must be
/// at least 4 and at most `max` (`pqcomm.c: pq_getmessage`). Nothing is reserved ahead of
/// time, so a peer cannot make us allocate by announcing a huge length.
pub(crate) fn take_frame(buf: &mut BytesMut, max: u32) -> Result<Option<Bytes>, WireError> {
    let Some((&tag, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some(len) = read_u32(rest) else {
        return Ok(None);
    };
    if len < 4 || len > max {
        return Err(WireError::InvalidMessageLength { tag, len });
    }
    // len <= max <= u32::MAX; usize is at least 32 bits on every supported target.
    let total = 1 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(5);
    Ok(Some(frame))
}

/// The big-endian `u32` at the start of `bytes`, if there are four bytes.
pub(crate) fn read_u32(bytes: &[u8]) -> Option<u32> {
    let word: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

/// A cursor over one message body; every read is bounds-checked and names the message
/// type in its error.
#[derive(Debug)]
pub(crate) struct Reader {
    tag: u8,
    body: Bytes,
}

impl Reader {
    /// A reader over `body`, the payload of a message of type `tag`.
    pub(crate) fn new(tag: u8, body: Bytes) -> Reader {
        Reader { tag, body }
    }

    fn short(&self) -> WireError {
        WireError::InsufficientData { tag: self.tag }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.body.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.body.try_get_u8().map_err(|_| self.short())
    }

    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        self.body.try_get_i16().map_err(|_| self.short())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.body.try_get_u16().map_err(|_| self.short())
    }

    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        self.body.try_get_i32().map_err(|_| self.short())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.body.try_get_u32().map_err(|_| self.short())
    }

    /// The next `n` bytes, sharing the message's storage (`pqformat.c: pq_getmsgbytes`).
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        if n > self.body.len() {
            return Err(self.short());
        }
        Ok(self.body.split_to(n))
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.bytes(N)?;
        <[u8; N]>::try_from(&bytes[..]).map_err(|_| self.short())
    }

    /// Everything left, sharing the message's storage.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    /// A NUL-terminated string's bytes, without the NUL (`pqformat.c: pq_getmsgstring`).
    pub(crate) fn cstr_bytes(&mut self) -> Result<Bytes, WireError> {
        let Some(nul) = self.body.iter().position(|&b| b == 0) else {
            return Err(WireError::InvalidString { tag: self.tag });
        };
        let s = self.body.split_to(nul);
        self.body.advance(1);
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<String, WireError> {
        let bytes = self.cstr_bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 { tag: self.tag })
    }

    /// An `Int32` length then that many bytes; length -1 is NULL (`postgres.c: exec_bind_message`).
    pub(crate) fn nullable(&mut self) -> Result<Option<Bytes>, WireError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let n = usize::try_from(len).map_err(|_| self.short())?;
        self.bytes(n).map(Some)
    }

    /// `count` values read by `read`, with the count checked against the bytes left
    /// (each value takes at least `min_size` bytes) before anything is allocated.
    pub(crate) fn many<T>(
        &mut self,
        count: usize,
        min_size: usize,
        mut read: impl FnMut(&mut Reader) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(self.short());
        }
        (0..count).map(|_| read(self)).collect()
    }

    /// Fails when bytes are left over (`pqformat.c: pq_getmsgend`).
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(WireError::InvalidMessageFormat { tag: self.tag })
        }
    }
}

/// Writes a message: `tag` (if any), a length word counting itself, then what `body` writes.
///
/// A body longer than `i32::MAX` cannot be framed; its length word is written as
/// `u32::MAX`, which every peer rejects.
pub(crate) fn write_message(buf: &mut BytesMut, tag: Option<u8>, body: impl FnOnce(&mut BytesMut)) {
    if let Some(tag) = tag {
        buf.put_u8(tag);
    }
    let start = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = u32::try_from(buf.len() - start).ok().filter(|&l| l <= i32::MAX as u32);
    let word = len.unwrap_or(u32::MAX).to_be_bytes();
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&word);
    }
}

/// Writes `s` as a C string: its bytes up to the first NUL, then a NUL (as PostgreSQL,
/// whose strings end at their first NUL).
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    buf.put_slice(s.get(..end).unwrap_or_default());
    buf.put_u8(0);
}

/// Writes an `Int32` length (-1 for NULL) and the bytes.
pub(crate) fn put_nullable(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => buf.put_i32(-1),
        Some(v) => {
            buf.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
            buf.put_slice(v);
        }
    }
}

/// Writes a count as PostgreSQL's `Int16` (read back unsigned by `pq_getmsgint(.., 2)`).
/// Counts above 65535 cannot be sent; they are written as 65535 and the message then
/// fails to parse at the peer.
pub(crate) fn put_count(buf: &mut BytesMut, n: usize) {
    buf.put_u16(u16::try_from(n).unwrap_or(u16::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_waits_for_the_whole_message() {
        let mut buf = BytesMut::from(&b"Q\0\0\0"[..]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.put_slice(b"\x06a");
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.put_slice(b"\0S");
        assert_eq!(take_frame(&mut buf, 100).unwrap().unwrap(), Bytes::from_static(b"a\0"));
        assert_eq!(&buf[..], b"S");
    }

    #[test]
    fn frame_rejects_bad_lengths() {
        let mut buf = BytesMut::from(&b"S\0\0\0\x03"[..]);
        assert_eq!(
            take_frame(&mut buf, 100),
            Err(WireError::InvalidMessageLength { tag: b'S', len: 3 })
        );
        let mut buf = BytesMut::from(&b"S\0\0\0\x65"[..]);
        assert_eq!(
            take_frame(&mut buf, 100),
            Err(WireError::InvalidMessageLength { tag: b'S', len: 101 })
        );
    }

    #[test]
    fn reader_checks_bounds() {
        let mut r = Reader::new(b'B', Bytes::from_static(b"ab\0\xff\xff\xff\xfe"));
        assert_eq!(r.cstr().unwrap(), "ab");
        assert_eq!(r.nullable(), Err(WireError::InsufficientData { tag: b'B' }));
        let mut r = Reader::new(b'B', Bytes::from_static(b"ab"));
        assert_eq!(r.cstr(), Err(WireError::InvalidString { tag: b'B' }));
        let r = Reader::new(b'S', Bytes::from_static(b"x"));
        assert_eq!(r.finish(), Err(WireError::InvalidMessageFormat { tag: b'S' }));
        let mut r = Reader::new(b'D', Bytes::from_static(b"\0\0"));
        assert!(r.many(60000, 4, Reader::i32).is_err());
    }

    #[test]
    fn cstr_stops_at_nul_and_length_counts_itself() {
        let mut buf = BytesMut::new();
        write_message(&mut buf, Some(b'Q'), |b| put_cstr(b, b"a\0b"));
        assert_eq!(&buf[..], b"Q\0\0\0\x06a\0");
    }
}
