//! The redo loop of crash recovery on two threads (`xlogrecovery.c: PerformWalRecovery`,
//! split in two): one reads WAL, checks it and decodes each record into an owned
//! [`RedoRecord`]; the other applies them to the engine in batches, each under one hold
//! of the engine's lock. Records are applied in WAL order, as one thread would.
//!
//! Decoding a row change (building its row) is most of the reader's work. When the
//! applier is about to run out of batches, the reader leaves that to it: the change's
//! payload is copied into the batch and the applier decodes it, so each thread takes what
//! share of the work keeps the other busy.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use walstream_protocol::Lsn;

use crate::engine::Xid;
use crate::error::NodeError;
use crate::replay::{decode_change, RedoFilter, RedoRecord, Replay};
use crate::xlog::{read_wal, NodeRecord, ReadOptions, RecoveryEnd, Replayed};

/// Records handed over at a time, at most.
const BATCH_RECORDS: usize = 4096;
/// WAL bytes handed over at a time, at most (wide rows make few records of many bytes).
const BATCH_BYTES: u64 = 1 << 20;
/// Batches decoded ahead of the applier at most: with at most 128 MB of WAL in them, the
/// reader goes on decoding the next transaction while the applier applies a large one at
/// its commit.
const AHEAD: usize = 128;
/// With fewer batches than this waiting, the applier decodes row changes itself.
const OFFLOAD_BELOW: usize = 2;

/// A record handed to the applier.
enum Handed {
    /// Decoded by the reader.
    Decoded(RedoRecord),
    /// A row change for the applier to decode, its payload in the batch's buffer.
    Change { lsn: Lsn, xid: Xid, info: u8, at: usize, len: usize },
}

/// Records handed over together.
#[derive(Default)]
struct Batch {
    records: Vec<Handed>,
    /// The payloads of the [`Handed::Change`]s.
    payloads: Vec<u8>,
    /// WAL bytes of the records.
    wal_bytes: u64,
}

impl Batch {
    fn new() -> Batch {
        Batch { records: Vec::with_capacity(256), ..Batch::default() }
    }

    fn is_full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS || self.wal_bytes >= BATCH_BYTES
    }

    /// Adds the record `r`, decoded unless `offload` says to leave a row change to the
    /// applier.
    fn push(
        &mut self,
        filter: &RedoFilter,
        r: &Replayed<'_>,
        offload: bool,
    ) -> Result<(), NodeError> {
        self.wal_bytes += r.next_lsn.0.saturating_sub(r.lsn.0);
        let handed = match r.record {
            NodeRecord::RowChange { xid, info, payload }
                if offload && filter.wants_change(r.lsn, xid.0) =>
            {
                let at = self.payloads.len();
                self.payloads.extend_from_slice(payload);
                Handed::Change { lsn: r.lsn, xid: xid.0, info, at, len: payload.len() }
            }
            _ => Handed::Decoded(filter.decode(r.lsn, &r.record)?),
        };
        self.records.push(handed);
        Ok(())
    }

    /// The batch's records, decoding what the reader left.
    fn into_records(self) -> impl Iterator<Item = Result<RedoRecord, NodeError>> {
        let Batch { records, payloads, .. } = self;
        records.into_iter().map(move |h| match h {
            Handed::Decoded(r) => Ok(r),
            Handed::Change { lsn, xid, info, at, len } => {
                let payload = payloads.get(at..at + len).unwrap_or_default();
                Ok(RedoRecord::Change { xid, change: decode_change(lsn, info, payload)? })
            }
        })
    }
}

/// Replays the WAL of `wal_dir` from `from` into `replay` to the end of valid WAL.
///
/// # Errors
/// WAL that cannot be read, a change that does not decode or apply, a thread that cannot
/// be started.
pub(super) fn redo(
    wal_dir: &Path,
    from: Lsn,
    opts: &ReadOptions,
    replay: &mut Replay,
) -> Result<RecoveryEnd, NodeError> {
    let filter = replay.filter();
    let waiting = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(AHEAD);
        let waiting = &waiting;
        let reader = std::thread::Builder::new()
            .name("redo-read".into())
            .spawn_scoped(s, move || {
                let mut batch = Batch::new();
                let send = |b: Batch| {
                    waiting.fetch_add(1, Ordering::Relaxed);
                    tx.send(b).map_err(|_| applier_stopped())
                };
                let end = read_wal(wal_dir, from, opts, |r: &Replayed<'_>| {
                    let offload = waiting.load(Ordering::Relaxed) < OFFLOAD_BELOW;
                    batch.push(&filter, r, offload)?;
                    if batch.is_full() {
                        send(std::mem::replace(&mut batch, Batch::new()))?;
                    }
                    Ok::<(), NodeError>(())
                })?;
                if !batch.records.is_empty() {
                    send(batch)?;
                }
                Ok::<RecoveryEnd, NodeError>(end)
            })
            .map_err(|e| NodeError::State(format!("could not start the redo reader: {e}")))?;
        // On an error `rx` is dropped, and the reader stops at its next batch.
        let applied = rx.into_iter().try_for_each(|batch| {
            waiting.fetch_sub(1, Ordering::Relaxed);
            replay.apply_batch(batch.into_records())
        });
        let read = reader
            .join()
            .map_err(|_| NodeError::State("the redo reader panicked".into()))
            .and_then(|r| r);
        applied?;
        read
    })
}

fn applier_stopped() -> NodeError {
    NodeError::State("redo stopped".into())
}
