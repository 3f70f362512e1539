//! `ReplicationConn` against a scripted server: what PostgreSQL cannot easily be made
//! to do (offer TLS, negotiate the protocol version, split messages across reads, end a
//! timeline, answer SCRAM wrongly).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use walstream_protocol::wire::{
    Authentication, BackendMessage, ErrorFields, FieldDescription, FrontendMessage, StartupPacket,
    TransactionStatus,
};
use walstream_protocol::{Lsn, TimeLineId};
use walstream_receiver::conn::{
    ConnError, CopyEvent, ReplicationConn, ReplicationMode, StartOutcome,
};

mod common;
use common::*;

#[tokio::test]
async fn prefer_reconnects_without_ssl_and_accepts_protocol_negotiation() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=prefer application_name=mock");
    let server = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        assert_eq!(first.startup().await, StartupPacket::SslRequest);
        // Offers TLS, then fails the handshake (closes): libpq's prefer tries once more
        // without TLS (fe-connect.c: PQconnectPoll, CONNECTION_SSL_STARTUP).
        first.stream.write_all(b"S").await.unwrap();
        drop(first);
        let mut second = Peer::accept(&listener).await;
        let StartupPacket::Startup(m) = second.startup().await else { panic!("no startup") };
        assert_eq!(m.param("replication"), Some("true"));
        assert_eq!(m.param("database"), Some("replication"));
        assert_eq!(m.param("application_name"), Some("mock"));
        let mut msgs = vec![
            BackendMessage::NegotiateProtocolVersion {
                newest_version: 196_608,
                unrecognized_options: vec!["_pq_.x".into()],
            },
            BackendMessage::Authentication(Authentication::Ok),
            BackendMessage::NoticeResponse(ErrorFields::new(
                walstream_protocol::wire::Severity::Notice,
                "00000",
                "hello",
            )),
        ];
        msgs.extend(ready());
        second.send(&msgs).await;
        assert_eq!(second.frontend().await, FrontendMessage::Terminate);
    });
    let conn = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap();
    assert_eq!(conn.server_version_num(), Some(150_004));
    assert_eq!(conn.backend_key(), Some((42, 7)));
    conn.terminate().await;
    server.await.unwrap();
}

#[tokio::test]
async fn cleartext_and_startup_fatal() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable password=sekrit");
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.startup().await;
        peer.send(&[BackendMessage::Authentication(Authentication::CleartextPassword)]).await;
        let FrontendMessage::Password(body) = peer.frontend().await else { panic!("no p") };
        assert_eq!(&body[..], b"sekrit\0");
        let fatal = ErrorFields::fatal("57P03", "the database system is starting up");
        peer.send(&[BackendMessage::ErrorResponse(fatal)]).await;
    });
    let err = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("57P03"));
    assert!(err.is_transient());
    server.await.unwrap();
}

