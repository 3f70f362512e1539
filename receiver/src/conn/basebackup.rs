//! The client side of `BASE_BACKUP` (`pg_basebackup.c: BaseBackup`): the start position,
//! the tablespace list, the COPY OUT of archives and manifest, the end position.

use std::str::FromStr;

use bytes::Bytes;
use walstream_protocol::wire::BackendMessage;
use walstream_protocol::{Lsn, TimeLineId};

use super::query::{unexpected, QueryResult, ResultCollector};
use super::{ConnError, ProtocolViolation, ReplicationConn};

/// One row of the tablespace list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceRow {
    /// `spcoid`; `None` for the main data directory.
    pub oid: Option<u32>,
    /// `spclocation`.
    pub location: Option<String>,
    /// `size` in kB, with `PROGRESS`.
    pub size_kb: Option<u64>,
}

/// What `BASE_BACKUP` answers before its COPY OUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStarted {
    /// The start position (the checkpoint's redo point).
    pub start: Lsn,
    /// Its timeline.
    pub tli: TimeLineId,
    /// The tablespaces.
    pub tablespaces: Vec<TablespaceRow>,
}

fn position(r: &QueryResult) -> Result<(Lsn, TimeLineId), ConnError> {
    let bad = || {
        ConnError::Protocol(ProtocolViolation::BackupPosition(
            r.get_text(0, 0).unwrap_or_default().to_string(),
        ))
    };
    if r.rows.len() != 1 || r.columns.len() < 2 {
        return Err(ConnError::Protocol(ProtocolViolation::BackupResultShape {
            rows: r.rows.len(),
            fields: r.columns.len(),
        }));
    }
    let lsn = r.get_text(0, 0).and_then(|s| Lsn::from_str(s).ok()).ok_or_else(bad)?;
    let tli = r.get_text(0, 1).and_then(|s| s.parse::<u32>().ok()).ok_or_else(bad)?;
    Ok((lsn, TimeLineId(tli)))
}

impl ReplicationConn {
    /// Sends `command` (a `BASE_BACKUP`) and reads up to its CopyOutResponse.
    ///
    /// # Errors
    /// [`ConnError::Server`] when the server refuses it; a protocol error for answers of the
    /// wrong shape.
    pub async fn start_base_backup(&mut self, command: &str) -> Result<BackupStarted, ConnError> {
        self.query_start(command).await?;
        let mut sets: Vec<QueryResult> = Vec::new();
        let mut current = ResultCollector::default();
        loop {
            let msg = self.next_message().await?;
            match msg {
                BackendMessage::CopyOutResponse(_) => break,
                BackendMessage::CommandComplete(_) => {
                    current.feed(msg)?;
                    let done = std::mem::take(&mut current);
                    sets.push(done.finish()?.0);
                }
                other => {
                    if current.feed(other)? {
                        // ReadyForQuery before any COPY: the error that ended it.
                        current.finish()?;
                        return Err(ConnError::Protocol(ProtocolViolation::BackupNoCopy));
                    }
                }
            }
        }
        let [start, spaces] = <[QueryResult; 2]>::try_from(sets)
            .map_err(|sets| ConnError::Protocol(ProtocolViolation::BackupResultSets(sets.len())))?;
        let (start, tli) = position(&start)?;
        let num = |row: usize, col: usize| spaces.get_text(row, col).and_then(|s| s.parse().ok());
        let tablespaces = (0..spaces.rows.len())
            .map(|i| TablespaceRow {
                oid: num(i, 0).map(|v: u64| v as u32),
                location: spaces.get_text(i, 1).map(str::to_string),
                size_kb: num(i, 2),
            })
            .collect();
        Ok(BackupStarted { start, tli, tablespaces })
    }

    /// The next CopyData payload of the backup, `None` at the server's CopyDone.
    ///
    /// # Errors
    /// [`ConnError::Server`] for an error the server raised mid-backup; I/O errors.
    pub async fn next_backup_data(&mut self) -> Result<Option<Bytes>, ConnError> {
        match self.recv_copy().await? {
            super::CopyEvent::CopyData(b) => Ok(Some(b)),
            super::CopyEvent::CopyDone => Ok(None),
            super::CopyEvent::CommandComplete(_) => {
                Err(ConnError::Protocol(ProtocolViolation::UnexpectedMessage {
                    tag: b'C',
                    context: "during the backup",
                }))
            }
            super::CopyEvent::ReadyForQuery(_) => {
                Err(ConnError::Protocol(ProtocolViolation::UnexpectedMessage {
                    tag: b'Z',
                    context: "during the backup",
                }))
            }
        }
    }

    /// After the CopyDone: reads the end position and the rest up to ReadyForQuery.
    ///
    /// # Errors
    /// [`ConnError::Server`] for an error at the end of the backup; a protocol error for
    /// answers of the wrong shape.
    pub async fn finish_base_backup(&mut self) -> Result<(Lsn, TimeLineId), ConnError> {
        let mut end = None;
        let mut current = ResultCollector::default();
        loop {
            let msg = self.next_message().await?;
            match msg {
                BackendMessage::CommandComplete(_) if end.is_none() => {
                    current.feed(msg)?;
                    let done = std::mem::take(&mut current);
                    end = Some(done.finish()?.0);
                }
                BackendMessage::CopyData(_) | BackendMessage::CopyDone => {
                    return Err(unexpected(&msg, "after the backup"));
                }
                other => {
                    if current.feed(other)? {
                        current.finish()?;
                        break;
                    }
                }
            }
        }
        let end = end.ok_or(ConnError::Protocol(ProtocolViolation::BackupNoEnd))?;
        position(&end)
    }
}
