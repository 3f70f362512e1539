//! The extended query protocol: prepared statements and portals (`tcop/postgres.c`:
//! `exec_parse_message`, `exec_bind_message`, `exec_execute_message`,
//! `exec_describe_statement_message`, `exec_describe_portal_message`, `exec_close_message`).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use walstream_protocol::wire::{sqlstate, BackendMessage, ErrorFields, Target};

use super::query::{Column, Datum, Param, QueryOutput, QuerySession};

/// A prepared statement (shared by the portals bound from it).
#[derive(Debug)]
struct Statement {
    sql: String,
    params: Vec<u32>,
    columns: Option<Vec<Column>>,
}

/// A portal: a bound statement, possibly partly run.
#[derive(Debug)]
struct Portal {
    statement: Arc<Statement>,
    params: Vec<Param>,
    result_formats: Vec<i16>,
    /// Rows not yet sent after an Execute with a row limit, and the tag to finish with.
    pending: Option<(VecDeque<Vec<Datum>>, String)>,
    /// Whether it ran to completion (a completed portal answers Execute with its tag again
    /// and no rows; PostgreSQL does the same for a completed SELECT portal).
    done: bool,
}

/// Named and unnamed statements and portals of one session.
#[derive(Debug, Default)]
pub struct ExtendedState {
    statements: HashMap<String, Arc<Statement>>,
    portals: HashMap<String, Portal>,
}

fn statement_missing(name: &str) -> ErrorFields {
    let message = if name.is_empty() {
        "unnamed prepared statement does not exist".to_string()
    } else {
        format!("prepared statement \"{name}\" does not exist")
    };
    ErrorFields::error(sqlstate::INVALID_SQL_STATEMENT_NAME, message)
}

fn portal_missing(name: &str) -> ErrorFields {
    ErrorFields::error(sqlstate::INVALID_CURSOR_NAME, format!("portal \"{name}\" does not exist"))
}

/// The format code of result column `i` (`postgres.c`: one code for all, or one each).
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

fn row_description(columns: &[Column], formats: &[i16]) -> BackendMessage {
    BackendMessage::RowDescription(
        columns.iter().enumerate().map(|(i, c)| c.field(format_of(formats, i))).collect(),
    )
}

fn data_row(row: &[Datum], formats: &[i16]) -> BackendMessage {
    BackendMessage::DataRow(
        row.iter().enumerate().map(|(i, d)| d.encode(format_of(formats, i))).collect(),
    )
}

