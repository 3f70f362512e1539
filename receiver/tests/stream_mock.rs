//! The streaming loop against a scripted server: `wal_receiver_timeout` (a reply-requested
//! status after half of it in silence, the end of the connection after all of it) and
//! the immediate reply to a reply-requested keepalive.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use walstream_protocol::replication::{
    parse_client_copy_data, ClientCopyData, PrimaryKeepalive, TimestampTz,
};
use walstream_protocol::wire::{BackendMessage, FieldDescription, FrontendMessage};
use walstream_protocol::{Lsn, WalSegSize};
use walstream_receiver::apply::VerifyingApplier;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{Receiver, ReceiverError, StreamOptions};

fn text(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// Answers IDENTIFY_SYSTEM and START_REPLICATION, then hands the peer back.
async fn start_streaming(listener: &tokio::net::TcpListener) -> Peer {
    let mut peer = Peer::accept(listener).await;
    peer.handshake().await;
    let FrontendMessage::Query(q) = peer.frontend().await else { panic!("expected a query") };
    assert_eq!(q, "IDENTIFY_SYSTEM");
    let mut reply = vec![
        BackendMessage::RowDescription(
            ["systemid", "timeline", "xlogpos", "dbname"]
                .iter()
                .map(|n| FieldDescription::new(*n, 25, -1))
                .collect(),
        ),
        BackendMessage::DataRow(vec![
            text("7000000000000000001"),
            text("1"),
            text("0/1000000"),
            None,
        ]),
        BackendMessage::CommandComplete("IDENTIFY_SYSTEM".into()),
    ];
    reply.extend(ready().into_iter().skip(3));
    peer.send(&reply).await;
    let FrontendMessage::Query(q) = peer.frontend().await else { panic!("expected a query") };
    assert_eq!(q, "START_REPLICATION 0/1000000 TIMELINE 1");
    peer.send(&[copy_both()]).await;
    peer
}

/// The next standby status update the client sends.
async fn next_status(peer: &mut Peer) -> walstream_protocol::replication::StandbyStatusUpdate {
    loop {
        match peer.frontend().await {
            FrontendMessage::CopyData(d) => match parse_client_copy_data(d).unwrap() {
                ClientCopyData::StandbyStatusUpdate(r) => return r,
                ClientCopyData::HotStandbyFeedback(_) => {}
            },
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn options(listener: &tokio::net::TcpListener, timeout: Duration) -> StreamOptions {
    StreamOptions {
        conninfo: conninfo(listener, "sslmode=disable"),
        slot: None,
        status_interval: Duration::ZERO,
        receiver_timeout: timeout,
        synchronous: false,
        report_flush: true,
        endpos: None,
        no_loop: true,
        hot_standby_feedback: false,
    }
}

#[tokio::test]
async fn silence_asks_for_a_reply_then_times_out() {
    let listener = listen().await;
    let opts = options(&listener, Duration::from_millis(600));
    let dir = tempfile::tempdir().unwrap();
    let seg = WalSegSize::new(16 << 20).unwrap();
    let writer = SegmentWriter::open(dir.path(), seg, WriterOptions::default()).unwrap();
    let client = tokio::spawn(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let r = Receiver::new(opts, writer, VerifyingApplier::new()).run(&cancel).await;
        (r, started.elapsed())
    });
    let mut peer = start_streaming(&listener).await;
    let t0 = Instant::now();
    let first = next_status(&mut peer).await;
    assert!(!first.reply_requested, "the status right after START_REPLICATION");
    // A reply-requested keepalive is answered at once.
    let mut k = BytesMut::new();
    PrimaryKeepalive { wal_end: Lsn(0x100_0000), send_time: TimestampTz(0), reply_requested: true }
        .encode(&mut k);
    peer.send(&[BackendMessage::CopyData(k.freeze())]).await;
    let t1 = Instant::now();
    let answer = next_status(&mut peer).await;
    assert!(!answer.reply_requested);
    assert!(t1.elapsed() < Duration::from_millis(200), "immediate: {:?}", t1.elapsed());
    // Then silence: half the timeout later the client asks for a reply itself.
    let ping = next_status(&mut peer).await;
    assert!(ping.reply_requested);
    let waited = t1.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(550),
        "{waited:?}"
    );
    // And after the whole timeout it gives up.
    let (result, _) = tokio::time::timeout(Duration::from_secs(5), client).await.unwrap().unwrap();
    assert!(matches!(result, Err(ReceiverError::Timeout)), "{result:?}");
    assert!(t0.elapsed() >= Duration::from_millis(550), "{:?}", t0.elapsed());
}
