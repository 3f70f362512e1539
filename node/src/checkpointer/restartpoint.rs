//! Restartpoints (`xlog.c: CreateRestartPoint`): a standby's checkpoint. At a replayed
//! checkpoint record, the engine's state as of the replay position goes to `base/`
//! crash-safely, the control file points at that checkpoint, and segments before it that
//! `wal_keep_size` and the slots do not need are removed. The standby restarts from there.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use super::{CheckpointState, Retention};
use crate::engine::Engine;
use crate::error::NodeError;
use crate::xlog::durable::{first_to_keep, remove_old_segments};
use crate::xlog::{CheckPoint, ControlFile, DbState};

/// A replayed checkpoint record a restartpoint can be made at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartAt {
    /// The checkpoint record.
    pub lsn: Lsn,
    /// Its body.
    pub checkpoint: CheckPoint,
    /// Where replay is: every record before it is applied, none after.
    pub replayed: Lsn,
}

/// Makes a restartpoint in data directory `dir` and returns the segments removed.
///
/// The state is taken at `at.replayed` with the transactions still being replayed (their
/// buffered changes go into the state), so restart replays from there.
///
/// # Errors
/// Writing the state or the control file, or removing segments, failed.
pub fn restartpoint(
    dir: &Path,
    engine: &Arc<Engine>,
    control: &mut ControlFile,
    at: RestartAt,
    now: SystemTime,
    retention: Retention,
) -> Result<Vec<String>, NodeError> {
    let (lsn, image) = engine.image(|| at.replayed.0);
    let lsn = Lsn(lsn);
    let state = CheckpointState { lsn, redo: lsn, image };
    state.write(dir)?;
    let mut next = *control;
    next.checkpoint = at.lsn;
    next.checkpoint_copy = at.checkpoint;
    next.time = TimestampTz::from_system_time(now);
    next.state = DbState::InArchiveRecovery;
    next.write(dir)?;
    *control = next;
    let seg_size = control.seg_size;
    let first = first_to_keep(lsn, lsn, seg_size, retention.keep_mb, retention.slot_min);
    Ok(remove_old_segments(&dir.join("pg_wal"), first, seg_size)?)
}
