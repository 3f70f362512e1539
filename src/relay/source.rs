//! The relay's WAL source: what the receiver wrote, served to downstream walsenders by a
//! [`MemWalSource`] (recent bytes from memory, older ones from the segment files).
//!
//! [`RelayObserver`] is the thin adapter between them: the receiver tells it about every
//! XLogData it writes and every flush, and it hands both to the source, so walsenders wake
//! as soon as a flush lands.

use std::sync::Arc;

use bytes::Bytes;
use walstream_protocol::{Lsn, TimeLineId};
use walstream_receiver::stream::WalObserver;
use walstream_sender::walsource::MemWalSource;

/// Feeds what the receiver writes and flushes into a [`MemWalSource`].
#[derive(Debug, Clone)]
pub struct RelayObserver(pub Arc<MemWalSource>);

impl RelayObserver {
    /// Follows the receiver onto `tli` when it moved there.
    fn follow(&self, tli: TimeLineId) {
        if self.0.timeline() != tli {
            self.0.switch_timeline(tli);
        }
    }
}

impl WalObserver for RelayObserver {
    fn identified(&self, system_id: u64, _tli: TimeLineId) {
        self.0.set_system_id(system_id);
    }

    fn written(&self, tli: TimeLineId, start: Lsn, data: &Bytes) {
        self.follow(tli);
        // A copy: `data` shares the receiver's 1 MiB staging buffer, and a cached slice of
        // a few kB would keep the whole buffer alive (the cache counts only its bytes).
        self.0.append(start, Bytes::copy_from_slice(data));
    }

    fn flushed(&self, tli: TimeLineId, flushed: Lsn) {
        self.follow(tli);
        self.0.set_flushed(flushed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_protocol::WalSegSize;
    use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};

    fn relay(dir: &std::path::Path) -> (Arc<MemWalSource>, RelayObserver) {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let end = WalEnd { tli: TimeLineId(1), flushed: Lsn(0x100_0000) };
        let src = Arc::new(MemWalSource::new(dir.to_path_buf(), 7, seg, end, 1000));
        (src.clone(), RelayObserver(src))
    }

    #[test]
    fn what_the_receiver_writes_is_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (src, obs) = relay(dir.path());
        obs.identified(42, TimeLineId(1));
        assert_eq!(src.system_id(), 42);
        obs.written(TimeLineId(1), Lsn(0x100_0000), &Bytes::from(vec![7u8; 600]));
        let got = src.read(TimeLineId(1), Lsn(0x100_0100), 1000).unwrap();
        assert_eq!(got.len(), 600 - 0x100);
        assert_eq!(src.cache_stats(), (1, 0));
        assert!(matches!(
            src.read(TimeLineId(2), Lsn(0x100_0000), 10),
            Err(WalSourceError::SegmentRemoved { .. })
        ));
    }

    #[test]
    fn flushes_move_the_end_and_timeline_switches_publish() {
        let dir = tempfile::tempdir().unwrap();
        let (src, obs) = relay(dir.path());
        let mut end = src.end();
        obs.flushed(TimeLineId(1), Lsn(0x100_0000));
        assert!(!end.has_changed().unwrap());
        obs.flushed(TimeLineId(1), Lsn(0x100_0010));
        assert_eq!(end.borrow_and_update().flushed, Lsn(0x100_0010));
        obs.written(TimeLineId(2), Lsn(0x100_0008), &Bytes::from_static(b"tli2"));
        obs.flushed(TimeLineId(2), Lsn(0x100_0008));
        assert_eq!(
            *end.borrow_and_update(),
            WalEnd { tli: TimeLineId(2), flushed: Lsn(0x100_0008) }
        );
        assert_eq!(src.read(TimeLineId(2), Lsn(0x100_0008), 4).unwrap().as_ref(), b"tli2");
    }
}
