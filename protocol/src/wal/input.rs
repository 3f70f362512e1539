//! The decoder's input: fed `Bytes` chunks addressed by LSN, sliced without copying when
//! a range lies in one chunk.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::lsn::Lsn;

/// Contiguous WAL bytes `[start, end)` held as the chunks they were fed in.
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// Chunks with the LSN of their first byte, in order, covering `[start, end)`.
    chunks: VecDeque<(u64, Bytes)>,
    /// Everything before this was dropped; bytes fed below it are discarded.
    start: u64,
    /// The end of what was fed.
    end: u64,
    /// The end of the first chunk (`start` if none): below it, discarding drops nothing.
    front_end: u64,
}

impl Input {
    /// An empty input whose first fed byte will be at `at`.
    pub(crate) fn new(at: Lsn) -> Self {
        Input { chunks: VecDeque::new(), start: at.0, end: at.0, front_end: at.0 }
    }

    /// The end of what was fed.
    pub(crate) fn end(&self) -> Lsn {
        Lsn(self.end)
    }

    /// Appends the bytes that follow [`Input::end`].
    pub(crate) fn push(&mut self, mut data: Bytes) {
        let at = self.end;
        self.end = at.saturating_add(data.len() as u64);
        if self.end <= self.start {
            return;
        }
        if at < self.start {
            let skip = (self.start - at) as usize;
            let _ = data.split_to(skip.min(data.len()));
            if !data.is_empty() {
                self.chunks.push_back((self.start, data));
            }
        } else if !data.is_empty() {
            self.chunks.push_back((at, data));
        }
        self.set_front_end();
    }

    fn set_front_end(&mut self) {
        self.front_end = self.chunks.front().map_or(self.start, |(at, c)| at + c.len() as u64);
    }

    /// Forgets everything before `lsn` (also bytes fed later, if `lsn` is beyond the end).
    /// Chunks are dropped once wholly before `lsn`; a chunk's head before `lsn` is only
    /// made unreachable, so a call that drops nothing is two compares.
    #[inline]
    pub(crate) fn discard_before(&mut self, lsn: Lsn) {
        if lsn.0 <= self.start {
            return;
        }
        self.start = lsn.0;
        if lsn.0 >= self.front_end {
            self.drop_chunks_before(lsn.0);
        }
    }

    fn drop_chunks_before(&mut self, lsn: u64) {
        while let Some((at, chunk)) = self.chunks.front() {
            if at + chunk.len() as u64 > lsn {
                break;
            }
            self.chunks.pop_front();
        }
        self.set_front_end();
    }

    /// Whether `[lsn, lsn + len)` has been fed and is still held.
    pub(crate) fn has(&self, lsn: Lsn, len: u64) -> bool {
        lsn.0 >= self.start && lsn.0.checked_add(len).is_some_and(|e| e <= self.end)
    }

    /// Index of the chunk holding `lsn`, if held. The front chunk usually does, since
    /// the decoder discards what it has read.
    fn chunk_index(&self, lsn: u64) -> Option<usize> {
        if lsn < self.start || lsn >= self.end {
            return None;
        }
        if let Some((at, chunk)) = self.chunks.front() {
            if lsn >= *at && lsn - at < chunk.len() as u64 {
                return Some(0);
            }
        }
        let i = self.chunks.partition_point(|(at, _)| *at <= lsn);
        i.checked_sub(1)
    }

    /// The first chunk held and the LSN of its first byte (its bytes before the start of
    /// what is held are included: callers index it from a held LSN).
    #[inline]
    pub(crate) fn front(&self) -> Option<(u64, &[u8])> {
        self.chunks.front().map(|(at, c)| (*at, &c[..]))
    }

    /// `[lsn, lsn + len)` borrowed, if held and inside one chunk.
    pub(crate) fn slice(&self, lsn: Lsn, len: usize) -> Option<&[u8]> {
        let i = self.chunk_index(lsn.0)?;
        let (at, chunk) = self.chunks.get(i)?;
        let off = (lsn.0 - at) as usize;
        chunk.get(off..off.checked_add(len)?)
    }

    /// `[lsn, lsn + len)`: a slice of one chunk if it lies in one, else a copy.
    pub(crate) fn bytes(&self, lsn: Lsn, len: usize) -> Option<Bytes> {
        if !self.has(lsn, len as u64) {
            return None;
        }
        if len == 0 {
            return Some(Bytes::new());
        }
        let i = self.chunk_index(lsn.0)?;
        let (at, chunk) = self.chunks.get(i)?;
        let off = (lsn.0 - at) as usize;
        if off + len <= chunk.len() {
            return Some(chunk.slice(off..off + len));
        }
        let mut out = Vec::with_capacity(len);
        self.copy_into(lsn, len, &mut out)?;
        Some(Bytes::from(out))
    }

    /// Appends `[lsn, lsn + len)` to `out`.
    pub(crate) fn copy_into(&self, lsn: Lsn, len: usize, out: &mut Vec<u8>) -> Option<()> {
        if !self.has(lsn, len as u64) {
            return None;
        }
        let mut pos = lsn.0;
        let mut left = len;
        let mut i = if len == 0 { return Some(()) } else { self.chunk_index(pos)? };
        while left > 0 {
            let (at, chunk) = self.chunks.get(i)?;
            let off = (pos - at) as usize;
            let piece = chunk.get(off..)?;
            let n = piece.len().min(left);
            out.extend_from_slice(piece.get(..n)?);
            left -= n;
            pos += n as u64;
            i += 1;
        }
        Some(())
    }

    /// `N` bytes at `lsn`, copied.
    pub(crate) fn array<const N: usize>(&self, lsn: Lsn) -> Option<[u8; N]> {
        if let Some(s) = self.slice(lsn, N) {
            return s.try_into().ok();
        }
        let mut buf = Vec::with_capacity(N);
        self.copy_into(lsn, N, &mut buf)?;
        buf.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_within_and_across_chunks() {
        let mut inp = Input::new(Lsn(100));
        inp.push(Bytes::from_static(b"hello "));
        inp.push(Bytes::from_static(b"world"));
        assert_eq!(inp.end(), Lsn(111));
        assert_eq!(&inp.bytes(Lsn(100), 5).unwrap()[..], b"hello");
        assert_eq!(&inp.bytes(Lsn(104), 4).unwrap()[..], b"o wo");
        assert_eq!(inp.array::<3>(Lsn(105)).unwrap(), *b" wo");
        assert!(inp.bytes(Lsn(108), 4).is_none());
        assert!(inp.bytes(Lsn(99), 1).is_none());
        inp.discard_before(Lsn(107));
        assert!(inp.bytes(Lsn(106), 1).is_none());
        assert_eq!(&inp.bytes(Lsn(107), 4).unwrap()[..], b"orld");
        inp.discard_before(Lsn(120));
        inp.push(Bytes::from_static(b"0123456789ab"));
        assert_eq!(&inp.bytes(Lsn(120), 3).unwrap()[..], b"9ab");
    }
}