#[tokio::test]
async fn scram_refuses_auth_ok_without_server_proof() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable password=pw");
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.startup().await;
        let mechanisms = vec!["SCRAM-SHA-256".into()];
        peer.send(&[BackendMessage::Authentication(Authentication::Sasl { mechanisms })]).await;
        let FrontendMessage::Password(body) = peer.frontend().await else { panic!("no p") };
        assert!(body.starts_with(b"SCRAM-SHA-256\0"), "{body:?}");
        peer.send(&[BackendMessage::Authentication(Authentication::Ok)]).await;
    });
    let err = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap_err();
    assert!(matches!(err, ConnError::Auth(_)), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn scram_plus_over_plain_tcp_is_refused_as_libpq_refuses_it() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable password=pw");
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.startup().await;
        let mechanisms = vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()];
        peer.send(&[BackendMessage::Authentication(Authentication::Sasl { mechanisms })]).await;
        // The client leaves without answering (a stripped TLS layer is suspected).
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut peer.stream, &mut rest).await.unwrap();
    });
    let err = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn copy_reads_are_cancellation_safe_and_end_with_next_timeline() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable");
    let (go_tx, mut go_rx) = tokio::sync::mpsc::channel::<()>(1);
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.handshake().await;
        assert!(matches!(peer.frontend().await, FrontendMessage::Query(_)));
        peer.send(&[copy_both()]).await;
        // One CopyData in two pieces, with a pause between them.
        let mut msg = BytesMut::new();
        BackendMessage::CopyData(Bytes::from_static(b"wsplit")).encode(&mut msg);
        peer.stream.write_all(&msg[..3]).await.unwrap();
        go_rx.recv().await.unwrap();
        peer.stream.write_all(&msg[3..]).await.unwrap();
        go_rx.recv().await.unwrap();
        // A burst: a notice and two CopyData in one write.
        peer.send(&[
            BackendMessage::NoticeResponse(ErrorFields::new(
                walstream_protocol::wire::Severity::Warning,
                "01000",
                "careful",
            )),
            BackendMessage::CopyData(Bytes::from_static(b"k1")),
            BackendMessage::CopyData(Bytes::from_static(b"k2")),
            BackendMessage::CopyDone,
        ])
        .await;
        assert_eq!(peer.frontend().await, FrontendMessage::CopyData(Bytes::from_static(b"r")));
        assert_eq!(peer.frontend().await, FrontendMessage::CopyDone);
        let mut end = next_tli_result("2", "0/3000060");
        end.push(BackendMessage::CommandComplete("START_STREAMING".into()));
        end.push(BackendMessage::CommandComplete("START_REPLICATION".into()));
        end.push(BackendMessage::ReadyForQuery(TransactionStatus::Idle));
        peer.send(&end).await;
        assert_eq!(peer.frontend().await, FrontendMessage::Terminate);
    });

    let mut conn = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap();
    let outcome = conn.start_copy_both("START_REPLICATION 0/3000000 TIMELINE 1").await.unwrap();
    assert_eq!(outcome, StartOutcome::CopyBoth);
    // Wait until the first piece has surely arrived, then give up on the read.
    let waited = tokio::time::timeout(Duration::from_millis(200), conn.recv_copy()).await;
    assert!(waited.is_err(), "{waited:?}");
    assert!(!conn.has_buffered());
    assert_eq!(conn.try_recv_copy().unwrap(), None);
    go_tx.send(()).await.unwrap();
    assert_eq!(conn.recv_copy().await.unwrap(), CopyEvent::CopyData(Bytes::from_static(b"wsplit")));

    go_tx.send(()).await.unwrap();
    assert_eq!(conn.recv_copy().await.unwrap(), CopyEvent::CopyData(Bytes::from_static(b"k1")));
    assert!(conn.has_buffered());
    let next = conn.try_recv_copy().unwrap();
    assert_eq!(next, Some(CopyEvent::CopyData(Bytes::from_static(b"k2"))));
    assert_eq!(conn.try_recv_copy().unwrap(), Some(CopyEvent::CopyDone));
    conn.send_copy_data(b"r").await.unwrap();
    conn.send_copy_done().await.unwrap();
    let end = conn.finish_copy().await.unwrap();
    assert_eq!(end.next_timeline, Some((TimeLineId(2), Lsn(0x300_0060))));
    assert_eq!(end.command_tags, ["START_STREAMING", "START_REPLICATION"]);
    conn.terminate().await;
    server.await.unwrap();
}

#[tokio::test]
async fn switch_point_result_and_error_in_copy() {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable");
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.handshake().await;
        // START_REPLICATION at the switch point: a result set, no COPY.
        peer.frontend().await;
        let mut answer = next_tli_result("3", "0/5000000");
        answer.push(BackendMessage::CommandComplete("START_STREAMING".into()));
        answer.push(BackendMessage::ReadyForQuery(TransactionStatus::Idle));
        peer.send(&answer).await;
        // An ERROR after CopyBothResponse, then ReadyForQuery.
        peer.frontend().await;
        let error = ErrorFields::error("XX000", "requested starting point 5/0 is ahead");
        peer.send(&[
            copy_both(),
            BackendMessage::ErrorResponse(error),
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        ])
        .await;
        // The next query is answered normally.
        assert_eq!(peer.frontend().await, FrontendMessage::Query("SHOW x".into()));
        peer.send(&[
            BackendMessage::RowDescription(vec![FieldDescription::new("x", 25, -1)]),
            BackendMessage::DataRow(vec![Some(Bytes::from_static(b"1"))]),
            BackendMessage::CommandComplete("SHOW".into()),
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        ])
        .await;
    });
    let mut conn = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap();
    let StartOutcome::Result(result) =
        conn.start_copy_both("START_REPLICATION 0/5000000 TIMELINE 2").await.unwrap()
    else {
        panic!("expected a result set");
    };
    assert_eq!(result.next_timeline().unwrap(), Some((TimeLineId(3), Lsn(0x500_0000))));
    let copy = conn.start_copy_both("START_REPLICATION 5/0 TIMELINE 3").await.unwrap();
    assert_eq!(copy, StartOutcome::CopyBoth);
    assert_eq!(conn.recv_copy().await.unwrap_err().sqlstate(), Some("XX000"));
    let shown = conn.simple_query("SHOW x").await.unwrap();
    assert_eq!(shown.get_text(0, 0), Some("1"));
    server.await.unwrap();
}
