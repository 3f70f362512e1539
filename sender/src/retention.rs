//! Which WAL segments may go (`access/transam/xlog.c`: `KeepLogSeg`, `RemoveOldXlogFiles`).
//!
//! A served directory keeps everything unless `max_wal_size` is set: `walstream serve`
//! serves a directory that something else may own (an archive, a copy of pg_wal), so
//! removing files is opt-in. With it set, every `checkpoint_timeout` segments older than
//! `max(max_wal_size, wal_keep_size)` behind the flushed end are removed, except those a
//! replication slot still needs: a slot's `restart_lsn` always wins.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use walstream_protocol::{Lsn, WalSegSize, XLogSegNo};

use crate::slots::SlotStore;
use crate::walsource::{DirWalSource, WalSource};

/// The first segment to keep (`KeepLogSeg`): `keep_mb` of WAL behind the segment holding
/// `flushed`, and never past the oldest slot's `restart_lsn`.
pub fn keep_from(
    flushed: Lsn,
    seg_size: WalSegSize,
    keep_mb: u64,
    slot_min: Option<Lsn>,
) -> XLogSegNo {
    let current = Lsn(flushed.0.saturating_sub(1)).segno(seg_size);
    let keep_segs = (keep_mb * 1024 * 1024).div_ceil(u64::from(seg_size.bytes()));
    let mut first = XLogSegNo(current.0.saturating_sub(keep_segs));
    if let Some(slot) = slot_min {
        first = first.min(slot.segno(seg_size));
    }
    first
}

/// Removes old segments of `source` every `interval` until `cancel`, keeping `keep_mb` and
/// what the slots need.
pub async fn run(
    source: Arc<DirWalSource>,
    slots: Arc<SlotStore>,
    keep_mb: u64,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        remove_once(&source, &slots, keep_mb);
    }
}

/// One pass of [`run`]; returns the names of the removed segments.
pub fn remove_once(source: &DirWalSource, slots: &SlotStore, keep_mb: u64) -> Vec<String> {
    if let Err(e) = slots.flush_dirty() {
        warn!("could not write replication slot state: {e}");
    }
    let end = source.current_end();
    let first = keep_from(end.flushed, source.seg_size(), keep_mb, slots.min_restart_lsn());
    match source.remove_old_segments(first) {
        Ok(removed) => {
            for name in &removed {
                info!("removed write-ahead log file \"{name}\"");
            }
            removed
        }
        Err(e) => {
            warn!("could not remove old write-ahead log files: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_size_asked_and_what_slots_need() {
        let mb = WalSegSize::new(1 << 20).unwrap();
        // Flushed in segment 10: keeping 3 MB keeps segments 7..=10.
        assert_eq!(keep_from(Lsn(0xA0_1000), mb, 3, None), XLogSegNo(7));
        // At a segment boundary the segment holding the end is the previous one.
        assert_eq!(keep_from(Lsn(0xA0_0000), mb, 0, None), XLogSegNo(9));
        // A slot further back wins; one further ahead does not shorten the keep.
        assert_eq!(keep_from(Lsn(0xA0_1000), mb, 3, Some(Lsn(0x20_0010))), XLogSegNo(2));
        assert_eq!(keep_from(Lsn(0xA0_1000), mb, 3, Some(Lsn(0x90_0000))), XLogSegNo(7));
        // Never below zero.
        assert_eq!(keep_from(Lsn(0x10_0000), mb, 1024, None), XLogSegNo(0));
    }
}
