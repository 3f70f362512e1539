//! Every WAL segment the node writes is read the same by PostgreSQL 15's pg_waldump and by
//! `walstream waldump` (issue 8, tests item 3): the node's row changes (a custom resource
//! manager), commits, aborts, checkpoints and switches, in small records and in large ones
//! that cross pages.

use std::ops::Bound;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use walstream_node::checkpointer::{CheckpointKind, Checkpointer, Retention};
use walstream_node::engine::{ColumnDef, Engine, Oid, RowAction, SqlType, TableDef, Value};
use walstream_node::initdb::{initdb, InitdbOptions};
use walstream_node::startup::{open_database, StartOptions};
use walstream_tests::pg_bin;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn def() -> TableDef {
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    TableDef {
        oid: 0,
        name: "t".into(),
        columns: vec![col("k", SqlType::Int4), col("v", SqlType::Text)],
        pkey: vec![0],
    }
}

async fn insert(engine: &Arc<Engine>, oid: Oid, ks: std::ops::Range<i32>, len: usize) {
    let mut t = engine.begin();
    for k in ks {
        let v = format!("{k:08}").repeat(len / 8 + 1);
        t.insert(oid, vec![Value::Int4(k), Value::Text(v)]).await.unwrap();
    }
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
}

async fn update_and_delete(engine: &Arc<Engine>, oid: Oid, k: i32, commit: bool) {
    let mut t = engine.begin();
    let key = vec![Value::Int4(k)];
    t.modify_row::<walstream_node::engine::EngineError>(oid, &key, |_| {
        Ok(RowAction::Update(vec![Value::Int4(k), Value::Text("updated".into())]))
    })
    .await
    .unwrap();
    t.modify_row::<walstream_node::engine::EngineError>(oid, &vec![Value::Int4(k + 1)], |_| {
        Ok(RowAction::Delete)
    })
    .await
    .unwrap();
    t.end_statement().unwrap();
    if commit {
        t.commit(now()).await.unwrap();
    } else {
        t.rollback(now()).unwrap();
    }
}

/// A node's whole WAL: small and page-crossing rows, updates, deletes, an abort, an online
/// checkpoint, a segment switch, a truncate and a shutdown checkpoint.
async fn write_node_wal(dir: &Path) {
    let opts = InitdbOptions { dir: dir.into(), wal_segsize_mb: 1, superuser: "postgres".into() };
    initdb(&opts, now()).unwrap();
    let db = open_database(dir, StartOptions { fsync: false }, now()).unwrap();
    let mut t = db.engine.begin();
    let oid = t.create_table(def(), false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    for round in 0..20 {
        insert(&db.engine, oid, round * 100..round * 100 + 50, 16).await;
        insert(&db.engine, oid, round * 100 + 50..round * 100 + 54, 20_000).await;
        update_and_delete(&db.engine, oid, round * 100 + 2, round % 3 != 0).await;
    }
    let cp = Checkpointer::new(dir, db.engine.clone(), db.writer.clone(), db.control);
    cp.checkpoint(CheckpointKind::Online, now(), Retention { keep_mb: 1024, slot_min: None })
        .await
        .unwrap();
    db.writer.insert_switch().unwrap();
    insert(&db.engine, oid, 10_000..10_100, 100).await;
    let mut t = db.engine.begin();
    t.truncate(oid).await.unwrap();
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    assert!(t_rows(&db.engine, oid).is_empty());
    cp.checkpoint(CheckpointKind::Shutdown, now(), Retention { keep_mb: 1024, slot_min: None })
        .await
        .unwrap();
    db.writer.shutdown().unwrap();
}

fn t_rows(engine: &Arc<Engine>, oid: Oid) -> Vec<walstream_node::engine::Row> {
    engine.begin().scan(oid, (Bound::Unbounded, Bound::Unbounded)).unwrap()
}

fn run(mut cmd: Command) -> Output {
    cmd.env("TZ", "UTC").output().expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn pg_waldump_and_walstream_waldump_read_every_segment_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write_node_wal(&dir).await;
    let wal = dir.join("pg_wal");
    let mut segs: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "the workload spans several segments: {segs:?}");
    let (first, last) = (segs[0].clone(), segs[segs.len() - 1].clone());
    let wal = wal.to_str().unwrap().to_owned();
    for extra in [&[][..], &["--stats=record"][..]] {
        let mut args = vec!["-p", &wal, &first, &last];
        args.extend_from_slice(extra);
        let mut ours = Command::new(env!("CARGO_BIN_EXE_walstream"));
        ours.arg("waldump").args(&args);
        let mut theirs = Command::new(pg_bin("pg_waldump"));
        theirs.args(&args);
        let (ours, theirs) = (run(ours), run(theirs));
        let (o, t) = (text(&ours.stdout), text(&theirs.stdout));
        let want_lines = if extra.is_empty() { 1000 } else { 10 };
        assert!(
            t.lines().count() > want_lines,
            "pg_waldump read it: {t}\n{}",
            text(&theirs.stderr)
        );
        for kind in ["custom200", "COMMIT", "ABORT", "CHECKPOINT_ONLINE", "SWITCH"] {
            assert!(t.contains(kind), "{kind} records are there: {t}");
        }
        assert_eq!(o, t, "stdout of {args:?}");
        assert_eq!(text(&ours.stderr), text(&theirs.stderr), "stderr of {args:?}");
        assert_eq!(ours.status.code(), theirs.status.code(), "exit code of {args:?}");
    }
}
