//! Applying streamed WAL: the [`Apply`] trait, the [`ApplyPipeline`] that decodes the
//! stream and hands records to it in LSN order (the startup process's loop,
//! `xlogrecovery.c: PerformWalRecovery`), and the default [`VerifyingApplier`].

mod verify;

use bytes::Bytes;
use walstream_protocol::wal::{RecordView, WalDecoder, WalError};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

pub use verify::{ApplyStats, RmgrCounts, RmgrStats, VerifyingApplier};

/// Why applying stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The WAL does not decode (CRC, headers, `xl_prev` chain, page address, ...): the
    /// record at `lsn` and everything after it are not applied.
    #[error("corrupt WAL at {lsn}: {message}")]
    Corrupt {
        /// The record that could not be read.
        lsn: Lsn,
        /// xlogreader.c's message.
        message: String,
    },
    /// An [`Apply`] refused the record at `lsn`.
    #[error("could not apply WAL record at {lsn}: {message}")]
    Failed {
        /// The record.
        lsn: Lsn,
        /// Why.
        message: String,
    },
    /// Fed bytes that do not continue what was fed.
    #[error("got WAL data at {got}, expected {expected}")]
    NotContiguous {
        /// Where the data starts.
        got: Lsn,
        /// Where the next data was expected.
        expected: Lsn,
    },
    /// A timeline switch after WAL past the switch point was fed on the old timeline.
    #[error(
        "cannot switch to timeline {tli} at {switchpoint}: WAL up to {fed} of timeline \
         {old} was already received"
    )]
    PastSwitchPoint {
        /// The new timeline.
        tli: TimeLineId,
        /// Where it begins.
        switchpoint: Lsn,
        /// The old timeline.
        old: TimeLineId,
        /// How far the old timeline was fed.
        fed: Lsn,
    },
}

impl ApplyError {
    /// The error for a decoder failure.
    pub fn corrupt(e: &WalError) -> ApplyError {
        ApplyError::Corrupt { lsn: e.lsn, message: e.to_string() }
    }
}

/// Applies decoded records. Called with records in LSN order, after their bytes were
/// written to disk.
pub trait Apply: Send {
    /// Applies one record.
    ///
    /// # Errors
    /// An [`ApplyError`] (usually [`ApplyError::Failed`]) stops streaming: nothing from
    /// this record on is reported applied.
    /// The record is borrowed from the decoder, no allocation per record; an applier that
    /// keeps records calls [`RecordView::to_owned_record`].
    fn apply(&mut self, record: &RecordView<'_>) -> Result<(), ApplyError>;

    /// The oldest transaction (xmin, epoch) the applier's readers still need, for hot
    /// standby feedback; `None` when it has no readers (feedback then clears the xmin).
    fn feedback_xmin(&self) -> Option<(u32, u32)> {
        None
    }
}

/// Decodes the received stream and feeds an [`Apply`].
#[derive(Debug)]
pub struct ApplyPipeline {
    decoder: WalDecoder,
    tli: TimeLineId,
    /// `EndRecPtr` of the last applied record (or the start).
    applied: Lsn,
    /// The first error: sticky.
    error: Option<ApplyError>,
    /// The decoder reached the end of WAL (zeros, a recycled page): nothing more decodes.
    end_of_wal: Option<WalError>,
}

impl ApplyPipeline {
    /// Starts at `start`, anywhere (a segment start, as streaming begins): the first
    /// record applied is the first that begins at or after it (`XLogFindNextRecord`).
    /// The first bytes fed must begin at `start`'s segment start.
    pub fn find_next(start: Lsn, seg_size: WalSegSize, tli: TimeLineId) -> Self {
        Self::with(WalDecoder::find_next(start, seg_size), start, tli)
    }

    /// Starts at `start`, where a record begins (a replay position). The first bytes fed
    /// must begin at `start`'s segment start (the decoder checks its first page).
    pub fn at_record(start: Lsn, seg_size: WalSegSize, tli: TimeLineId) -> Self {
        Self::with(WalDecoder::new(start, seg_size), start, tli)
    }

