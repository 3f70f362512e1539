//! Replication commands that answer at once (IDENTIFY_SYSTEM, SHOW, grammar errors, SQL
//! on a physical connection) and the shutdown of walsenders: an idle one is terminated,
//! a streaming one finishes the `k` / `r` / `C "COPY 0"` handshake, new connections are
//! refused. Expected texts and sequences are PostgreSQL 15's (CONFORMANCE §1, §5, §7).

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{caught_up, serve_wal_copy, single_row, the_error, RawClient, Repl};
use walstream_sender::config::Settings;
use walstream_sender::postmaster::ShutdownMode;
use walstream_sender::protocol::wire::{BackendMessage, StartupMessage};
use walstream_sender::protocol::Lsn;
use walstream_testdata::{shapes_dir, wal_files};

async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test finished in time");
}

fn tag(msgs: &[BackendMessage]) -> Option<&str> {
    msgs.iter().find_map(|m| match m {
        BackendMessage::CommandComplete(t) => Some(t.as_str()),
        _ => None,
    })
}

fn assert_error(msgs: &[BackendMessage], code: &str, message: &str) {
    let e = the_error(msgs);
    assert_eq!(
        (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
        ("ERROR", code, message)
    );
    assert!(matches!(msgs.last(), Some(BackendMessage::ReadyForQuery(_))));
}

#[tokio::test]
async fn identify_system_describes_the_served_wal() {
    bounded(10, async {
        let (srv, src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let msgs = c.query("IDENTIFY_SYSTEM").await;
        let BackendMessage::RowDescription(cols) = &msgs[0] else { panic!("{msgs:?}") };
        let shape: Vec<(&str, u32)> = cols.iter().map(|c| (c.name.as_str(), c.type_oid)).collect();
        assert_eq!(shape, [("systemid", 25), ("timeline", 23), ("xlogpos", 25), ("dbname", 25)]);
        let first = &wal_files(&shapes_dir())[0].1;
        let sysid = u64::from_le_bytes(first[24..32].try_into().unwrap());
        let end = src.current_end().flushed;
        assert_eq!(
            single_row(&msgs),
            [Some(sysid.to_string()), Some("1".into()), Some(end.to_string()), None]
        );
        assert_eq!(tag(&msgs), Some("IDENTIFY_SYSTEM"));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn show_and_command_errors() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        for (name, value) in [("wal_segment_size", "1MB"), ("data_directory_mode", "0700")] {
            let msgs = c.query(&format!("SHOW {name}")).await;
            let BackendMessage::RowDescription(cols) = &msgs[0] else { panic!("{msgs:?}") };
            assert_eq!((cols.len(), cols[0].name.as_str(), cols[0].type_oid), (1, name, 25));
            assert_eq!(single_row(&msgs), [Some(value.to_string())]);
            assert_eq!(tag(&msgs), Some("SHOW"));
        }
        let msgs = c.query("SHOW nosuch").await;
        assert_error(&msgs, "42704", "unrecognized configuration parameter \"nosuch\"");
        let not_sql = "cannot execute SQL commands in WAL sender for physical replication";
        for sql in ["identify_system", "SELECT 1", ""] {
            assert_error(&c.query(sql).await, "0A000", not_sql);
        }
        let msgs = c.query("START_REPLICATION 0/700000 TIMELINE 0").await;
        assert_error(&msgs, "42601", "invalid timeline 0");
        assert_error(&c.query("START_REPLICATION TIMELINE 1").await, "42601", "syntax error");
        // Still usable.
        assert_eq!(tag(&c.query("IDENTIFY_SYSTEM;").await), Some("IDENTIFY_SYSTEM"));
        srv.task.abort();
    })
    .await;
}

/// A startup that the server refuses: everything it sends before closing.
async fn refused_startup(addr: std::net::SocketAddr) -> Vec<BackendMessage> {
    let mut c = RawClient::connect(addr).await;
    let params = [("user", "postgres"), ("database", "replication"), ("replication", "true")];
    let mut out = BytesMut::new();
    StartupMessage::new(params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .encode(&mut out);
    c.send(&out).await;
    c.until_closed().await
}

#[tokio::test]
async fn fast_shutdown_stops_idle_and_streaming_walsenders() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut idle, _, _) = RawClient::replication(srv.addr).await;
        let (mut streaming, _, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut streaming).await;

        srv.shutdown.send_replace(Some(ShutdownMode::Fast));

        // The idle walsender dies as a terminated backend does.
        let msgs = idle.until_closed().await;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "57P01"));
        assert_eq!(e.message, "terminating connection due to administrator command");

        // The streaming one asks for a reply.
        match streaming.recv_repl().await {
            Repl::Keepalive(k) => {
                assert!(k.reply_requested);
                assert_eq!(k.wal_end, end);
            }
            other => panic!("expected k with reply requested, got {other:?}"),
        }

        // While it waits, new connections are refused.
        let msgs = refused_startup(srv.addr).await;
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "57P03"));
        assert_eq!(e.message, "the database system is shutting down");

        assert!(!srv.task.is_finished(), "the server waits for the standby's confirmation");
        streaming.send_status(end, end, Lsn(0), false).await;
        let msgs = streaming.until_closed().await;
        assert!(
            matches!(msgs.as_slice(), [BackendMessage::CommandComplete(t)] if t == "COPY 0"),
            "{msgs:?}"
        );
        tokio::time::timeout(Duration::from_secs(3), srv.task)
            .await
            .expect("server stopped after its walsenders")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn shutdown_waits_until_the_standby_confirmed_everything() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut c).await;
        srv.shutdown.send_replace(Some(ShutdownMode::Fast));
        assert!(matches!(c.recv_repl().await, Repl::Keepalive(k) if k.reply_requested));
        // A reply short of the sent position does not end it.
        let short = Lsn(end.0 - 8);
        c.send_status(short, short, Lsn(0), false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!srv.task.is_finished());
        c.send_status(end, end, end, false).await;
        let msgs = c.until_closed().await;
        let tags: Vec<&str> = msgs
            .iter()
            .filter_map(|m| match m {
                BackendMessage::CommandComplete(t) => Some(t.as_str()),
                BackendMessage::CopyData(_) => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(tags, ["COPY 0"]);
        tokio::time::timeout(Duration::from_secs(3), srv.task)
            .await
            .expect("server stopped")
            .unwrap();
    })
    .await;
}

