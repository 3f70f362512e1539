//! The redo loop of crash recovery on two threads (`xlogrecovery.c: PerformWalRecovery`,
//! split in two): one reads WAL, checks it and decodes each record into an owned
//! [`RedoRecord`]; the other applies them to the engine in batches, each under one hold
//! of the engine's lock. Records are applied in WAL order, as one thread would.

use std::path::Path;
use std::sync::mpsc;

use walstream_protocol::Lsn;

use crate::error::NodeError;
use crate::replay::{RedoRecord, Replay};
use crate::xlog::{read_wal, ReadOptions, RecoveryEnd, Replayed};

/// Records handed over at a time, at most.
const BATCH_RECORDS: usize = 4096;
/// WAL bytes handed over at a time, at most (wide rows make few records of many bytes).
const BATCH_BYTES: u64 = 1 << 20;
/// Batches decoded ahead of the applier at most: with at most 128 MB of WAL in them, the
/// reader goes on decoding the next transaction while the applier applies a large one at
/// its commit.
const AHEAD: usize = 128;

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
    let _malloc = super::malloc::for_redo();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<RedoRecord>>(AHEAD);
        let reader = std::thread::Builder::new()
            .name("redo-read".into())
            .spawn_scoped(s, move || {
                let (mut batch, mut bytes) = (Vec::with_capacity(256), 0u64);
                let end = read_wal(wal_dir, from, opts, |r: &Replayed<'_>| {
                    batch.push(filter.decode(r.lsn, &r.record)?);
                    bytes += r.next_lsn.0.saturating_sub(r.lsn.0);
                    if batch.len() == BATCH_RECORDS || bytes >= BATCH_BYTES {
                        tx.send(std::mem::replace(&mut batch, Vec::with_capacity(256)))
                            .map_err(|_| applier_stopped())?;
                        bytes = 0;
                    }
                    Ok::<(), NodeError>(())
                })?;
                if !batch.is_empty() {
                    tx.send(batch).map_err(|_| applier_stopped())?;
                }
                Ok::<RecoveryEnd, NodeError>(end)
            })
            .map_err(|e| NodeError::State(format!("could not start the redo reader: {e}")))?;
        // On an error `rx` is dropped, and the reader stops at its next batch.
        let applied = rx.into_iter().try_for_each(|batch| replay.apply_batch(batch));
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
