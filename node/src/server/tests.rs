//! Starting and stopping a node: clean restarts need no recovery, an immediate stop is
//! recovered with an end-of-recovery checkpoint, requested checkpoints remove old WAL.

use std::ops::Bound;
use std::time::SystemTime;

use super::*;
use crate::engine::{ColumnDef, Oid, Row, SqlType, TableDef, Value};
use crate::initdb::{initdb, InitdbOptions};

fn def() -> TableDef {
    let col =
        |n: &str| ColumnDef { name: n.into(), ty: SqlType::Int8, not_null: false, default: None };
    TableDef { oid: 0, name: "t".into(), columns: vec![col("k"), col("v")], pkey: vec![0] }
}

fn new_node_dir() -> (tempfile::TempDir, NodeOptions) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let opts = InitdbOptions { dir: dir.clone(), wal_segsize_mb: 1, superuser: "postgres".into() };
    initdb(&opts, SystemTime::now()).unwrap();
    let listen = Some("127.0.0.1:0".parse().unwrap());
    let overrides = vec![("fsync".to_string(), "off".to_string())];
    (tmp, NodeOptions { dir, listen, overrides })
}

async fn create(node: &Node) -> Oid {
    let mut t = node.engine().begin();
    let oid = t.create_table(def(), false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
    oid
}

async fn insert(node: &Node, oid: Oid, ks: std::ops::Range<i64>) {
    let mut t = node.engine().begin();
    for k in ks {
        t.insert(oid, vec![Value::Int8(k), Value::Int8(k * 2)]).await.unwrap();
    }
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
}

fn rows(node: &Node, name: &str) -> Vec<Row> {
    let t = node.engine().begin();
    let oid = t.table(name).unwrap().oid;
    t.scan(oid, (Bound::Unbounded, Bound::Unbounded)).unwrap()
}

#[tokio::test]
async fn clean_and_immediate_stops_keep_every_commit() {
    let (_tmp, opts) = new_node_dir();
    let node = Node::start(opts.clone()).await.unwrap();
    assert!(node.local_addr().port() > 0);
    assert!(opts.dir.join("postmaster.pid").exists());
    let oid = create(&node).await;
    insert(&node, oid, 0..100).await;
    node.stop(ShutdownMode::Fast).await.unwrap();
    assert!(!opts.dir.join("postmaster.pid").exists(), "the lock file is removed");
    let control = crate::xlog::ControlFile::read(&opts.dir).unwrap();
    assert_eq!(control.state, DbState::ShutDown);

    // After a clean stop: nothing to replay.
    let node = Node::start(opts.clone()).await.unwrap();
    assert_eq!(node.recovery().commits, 0);
    assert_eq!(rows(&node, "t").len(), 100);
    let control = crate::xlog::ControlFile::read(&opts.dir).unwrap();
    assert_eq!(control.state, DbState::InProduction, "running is recorded");
    insert(&node, oid, 100..150).await;
    node.stop(ShutdownMode::Immediate).await.unwrap();

    // After an immediate stop: redo, then an end-of-recovery checkpoint.
    let node = Node::start(opts.clone()).await.unwrap();
    assert_eq!(node.recovery().commits, 1);
    assert_eq!(rows(&node, "t").len(), 150);
    node.stop(ShutdownMode::Fast).await.unwrap();
    let node = Node::start(opts).await.unwrap();
    assert_eq!(node.recovery().commits, 0, "the end-of-recovery checkpoint covered it");
    assert_eq!(rows(&node, "t").len(), 150);
    node.stop(ShutdownMode::Fast).await.unwrap();
}

#[tokio::test]
async fn requested_checkpoints_move_the_redo_point_and_remove_old_segments() {
    let (_tmp, opts) = new_node_dir();
    let node = Node::start(opts.clone()).await.unwrap();
    let oid = create(&node).await;
    for round in 0..40 {
        insert(&node, oid, round * 1000..round * 1000 + 1000).await;
    }
    let segments = || std::fs::read_dir(opts.dir.join("pg_wal")).unwrap().count();
    let before = segments();
    assert!(before >= 3, "the load filled segments: {before}");
    let done = node.checkpoint().await.unwrap();
    assert!(!done.removed.is_empty(), "old segments are removed");
    assert!(segments() < before);
    let control = crate::xlog::ControlFile::read(&opts.dir).unwrap();
    assert_eq!(control.checkpoint, done.lsn);
    assert_eq!(control.redo(), done.redo);
    node.stop(ShutdownMode::Fast).await.unwrap();
}

#[tokio::test]
async fn a_slot_holds_wal_across_checkpoints_until_it_advances() {
    let (_tmp, opts) = new_node_dir();
    let node = Node::start(opts.clone()).await.unwrap();
    let oid = create(&node).await;
    let held = node.insert_lsn();
    let tli = walstream_protocol::TimeLineId(1);
    node.slots().create("keep", false, 0, Some((held, tli))).unwrap();
    for round in 0..40 {
        insert(&node, oid, round * 1000..round * 1000 + 1000).await;
    }
    let done = node.checkpoint().await.unwrap();
    let seg = crate::xlog::ControlFile::read(&opts.dir).unwrap().seg_size;
    let held_seg = walstream_protocol::lsn::segment_file_name(tli, held.segno(seg), seg);
    assert!(opts.dir.join("pg_wal").join(&held_seg).exists(), "the slot's segment is kept");
    assert!(done.removed.iter().all(|r| *r >= held_seg), "{:?}", done.removed);

    // Once the slot moves on, the next checkpoint removes what it held.
    node.slots().advance("keep", node.insert_lsn(), tli).unwrap();
    let done = node.checkpoint().await.unwrap();
    assert!(done.removed.contains(&held_seg), "{:?}", done.removed);
    node.stop(ShutdownMode::Fast).await.unwrap();
}
