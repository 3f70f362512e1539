//! The WAL source a standby node's postmaster serves its walsenders from: the standby's
//! `pg_wal` while it replays, the new primary's WAL writer once it is promoted. A
//! walsender keeps the source it started with, so the switch happens underneath: the
//! published end moves to the new timeline, and a cascading walsender on the old one ends
//! it at the switch point and tells its standby to follow (`walsender.c`,
//! `XLogSendPhysical`: "We have been promoted").

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};

/// A [`WalSource`] whose inner source can be replaced while walsenders use it.
pub(super) struct SwitchSource {
    inner: RwLock<Arc<dyn WalSource>>,
    end: watch::Sender<WalEnd>,
    forward: Mutex<Option<JoinHandle<()>>>,
    system_id: u64,
    seg_size: WalSegSize,
}

impl SwitchSource {
    /// Serves `inner` until [`SwitchSource::switch`].
    pub(super) fn new(inner: Arc<dyn WalSource>) -> Arc<SwitchSource> {
        let end = watch::Sender::new(*inner.end().borrow());
        let this = Arc::new(SwitchSource {
            system_id: inner.system_id(),
            seg_size: inner.seg_size(),
            inner: RwLock::new(inner.clone()),
            end,
            forward: Mutex::new(None),
        });
        this.follow(&inner);
        this
    }

    /// Serves `inner` from now on; its end is published at once.
    pub(super) fn switch(&self, inner: Arc<dyn WalSource>) {
        *self.inner.write() = inner.clone();
        self.follow(&inner);
    }

    /// Publishes `inner`'s end as this source's, from now on.
    fn follow(&self, inner: &Arc<dyn WalSource>) {
        let mut from = inner.end();
        let to = self.end.clone();
        let task = tokio::spawn(async move {
            loop {
                let end = *from.borrow_and_update();
                end.publish(&to);
                if from.changed().await.is_err() {
                    break;
                }
            }
        });
        if let Some(old) = self.forward.lock().replace(task) {
            old.abort();
        }
    }

    fn current(&self) -> Arc<dyn WalSource> {
        self.inner.read().clone()
    }
}

impl Drop for SwitchSource {
    fn drop(&mut self) {
        if let Some(task) = self.forward.lock().take() {
            task.abort();
        }
    }
}

impl WalSource for SwitchSource {
    fn system_id(&self) -> u64 {
        self.system_id
    }

    fn seg_size(&self) -> WalSegSize {
        self.seg_size
    }

    fn end(&self) -> watch::Receiver<WalEnd> {
        self.end.subscribe()
    }

    fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        self.current().history_file(tli)
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        self.current().read(file_tli, start, len)
    }

    /// The inner source looks, and its end is this one's at once (not when the task that
    /// follows it runs next).
    fn refresh(&self) -> Result<(), WalSourceError> {
        let inner = self.current();
        inner.refresh()?;
        let end = *inner.end().borrow();
        end.publish(&self.end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_sender::walsource::MemWalSource;

    fn mem(dir: &std::path::Path, tli: u32, flushed: u64) -> Arc<MemWalSource> {
        let end = WalEnd { tli: TimeLineId(tli), flushed: Lsn(flushed) };
        Arc::new(MemWalSource::new(dir.to_path_buf(), 7, WalSegSize::DEFAULT, end, 1 << 20))
    }

    #[tokio::test]
    async fn the_end_follows_the_inner_source_across_a_switch() {
        let dir = tempfile::tempdir().unwrap();
        let a = mem(dir.path(), 1, 0x100_0000);
        let src = SwitchSource::new(a.clone());
        let mut end = src.end();
        assert_eq!(end.borrow_and_update().tli, TimeLineId(1));
        a.set_flushed(Lsn(0x100_2000));
        end.changed().await.unwrap();
        assert_eq!(end.borrow_and_update().flushed, Lsn(0x100_2000));
        let b = mem(dir.path(), 2, 0x100_2000);
        src.switch(b.clone());
        end.changed().await.unwrap();
        assert_eq!(
            *end.borrow_and_update(),
            WalEnd { tli: TimeLineId(2), flushed: Lsn(0x100_2000) }
        );
        // The old source no longer moves the end; the new one does.
        a.set_flushed(Lsn(0x100_4000));
        b.set_flushed(Lsn(0x100_3000));
        end.changed().await.unwrap();
        assert_eq!(end.borrow_and_update().flushed, Lsn(0x100_3000));
        b.append(Lsn(0x100_3000), Bytes::from_static(b"abc"));
        assert_eq!(
            src.read(TimeLineId(2), Lsn(0x100_3000), 3).unwrap(),
            Bytes::from_static(b"abc")
        );
    }
}