impl ExtendedState {
    /// `P`: describes the statement through the handler and stores it.
    ///
    /// # Errors
    /// A named statement that exists; the handler's error.
    pub async fn parse(
        &mut self,
        session: &mut dyn QuerySession,
        name: String,
        sql: String,
        param_types: Vec<u32>,
    ) -> Result<BackendMessage, ErrorFields> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(ErrorFields::error(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let desc = session.describe(&sql, &param_types).await?;
        let statement = Statement { sql, params: desc.params, columns: desc.columns };
        self.statements.insert(name, Arc::new(statement));
        Ok(BackendMessage::ParseComplete)
    }

    /// `B`: binds parameters to a statement into a portal, once the session has looked
    /// at the statement again ([`QuerySession::revalidate`]).
    ///
    /// # Errors
    /// A missing statement, wrong counts of parameters or format codes; the session's
    /// error.
    pub async fn bind(
        &mut self,
        session: &mut dyn QuerySession,
        portal: String,
        statement: &str,
        param_formats: Vec<i16>,
        values: Vec<Option<Bytes>>,
        result_formats: Vec<i16>,
    ) -> Result<BackendMessage, ErrorFields> {
        let stmt =
            Arc::clone(self.statements.get(statement).ok_or_else(|| statement_missing(statement))?);
        if param_formats.len() > 1 && param_formats.len() != values.len() {
            return Err(ErrorFields::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message has {} parameter formats but {} parameters",
                    param_formats.len(),
                    values.len()
                ),
            ));
        }
        if values.len() != stmt.params.len() {
            return Err(ErrorFields::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{}\" requires {}",
                    values.len(),
                    statement,
                    stmt.params.len()
                ),
            ));
        }
        // postgres.c: exec_bind_message → GetCachedPlan, before the result formats are set
        session.revalidate(&stmt.sql, &stmt.params, stmt.columns.as_deref()).await?;
        let ncols = stmt.columns.as_ref().map_or(0, Vec::len);
        if result_formats.len() > 1 && result_formats.len() != ncols {
            return Err(ErrorFields::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message has {} result formats but query has {} columns",
                    result_formats.len(),
                    ncols
                ),
            ));
        }
        // postgres.c: exec_bind_message → getTypeBinaryOutputInfo
        for (i, col) in stmt.columns.iter().flatten().enumerate() {
            if format_of(&result_formats, i) == 1 {
                if let Some(e) = col.ty.binary_unsupported() {
                    return Err(e);
                }
            }
        }
        let params = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Param {
                type_oid: stmt.params.get(i).copied().unwrap_or(0),
                format: format_of(&param_formats, i),
                value,
            })
            .collect();
        self.portals.insert(
            portal,
            Portal { statement: stmt, params, result_formats, pending: None, done: false },
        );
        Ok(BackendMessage::BindComplete)
    }

    /// `D`: ParameterDescription and RowDescription/NoData for a statement, or
    /// RowDescription/NoData for a portal.
    ///
    /// # Errors
    /// A missing statement or portal.
    pub fn describe(&self, target: Target, name: &str) -> Result<Vec<BackendMessage>, ErrorFields> {
        let (columns, formats, params) = match target {
            Target::Statement => {
                let s = self.statements.get(name).ok_or_else(|| statement_missing(name))?;
                (&s.columns, &[][..], Some(s.params.clone()))
            }
            Target::Portal => {
                let p = self.portals.get(name).ok_or_else(|| portal_missing(name))?;
                (&p.statement.columns, &p.result_formats[..], None)
            }
        };
        let mut out = Vec::new();
        if let Some(params) = params {
            out.push(BackendMessage::ParameterDescription(params));
        }
        out.push(match columns {
            Some(cols) => row_description(cols, formats),
            None => BackendMessage::NoData,
        });
        Ok(out)
    }

    /// `E`: runs a portal, sending at most `max_rows` rows (0: all).
    ///
    /// # Errors
    /// A missing portal; the handler's error.
    pub async fn execute(
        &mut self,
        session: &mut dyn QuerySession,
        name: &str,
        max_rows: i32,
    ) -> Result<Vec<BackendMessage>, ErrorFields> {
        let portal = self.portals.get_mut(name).ok_or_else(|| portal_missing(name))?;
        let mut out = Vec::new();
        if portal.pending.is_none() && !portal.done {
            let result = session.execute(&portal.statement.sql, &portal.params).await;
            out.extend(session.take_notices().into_iter().map(BackendMessage::NoticeResponse));
            match result? {
                QueryOutput::Empty => {
                    portal.done = true;
                    out.push(BackendMessage::EmptyQueryResponse);
                    return Ok(out);
                }
                QueryOutput::Notice(fields) => {
                    portal.done = true;
                    out.push(BackendMessage::NoticeResponse(*fields));
                    return Ok(out);
                }
                QueryOutput::Command(tag) => {
                    portal.done = true;
                    out.push(BackendMessage::CommandComplete(tag));
                    return Ok(out);
                }
                QueryOutput::Rows { rows, tag, .. } => portal.pending = Some((rows.into(), tag)),
                QueryOutput::CopyOut { columns, lines } => {
                    portal.done = true;
                    out.extend(QueryOutput::copy_out_messages(columns, lines));
                    return Ok(out);
                }
            }
        }
        let Some((rows, tag)) = portal.pending.as_mut() else {
            out.push(BackendMessage::CommandComplete("SELECT 0".to_string()));
            return Ok(out);
        };
        let limit = if max_rows <= 0 { usize::MAX } else { max_rows as usize };
        let mut sent = 0;
        while sent < limit {
            let Some(row) = rows.pop_front() else { break };
            out.push(data_row(&row, &portal.result_formats));
            sent += 1;
        }
        if rows.is_empty() && (sent < limit || max_rows <= 0) {
            out.push(BackendMessage::CommandComplete(tag.clone()));
            portal.pending = None;
            portal.done = true;
        } else {
            out.push(BackendMessage::PortalSuspended);
        }
        Ok(out)
    }

    /// `C`: closes a statement or portal; closing one that does not exist is no error.
    pub fn close(&mut self, target: Target, name: &str) -> BackendMessage {
        match target {
            Target::Statement => {
                self.statements.remove(name);
            }
            Target::Portal => {
                self.portals.remove(name);
            }
        }
        BackendMessage::CloseComplete
    }

    /// At Sync, the unnamed portal goes away with the transaction (`finish_xact_command`);
    /// named portals too, as they are not holdable.
    pub fn end_transaction(&mut self) {
        self.portals.clear();
    }
}

/// The messages of a simple query's output, in text format.
pub fn simple_output(output: QueryOutput) -> Vec<BackendMessage> {
    match output {
        QueryOutput::Empty => vec![BackendMessage::EmptyQueryResponse],
        QueryOutput::Notice(fields) => vec![BackendMessage::NoticeResponse(*fields)],
        QueryOutput::Command(tag) => vec![BackendMessage::CommandComplete(tag)],
        QueryOutput::CopyOut { columns, lines } => QueryOutput::copy_out_messages(columns, lines),
        QueryOutput::Rows { columns, rows, tag } => {
            let mut out = Vec::with_capacity(rows.len() + 2);
            out.push(row_description(&columns, &[]));
            out.extend(rows.iter().map(|r| data_row(r, &[])));
            out.push(BackendMessage::CommandComplete(tag));
            out
        }
    }
}
