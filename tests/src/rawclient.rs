//! A minimal frontend for replication connections that reports every backend message
//! it receives as one line of text, so tests can compare a server's exact message
//! sequence with PostgreSQL's — including errors sent after CopyBothResponse, which
//! psql cannot show (`unexpected PQresultStatus: 8`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long a read may block before the exchange is declared stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// A physical replication connection (`replication=true`, user postgres, trust auth).
pub struct RawReplicationConn {
    stream: TcpStream,
}

/// One backend message: its type byte and body.
struct Message {
    tag: u8,
    body: Vec<u8>,
}

impl RawReplicationConn {
    /// Connects to 127.0.0.1:`port` and completes startup (through ReadyForQuery).
    ///
    /// # Errors
    /// On I/O errors, a timeout, or an authentication request other than "ok".
    pub fn connect(port: u16) -> Result<Self> {
        Self::connect_with(port, &[("replication", "true")])
    }

    /// Connects as user postgres with startup parameters `params` (a non-replication
    /// session when they name a `database` and no `replication`).
    ///
    /// # Errors
    /// As [`RawReplicationConn::connect`].
    pub fn connect_with(port: u16, params: &[(&str, &str)]) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut conn = RawReplicationConn { stream };
        let mut body = 196_608u32.to_be_bytes().to_vec();
        let fixed = [("user", "postgres"), ("application_name", "rawclient")];
        for (k, v) in fixed.iter().chain(params) {
            for s in [k, v] {
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        let len = u32::try_from(body.len() + 4)?;
        conn.stream.write_all(&len.to_be_bytes())?;
        conn.stream.write_all(&body)?;
        loop {
            let m = conn.read_message()?;
            match m.tag {
                b'R' if m.body.get(..4) == Some(&[0, 0, 0, 0]) => {}
                b'R' => bail!("authentication requested: {:?}", m.body),
                b'E' => bail!("startup failed: {}", describe(&m)),
                b'Z' => return Ok(conn),
                _ => {}
            }
        }
    }

    fn read_message(&mut self) -> Result<Message> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).context("reading a message header")?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 30).contains(&len) {
            bail!("bad message length {len}");
        }
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).context("reading a message body")?;
        Ok(Message { tag: head[0], body })
    }

    /// Sends one frontend message of type `tag` (its length is added).
    ///
    /// # Errors
    /// On I/O errors.
    pub fn send(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len() + 4)?;
        self.stream.write_all(&[tag])?;
        self.stream.write_all(&len.to_be_bytes())?;
        self.stream.write_all(body)?;
        Ok(())
    }

    /// Reads messages until one of type `last` (included), one line each.
    ///
    /// # Errors
    /// On I/O errors, or when it does not arrive within the read timeout.
    pub fn read_until(&mut self, last: u8) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let m = self.read_message()?;
            lines.push(describe(&m));
            if m.tag == last {
                return Ok(lines);
            }
        }
    }

    /// As [`RawReplicationConn::read_until`], but the server closing the connection ends
    /// the list with `<EOF>` instead of failing.
    ///
    /// # Errors
    /// On I/O errors other than the end of the stream, or a timeout.
    pub fn read_until_or_eof(&mut self, last: u8) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut first = [0u8; 1];
            if self.stream.peek(&mut first)? == 0 {
                lines.push("<EOF>".to_string());
                return Ok(lines);
            }
            let m = self.read_message()?;
            lines.push(describe(&m));
            if m.tag == last {
                return Ok(lines);
            }
        }
    }

    /// Whether no byte arrives within `wait` (nothing is consumed).
    ///
    /// # Errors
    /// On I/O errors other than the timeout.
    pub fn silent_for(&mut self, wait: Duration) -> Result<bool> {
        self.stream.set_read_timeout(Some(wait))?;
        let mut one = [0u8; 1];
        let res = self.stream.peek(&mut one);
        self.stream.set_read_timeout(Some(READ_TIMEOUT))?;
        match res {
            Ok(_) => Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `sql` as a simple Query and returns one line per message received up to
    /// ReadyForQuery (included). In copy-both mode the first CopyData is reported and
    /// answered with CopyDone, later CopyData are skipped.
    ///
    /// # Errors
    /// On I/O errors, or when no ReadyForQuery arrives within the read timeout.
    pub fn query(&mut self, sql: &str) -> Result<Vec<String>> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body)?;
        let mut lines = Vec::new();
        let mut copy_done_sent = false;
        loop {
            let m = self.read_message()?;
            if m.tag == b'd' {
                if copy_done_sent {
                    continue;
                }
                self.send(b'c', &[])?;
                copy_done_sent = true;
            }
            lines.push(describe(&m));
            if m.tag == b'Z' {
                return Ok(lines);
            }
        }
    }
}

impl Drop for RawReplicationConn {
    fn drop(&mut self) {
        let _ = self.send(b'X', &[]);
    }
}

/// NUL-terminated strings of a message body.
fn cstrings(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// One line describing a backend message: `E` with SQLSTATE, message and detail,
/// `T` with column names, `D` with values, `C` with the tag, `Z` with the status,
/// `d` with its first byte; other messages as their type letter.
fn describe(m: &Message) -> String {
    let tag = char::from(m.tag);
    match m.tag {
        b'E' | b'N' => {
            // Severity, SQLSTATE, message, detail, hint: the fields a client acts on.
            let fields: Vec<String> = cstrings(&m.body)
                .into_iter()
                .filter(|f| matches!(f.as_bytes().first(), Some(b'S' | b'C' | b'M' | b'D' | b'H')))
                .collect();
            format!("{tag} {}", fields.join(" "))
        }
        b'C' => format!("C {}", cstrings(&m.body).first().cloned().unwrap_or_default()),
        b'Z' => format!("Z {}", m.body.first().map(|b| char::from(*b)).unwrap_or('?')),
        b'T' => format!("T {}", row_description(&m.body).join(",")),
        b'D' => format!("D {}", data_row(&m.body).join("|")),
        b'd' => format!("d {}", m.body.first().map(|b| char::from(*b)).unwrap_or('?')),
        _ => tag.to_string(),
    }
}

/// Column names and type oids of a RowDescription (`name:oid`).
fn row_description(body: &[u8]) -> Vec<String> {
    let mut cols = Vec::new();
    let mut rest = body.get(2..).unwrap_or_default();
    while let Some(nul) = rest.iter().position(|b| *b == 0) {
        let name = String::from_utf8_lossy(&rest[..nul]).into_owned();
        // name, NUL, table oid (4), column number (2), type oid (4), ... (8 more).
        let Some(oid) = rest.get(nul + 7..nul + 11) else { break };
        cols.push(format!("{name}:{}", u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]])));
        rest = rest.get(nul + 19..).unwrap_or_default();
    }
    cols
}

/// The values of a DataRow, `NULL` for nulls.
fn data_row(body: &[u8]) -> Vec<String> {
    let mut vals = Vec::new();
    let mut rest = body.get(2..).unwrap_or_default();
    while let Some(len) = rest.get(..4) {
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        match usize::try_from(len) {
            Ok(n) if n <= rest.len() => {
                vals.push(String::from_utf8_lossy(&rest[..n]).into_owned());
                rest = &rest[n..];
            }
            _ => vals.push("NULL".to_string()),
        }
    }
    vals
}
