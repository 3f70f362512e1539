//! When the checkpointer takes a checkpoint (`checkpointer.c: CheckpointerMain`,
//! `xlog.c: XLogCheckpointNeeded`): every `checkpoint_timeout`, when WAL since the last
//! redo point reaches the `max_wal_size` share, on request. Time is passed in.

use std::time::{Duration, SystemTime};

use walstream_protocol::{Lsn, WalSegSize};

/// Why a checkpoint is taken (what PostgreSQL logs as "checkpoint starting: time", "wal",
/// "immediate force wait", "shutdown", "end-of-recovery").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointCause {
    /// `checkpoint_timeout` passed since the last one.
    Time,
    /// WAL since the last redo point reached the `max_wal_size` share.
    Wal,
    /// `CHECKPOINT`, a base backup, or another request.
    Requested,
    /// The server is shutting down.
    Shutdown,
    /// Crash recovery ended.
    EndOfRecovery,
}

impl CheckpointCause {
    /// The words PostgreSQL's `log_checkpoints` uses for it.
    pub fn log_words(self) -> &'static str {
        match self {
            CheckpointCause::Time => "time",
            CheckpointCause::Wal => "wal",
            CheckpointCause::Requested => "immediate force wait",
            CheckpointCause::Shutdown => "shutdown immediate",
            CheckpointCause::EndOfRecovery => "end-of-recovery immediate wait",
        }
    }
}

/// The checkpoint schedule's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// `checkpoint_timeout`.
    pub timeout: Duration,
    /// `max_wal_size` in MB.
    pub max_wal_size_mb: u64,
    /// `checkpoint_completion_target`.
    pub completion_target: f64,
    /// The WAL segment size.
    pub seg_size: WalSegSize,
}

impl Schedule {
    /// `CheckPointSegments` (`xlog.c: CalculateCheckpointSegments`): how many segments
    /// after the last redo point trigger a checkpoint, at least 1.
    pub fn checkpoint_segments(&self) -> u64 {
        let seg_mb = (u64::from(self.seg_size.bytes()) / (1024 * 1024)).max(1);
        let target = (self.max_wal_size_mb / seg_mb) as f64 / (1.0 + self.completion_target);
        (target as u64).max(1)
    }

    /// Whether a checkpoint is due at `now`, given when the last one started and its redo
    /// point, and the WAL insert position.
    pub fn due(
        &self,
        now: SystemTime,
        last_start: SystemTime,
        last_redo: Lsn,
        insert: Lsn,
    ) -> Option<CheckpointCause> {
        let seg = u64::from(self.seg_size.bytes());
        // XLogCheckpointNeeded: a finished segment CheckPointSegments - 1 past the redo
        // point's; PostgreSQL asks only when a segment is finished, so at least one.
        let segs = (insert.0 / seg).saturating_sub(last_redo.0 / seg);
        if segs >= (self.checkpoint_segments() - 1).max(1) {
            return Some(CheckpointCause::Wal);
        }
        let elapsed = now.duration_since(last_start).unwrap_or_default();
        (elapsed >= self.timeout).then_some(CheckpointCause::Time)
    }

    /// How long from `now` until the timed checkpoint is due.
    pub fn until_timed(&self, now: SystemTime, last_start: SystemTime) -> Duration {
        self.timeout.saturating_sub(now.duration_since(last_start).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(max_wal_size_mb: u64) -> Schedule {
        Schedule {
            timeout: Duration::from_secs(300),
            max_wal_size_mb,
            completion_target: 0.9,
            seg_size: WalSegSize::DEFAULT,
        }
    }

    #[test]
    fn checkpoint_segments_as_postgresql_computes_them() {
        // 1GB / 16MB = 64 segments, / 1.9 = 33 (PostgreSQL 15's default).
        assert_eq!(schedule(1024).checkpoint_segments(), 33);
        assert_eq!(schedule(32).checkpoint_segments(), 1);
        assert_eq!(schedule(2).checkpoint_segments(), 1);
    }

    #[test]
    fn timed_and_wal_triggers() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = schedule(1024);
        let seg = u64::from(WalSegSize::DEFAULT.bytes());
        let redo = Lsn(seg * 10 + 40);
        assert_eq!(s.due(t0, t0, redo, Lsn(seg * 10 + 9000)), None);
        assert_eq!(s.due(t0 + Duration::from_secs(299), t0, redo, Lsn(seg * 41 + 5)), None);
        assert_eq!(
            s.due(t0 + Duration::from_secs(300), t0, redo, Lsn(seg * 11)),
            Some(CheckpointCause::Time)
        );
        assert_eq!(s.due(t0, t0, redo, Lsn(seg * 42)), Some(CheckpointCause::Wal));
        // With a tiny max_wal_size, every finished segment.
        assert_eq!(schedule(2).due(t0, t0, redo, Lsn(seg * 10 + 100)), None);
        assert_eq!(schedule(2).due(t0, t0, redo, Lsn(seg * 11)), Some(CheckpointCause::Wal));
        assert_eq!(s.until_timed(t0 + Duration::from_secs(100), t0), Duration::from_secs(200));
        // A clock that went back counts as no time passed.
        assert_eq!(s.due(t0, t0 + Duration::from_secs(5), redo, redo), None);
    }
}