    fn with(mut decoder: WalDecoder, start: Lsn, tli: TimeLineId) -> Self {
        decoder.set_timeline(tli);
        ApplyPipeline { decoder, tli, applied: start, error: None, end_of_wal: None }
    }

    /// Requires every long page header to carry this system identifier.
    pub fn set_system_id(&mut self, sysid: u64) {
        self.decoder.set_system_id(sysid);
    }

    /// The timeline being received.
    pub fn timeline(&self) -> TimeLineId {
        self.tli
    }

    /// Where the next fed bytes are expected.
    pub fn next_feed_lsn(&self) -> Lsn {
        self.decoder.next_feed_lsn()
    }

    /// `EndRecPtr` of the last applied record (the next record's start, or the next
    /// segment start after `XLOG_SWITCH`); the start position before any.
    pub fn applied(&self) -> Lsn {
        self.applied
    }

    /// The end-of-WAL condition the decoder stopped at, if it did (zeros where a record
    /// should be: not corruption, but nothing after it is applied).
    pub fn end_of_wal(&self) -> Option<&WalError> {
        self.end_of_wal.as_ref()
    }

    /// Feeds the bytes of one XLogData message, which begins at `start`. Bytes before
    /// [`ApplyPipeline::next_feed_lsn`] were fed already and are skipped (a stream
    /// restarted at a segment start after a reconnection or a timeline switch).
    ///
    /// # Errors
    /// [`ApplyError::NotContiguous`] if `start` is past the expected position.
    pub fn feed(&mut self, start: Lsn, bytes: &Bytes) -> Result<(), ApplyError> {
        let expected = self.decoder.next_feed_lsn();
        if start > expected {
            return Err(ApplyError::NotContiguous { got: start, expected });
        }
        let skip = expected - start;
        if skip < bytes.len() as u64 {
            self.decoder.feed(bytes.slice(skip as usize..));
        }
        Ok(())
    }

    /// The stream switched to timeline `tli`, which begins at `switchpoint` (the old
    /// timeline's stream ended there). The new stream may restart at the switch point's
    /// segment start: the bytes already fed are skipped.
    ///
    /// # Errors
    /// [`ApplyError::PastSwitchPoint`] if more than the old timeline's WAL up to
    /// `switchpoint` was fed.
    pub fn switch_timeline(&mut self, tli: TimeLineId, switchpoint: Lsn) -> Result<(), ApplyError> {
        let fed = self.decoder.next_feed_lsn();
        if fed > switchpoint {
            let old = self.tli;
            return Err(ApplyError::PastSwitchPoint { tli, switchpoint, old, fed });
        }
        self.tli = tli;
        self.decoder.set_timeline(tli);
        Ok(())
    }

    /// Decodes every complete record fed and applies it, in order.
    ///
    /// Returns the applied position ([`ApplyPipeline::applied`]). At the end of WAL
    /// (see [`ApplyPipeline::end_of_wal`]) it stops without an error.
    ///
    /// # Errors
    /// [`ApplyError::Corrupt`] for WAL that does not decode, or the applier's error;
    /// sticky: later calls return it again and apply nothing.
    pub fn apply_available(&mut self, applier: &mut dyn Apply) -> Result<Lsn, ApplyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.end_of_wal.is_some() {
            return Ok(self.applied);
        }
        loop {
            let applied = match self.decoder.poll_ref() {
                Ok(Some(record)) => match applier.apply(&record) {
                    Ok(()) => record.next_lsn,
                    Err(e) => return Err(self.stop(e)),
                },
                Ok(None) => return Ok(self.applied),
                Err(e) if e.is_end_of_wal() => {
                    tracing::debug!("end of WAL at {}: {e}", e.lsn);
                    self.end_of_wal = Some(e);
                    return Ok(self.applied);
                }
                Err(e) => return Err(self.stop(ApplyError::corrupt(&e))),
            };
            self.applied = applied;
        }
    }

    fn stop(&mut self, e: ApplyError) -> ApplyError {
        self.error = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests;
