//! The relay's WAL source: what the receiver wrote, served to downstream walsenders.
//!
//! The receiver tells it about every XLogData it writes (the bytes, shared, not copied)
//! and every flush. Recent bytes stay in memory, so a standby that keeps up is served
//! from there however many standbys there are; older bytes are read from the segment
//! files. Walsenders wake on the flushed-end watch as soon as a flush lands.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use walstream_protocol::lsn::{history_file_name, segment_file_name};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_receiver::stream::WalObserver;
use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};

/// Recently written WAL, by (timeline, start), evicted oldest first past a byte budget.
#[derive(Debug, Default)]
struct Cache {
    chunks: BTreeMap<(u32, u64), Bytes>,
    order: VecDeque<(u32, u64)>,
    bytes: usize,
}

/// Serves the relay's directory, from memory when it can.
#[derive(Debug)]
pub struct RelaySource {
    dir: PathBuf,
    seg_size: WalSegSize,
    system_id: AtomicU64,
    end: watch::Sender<WalEnd>,
    cache: Mutex<Cache>,
    cache_limit: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RelaySource {
    /// A source over `dir` whose WAL so far ends at `end`, keeping up to `cache_limit`
    /// bytes of recent WAL in memory.
    pub fn new(
        dir: PathBuf,
        seg_size: WalSegSize,
        system_id: u64,
        end: WalEnd,
        cache_limit: usize,
    ) -> Self {
        RelaySource {
            dir,
            seg_size,
            system_id: AtomicU64::new(system_id),
            end: watch::Sender::new(end),
            cache: Mutex::new(Cache::default()),
            cache_limit,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (reads served from memory, reads served from files).
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
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

    fn read_file(&self, tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        let segno = start.segno(self.seg_size);
        let name = segment_file_name(tli, segno, self.seg_size);
        let offset = start.segment_offset(self.seg_size);
        let len = len.min((self.seg_size.bytes() - offset) as usize);
        // The receiver renames `.partial` when the segment is complete: look for both.
        let file = [name.clone(), format!("{name}.partial"), name.clone()]
            .iter()
            .find_map(|n| File::open(self.dir.join(n)).ok());
        let Some(file) = file else {
            return Err(WalSourceError::SegmentRemoved { segment: name });
        };
        let mut buf = BytesMut::zeroed(len);
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..], u64::from(offset) + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(WalSourceError::Io { path: name, source }),
            }
        }
        buf.truncate(done);
        Ok(buf.freeze())
    }
}

impl WalObserver for RelaySource {
    fn identified(&self, system_id: u64, _tli: TimeLineId) {
        self.system_id.store(system_id, Ordering::Relaxed);
    }

    fn written(&self, tli: TimeLineId, start: Lsn, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        // A copy: `data` shares the receiver's 1 MiB staging buffer, and a cached slice of
        // a few kB would keep the whole buffer alive (the cache counts only its bytes).
        let data = Bytes::copy_from_slice(data);
        let mut cache = self.cache();
        let key = (tli.0, start.0);
        if let Some(old) = cache.chunks.insert(key, data.clone()) {
            cache.bytes -= old.len();
        } else {
            cache.order.push_back(key);
        }
        cache.bytes += data.len();
        while cache.bytes > self.cache_limit {
            let Some(oldest) = cache.order.pop_front() else { break };
            if let Some(old) = cache.chunks.remove(&oldest) {
                cache.bytes -= old.len();
            }
        }
    }

    fn flushed(&self, tli: TimeLineId, flushed: Lsn) {
        self.end.send_if_modified(|end| {
            let moved = end.tli != tli || flushed > end.flushed;
            if moved {
                *end = WalEnd { tli, flushed };
            }
            moved
        });
    }
}

impl WalSource for RelaySource {
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
        let name = history_file_name(tli);
        match std::fs::read(self.dir.join(&name)) {
            Ok(content) => Ok(Some(Bytes::from(content))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WalSourceError::Io { path: name, source }),
        }
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        // Never across the end of the segment, as the trait promises.
        let room = (self.seg_size.bytes() - start.segment_offset(self.seg_size)) as usize;
        let len = len.min(room);
        if let Some(bytes) = self.read_cached(file_tli, start, len) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.read_file(file_tli, start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &std::path::Path, limit: usize) -> RelaySource {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let end = WalEnd { tli: TimeLineId(1), flushed: Lsn(0x100_0000) };
        RelaySource::new(dir.to_path_buf(), seg, 7, end, limit)
    }

    #[test]
    fn reads_come_from_memory_then_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        let data = Bytes::from(vec![7u8; 600]);
        src.written(TimeLineId(1), Lsn(0x100_0000), &data);
        let got = src.read(TimeLineId(1), Lsn(0x100_0100), 1000).unwrap();
        assert_eq!(got.len(), 600 - 0x100);
        assert_eq!(src.cache_stats(), (1, 0));
        // Another timeline's chunk at the same place is not this one.
        assert!(matches!(
            src.read(TimeLineId(2), Lsn(0x100_0000), 10),
            Err(WalSourceError::SegmentRemoved { .. })
        ));
        // Evicted past the budget: the file answers (here: a .partial).
        src.written(TimeLineId(1), Lsn(0x100_0258), &Bytes::from(vec![8u8; 600]));
        let name =
            segment_file_name(TimeLineId(1), Lsn(0x100_0000).segno(src.seg_size), src.seg_size);
        std::fs::write(dir.path().join(format!("{name}.partial")), vec![9u8; 4096]).unwrap();
        let got = src.read(TimeLineId(1), Lsn(0x100_0000), 16).unwrap();
        assert_eq!(got.as_ref(), &[9u8; 16]);
        let got = src.read(TimeLineId(1), Lsn(0x100_0258), 16).unwrap();
        assert_eq!(got.as_ref(), &[8u8; 16]);
    }

    #[test]
    fn flushes_move_the_end_and_timeline_switches_publish() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), 1000);
        let mut end = src.end();
        src.flushed(TimeLineId(1), Lsn(0x100_0000));
        assert!(!end.has_changed().unwrap());
        src.flushed(TimeLineId(1), Lsn(0x100_0010));
        assert_eq!(end.borrow_and_update().flushed, Lsn(0x100_0010));
        src.flushed(TimeLineId(2), Lsn(0x100_0008));
        assert_eq!(
            *end.borrow_and_update(),
            WalEnd { tli: TimeLineId(2), flushed: Lsn(0x100_0008) }
        );
    }
}
