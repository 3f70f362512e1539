//! The walsender: replication commands on a replication connection
//! (`replication/walsender.c: exec_replication_command`), and streaming ([`stream`]).
//!
//! Commands answer as PostgreSQL 15 does, column types and command tags included:
//! IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY, CREATE/READ/DROP_REPLICATION_SLOT (physical)
//! and START_REPLICATION. Errors carry PostgreSQL's text and SQLSTATE.

mod commands;
mod replies;
pub mod stream;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use walstream_protocol::replication::{parse_command, truncated_identifiers, ReplicationCommand};
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wire::{
    sqlstate, BackendMessage, ErrorFields, FieldDescription, ReplicationMode, Severity,
};
use walstream_protocol::TimeLineId;

use crate::config::Settings;
use crate::registry::BackendEntry;
use crate::session::{BackendEnd, Connection};
use crate::slots::SlotStore;
use crate::walsource::{WalEnd, WalSource, WalSourceError};

/// What every walsender of a server shares.
pub struct WalSenderContext {
    /// The settings.
    pub settings: Settings,
    /// Where WAL comes from.
    pub source: Arc<dyn WalSource>,
    /// The replication slots.
    pub slots: Arc<SlotStore>,
    /// Becomes true when walsenders must stop (the last phase of a shutdown).
    pub stop: watch::Receiver<bool>,
    /// What `BASE_BACKUP` backs up; `None` refuses the command.
    pub backup: Option<Arc<dyn crate::basebackup::BackupSource>>,
}

/// How a replication command ended, when it did not fail.
#[derive(Debug)]
pub enum CommandOutcome {
    /// Back to the command loop (ReadyForQuery follows).
    Done,
    /// The connection ends.
    Exit(BackendEnd),
}

/// One connection's walsender.
pub struct WalSender {
    ctx: Arc<WalSenderContext>,
    entry: Arc<BackendEntry>,
    mode: ReplicationMode,
}

impl WalSender {
    /// The walsender of a replication connection.
    pub fn new(
        ctx: Arc<WalSenderContext>,
        entry: Arc<BackendEntry>,
        mode: ReplicationMode,
    ) -> Self {
        WalSender { ctx, entry, mode }
    }

