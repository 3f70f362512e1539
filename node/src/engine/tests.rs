//! Engine tests: visibility, row-lock waits with re-checks, deadlocks, logging, redo, images.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::testlog::{Logged, MemLog};
use super::*;

fn def(name: &str) -> TableDef {
    let col = |n: &str, ty, not_null| ColumnDef { name: n.into(), ty, not_null, default: None };
    TableDef {
        oid: 0,
        name: name.into(),
        columns: vec![col("k", SqlType::Int4, true), col("v", SqlType::Int4, false)],
        pkey: vec![0],
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

async fn setup() -> (Arc<Engine>, Arc<MemLog>, Oid) {
    let log = Arc::new(MemLog::default());
    let e = Engine::new(1000, log.clone());
    let mut t = e.begin();
    let d = t.create_table(def("t"), false).await.unwrap().unwrap();
    for k in 1..=3 {
        t.insert(d.oid, vec![Value::Int4(k), Value::Int4(0)]).await.unwrap();
    }
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    (e, log, d.oid)
}

fn all(t: &Txn, oid: Oid) -> Vec<Row> {
    t.scan(oid, (Bound::Unbounded, Bound::Unbounded)).unwrap()
}

fn key(k: i32) -> Key {
    vec![Value::Int4(k)]
}

fn add_one(r: &Row) -> Result<RowAction, EngineError> {
    let v = r[1].as_i64().unwrap() as i32;
    Ok(RowAction::Update(vec![r[0].clone(), Value::Int4(v + 1)]))
}

#[tokio::test]
async fn first_table_gets_oid_16384_and_xid_from_next_xid() {
    let (e, log, oid) = setup().await;
    assert_eq!(oid, FIRST_NORMAL_OBJECT_ID);
    let ev = log.events();
    assert!(matches!(&ev[0], Logged::Changes(1000, c) if c.len() == 4));
    assert_eq!(ev[1], Logged::Commit(1000, 2));
    assert_eq!(e.next_xid(), 1001);
}

#[tokio::test]
async fn a_commit_counts_the_other_transactions_open_beside_it() {
    let (e, log, oid) = setup().await;
    let (mut a, mut b, reader) = (e.begin(), e.begin(), e.begin());
    a.insert(oid, vec![Value::Int4(7), Value::Int4(7)]).await.unwrap();
    b.insert(oid, vec![Value::Int4(8), Value::Int4(8)]).await.unwrap();
    assert_eq!(all(&reader, oid).len(), 3);
    a.end_statement().unwrap();
    b.end_statement().unwrap();
    a.commit(now()).await.unwrap();
    drop(a);
    b.commit(now()).await.unwrap();
    drop((b, reader));
    let mut c = e.begin();
    c.insert(oid, vec![Value::Int4(9), Value::Int4(9)]).await.unwrap();
    c.end_statement().unwrap();
    c.commit(now()).await.unwrap();
    // setup's commit was alone; a's had b and the reader beside it, b's the reader (a
    // committed transaction no longer counts once dropped); c's was alone.
    assert_eq!(*log.siblings.lock(), vec![0, 2, 1, 0]);
}

#[tokio::test]
async fn readers_never_see_uncommitted_and_rollback_restores() {
    let (e, log, oid) = setup().await;
    let mut w = e.begin();
    w.modify_row(oid, &key(1), |_| Ok::<_, EngineError>(RowAction::Delete)).await.unwrap();
    w.insert(oid, vec![Value::Int4(9), Value::Int4(9)]).await.unwrap();
    w.end_statement().unwrap();
    let r = e.begin();
    assert_eq!(all(&r, oid).len(), 3, "reader sees the committed rows only");
    assert_eq!(all(&w, oid).len(), 3, "writer sees its own delete and insert");
    assert!(all(&w, oid).iter().any(|row| row[0] == Value::Int4(9)));
    w.rollback(now()).unwrap();
    assert_eq!(all(&r, oid), all(&e.begin(), oid));
    assert_eq!(all(&r, oid)[0], vec![Value::Int4(1), Value::Int4(0)]);
    assert!(matches!(log.events().last(), Some(Logged::Abort(_))));
}

#[tokio::test]
async fn second_writer_waits_then_rechecks_the_new_version() {
    let (e, _log, oid) = setup().await;
    let mut a = e.begin();
    a.modify_row(oid, &key(1), add_one).await.unwrap();
    a.end_statement().unwrap();
    let e2 = Arc::clone(&e);
    let b = tokio::spawn(async move {
        let mut b = e2.begin();
        // WHERE v = 0 held when b's statement started; after a commits, v = 1: skipped.
        let out = b
            .modify_row(oid, &key(1), |r| {
                Ok::<_, EngineError>(if r[1] == Value::Int4(0) {
                    RowAction::Delete
                } else {
                    RowAction::Skip
                })
            })
            .await
            .unwrap();
        let out2 = b.modify_row(oid, &key(1), add_one).await.unwrap();
        b.end_statement().unwrap();
        b.commit(now()).await.unwrap();
        (out, out2)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!b.is_finished(), "b must wait for a's row lock");
    a.commit(now()).await.unwrap();
    let (out, out2) = b.await.unwrap();
    assert_eq!(out, RowOutcome::Skipped);
    assert!(matches!(out2, RowOutcome::Updated { .. }));
    assert_eq!(all(&e.begin(), oid)[0], vec![Value::Int4(1), Value::Int4(2)]);
}

#[tokio::test]
async fn insert_waits_for_uncommitted_insert_of_same_key() {
    let (e, _log, oid) = setup().await;
    for commit_first in [true, false] {
        let k = if commit_first { 10 } else { 11 };
        let mut a = e.begin();
        a.insert(oid, vec![Value::Int4(k), Value::Int4(1)]).await.unwrap();
        let e2 = Arc::clone(&e);
        let b = tokio::spawn(async move {
            let mut b = e2.begin();
            b.insert(oid, vec![Value::Int4(k), Value::Int4(2)]).await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!b.is_finished());
        if commit_first {
            a.commit(now()).await.unwrap();
            let got = b.await.unwrap();
            assert!(matches!(got, InsertOutcome::Conflict { same_command: false, .. }));
        } else {
            a.rollback(now()).unwrap();
            assert_eq!(b.await.unwrap(), InsertOutcome::Inserted);
        }
    }
}

#[tokio::test]
async fn wait_for_cycle_is_a_deadlock() {
    let (e, _log, oid) = setup().await;
    let mut a = e.begin();
    a.modify_row(oid, &key(1), add_one).await.unwrap();
    let e2 = Arc::clone(&e);
    let b = tokio::spawn(async move {
        let mut b = e2.begin();
        b.modify_row(oid, &key(2), add_one).await.unwrap();
        let r = b.modify_row(oid, &key(1), add_one).await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let err = a.modify_row(oid, &key(2), add_one).await.unwrap_err();
    assert_eq!(err.sqlstate(), "40P01");
    assert_eq!(err.to_string(), "deadlock detected");
    a.rollback(now()).unwrap();
    let (mut b, r) = b.await.unwrap();
    assert!(matches!(r.unwrap(), RowOutcome::Updated { .. }));
    b.commit(now()).await.unwrap();
}

#[tokio::test]
async fn updating_the_key_onto_an_existing_key_is_23505() {
    let (e, _log, oid) = setup().await;
    let mut a = e.begin();
    let err = a
        .modify_row(oid, &key(1), |r| {
            Ok::<_, EngineError>(RowAction::Update(vec![Value::Int4(2), r[1].clone()]))
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "duplicate key value violates unique constraint \"t_pkey\"");
    assert_eq!(err.detail(), Some("Key (k)=(2) already exists."));
}

#[tokio::test]
async fn redo_of_the_log_rebuilds_the_same_state() {
    let (e, log, oid) = setup().await;
    let mut a = e.begin();
    a.modify_row(oid, &key(2), add_one).await.unwrap();
    a.modify_row(oid, &key(3), |_| Ok::<_, EngineError>(RowAction::Delete)).await.unwrap();
    a.end_statement().unwrap();
    a.commit(now()).await.unwrap();
    let mut b = e.begin();
    b.truncate(oid).await.unwrap();
    b.end_statement().unwrap();
    b.rollback(now()).unwrap();
    let standby = Engine::new(3, Arc::new(MemLog::default()));
    for ev in log.events() {
        match ev {
            Logged::Changes(x, cs) => cs.into_iter().for_each(|c| standby.redo_change(x, c)),
            Logged::Commit(x, _) => standby.redo_commit(x).unwrap(),
            Logged::Abort(x) => standby.redo_abort(x),
        }
    }
    assert_eq!(all(&standby.begin(), oid), all(&e.begin(), oid));
    assert_eq!(standby.next_xid(), e.next_xid());
    assert!(standby.redo_pending_xids().is_empty());
}

#[tokio::test]
async fn image_holds_committed_state_and_in_progress_xids() {
    let (e, _log, oid) = setup().await;
    let mut a = e.begin();
    a.insert(oid, vec![Value::Int4(7), Value::Null]).await.unwrap();
    a.end_statement().unwrap();
    let (lsn, img) = e.image(|| 42);
    assert_eq!(lsn, 42);
    assert_eq!(img.in_progress, vec![(a.xid().unwrap(), 3)]);
    assert_eq!(img.tables[0].rows.len(), 3);
    let back =
        Engine::from_image(Image::decode(&img.encode()).unwrap(), Arc::new(MemLog::default()));
    let mut t = back.begin();
    assert_eq!(all(&t, oid).len(), 3);
    let d = t.create_table(def("u"), false).await.unwrap().unwrap();
    assert_eq!(d.oid, oid + 1);
    assert_eq!(t.xid(), Some(e.next_xid()));
}

#[tokio::test]
async fn read_only_engine_refuses_writes() {
    let (e, _log, oid) = setup().await;
    e.set_read_only(true);
    let err = e.begin().insert(oid, vec![Value::Int4(5), Value::Null]).await.unwrap_err();
    assert_eq!(err.sqlstate(), "25006");
}
