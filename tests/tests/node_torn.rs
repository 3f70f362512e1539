//! A crash in the middle of writing a record that crosses pages (issue 8, section 3): the
//! pages after the first never reached the disk. Recovery ends before the torn record, the
//! node writes `XLOG_OVERWRITE_CONTRECORD` where its continuation is missing (the page
//! marked `XLP_FIRST_IS_OVERWRITE_CONTRECORD`), as PostgreSQL does; pg_waldump and
//! `walstream waldump` read the result identically, the torn transaction is gone, the
//! committed ones are there, and new commits survive another restart.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::ops::Bound;
use std::process::Command;
use std::time::{Duration, SystemTime};

use walstream_node::engine::{ColumnDef, Engine, Oid, SqlType, TableDef, Value};
use walstream_node::initdb::{initdb, InitdbOptions};
use walstream_node::startup::{open_database, StartOptions};
use walstream_protocol::lsn::segment_file_name;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_tests::pg_bin;

const PAGE: u64 = 8192;
const SEG: u64 = 1 << 20;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

async fn insert(engine: &std::sync::Arc<Engine>, oid: Oid, k: i32, len: usize, commit: bool) {
    let mut t = engine.begin();
    t.insert(oid, vec![Value::Int4(k), Value::Text("x".repeat(len))]).await.unwrap();
    t.end_statement().unwrap();
    if commit {
        t.commit(now()).await.unwrap();
    } else {
        std::mem::forget(t);
    }
}

fn keys(engine: &std::sync::Arc<Engine>, oid: Oid) -> Vec<i32> {
    let rows = engine.begin().scan(oid, (Bound::Unbounded, Bound::Unbounded)).unwrap();
    rows.iter()
        .map(|r| match r[0] {
            Value::Int4(k) => k,
            _ => panic!("key"),
        })
        .collect()
}

fn dump(program: Command) -> (String, String, Option<i32>) {
    let mut program = program;
    let out = program.env("TZ", "UTC").output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[tokio::test]
async fn a_torn_page_crossing_record_is_overwritten_as_postgresql_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let opts = InitdbOptions { dir: dir.clone(), wal_segsize_mb: 1, superuser: "postgres".into() };
    initdb(&opts, now()).unwrap();
    let db = open_database(&dir, StartOptions { fsync: false }, now()).unwrap();
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    let def = TableDef {
        oid: 0,
        name: "t".into(),
        columns: vec![col("k", SqlType::Int4), col("v", SqlType::Text)],
        pkey: vec![0],
    };
    let mut t = db.engine.begin();
    let oid = t.create_table(def, false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    insert(&db.engine, oid, 1, 100, true).await;
    insert(&db.engine, oid, 2, 100, true).await;
    // The record that will be torn: 30 kB, over four pages, its transaction never ends.
    let torn_at = db.writer.insert_position();
    insert(&db.engine, oid, 3, 30_000, false).await;
    let end = db.writer.insert_position();
    db.writer.flush(end).await.unwrap();
    db.writer.shutdown().unwrap();
    drop(db);
    assert!(end.0 - torn_at.0 > 3 * PAGE, "the record crosses pages");

    // The crash: every page after the torn record's first never reached the disk.
    let first_missing = (torn_at.0 / PAGE + 1) * PAGE;
    let seg_size = WalSegSize::new(SEG).unwrap();
    let seg = segment_file_name(TimeLineId(1), Lsn(first_missing).segno(seg_size), seg_size);
    let path = dir.join("pg_wal").join(&seg);
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    let offset = first_missing % SEG;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&vec![0u8; (SEG - offset) as usize]).unwrap();
    drop(f);

    let db = open_database(&dir, StartOptions { fsync: false }, now()).unwrap();
    let torn = db.recovery.end.torn.expect("the torn record is found");
    assert_eq!((torn.aborted, torn.missing_contrec), (torn_at, Lsn(first_missing)));
    assert_eq!(keys(&db.engine, oid), vec![1, 2], "committed rows, nothing of the torn one");
    insert(&db.engine, oid, 4, 50, true).await;
    db.writer.shutdown().unwrap();
    drop(db);

    // Both readers agree on the whole segment, and see the overwrite record.
    let wal = dir.join("pg_wal");
    let args = ["-p", wal.to_str().unwrap(), &seg];
    let mut ours = Command::new(env!("CARGO_BIN_EXE_walstream"));
    ours.arg("waldump").args(args);
    let mut theirs = Command::new(pg_bin("pg_waldump"));
    theirs.args(args);
    let (ours, theirs) = (dump(ours), dump(theirs));
    assert!(theirs.0.contains("OVERWRITE_CONTRECORD"), "{}\n{}", theirs.0, theirs.1);
    assert_eq!(ours, theirs);

    let db = open_database(&dir, StartOptions { fsync: false }, now()).unwrap();
    assert_eq!(keys(&db.engine, oid), vec![1, 2, 4], "the commit after the overwrite survives");
    assert!(db.recovery.end.torn.is_none());
    db.writer.shutdown().unwrap();
}