    /// Runs one replication command (`exec_replication_command`).
    ///
    /// # Errors
    /// The ERROR to send; the loop then sends ReadyForQuery.
    pub async fn exec_command<R, W>(
        &mut self,
        conn: &mut Connection<R, W>,
        sql: &str,
    ) -> Result<CommandOutcome, ErrorFields>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        if *self.ctx.stop.borrow() {
            return Err(ErrorFields::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "cannot execute new commands while WAL sender is in stopping mode",
            ));
        }
        // repl_scanner.l: each identifier over NAMEDATALEN - 1 bytes gets a NOTICE as it is
        // scanned, before the command runs or its syntax error.
        for t in truncated_identifiers(sql) {
            let notice = ErrorFields::new(Severity::Notice, sqlstate::NAME_TOO_LONG, t.message());
            conn.writer.send(&BackendMessage::NoticeResponse(notice));
        }
        let command =
            parse_command(sql).map_err(|e| ErrorFields::error(e.sqlstate(), e.to_string()))?;
        tracing::debug!(pid = self.entry.pid, "received replication command: {sql}");
        let w = &mut conn.writer;
        match command {
            ReplicationCommand::IdentifySystem => self.identify_system(w),
            ReplicationCommand::Show { name } => self.show(w, &name)?,
            ReplicationCommand::TimelineHistory { tli } => self.timeline_history(w, tli)?,
            ReplicationCommand::CreateReplicationSlot { slot_name, temporary, kind, options } => {
                self.create_slot(w, &slot_name, temporary, &kind, &options)?
            }
            ReplicationCommand::ReadReplicationSlot { slot_name } => {
                self.read_slot(w, &slot_name)?
            }
            ReplicationCommand::DropReplicationSlot { slot_name, wait } => {
                self.drop_slot(&slot_name, wait).await?;
                w.send(&BackendMessage::CommandComplete("DROP_REPLICATION_SLOT".into()));
            }
            ReplicationCommand::StartReplication { kind, slot_name, timeline, start, .. } => {
                return stream::start_replication(self, conn, kind, slot_name, timeline, start)
                    .await;
            }
            ReplicationCommand::BaseBackup { options } => {
                let Some(backup) = self.ctx.backup.clone() else {
                    return Err(ErrorFields::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "BASE_BACKUP is not supported by walstream",
                    )
                    .with_hint("Take base backups from the primary with pg_basebackup."));
                };
                use crate::registry::WalSndState;
                self.entry.update_walsender(|s| s.state = WalSndState::Backup);
                let run = crate::basebackup::perform::base_backup_command(
                    w,
                    backup.as_ref(),
                    &self.ctx.source,
                    &options,
                );
                let outcome = tokio::select! {
                    biased;
                    _ = self.entry.terminated() => Err(crate::backend::admin_shutdown()),
                    r = run => r,
                };
                self.entry.update_walsender(|s| s.state = WalSndState::Startup);
                return outcome;
            }
        }
        Ok(CommandOutcome::Done)
    }

    /// The signal that becomes true when walsenders must stop.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.ctx.stop.clone()
    }

    /// Releases what the session holds: its active slot and its temporary slots
    /// (`ReplicationSlotRelease`, `ReplicationSlotCleanup`).
    pub fn end_session(&mut self) {
        self.ctx.slots.release_all_of(self.entry.pid);
    }

    /// The current timeline and flushed end, looked for afresh (a cascading walsender's
    /// `pg_wal` may hold WAL its source has not looked at yet).
    fn wal_end(&self) -> WalEnd {
        if let Err(e) = self.ctx.source.refresh() {
            tracing::warn!("could not look for new WAL: {e}");
        }
        *self.ctx.source.end().borrow()
    }

    /// The history of the current timeline (`readTimeLineHistory(ThisTimeLineID)`).
    fn current_history(&self, tli: TimeLineId) -> Result<TimelineHistory, ErrorFields> {
        history_of(&self.ctx.source, tli)
    }
}

/// The history of timeline `tli` (`timeline.c: readTimeLineHistory`).
fn history_of(
    source: &Arc<dyn WalSource>,
    tli: TimeLineId,
) -> Result<TimelineHistory, ErrorFields> {
    if tli.0 == 1 {
        return Ok(TimelineHistory::first());
    }
    let content =
        source.history_file(tli).map_err(source_error)?.ok_or_else(|| missing_history_file(tli))?;
    TimelineHistory::parse(tli, &content).map_err(|e| {
        ErrorFields::error(sqlstate::DATA_CORRUPTED, e.to_string()).with_hint(e.hint())
    })
}

/// `58P01 could not open file "pg_wal/0000000N.history": No such file or directory`.
fn missing_history_file(tli: TimeLineId) -> ErrorFields {
    ErrorFields::error(
        sqlstate::UNDEFINED_FILE,
        format!(
            "could not open file \"pg_wal/{}\": No such file or directory",
            walstream_protocol::lsn::history_file_name(tli)
        ),
    )
}

/// A [`WalSourceError`] as the client sees it.
pub fn source_error(e: WalSourceError) -> ErrorFields {
    ErrorFields::error(e.sqlstate(), e.to_string())
}

/// A text column as walsender describes one (`TEXTOID`, typmod -1).
fn text_col(name: &str) -> FieldDescription {
    FieldDescription::new(name, 25, -1)
}

/// Queues a result set of one row.
fn send_row<W: AsyncWrite + Unpin>(
    w: &mut crate::conn::PqWriter<W>,
    columns: Vec<FieldDescription>,
    values: Vec<Option<String>>,
) {
    w.send(&BackendMessage::RowDescription(columns));
    w.send(&BackendMessage::DataRow(values.into_iter().map(|v| v.map(Into::into)).collect()));
}
