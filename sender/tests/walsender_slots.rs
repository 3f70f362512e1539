//! Physical replication slots through the replication protocol: CREATE / READ / DROP,
//! names, RESERVE_WAL in both syntaxes, a slot in use by another walsender, restart_lsn
//! following the standby's flush reports, temporary slots, and persistence across a
//! restart. Expected texts and SQLSTATEs are PostgreSQL 15's (CONFORMANCE §1, §5).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{serve_wal_copy, single_row, start_server_with_slots, the_error, RawClient, Repl};
use walstream_sender::config::Settings;
use walstream_sender::protocol::wire::BackendMessage;
use walstream_sender::protocol::Lsn;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions};
use walstream_testdata::shapes_dir;

async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test finished in time");
}

fn no_error(msgs: &[BackendMessage]) {
    assert!(msgs.iter().all(|m| !matches!(m, BackendMessage::ErrorResponse(_))), "{msgs:?}");
}

fn tag(msgs: &[BackendMessage]) -> Option<&str> {
    msgs.iter().find_map(|m| match m {
        BackendMessage::CommandComplete(t) => Some(t.as_str()),
        _ => None,
    })
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

async fn read_slot(c: &mut RawClient, name: &str) -> Vec<Option<String>> {
    let msgs = c.query(&format!("READ_REPLICATION_SLOT {name}")).await;
    no_error(&msgs);
    let BackendMessage::RowDescription(cols) = &msgs[0] else { panic!("{msgs:?}") };
    let shape: Vec<(&str, u32)> = cols.iter().map(|c| (c.name.as_str(), c.type_oid)).collect();
    assert_eq!(shape, [("slot_type", 25), ("restart_lsn", 25), ("restart_tli", 20)]);
    assert_eq!(tag(&msgs), Some("READ_REPLICATION_SLOT"));
    single_row(&msgs)
}

async fn flushed_end(c: &mut RawClient) -> Lsn {
    let msgs = c.query("IDENTIFY_SYSTEM").await;
    single_row(&msgs)[2].as_ref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_read_and_drop_physical_slots() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let end = flushed_end(&mut c).await;

        let msgs = c.query("CREATE_REPLICATION_SLOT s PHYSICAL").await;
        no_error(&msgs);
        let BackendMessage::RowDescription(cols) = &msgs[0] else { panic!("{msgs:?}") };
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["slot_name", "consistent_point", "snapshot_name", "output_plugin"]);
        assert_eq!(single_row(&msgs), [s("s"), s("0/0"), None, None]);
        assert_eq!(tag(&msgs), Some("CREATE_REPLICATION_SLOT"));

        let e = the_error(&c.query("CREATE_REPLICATION_SLOT s PHYSICAL").await);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "42710"));
        assert_eq!(e.message, "replication slot \"s\" already exists");

        assert_eq!(read_slot(&mut c, "s").await, [s("physical"), None, None]);

        no_error(&c.query("CREATE_REPLICATION_SLOT r PHYSICAL RESERVE_WAL").await);
        no_error(&c.query("CREATE_REPLICATION_SLOT \"r2\" PHYSICAL (RESERVE_WAL)").await);
        for name in ["r", "r2"] {
            assert_eq!(
                read_slot(&mut c, name).await,
                [s("physical"), Some(end.to_string()), s("1")]
            );
        }
        assert_eq!(read_slot(&mut c, "nosuch").await, [None, None, None]);

        let msgs = c.query("DROP_REPLICATION_SLOT r2").await;
        no_error(&msgs);
        assert_eq!(msgs.len(), 2, "tag only: {msgs:?}");
        assert_eq!(tag(&msgs), Some("DROP_REPLICATION_SLOT"));
        assert_eq!(read_slot(&mut c, "r2").await, [None, None, None]);

        let e = the_error(&c.query("DROP_REPLICATION_SLOT nosuch").await);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "42704"));
        assert_eq!(e.message, "replication slot \"nosuch\" does not exist");
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn invalid_slot_names_are_refused_with_postgres_text() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let e = the_error(&c.query("CREATE_REPLICATION_SLOT \"A-b\" PHYSICAL").await);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "42602"));
        assert_eq!(e.message, "replication slot name \"A-b\" contains invalid character");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "Replication slot names may only contain lower case letters, numbers, and the \
                 underscore character."
            )
        );
        // An unquoted identifier folds to lower case, so it is valid.
        no_error(&c.query("CREATE_REPLICATION_SLOT Upper PHYSICAL").await);
        assert_eq!(read_slot(&mut c, "upper").await, [s("physical"), None, None]);
        srv.task.abort();
    })
    .await;
}