/// Smart shutdown (`pg_ctl stop -m smart`, SIGTERM): client backends are waited for,
/// walsenders stream on meanwhile; once the last client leaves, walsenders stop with the
/// shutdown handshake and the server ends.
#[tokio::test]
async fn smart_shutdown_waits_for_client_backends_first() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut client, _) = RawClient::startup(srv.addr, &[]).await;
        let (mut streaming, _, _) = RawClient::replication(srv.addr).await;
        let end = caught_up(&mut streaming).await;
        srv.shutdown.send_replace(Some(ShutdownMode::Smart));
        // The client backend still works, and nothing asks the standby anything yet.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let msgs = client.query("SELECT 1").await;
        assert!(matches!(msgs.last(), Some(BackendMessage::ReadyForQuery(_))));
        assert!(!srv.task.is_finished());
        // New connections are refused meanwhile.
        let e = the_error(&refused_startup(srv.addr).await);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("57P03", "the database system is shutting down")
        );
        // The last client leaves: now the walsender asks for its final reply.
        client.send_msg(b'X', &[]).await;
        assert!(matches!(streaming.recv_repl().await, Repl::Keepalive(k) if k.reply_requested));
        streaming.send_status(end, end, Lsn(0), false).await;
        let msgs = streaming.until_closed().await;
        assert!(matches!(msgs.as_slice(), [BackendMessage::CommandComplete(t)] if t == "COPY 0"));
        tokio::time::timeout(Duration::from_secs(3), srv.task)
            .await
            .expect("server stopped")
            .unwrap();
    })
    .await;
}
