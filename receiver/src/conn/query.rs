//! Simple queries (`Q`) and the answer to START_REPLICATION: CopyBothResponse, or a
//! result set when the start point is a timeline's switch point (`walsender.c: StartReplication`).

use bytes::Bytes;
use walstream_protocol::wire::{BackendMessage, ErrorFields, FieldDescription, FrontendMessage};

use super::{ConnError, ProtocolViolation, ReplicationConn};

/// The outcome of a simple query: the last result set and its command tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Columns of the last RowDescription (empty for commands without rows).
    pub columns: Vec<FieldDescription>,
    /// Rows of the last result set, text format; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<Bytes>>>,
    /// The last CommandComplete tag (`IDENTIFY_SYSTEM`, `SHOW`, `SELECT 1`...).
    pub tag: String,
}

impl QueryResult {
    /// The text of `row`'s column `col`; `None` for NULL, a missing cell or non-UTF-8 bytes.
    pub fn get_text(&self, row: usize, col: usize) -> Option<&str> {
        let cell = self.rows.get(row)?.get(col)?.as_ref()?;
        std::str::from_utf8(cell).ok()
    }

    /// The index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// How the server answered START_REPLICATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// CopyBothResponse: streaming has started.
    CopyBoth,
    /// A result set instead (the start point is the end of the requested timeline:
    /// `next_tli`, `next_tli_startpos`), already read up to ReadyForQuery.
    Result(QueryResult),
}

/// Gathers the messages of a simple query's answer up to ReadyForQuery.
#[derive(Debug, Default)]
pub(super) struct ResultCollector {
    pub(super) result: QueryResult,
    /// Every CommandComplete tag, in order.
    pub(super) tags: Vec<String>,
    error: Option<ErrorFields>,
}

impl ResultCollector {
    /// Takes one message; `Ok(true)` at ReadyForQuery.
    ///
    /// # Errors
    /// [`ConnError::Protocol`] for a message that has no place in a query's answer.
    pub(super) fn feed(&mut self, msg: BackendMessage) -> Result<bool, ConnError> {
        match msg {
            BackendMessage::RowDescription(columns) => {
                self.result.columns = columns;
                self.result.rows.clear();
            }
            BackendMessage::DataRow(row) => self.result.rows.push(row),
            BackendMessage::CommandComplete(tag) => {
                self.result.tag.clone_from(&tag);
                self.tags.push(tag);
            }
            BackendMessage::EmptyQueryResponse => {}
            BackendMessage::ErrorResponse(fields) => {
                self.error.get_or_insert(fields);
            }
            BackendMessage::ReadyForQuery(_) => return Ok(true),
            other => return Err(unexpected(&other, "in a query result")),
        }
        Ok(false)
    }

    /// The result, or the first ErrorResponse seen.
    pub(super) fn finish(self) -> Result<(QueryResult, Vec<String>), ConnError> {
        match self.error {
            Some(fields) => Err(ConnError::Server(Box::new(fields))),
            None => Ok((self.result, self.tags)),
        }
    }
}

pub(super) fn unexpected(msg: &BackendMessage, context: &'static str) -> ConnError {
    ConnError::Protocol(ProtocolViolation::UnexpectedMessage { tag: msg.tag(), context })
}

impl ReplicationConn {
    /// Runs `sql` as a simple query and collects its result up to ReadyForQuery.
    /// NoticeResponses are logged and skipped.
    ///
    /// # Errors
    /// [`ConnError::Server`] for an ErrorResponse (read through to ReadyForQuery, so the
    /// connection stays usable), [`ConnError::Protocol`] if the server starts a COPY,
    /// I/O errors.
    pub async fn simple_query(&mut self, sql: &str) -> Result<QueryResult, ConnError> {
        self.query_start(sql).await?;
        let mut collector = ResultCollector::default();
        while !collector.feed(self.next_message().await?)? {}
        collector.finish().map(|(result, _)| result)
    }

    /// Sends a query that should start COPY BOTH (START_REPLICATION).
    ///
    /// PostgreSQL checks some start points only after CopyBothResponse (XX000 `requested
    /// starting point 5/0 is ahead of the WAL flush position of this server 0/408EDA8`):
    /// that ERROR is then the first [`Self::recv_copy`] result.
    ///
    /// # Errors
    /// [`ConnError::Server`] for an ErrorResponse before CopyBoth (e.g. 42704 for a slot
    /// that does not exist, 58P01 for removed WAL), read through to ReadyForQuery;
    /// [`ConnError::Protocol`] for CopyIn/CopyOut; I/O errors.
    pub async fn start_copy_both(&mut self, sql: &str) -> Result<StartOutcome, ConnError> {
        self.query_start(sql).await?;
        let mut collector = ResultCollector::default();
        loop {
            match self.next_message().await? {
                BackendMessage::CopyBothResponse(_) => return Ok(StartOutcome::CopyBoth),
                msg => {
                    if collector.feed(msg)? {
                        return collector.finish().map(|(result, _)| StartOutcome::Result(result));
                    }
                }
            }
        }
    }

    /// Sends `Q`, first reading the ReadyForQuery still owed by an earlier COPY error.
    pub(super) async fn query_start(&mut self, sql: &str) -> Result<(), ConnError> {
        if self.ready_pending {
            let mut collector = ResultCollector::default();
            while !collector.feed(self.next_message().await?)? {}
            self.ready_pending = false;
        }
        self.send(&FrontendMessage::Query(sql.to_string())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_protocol::wire::TransactionStatus;

    #[test]
    fn collector_keeps_the_last_result_and_first_error() {
        let mut c = ResultCollector::default();
        let field = FieldDescription::new("a", 25, -1);
        assert!(!c.feed(BackendMessage::RowDescription(vec![field.clone()])).unwrap());
        assert!(!c.feed(BackendMessage::DataRow(vec![Some(Bytes::from_static(b"x"))])).unwrap());
        assert!(!c.feed(BackendMessage::DataRow(vec![None])).unwrap());
        assert!(!c.feed(BackendMessage::CommandComplete("SELECT 2".into())).unwrap());
        assert!(c.feed(BackendMessage::ReadyForQuery(TransactionStatus::Idle)).unwrap());
        let (result, tags) = c.finish().unwrap();
        assert_eq!(result.get_text(0, 0), Some("x"));
        assert_eq!(result.get_text(1, 0), None);
        assert_eq!(result.get_text(2, 0), None);
        assert_eq!(result.column("a"), Some(0));
        assert_eq!(tags, ["SELECT 2"]);

        let mut c = ResultCollector::default();
        c.feed(BackendMessage::ErrorResponse(ErrorFields::error("XX000", "first"))).unwrap();
        c.feed(BackendMessage::ErrorResponse(ErrorFields::error("XX000", "second"))).unwrap();
        let err = c.finish().unwrap_err();
        assert_eq!(err.server_fields().map(|f| f.message.as_str()), Some("first"));
        assert!(ResultCollector::default().feed(BackendMessage::CopyDone).is_err());
    }
}
