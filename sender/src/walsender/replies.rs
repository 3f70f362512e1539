//! The reply-reading half of a streaming walsender (`walsender.c: ProcessRepliesIfAny`):
//! it reads what the standby sends in COPY mode and hands it to the sending half.

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use walstream_protocol::replication::{parse_client_copy_data, ClientCopyData, CopyDataError};
use walstream_protocol::wire::{sqlstate, ErrorFields, FrontendMessage, Severity, WireError};

use crate::conn::{ConnError, PqReader};

/// What the reply reader hands the sender.
#[derive(Debug)]
pub(super) enum Reply {
    /// CopyData the standby sent.
    Data(ClientCopyData),
    /// CopyDone.
    CopyDone,
    /// Terminate.
    Terminate,
    /// End of file.
    Eof,
    /// A FATAL error to send.
    Fatal(Box<ErrorFields>),
    /// An ERROR to send: streaming ends and the connection goes back to command mode.
    Error(Box<ErrorFields>),
    /// A CopyData of an unknown type: the connection ends without a word.
    Unexpected(u8),
    /// The socket failed.
    Io(std::io::Error),
}

/// Types a walsender accepts in COPY mode.
fn copy_mode_type(tag: u8) -> bool {
    matches!(tag, b'd' | b'c' | b'X')
}

/// The reply reader: parses what the standby sends until CopyDone, Terminate or the end.
pub(super) async fn read_replies<R: AsyncRead + Unpin>(
    reader: &mut PqReader<R>,
    tx: mpsc::Sender<Reply>,
) {
    loop {
        let reply = match reader.read_message_filtered(copy_mode_type).await {
            Ok(None) => Reply::Eof,
            Ok(Some(Err(tag))) => Reply::Fatal(Box::new(ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid standby message type \"{}\"", char::from(tag)),
            ))),
            Ok(Some(Ok(FrontendMessage::CopyData(payload)))) => {
                match parse_client_copy_data(payload) {
                    Ok(data) => Reply::Data(data),
                    // walsender.c: ProcessStandbyMessage, "unexpected message type" is a
                    // COMMERROR followed by proc_exit: logged, nothing sent.
                    Err(CopyDataError::UnexpectedMessageType(tag)) => Reply::Unexpected(tag),
                    // A short message: pqformat.c's ERROR; the walsender stays usable.
                    Err(e) => {
                        Reply::Error(Box::new(ErrorFields::error(e.sqlstate(), e.to_string())))
                    }
                }
            }
            Ok(Some(Ok(FrontendMessage::CopyDone))) => Reply::CopyDone,
            Ok(Some(Ok(_))) => Reply::Terminate,
            Err(ConnError::Wire(e)) => Reply::Fatal(Box::new(wire_fatal(&e))),
            Err(ConnError::Io(e)) => Reply::Io(e),
        };
        let last = !matches!(reply, Reply::Data(_));
        if tx.send(reply).await.is_err() || last {
            return;
        }
    }
}

fn wire_fatal(e: &WireError) -> ErrorFields {
    ErrorFields::from_wire_error(e, Severity::Fatal)
}
