//! [`MemWalSource`]: WAL its writer hands over as it writes it, served to walsenders from
//! memory while it is recent and from the segment files once evicted.
//!
//! The writer (a primary's WAL writer, a relay's receiver) calls
//! [`MemWalSource::append`] with the bytes it wrote and [`MemWalSource::set_flushed`]
//! after each flush; walsenders wake on the published [`WalEnd`] at once. A standby that
//! keeps up is served from memory however many standbys there are.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use super::segfile::SegmentFiles;
use super::{WalEnd, WalSource, WalSourceError};

/// Recently written WAL, by (timeline, start), evicted oldest first past a byte budget.
#[derive(Debug)]
struct Cache {
    /// The timeline appends and flushes are on.
    tli: TimeLineId,
    chunks: BTreeMap<(u32, u64), Bytes>,
    order: VecDeque<(u32, u64)>,
    bytes: usize,
}

/// Serves a directory of segment files whose writer tells it what it writes.
#[derive(Debug)]
pub struct MemWalSource {
    files: SegmentFiles,
    seg_size: WalSegSize,
    system_id: AtomicU64,
    end: watch::Sender<WalEnd>,
    cache: Mutex<Cache>,
    cache_limit: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MemWalSource {
    /// A source over the segment files in `dir` whose WAL so far ends at `end` (its
    /// timeline is the one appends are on), keeping up to `cache_bytes` of recent WAL in
    /// memory.
    pub fn new(
        dir: PathBuf,
        system_id: u64,
        seg_size: WalSegSize,
        end: WalEnd,
        cache_bytes: usize,
    ) -> Self {
        let cache =
            Cache { tli: end.tli, chunks: BTreeMap::new(), order: VecDeque::new(), bytes: 0 };
        MemWalSource {
            files: SegmentFiles::new(dir, seg_size),
            seg_size,
            system_id: AtomicU64::new(system_id),
            end: watch::Sender::new(end),
            cache: Mutex::new(cache),
            cache_limit: cache_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the system identifier (a relay learns it from its upstream).
    pub fn set_system_id(&self, system_id: u64) {
        self.system_id.store(system_id, Ordering::Relaxed);
    }

    /// The timeline appends and flushes are on.
    pub fn timeline(&self) -> TimeLineId {
        self.cache().tli
    }

    /// Later appends and flushes are on `tli`; walsenders see the new timeline with the
    /// next [`MemWalSource::set_flushed`]. Its history file must be in the directory by then.
    pub fn switch_timeline(&self, tli: TimeLineId) {
        self.cache().tli = tli;
    }

    /// Keeps `data`, written at `start` on the current timeline, in memory. The bytes are
    /// shared, not copied: a caller whose `data` slices a larger buffer copies first, or the
    /// whole buffer stays alive (the budget counts only `data`'s bytes).
    pub fn append(&self, start: Lsn, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let mut cache = self.cache();
        let key = (cache.tli.0, start.0);
        let len = data.len();
        if let Some(old) = cache.chunks.insert(key, data) {
            cache.bytes -= old.len();
        } else {
            cache.order.push_back(key);
        }
        cache.bytes += len;
        while cache.bytes > self.cache_limit {
            let Some(oldest) = cache.order.pop_front() else { break };
            if let Some(old) = cache.chunks.remove(&oldest) {
                cache.bytes -= old.len();
            }
        }
    }

    /// WAL on the current timeline is flushed up to `flushed`: publishes the new
    /// [`WalEnd`] (waking walsenders) when it moved forward or the timeline changed.
    pub fn set_flushed(&self, flushed: Lsn) {
        let tli = self.timeline();
        self.end.send_if_modified(|end| {
            let moved = end.tli != tli || flushed > end.flushed;
            if moved {
                *end = WalEnd { tli, flushed };
            }
            moved
        });
    }

    /// The writer removed segment `segno` of `tli` (a checkpoint recycled it): its bytes
    /// are no longer served from memory nor from a file kept open, so a walsender asking
    /// for them gets [`WalSourceError::SegmentRemoved`] as from PostgreSQL.
    pub fn segment_removed(&self, tli: TimeLineId, segno: XLogSegNo) {
        self.files.forget(tli, segno);
        let start = segno.start_lsn(self.seg_size).0;
        let end = start.saturating_add(u64::from(self.seg_size.bytes()));
        let mut cache = self.cache();
        let gone: Vec<(u32, u64)> =
            cache.chunks.range((tli.0, start)..(tli.0, end)).map(|(k, _)| *k).collect();
        for key in gone {
            if let Some(old) = cache.chunks.remove(&key) {
                cache.bytes -= old.len();
            }
        }
        cache.order.retain(|k| k.0 != tli.0 || k.1 < start || k.1 >= end);
    }

    /// The end last published.
    pub fn current_end(&self) -> WalEnd {
        *self.end.borrow()
    }

    /// (reads served from memory, reads served from files).
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// `len` cut at the end of `start`'s segment: a read never crosses it, as the trait
    /// promises.
    fn within_segment(&self, start: Lsn, len: usize) -> usize {
        len.min((self.seg_size.bytes() - start.segment_offset(self.seg_size)) as usize)
    }

    fn read_cached(&self, tli: TimeLineId, start: Lsn, len: usize) -> Option<Bytes> {
        let cache = self.cache();
        let ((t, s), chunk) = cache.chunks.range(..=(tli.0, start.0)).next_back()?;
        let offset = start.0.checked_sub(*s)?;
        if *t != tli.0 || offset >= chunk.len() as u64 {
            return None;
        }
        let offset = offset as usize;
        Some(chunk.slice(offset..chunk.len().min(offset + len)))
    }
}

impl WalSource for MemWalSource {
    fn system_id(&self) -> u64 {
        self.system_id.load(Ordering::Relaxed)
    }

    fn seg_size(&self) -> WalSegSize {
        self.seg_size
    }

    fn end(&self) -> watch::Receiver<WalEnd> {
        self.end.subscribe()
    }

    fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        self.files.history_file(tli)
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        // Never across the end of the segment, as the trait promises.
        let len = self.within_segment(start, len);
        if let Some(bytes) = self.read_cached(file_tli, start, len) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.files.read(file_tli, start, len)
    }

    fn file_range(
        &self,
        file_tli: TimeLineId,
        start: Lsn,
        len: usize,
    ) -> Result<Option<super::FileRange>, WalSourceError> {
        let len = self.within_segment(start, len);
        if self.read_cached(file_tli, start, len).is_some() {
            // `read` serves it from memory (and counts the hit).
            return Ok(None);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.files.file_range(file_tli, start, len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_protocol::lsn::segment_file_name;

    const SEG: u64 = 1 << 20;

    fn source(dir: &std::path::Path, limit: usize) -> MemWalSource {
        let seg = WalSegSize::new(SEG).unwrap();
        let end = WalEnd { tli: TimeLineId(1), flushed: Lsn(0x100_0000) };
        MemWalSource::new(dir.to_path_buf(), 7, seg, end, limit)
    }

    fn segment_name(src: &MemWalSource, tli: u32, lsn: Lsn) -> String {
        segment_file_name(TimeLineId(tli), lsn.segno(src.seg_size), src.seg_size)
    }

    #[test]
    fn recent_wal_comes_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        src.append(Lsn(0x100_0000), Bytes::from(vec![7u8; 600]));
        let got = src.read(TimeLineId(1), Lsn(0x100_0100), 1000).unwrap();
        assert_eq!(got.as_ref(), &[7u8; 600 - 0x100][..]);
        assert_eq!(src.cache_stats(), (1, 0));
        // Another timeline's chunk at the same place is not this one (and no file: removed).
        assert!(matches!(
            src.read(TimeLineId(2), Lsn(0x100_0000), 10),
            Err(WalSourceError::SegmentRemoved { .. })
        ));
        assert_eq!(src.cache_stats(), (1, 1));
    }

    #[test]
    fn evicted_wal_comes_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        src.append(Lsn(0x100_0000), Bytes::from(vec![7u8; 600]));
        src.append(Lsn(0x100_0258), Bytes::from(vec![8u8; 600]));
        // The first chunk went past the budget; the file answers (here: a .partial).
        let name = segment_name(&src, 1, Lsn(0x100_0000));
        std::fs::write(dir.path().join(format!("{name}.partial")), vec![9u8; 4096]).unwrap();
        assert_eq!(src.read(TimeLineId(1), Lsn(0x100_0000), 16).unwrap().as_ref(), &[9u8; 16]);
        assert_eq!(src.read(TimeLineId(1), Lsn(0x100_0258), 16).unwrap().as_ref(), &[8u8; 16]);
        assert_eq!(src.cache_stats(), (1, 1));
        // The complete file wins over the .partial once it exists.
        std::fs::write(dir.path().join(&name), vec![5u8; 4096]).unwrap();
        let src = source(dir.path(), 1000);
        assert_eq!(src.read(TimeLineId(1), Lsn(0x100_0010), 4).unwrap().as_ref(), &[5u8; 4]);
    }

    #[test]
    fn file_ranges_are_offered_only_for_wal_not_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        src.append(Lsn(0x100_0000), Bytes::from(vec![7u8; 600]));
        src.append(Lsn(0x100_0258), Bytes::from(vec![8u8; 600]));
        let name = segment_name(&src, 1, Lsn(0x100_0000));
        std::fs::write(dir.path().join(&name), vec![9u8; 4096]).unwrap();
        // Recent: from memory, so no file range.
        assert!(src.file_range(TimeLineId(1), Lsn(0x100_0258), 16).unwrap().is_none());
        // Evicted: the file's bytes, as `read` would give them.
        let r = src.file_range(TimeLineId(1), Lsn(0x100_0010), 16).unwrap().unwrap();
        assert_eq!((r.offset, r.len), (0x10, 16));
        let mut buf = [0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&*r.file, &mut buf, r.offset).unwrap();
        assert_eq!(buf, [9u8; 16]);
        // Never more than the file holds, nor past the segment's end.
        let r = src.file_range(TimeLineId(1), Lsn(0x100_0F00), 1 << 20).unwrap().unwrap();
        assert_eq!(r.len, 4096 - 0xF00);
        let r = src.file_range(TimeLineId(1), Lsn(0x100_2000), 16).unwrap().unwrap();
        assert_eq!(r.len, 0);
        assert!(matches!(
            src.file_range(TimeLineId(1), Lsn(0x200_0000), 16),
            Err(WalSourceError::SegmentRemoved { .. })
        ));
    }

    #[test]
    fn removed_segment_is_segment_removed() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 100);
        src.append(Lsn(0x100_0000), Bytes::from(vec![7u8; 200]));
        match src.read(TimeLineId(1), Lsn(0x100_0000), 16) {
            Err(WalSourceError::SegmentRemoved { segment }) => {
                assert_eq!(segment, "000000010000000000000010");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_segment_the_writer_removed_is_gone_from_memory_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1 << 20);
        let name = segment_name(&src, 1, Lsn(SEG));
        std::fs::write(dir.path().join(&name), vec![3u8; 64]).unwrap();
        src.append(Lsn(SEG), Bytes::from(vec![7u8; 32]));
        src.append(Lsn(2 * SEG), Bytes::from(vec![8u8; 32]));
        // Read once from the file so that it is the open one.
        assert_eq!(src.read(TimeLineId(1), Lsn(SEG + 40), 4).unwrap().as_ref(), &[3u8; 4]);
        std::fs::remove_file(dir.path().join(&name)).unwrap();
        src.segment_removed(TimeLineId(1), Lsn(SEG).segno(src.seg_size));
        for at in [Lsn(SEG), Lsn(SEG + 40)] {
            assert!(matches!(
                src.read(TimeLineId(1), at, 4),
                Err(WalSourceError::SegmentRemoved { .. })
            ));
        }
        // The next segment's WAL is still in memory.
        assert_eq!(src.read(TimeLineId(1), Lsn(2 * SEG), 4).unwrap().as_ref(), &[8u8; 4]);
    }

    #[test]
    fn reads_stop_at_the_segment_end() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1 << 20);
        let start = Lsn(2 * SEG - 8);
        src.append(start, Bytes::from(vec![1u8; 32]));
        assert_eq!(src.read(TimeLineId(1), start, 100).unwrap().len(), 8);
    }

    #[test]
    fn flushes_move_the_end_and_timeline_switches_publish() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        let mut end = src.end();
        src.set_flushed(Lsn(0x100_0000));
        assert!(!end.has_changed().unwrap());
        src.set_flushed(Lsn(0x100_0010));
        assert_eq!(end.borrow_and_update().flushed, Lsn(0x100_0010));
        src.switch_timeline(TimeLineId(2));
        assert!(!end.has_changed().unwrap(), "published with the next flush");
        src.append(Lsn(0x100_0008), Bytes::from_static(b"tli2"));
        src.set_flushed(Lsn(0x100_0008));
        assert_eq!(
            *end.borrow_and_update(),
            WalEnd { tli: TimeLineId(2), flushed: Lsn(0x100_0008) }
        );
        assert_eq!(src.read(TimeLineId(2), Lsn(0x100_0008), 4).unwrap().as_ref(), b"tli2");
        src.set_system_id(9);
        assert_eq!(src.system_id(), 9);
    }
}
