//! A scripted server for receiver tests: what PostgreSQL cannot easily be made to do.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use walstream_protocol::wire::{
    parse_frontend, parse_startup, Authentication, BackendMessage, CopyResponse, FieldDescription,
    FrontendMessage, MessageLimits, StartupPacket, TransactionStatus,
};
use walstream_receiver::conninfo::ConnInfo;

/// The server end of one connection.
pub struct Peer {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl Peer {
    pub async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = listener.accept().await.unwrap();
        Peer { stream, buf: BytesMut::new() }
    }

    pub async fn startup(&mut self) -> StartupPacket {
        loop {
            if let Some(p) = parse_startup(&mut self.buf).unwrap() {
                return p;
            }
            assert_ne!(self.stream.read_buf(&mut self.buf).await.unwrap(), 0, "client left");
        }
    }

    pub async fn frontend(&mut self) -> FrontendMessage {
        loop {
            if let Some(m) = parse_frontend(&mut self.buf, &MessageLimits::default()).unwrap() {
                return m;
            }
            assert_ne!(self.stream.read_buf(&mut self.buf).await.unwrap(), 0, "client left");
        }
    }

    pub async fn send(&mut self, msgs: &[BackendMessage]) {
        let mut out = BytesMut::new();
        msgs.iter().for_each(|m| m.encode(&mut out));
        self.stream.write_all(&out).await.unwrap();
    }

    /// Accepts a StartupMessage with trust authentication.
    pub async fn handshake(&mut self) {
        assert!(matches!(self.startup().await, StartupPacket::Startup(_)));
        let mut msgs = vec![BackendMessage::Authentication(Authentication::Ok)];
        msgs.extend(ready());
        self.send(&msgs).await;
    }
}

pub fn ready() -> Vec<BackendMessage> {
    vec![
        param("server_version", "15.4"),
        param("integer_datetimes", "on"),
        BackendMessage::BackendKeyData { pid: 42, secret_key: 7 },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
    ]
}

pub fn param(name: &str, value: &str) -> BackendMessage {
    BackendMessage::ParameterStatus { name: name.into(), value: value.into() }
}

pub fn conninfo(listener: &TcpListener, extra: &str) -> ConnInfo {
    let port = listener.local_addr().unwrap().port();
    let s = format!("host=127.0.0.1 port={port} user=u {extra}");
    ConnInfo::parse_with_env(&s, &|_| None).unwrap()
}

pub async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn copy_both() -> BackendMessage {
    BackendMessage::CopyBothResponse(CopyResponse { format: 0, column_formats: vec![] })
}

pub fn next_tli_result(tli: &str, lsn: &str) -> Vec<BackendMessage> {
    vec![
        BackendMessage::RowDescription(vec![
            FieldDescription::new("next_tli", 20, 8),
            FieldDescription::new("next_tli_startpos", 25, -1),
        ]),
        BackendMessage::DataRow(vec![
            Some(Bytes::copy_from_slice(tli.as_bytes())),
            Some(Bytes::copy_from_slice(lsn.as_bytes())),
        ]),
    ]
}
