//! The replication commands that answer with a result set (`walsender.c`:
//! `IdentifySystem`, `SendTimeLineHistory`, `CreateReplicationSlot`, `ReadReplicationSlot`,
//! `DropReplicationSlot`; `guc.c: ShowGUCConfigOption` for SHOW).

use tokio::io::AsyncWrite;
use walstream_protocol::replication::{parse_create_slot_options, GenericOption, SlotKind};
use walstream_protocol::wire::{sqlstate, BackendMessage, ErrorFields, FieldDescription};
use walstream_protocol::TimeLineId;

use super::{missing_history_file, send_row, source_error, text_col, WalSender, WalSenderContext};
use crate::conn::PqWriter;
use crate::slots::SlotError;

impl WalSenderContext {
    /// `SHOW name`: the value and the column name PostgreSQL gives it (its canonical
    /// spelling); `None` for an unknown parameter.
    pub fn show(&self, name: &str) -> Option<(String, String)> {
        let lower = name.to_ascii_lowercase();
        let column = match lower.as_str() {
            "datestyle" => "DateStyle".to_string(),
            "intervalstyle" => "IntervalStyle".to_string(),
            "timezone" => "TimeZone".to_string(),
            _ => lower.clone(),
        };
        let value = match lower.as_str() {
            "wal_segment_size" => self.source.seg_size().show(),
            _ => self.settings.show(&lower)?,
        };
        Some((column, value))
    }
}

/// A slot error as the client sees it.
pub(super) fn slot_error(e: SlotError) -> ErrorFields {
    let fields = ErrorFields::error(e.sqlstate(), e.to_string());
    match e.hint() {
        Some(hint) => fields.with_hint(hint),
        None => fields,
    }
}

impl WalSender {
    /// `IDENTIFY_SYSTEM`: system id, timeline, flush position, database.
    pub(super) fn identify_system<W: AsyncWrite + Unpin>(&self, w: &mut PqWriter<W>) {
        let end = self.wal_end();
        let dbname = match self.mode {
            walstream_protocol::wire::ReplicationMode::Logical => {
                Some(self.entry.status().database.clone())
            }
            _ => None,
        };
        send_row(
            w,
            vec![
                text_col("systemid"),
                FieldDescription::new("timeline", 23, 4),
                text_col("xlogpos"),
                text_col("dbname"),
            ],
            vec![
                Some(self.ctx.source.system_id().to_string()),
                Some(end.tli.0.to_string()),
                Some(end.flushed.to_string()),
                dbname,
            ],
        );
        w.send(&BackendMessage::CommandComplete("IDENTIFY_SYSTEM".into()));
    }

    /// `SHOW name`.
    pub(super) fn show<W: AsyncWrite + Unpin>(
        &self,
        w: &mut PqWriter<W>,
        name: &str,
    ) -> Result<(), ErrorFields> {
        let (column, value) =
            self.ctx.show(name).ok_or_else(|| crate::config::Settings::unrecognized(name))?;
        send_row(w, vec![text_col(&column)], vec![Some(value)]);
        w.send(&BackendMessage::CommandComplete("SHOW".into()));
        Ok(())
    }

    /// `TIMELINE_HISTORY n`: the RowDescription goes out before the file is opened, as
    /// in PostgreSQL, so a missing file's error follows it.
    pub(super) fn timeline_history<W: AsyncWrite + Unpin>(
        &self,
        w: &mut PqWriter<W>,
        tli: TimeLineId,
    ) -> Result<(), ErrorFields> {
        let col = |name: &str| {
            let mut f = text_col(name);
            f.type_modifier = 0;
            f
        };
        w.send(&BackendMessage::RowDescription(vec![col("filename"), col("content")]));
        let content = self
            .ctx
            .source
            .history_file(tli)
            .map_err(source_error)?
            .ok_or_else(|| missing_history_file(tli))?;
        let name = walstream_protocol::lsn::history_file_name(tli);
        w.send(&BackendMessage::DataRow(vec![Some(name.into()), Some(content)]));
        w.send(&BackendMessage::CommandComplete("TIMELINE_HISTORY".into()));
        Ok(())
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] PHYSICAL [RESERVE_WAL]`.
    pub(super) fn create_slot<W: AsyncWrite + Unpin>(
        &self,
        w: &mut PqWriter<W>,
        name: &str,
        temporary: bool,
        kind: &SlotKind,
        options: &[GenericOption],
    ) -> Result<(), ErrorFields> {
        let opts = parse_create_slot_options(kind, options)
            .map_err(|e| ErrorFields::error(e.sqlstate(), e.to_string()))?;
        if let SlotKind::Logical { .. } = kind {
            // logical.c: CheckLogicalDecodingRequirements; walstream serves physical WAL only.
            // slot.c: CheckSlotRequirements
            if self.ctx.settings.max_replication_slots == 0 {
                return Err(slot_error(SlotError::NotEnabled));
            }
            return Err(ErrorFields::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "logical decoding requires wal_level >= logical",
            ));
        }
        // slot.c: ReplicationSlotReserveWal. A served directory has no checkpoints, so the
        // flushed end is where the reservation starts.
        let reserve = opts.reserve_wal.then(|| {
            let end = self.wal_end();
            (end.flushed, end.tli)
        });
        self.ctx.slots.create(name, temporary, self.entry.pid, reserve).map_err(slot_error)?;
        send_row(
            w,
            ["slot_name", "consistent_point", "snapshot_name", "output_plugin"]
                .map(text_col)
                .to_vec(),
            vec![Some(name.to_string()), Some("0/0".to_string()), None, None],
        );
        w.send(&BackendMessage::CommandComplete("CREATE_REPLICATION_SLOT".into()));
        Ok(())
    }

    /// `READ_REPLICATION_SLOT name`: type, restart_lsn and its timeline; NULLs for a slot
    /// that does not exist.
    pub(super) fn read_slot<W: AsyncWrite + Unpin>(
        &self,
        w: &mut PqWriter<W>,
        name: &str,
    ) -> Result<(), ErrorFields> {
        let columns = vec![
            text_col("slot_type"),
            text_col("restart_lsn"),
            FieldDescription::new("restart_tli", 20, 8),
        ];
        let values = match self.ctx.slots.get(name) {
            None => vec![None, None, None],
            Some(slot) => match slot.restart_lsn {
                None => vec![Some("physical".to_string()), None, None],
                Some(lsn) => {
                    // walsender.c: ReadReplicationSlot, the timeline of restart_lsn in
                    // the current timeline's history.
                    let end = self.wal_end();
                    let tli = self.current_history(end.tli)?.tli_of_point(lsn);
                    vec![
                        Some("physical".to_string()),
                        Some(lsn.to_string()),
                        Some(tli.0.to_string()),
                    ]
                }
            },
        };
        send_row(w, columns, values);
        w.send(&BackendMessage::CommandComplete("READ_REPLICATION_SLOT".into()));
        Ok(())
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`.
    pub(super) async fn drop_slot(&self, name: &str, wait: bool) -> Result<(), ErrorFields> {
        let slots = self.ctx.slots.clone();
        let wait_for_release = async { slots.drop_slot(name, self.entry.pid, wait).await };
        tokio::select! {
            biased;
            _ = self.entry.terminated() => Err(crate::session::admin_shutdown()),
            r = wait_for_release => r.map_err(slot_error),
        }
    }
}
