//! Crash recovery of the database: state + redo gives every committed transaction and
//! nothing of the others.

use std::ops::Bound;
use std::time::{Duration, SystemTime};

use walstream_protocol::WalSegSize;

use super::*;
use crate::checkpointer::{CheckpointKind, Checkpointer, Retention};
use crate::engine::{ColumnDef, Oid, Row, SqlType, TableDef, Value};
use crate::xlog::bootstrap;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn def() -> TableDef {
    let col =
        |n: &str| ColumnDef { name: n.into(), ty: SqlType::Int4, not_null: false, default: None };
    TableDef { oid: 0, name: "t".into(), columns: vec![col("k"), col("v")], pkey: vec![0] }
}

fn rows(engine: &Arc<Engine>, oid: Oid) -> Vec<Row> {
    engine.begin().scan(oid, (Bound::Unbounded, Bound::Unbounded)).unwrap()
}

fn row(k: i32, v: i32) -> Row {
    vec![Value::Int4(k), Value::Int4(v)]
}

fn new_cluster() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), WalSegSize::new(1 << 20).unwrap(), now()).unwrap();
    dir
}

async fn insert_committed(engine: &Arc<Engine>, oid: Oid, ks: std::ops::Range<i32>) {
    let mut t = engine.begin();
    for k in ks {
        t.insert(oid, row(k, k)).await.unwrap();
    }
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
}

#[tokio::test]
async fn replay_after_a_crash_keeps_commits_and_drops_the_rest() {
    let dir = new_cluster();
    let opts = StartOptions { fsync: false };
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(db.recovery.commits, 0);
    let mut t = db.engine.begin();
    let oid = t.create_table(def(), false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    insert_committed(&db.engine, oid, 0..100).await;

    // Running across the checkpoint: changes before it, commit after it.
    let mut across = db.engine.begin();
    across.insert(oid, row(1000, 1)).await.unwrap();
    across.end_statement().unwrap();
    let cp = Checkpointer::new(dir.path(), db.engine.clone(), db.writer.clone(), db.control);
    let done = cp.checkpoint(CheckpointKind::Online, now(), Retention::default()).await.unwrap();
    assert!(done.redo < done.lsn, "redo starts before the running transaction's change");
    insert_committed(&db.engine, oid, 100..150).await;
    across.insert(oid, row(1001, 1)).await.unwrap();
    across.end_statement().unwrap();
    across.commit(now()).await.unwrap();

    // Never ends: its changes are in WAL, its commit is not.
    let mut lost = db.engine.begin();
    lost.insert(oid, row(5000, 5)).await.unwrap();
    lost.end_statement().unwrap();
    let lost_xid = lost.xid().unwrap();
    std::mem::forget(lost);
    let want = rows(&db.engine, oid);
    assert_eq!(want.len(), 152);
    db.writer.shutdown().unwrap();
    drop(db);

    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(rows(&db.engine, oid), want);
    assert_eq!(db.recovery.aborted, vec![lost_xid]);
    assert_eq!(db.recovery.redo, done.redo);
    assert_eq!(db.recovery.commits, 2, "only the commits after the checkpoint are replayed");
    assert!(db.engine.next_xid() > lost_xid);
    // The database keeps working, and a second crash recovers it again.
    insert_committed(&db.engine, oid, 200..210).await;
    let want = rows(&db.engine, oid);
    db.writer.shutdown().unwrap();
    drop(db);
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(rows(&db.engine, oid), want);
    db.writer.shutdown().unwrap();
}

#[tokio::test]
async fn a_shutdown_checkpoint_leaves_nothing_to_replay() {
    let dir = new_cluster();
    let opts = StartOptions { fsync: false };
    let db = open_database(dir.path(), opts, now()).unwrap();
    let mut t = db.engine.begin();
    let oid = t.create_table(def(), false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    insert_committed(&db.engine, oid, 0..10).await;
    let cp = Checkpointer::new(dir.path(), db.engine.clone(), db.writer.clone(), db.control);
    let done = cp.checkpoint(CheckpointKind::Shutdown, now(), Retention::default()).await.unwrap();
    let want = rows(&db.engine, oid);
    db.writer.shutdown().unwrap();
    drop((db, cp));
    let control = ControlFile::read(dir.path()).unwrap();
    assert_eq!(control.state, crate::xlog::DbState::ShutDown);
    assert_eq!(control.checkpoint, done.lsn);
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(db.recovery.commits, 0);
    assert_eq!(rows(&db.engine, oid), want);
    db.writer.shutdown().unwrap();
}

#[tokio::test]
async fn an_end_of_recovery_checkpoint_keeps_the_state_and_recovers_again() {
    let dir = new_cluster();
    let opts = StartOptions { fsync: false };
    let db = open_database(dir.path(), opts, now()).unwrap();
    let mut t = db.engine.begin();
    let oid = t.create_table(def(), false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    let cp = Checkpointer::new(dir.path(), db.engine.clone(), db.writer.clone(), db.control);
    let online = cp.checkpoint(CheckpointKind::Online, now(), Retention::default()).await.unwrap();
    insert_committed(&db.engine, oid, 0..100).await;
    let mut lost = db.engine.begin();
    lost.insert(oid, row(5000, 5)).await.unwrap();
    lost.end_statement().unwrap();
    std::mem::forget(lost);
    db.writer.shutdown().unwrap();
    drop((db, cp));
    let state = std::fs::read(dir.path().join("base").join(crate::checkpointer::STATE_FILE));

    // Crash recovery, then its checkpoint: the state file and its redo point stay.
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(db.recovery.commits, 1);
    let cp = Checkpointer::new(dir.path(), db.engine.clone(), db.writer.clone(), db.control);
    let eor =
        cp.checkpoint(CheckpointKind::EndOfRecovery, now(), Retention::default()).await.unwrap();
    assert_eq!(eor.redo, online.redo);
    let control = ControlFile::read(dir.path()).unwrap();
    assert_eq!((control.checkpoint, control.redo()), (eor.lsn, online.redo));
    assert_eq!(control.checkpoint_copy.next_xid, u64::from(db.engine.next_xid()));
    let after = std::fs::read(dir.path().join("base").join(crate::checkpointer::STATE_FILE));
    assert_eq!(after.unwrap(), state.unwrap(), "no state is written");
    insert_committed(&db.engine, oid, 100..110).await;
    let want = rows(&db.engine, oid);
    assert_eq!(want.len(), 110);
    db.writer.shutdown().unwrap();
    drop((db, cp));

    // A second crash replays it all again from the same redo point.
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(db.recovery.redo, online.redo);
    assert_eq!(db.recovery.commits, 2);
    assert_eq!(rows(&db.engine, oid), want);
    let cp = Checkpointer::new(dir.path(), db.engine.clone(), db.writer.clone(), db.control);
    let full = cp.checkpoint(CheckpointKind::Online, now(), Retention::default()).await.unwrap();
    assert!(full.redo > online.redo, "a regular checkpoint writes a new state");
    db.writer.shutdown().unwrap();
    drop((db, cp));
    let db = open_database(dir.path(), opts, now()).unwrap();
    assert_eq!(db.recovery.commits, 0);
    assert_eq!(rows(&db.engine, oid), want);
    db.writer.shutdown().unwrap();
}
