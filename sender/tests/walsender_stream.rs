//! Physical streaming from a directory of real PostgreSQL 15 WAL, driven by a raw client:
//! XLogData sizes and contents, keepalives and replies, CopyDone, errors at start,
//! wal_sender_timeout, cancel, terminate and protocol violations in COPY mode.
//! Expected texts and sequences are PostgreSQL 15's (CONFORMANCE §5, §7).

mod common;

use std::time::{Duration, Instant};

use common::{
    caught_up, cell, identify_xlogpos, read_until, send_cancel, serve_wal_copy, start, the_error,
    RawClient, Repl,
};
use walstream_sender::config::Settings;
use walstream_sender::protocol::lsn::Xid;
use walstream_sender::protocol::replication::{HotStandbyFeedback, TimestampTz};
use walstream_sender::protocol::wire::{BackendMessage, TransactionStatus};
use walstream_sender::protocol::Lsn;
use walstream_sender::registry::WalSndState;
use walstream_testdata::{shapes_dir, wal_files};

const PAGE: u64 = 8192;
const SHAPES_START: Lsn = Lsn(0x0070_0000);

/// Bounds a whole test.
async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test finished in time");
}

/// The bytes of the shapes segments from `from` to `to`.
fn shapes_bytes(from: Lsn, to: Lsn) -> Vec<u8> {
    let all: Vec<u8> = wal_files(&shapes_dir()).into_iter().flat_map(|(_, b)| b).collect();
    all[(from.0 - SHAPES_START.0) as usize..(to.0 - SHAPES_START.0) as usize].to_vec()
}

/// Checks contiguity, sizes, page alignment and walEnd; returns the concatenated data.
fn check_messages(
    msgs: &[walstream_sender::protocol::replication::XLogData],
    start: Lsn,
    end: Lsn,
    max: usize,
) -> Vec<u8> {
    let mut pos = start;
    let mut data = Vec::new();
    for x in msgs {
        assert_eq!(x.start, pos, "contiguous");
        assert!(!x.data.is_empty());
        assert!(x.data.len() <= max, "{} > {max}", x.data.len());
        assert_eq!(x.wal_end, end, "walEnd is the flushed end");
        pos = Lsn(pos.0 + x.data.len() as u64);
        if pos < end {
            assert_eq!(pos.0 % PAGE, 0, "a message with more pending ends on a page boundary");
        }
        data.extend_from_slice(&x.data);
    }
    assert_eq!(pos, end);
    data
}

