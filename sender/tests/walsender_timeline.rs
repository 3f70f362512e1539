//! Timelines: streaming a historic timeline up to its switch point (the end-of-timeline
//! handshake), starting at or past the switch point, unknown timelines, and
//! TIMELINE_HISTORY, over a promoted standby's real PostgreSQL 15 WAL (TLI 1 → 2 at
//! 0/F047F8). Expected texts and sequences are PostgreSQL 15's (CONFORMANCE §1, §5).

mod common;

use std::time::Duration;

use common::{serve_wal_copy, single_row, the_error, RawClient, Repl};
use walstream_sender::config::Settings;
use walstream_sender::protocol::wire::{BackendMessage, FieldDescription};
use walstream_sender::protocol::Lsn;
use walstream_testdata::{timeline_dir, wal_files};

const SWITCH: Lsn = Lsn(0x00F0_47F8);

async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test finished in time");
}

fn file(name: &str) -> Vec<u8> {
    wal_files(&timeline_dir())
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in testdata"))
        .1
}

fn tag(m: &BackendMessage) -> Option<&str> {
    match m {
        BackendMessage::CommandComplete(t) => Some(t),
        _ => None,
    }
}

/// Checks `T(next_tli, next_tli_startpos), D['2', '0/F047F8'], C, C, Z`.
fn assert_next_timeline_result(msgs: &[BackendMessage]) {
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    let BackendMessage::RowDescription(cols) = &msgs[0] else { panic!("{msgs:?}") };
    let shape: Vec<(&str, u32, i16)> =
        cols.iter().map(|c| (c.name.as_str(), c.type_oid, c.type_size)).collect();
    assert_eq!(shape, [("next_tli", 20, 8), ("next_tli_startpos", 25, -1)]);
    assert_eq!(single_row(msgs), [Some("2".to_string()), Some("0/F047F8".to_string())]);
    assert_eq!(tag(&msgs[2]), Some("START_STREAMING"));
    assert_eq!(tag(&msgs[3]), Some("START_REPLICATION"));
    assert!(matches!(msgs[4], BackendMessage::ReadyForQuery(_)));
}

/// Streams the historic timeline 1 from `from`; returns the data and checks each walEnd.
async fn stream_historic(c: &mut RawClient, from: Lsn) -> Vec<u8> {
    c.send_query(&format!("START_REPLICATION {from} TIMELINE 1")).await;
    assert!(matches!(c.recv().await, Some(BackendMessage::CopyBothResponse(_))));
    let mut data = Vec::new();
    let mut pos = from;
    loop {
        match c.recv_repl().await {
            Repl::Data(x) => {
                assert_eq!(x.start, pos);
                assert_eq!(x.wal_end, SWITCH, "walEnd of a historic timeline is its end");
                pos = Lsn(pos.0 + x.data.len() as u64);
                data.extend_from_slice(&x.data);
            }
            Repl::Keepalive(_) => {}
            Repl::Other(BackendMessage::CopyDone) => break,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(pos, SWITCH, "data up to exactly the switch point");
    data
}

#[tokio::test]
async fn a_historic_timeline_ends_at_the_switch_point_with_the_handshake() {
    bounded(10, async {
        let (srv, src, _dir) = serve_wal_copy(&timeline_dir(), Settings::default()).await;
        assert_eq!(src.current_end().tli.0, 2);
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let data = stream_historic(&mut c, Lsn(0x00F0_0000)).await;
        // The segment holding the switch point comes from the new timeline's file.
        let tli2 = file("00000002000000000000000F");
        assert!(data == tli2[..0x47F8], "bytes of 00000002000000000000000F up to the switch");
        // The standby may still send feedback before its CopyDone.
        c.send_status(SWITCH, SWITCH, Lsn(0), false).await;
        c.send_copy_done().await;
        let msgs = c.until_ready().await;
        assert_next_timeline_result(&msgs);
        // Back in command mode.
        let msgs = c.query("IDENTIFY_SYSTEM").await;
        assert_eq!(single_row(&msgs)[1].as_deref(), Some("2"));
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn older_segments_of_a_historic_timeline_come_from_its_own_files() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&timeline_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let data = stream_historic(&mut c, Lsn(0x00E0_0000)).await;
        let mut want = file("00000001000000000000000E");
        want.extend_from_slice(&file("00000002000000000000000F")[..0x47F8]);
        assert!(data == want);
        c.send_copy_done().await;
        assert_next_timeline_result(&c.until_ready().await);
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn starting_at_the_switch_point_answers_without_copy_mode() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&timeline_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let msgs = c.query("START_REPLICATION 0/F047F8 TIMELINE 1").await;
        assert_next_timeline_result(&msgs);
        srv.task.abort();
    })
    .await;
}

#[tokio::test]
async fn starting_past_the_switch_point_on_the_old_timeline_is_an_error() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&timeline_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let msgs = c.query("START_REPLICATION 0/F08000 TIMELINE 1").await;
        assert_eq!(msgs.len(), 2, "no CopyBothResponse: {msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "XX000"));
        assert_eq!(
            e.message,
            "requested starting point 0/F08000 on timeline 1 is not in this server's history"
        );
        assert_eq!(
            e.detail.as_deref(),
            Some("This server's history forked from timeline 1 at 0/F047F8.")
        );
        let msgs = c.query("START_REPLICATION 0/F00000 TIMELINE 7").await;
        assert_eq!(msgs.len(), 2, "no CopyBothResponse: {msgs:?}");
        let e = the_error(&msgs);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "XX000"));
        assert_eq!(e.message, "requested timeline 7 is not in this server's history");
        srv.task.abort();
    })
    .await;
}

fn assert_history_columns(m: &BackendMessage) {
    let BackendMessage::RowDescription(cols) = m else { panic!("{m:?}") };
    let shape: Vec<&FieldDescription> = cols.iter().collect();
    assert_eq!(shape.len(), 2);
    for (c, name) in shape.iter().zip(["filename", "content"]) {
        assert_eq!(
            (c.name.as_str(), c.type_oid, c.type_size, c.type_modifier, c.format),
            (name, 25, -1, 0, 0)
        );
    }
}

#[tokio::test]
async fn timeline_history_sends_the_file_or_58p01() {
    bounded(10, async {
        let (srv, _src, _dir) = serve_wal_copy(&timeline_dir(), Settings::default()).await;
        let (mut c, _, _) = RawClient::replication(srv.addr).await;
        let msgs = c.query("TIMELINE_HISTORY 2").await;
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_history_columns(&msgs[0]);
        let BackendMessage::DataRow(cells) = &msgs[1] else { panic!("{msgs:?}") };
        assert_eq!(cells[0].as_deref(), Some(&b"00000002.history"[..]));
        assert_eq!(cells[1].as_deref(), Some(&file("00000002.history")[..]));
        assert_eq!(tag(&msgs[2]), Some("TIMELINE_HISTORY"));
        let msgs = c.query("TIMELINE_HISTORY 1").await;
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_history_columns(&msgs[0]);
        let BackendMessage::ErrorResponse(e) = &msgs[1] else { panic!("{msgs:?}") };
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("ERROR", "58P01"));
        assert_eq!(
            e.message,
            "could not open file \"pg_wal/00000001.history\": No such file or directory"
        );
        srv.task.abort();
    })
    .await;
}