/// Starts streaming on slot `slot` from the last segment and reads until caught up.
async fn stream_on_slot(c: &mut RawClient, slot: &str, end: Lsn) {
    c.send_query(&format!("START_REPLICATION SLOT {slot} PHYSICAL 0/F00000 TIMELINE 1")).await;
    assert!(matches!(c.recv().await, Some(BackendMessage::CopyBothResponse(_))));
    loop {
        match c.recv_repl().await {
            Repl::Data(x) if Lsn(x.start.0 + x.data.len() as u64) >= end => return,
            Repl::Data(_) | Repl::Keepalive(_) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
}

/// Sends `r` with reply requested and waits for the `k`, so the feedback was processed.
async fn feedback(c: &mut RawClient, flush: Lsn) {
    c.send_status(flush, flush, Lsn(0), true).await;
    loop {
        match c.recv_repl().await {
            Repl::Keepalive(k) if !k.reply_requested => return,
            Repl::Keepalive(_) | Repl::Data(_) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_active_slot_is_refused_and_follows_flush_reports() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut a, pid_a, _) = RawClient::replication(srv.addr).await;
        let (mut b, _, _) = RawClient::replication(srv.addr).await;
        let end = flushed_end(&mut a).await;
        no_error(&a.query("CREATE_REPLICATION_SLOT s PHYSICAL").await);
        stream_on_slot(&mut a, "s", end).await;

        let msgs = b.query("START_REPLICATION SLOT s PHYSICAL 0/F00000 TIMELINE 1").await;
        assert_eq!(msgs.len(), 2, "error before CopyBoth: {msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "55006"));
        assert_eq!(e.message, format!("replication slot \"s\" is active for PID {pid_a}"));
        let e = the_error(&b.query("DROP_REPLICATION_SLOT s").await);
        assert_eq!(e.code, "55006");

        let first = Lsn(0x00F0_2000);
        feedback(&mut a, first).await;
        assert_eq!(read_slot(&mut b, "s").await, [s("physical"), Some(first.to_string()), s("1")]);
        feedback(&mut a, end).await;
        assert_eq!(read_slot(&mut b, "s").await, [s("physical"), Some(end.to_string()), s("1")]);
        // Never backwards.
        feedback(&mut a, first).await;
        assert_eq!(read_slot(&mut b, "s").await, [s("physical"), Some(end.to_string()), s("1")]);

        // Once A stops streaming, B may use the slot.
        a.send_copy_done().await;
        a.until_ready().await;
        stream_on_slot(&mut b, "s", end).await;
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_temporary_slot_ends_with_its_session() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&shapes_dir(), Settings::default()).await;
        let (mut a, _, _) = RawClient::replication(srv.addr).await;
        let (mut b, _, _) = RawClient::replication(srv.addr).await;
        let end = flushed_end(&mut a).await;
        let msgs = a.query("CREATE_REPLICATION_SLOT \"t\" TEMPORARY PHYSICAL (RESERVE_WAL)").await;
        assert_eq!(single_row(&msgs), [s("t"), s("0/0"), None, None]);
        assert_eq!(read_slot(&mut b, "t").await, [s("physical"), Some(end.to_string()), s("1")]);
        a.send_msg(b'X', &[]).await;
        assert!(a.until_closed().await.is_empty());
        let t0 = Instant::now();
        while read_slot(&mut b, "t").await != [None, None, None] {
            assert!(t0.elapsed() < Duration::from_secs(2), "temporary slot still there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn slots_persist_across_a_restart() {
    bounded(10, async {
        let wal = common::copy_wal_dir(&shapes_dir());
        let slot_dir = tempfile::tempdir().unwrap();
        let source = DirWalSource::open(wal.path(), DirWalSourceOptions::default()).unwrap();
        let end = source.current_end().flushed;
        let advanced = Lsn(0x00F0_4000);
        {
            let slots = Arc::new(SlotStore::open(slot_dir.path(), 10).unwrap());
            let srv = start_server_with_slots(Settings::default(), source.clone(), slots).await;
            let (mut c, _, _) = RawClient::replication(srv.addr).await;
            no_error(&c.query("CREATE_REPLICATION_SLOT keep PHYSICAL").await);
            no_error(&c.query("CREATE_REPLICATION_SLOT tmp TEMPORARY PHYSICAL").await);
            no_error(&c.query("CREATE_REPLICATION_SLOT gone PHYSICAL RESERVE_WAL").await);
            no_error(&c.query("DROP_REPLICATION_SLOT gone").await);
            stream_on_slot(&mut c, "keep", end).await;
            feedback(&mut c, advanced).await;
            c.send_copy_done().await;
            c.until_ready().await;
            srv.task.abort();
        }
        let slots = Arc::new(SlotStore::open(slot_dir.path(), 10).unwrap());
        let names: Vec<String> = slots.list().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["keep"], "temporary and dropped slots are not on disk");
        let srv = start_server_with_slots(Settings::default(), source, slots).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        assert_eq!(
            read_slot(&mut c, "keep").await,
            [s("physical"), Some(advanced.to_string()), s("1")]
        );
        srv.task.abort();
    })
    .await;
}