#[tokio::test]
async fn streams_the_segments_byte_for_byte() {
    bounded(20, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = identify_xlogpos(&mut c).await;
        assert!(end > Lsn(0x00F0_0000), "flushed end {end} is in the last segment");
        start(&mut c, "START_REPLICATION 0/700000 TIMELINE 1").await;
        let msgs = read_until(&mut c, end).await;
        let data = check_messages(&msgs, SHAPES_START, end, 128 * 1024);
        assert!(msgs.iter().any(|x| x.data.len() == 128 * 1024), "full-size messages");
        assert!(data == shapes_bytes(SHAPES_START, end), "streamed bytes equal the segments");
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_larger_max_send_size_sends_larger_messages() {
    bounded(20, async {
        let settings = Settings { max_send_size: 512 * 1024, ..Settings::default() };
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), settings).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = identify_xlogpos(&mut c).await;
        start(&mut c, "START_REPLICATION 0/A00000 TIMELINE 1").await;
        let from = Lsn(0x00A0_0000);
        let msgs = read_until(&mut c, end).await;
        let data = check_messages(&msgs, from, end, 512 * 1024);
        assert!(msgs.iter().any(|x| x.data.len() > 128 * 1024), "messages above 128 KiB");
        assert!(data == shapes_bytes(from, end));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn reply_requested_gets_an_immediate_keepalive_and_feeds_the_registry() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, pid, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut c).await;
        let (w, f, a) = (end, Lsn(end.0 - 100), Lsn(end.0 - 200));
        c.send_status(w, f, a, true).await;
        let t = Instant::now();
        match c.recv_repl().await {
            Repl::Keepalive(k) => {
                assert!(!k.reply_requested);
                assert_eq!(k.wal_end, end, "walEnd of k is the sent position");
            }
            other => panic!("expected k, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(1), "immediate");
        let entry = srv.server.registry.get(pid).expect("registered");
        let ws = entry.status().walsender.clone().expect("walsender status");
        assert_eq!(ws.state, WalSndState::Streaming);
        assert_eq!((ws.sent, ws.write, ws.flush, ws.apply), (end, w, f, a));
        assert!(ws.reply_time.is_some());
        // Hot standby feedback: its xmin is what pg_stat_replication shows as backend_xmin.
        let mut h = bytes::BytesMut::new();
        HotStandbyFeedback {
            send_time: TimestampTz(0),
            xmin: Xid(735),
            xmin_epoch: 0,
            catalog_xmin: Xid(0),
            catalog_xmin_epoch: 0,
        }
        .encode(&mut h);
        c.send_msg(b'd', &h).await;
        c.send_status(w, f, a, true).await;
        assert!(matches!(c.recv_repl().await, Repl::Keepalive(_)));
        let ws = entry.status().walsender.clone().expect("walsender status");
        assert_eq!(ws.xmin, Some(735));
        // Lags (LagTracker): measured while the standby is behind the sent position...
        assert!(ws.write_lag.is_some() && ws.flush_lag.is_some() && ws.replay_lag.is_some());
        // ...and cleared once it reported everything applied twice in a row.
        for _ in 0..2 {
            c.send_status(end, end, end, true).await;
            assert!(matches!(c.recv_repl().await, Repl::Keepalive(_)));
        }
        let ws = entry.status().walsender.clone().expect("walsender status");
        assert_eq!((ws.write_lag, ws.flush_lag, ws.replay_lag), (None, None, None));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn client_copy_done_ends_streaming_and_returns_to_command_mode() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut c).await;
        c.send_copy_done().await;
        let msgs = c.until_ready().await;
        assert!(matches!(msgs[0], BackendMessage::CopyDone), "{msgs:?}");
        assert!(matches!(&msgs[1], BackendMessage::CommandComplete(t) if t == "START_STREAMING"));
        assert!(matches!(&msgs[2], BackendMessage::CommandComplete(t) if t == "START_REPLICATION"));
        assert!(matches!(msgs[3], BackendMessage::ReadyForQuery(TransactionStatus::Idle)));
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_eq!(identify_xlogpos(&mut c).await, end);
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_start_ahead_of_the_flush_position_errors_after_copy_both() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = identify_xlogpos(&mut c).await;
        let msgs = c.query("START_REPLICATION 5/0 TIMELINE 1").await;
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(matches!(msgs[0], BackendMessage::CopyBothResponse(_)), "{msgs:?}");
        let BackendMessage::ErrorResponse(e) = &msgs[1] else { panic!("{msgs:?}") };
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "XX000"));
        assert_eq!(
            e.message,
            format!(
                "requested starting point 5/0 is ahead of the WAL flush position of this server {end}"
            )
        );
        assert!(matches!(msgs[2], BackendMessage::ReadyForQuery(_)));
        // The connection is usable afterwards.
        assert_eq!(identify_xlogpos(&mut c).await, end);
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_removed_segment_is_reported() {
    bounded(10, async {
        let (srv, _src, dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        std::fs::remove_file(dir.path().join("000000010000000000000007")).unwrap();
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let msgs = c.query("START_REPLICATION 0/700000 TIMELINE 1").await;
        // walsender.c: the segment is opened in XLogSendPhysical, after CopyBothResponse.
        assert!(matches!(msgs[0], BackendMessage::CopyBothResponse(_)), "{msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "58P01"));
        assert_eq!(
            e.message,
            "requested WAL segment 000000010000000000000007 has already been removed"
        );
        assert!(matches!(msgs.last(), Some(BackendMessage::ReadyForQuery(_))));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_silent_standby_is_pinged_then_dropped_without_an_error() {
    bounded(10, async {
        let settings =
            Settings { wal_sender_timeout: Duration::from_millis(600), ..Settings::default() };
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), settings).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = identify_xlogpos(&mut c).await;
        let t0 = Instant::now();
        start(&mut c, "START_REPLICATION 0/F00000 TIMELINE 1").await;
        read_until(&mut c, end).await;
        let mut ping_at = None;
        let mut rest = Vec::new();
        loop {
            match c.recv_repl().await {
                Repl::Keepalive(k) if k.reply_requested && ping_at.is_none() => {
                    assert_eq!(k.wal_end, end);
                    ping_at = Some(t0.elapsed());
                }
                Repl::Closed => break,
                other => rest.push(other),
            }
        }
        let closed_at = t0.elapsed();
        let ping_at = ping_at.expect("a reply-requested keepalive");
        assert!(
            ping_at >= Duration::from_millis(250) && ping_at < Duration::from_millis(580),
            "ping after half the timeout: {ping_at:?}"
        );
        assert!(
            closed_at >= Duration::from_millis(580) && closed_at < Duration::from_millis(1500),
            "closed after the timeout: {closed_at:?}"
        );
        assert!(
            rest.iter().all(|m| !matches!(m, Repl::Other(BackendMessage::ErrorResponse(_)))),
            "no ErrorResponse on replication timeout: {rest:?}"
        );
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_standby_that_answers_pings_stays_connected() {
    bounded(10, async {
        let settings =
            Settings { wal_sender_timeout: Duration::from_millis(600), ..Settings::default() };
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), settings).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut c).await;
        let t0 = Instant::now();
        let mut pings = 0;
        while t0.elapsed() < Duration::from_millis(1600) {
            match c.recv_repl().await {
                Repl::Keepalive(k) if k.reply_requested => {
                    pings += 1;
                    c.send_status(end, end, end, false).await;
                }
                Repl::Keepalive(_) => {}
                other => panic!("standby that answers was dropped: {other:?}"),
            }
        }
        assert!(pings >= 2, "pinged about every 300 ms: {pings}");
        c.send_copy_done().await;
        let msgs = c.until_ready().await;
        assert!(matches!(msgs[0], BackendMessage::CopyDone), "{msgs:?}");
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn cancel_while_streaming_returns_to_command_mode() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, pid, key) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut c).await;
        send_cancel(srv.addr, pid, key).await;
        let msgs = c.until_ready().await;
        let msgs: Vec<_> =
            msgs.into_iter().filter(|m| !matches!(m, BackendMessage::CopyData(_))).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        let BackendMessage::ErrorResponse(e) = &msgs[0] else { panic!("{msgs:?}") };
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "57014"));
        assert_eq!(e.message, "canceling statement due to user request");
        assert_eq!(identify_xlogpos(&mut c).await, end);
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn cancel_while_idle_has_no_effect() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, pid, key) = RawClient::replication(srv.addr).await;
        send_cancel(srv.addr, pid, key).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let end = identify_xlogpos(&mut c).await;
        // A stale cancel does not stop the next START_REPLICATION either.
        start(&mut c, "START_REPLICATION 0/F00000 TIMELINE 1").await;
        read_until(&mut c, end).await;
        c.send_status(end, end, end, true).await;
        assert!(matches!(c.recv_repl().await, Repl::Keepalive(_)));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn terminate_while_streaming_is_fatal() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, pid, _) = RawClient::replication(srv.addr).await;
        caught_up(&mut c).await;
        assert!(srv.server.registry.terminate(pid));
        let msgs = c.until_closed().await;
        let msgs: Vec<_> =
            msgs.into_iter().filter(|m| !matches!(m, BackendMessage::CopyData(_))).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "57P01"));
        assert_eq!(e.message, "terminating connection due to administrator command");
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_query_in_copy_mode_is_a_protocol_violation() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        caught_up(&mut c).await;
        c.send_query("IDENTIFY_SYSTEM").await;
        let msgs = c.until_closed().await;
        let msgs: Vec<_> =
            msgs.into_iter().filter(|m| !matches!(m, BackendMessage::CopyData(_))).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "08P01"));
        assert_eq!(e.message, "invalid standby message type \"Q\"");
        srv.task.abort();
    })
    .await;
}

#[test]
fn cell_helper_reads_text() {
    let m = BackendMessage::DataRow(vec![Some("x".into()), None]);
    assert_eq!((cell(&m, 0), cell(&m, 1)), (Some("x".to_string()), None));
}
