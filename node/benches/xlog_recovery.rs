//! Crash-recovery redo speed: a node data directory holding ~64 MB of the node's own WAL
//! (200,000 rows of `(k int, v text)` with a 192-byte `v`, inserted in transactions of
//! 1,000 rows, then every other row updated), left without a shutdown checkpoint as a
//! crash leaves it. Measured: reading it (`read_wal`: segment reads, decode, CRC, no
//! apply) and the whole redo (`startup::recover`: that plus applying every change and
//! commit to the engine). Both write nothing, so every iteration redoes the same WAL.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walstream_node::engine::{
    ColumnDef, Engine, EngineError, Oid, RowAction, SqlType, TableDef, Value,
};
use walstream_node::startup::{open_database, recover, StartOptions};
use walstream_node::xlog::{bootstrap, read_wal, ControlFile, ReadOptions};
use walstream_protocol::WalSegSize;

const ROWS: i32 = 200_000;
const PER_TXN: i32 = 1_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn wide(k: i32) -> Value {
    Value::Text(format!("{:0>192}", k))
}

async fn write_rows(engine: &Arc<Engine>) -> Oid {
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    let def = TableDef {
        oid: 0,
        name: "t".into(),
        columns: vec![col("k", SqlType::Int4), col("v", SqlType::Text)],
        pkey: vec![0],
    };
    let mut t = engine.begin();
    let oid = t.create_table(def, false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    for lo in (0..ROWS).step_by(PER_TXN as usize) {
        let mut t = engine.begin();
        for k in lo..lo + PER_TXN {
            t.insert(oid, vec![Value::Int4(k), wide(k)]).await.unwrap();
        }
        t.end_statement().unwrap();
        t.commit(now()).await.unwrap();
    }
    oid
}

/// A crashed data directory and the number of WAL bytes from its redo point to its end.
fn crashed_cluster() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), WalSegSize::new(16 << 20).unwrap(), now()).unwrap();
    let db = open_database(dir.path(), StartOptions { fsync: false }, now()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let oid = write_rows(&db.engine).await;
        // Updates of every other row, 1,000 per transaction.
        for lo in (0..ROWS).step_by(2 * PER_TXN as usize) {
            let mut t = db.engine.begin();
            for k in (lo..lo + 2 * PER_TXN).step_by(2) {
                let new = vec![Value::Int4(k), wide(k + 1)];
                t.modify_row::<EngineError>(oid, &vec![Value::Int4(k)], |_| {
                    Ok(RowAction::Update(new.clone()))
                })
                .await
                .unwrap();
            }
            t.end_statement().unwrap();
            t.commit(now()).await.unwrap();
        }
    });
    db.writer.shutdown().unwrap();
    drop(db);
    let rec = recover(dir.path()).unwrap();
    let bytes = rec.end.write_start().start.0 - rec.redo.0;
    (dir, bytes)
}

fn read_only(dir: &Path) -> usize {
    let control = ControlFile::read(dir).unwrap();
    let read = ReadOptions {
        seg_size: control.seg_size,
        timeline: control.timeline(),
        system_id: Some(control.system_identifier),
    };
    let mut n = 0usize;
    read_wal(&dir.join("pg_wal"), control.redo(), &read, |_| {
        n += 1;
        Ok::<(), walstream_node::xlog::XlogError>(())
    })
    .unwrap();
    n
}

fn redo(c: &mut Criterion) {
    let (dir, bytes) = crashed_cluster();
    let mut g = c.benchmark_group("xlog_recovery");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("read_wal_decode_crc", |b| b.iter(|| read_only(dir.path())));
    // The recovered engine is dropped outside the timing: a starting node keeps it.
    g.bench_function("recover_redo_all", |b| {
        b.iter_with_large_drop(|| {
            let rec = recover(dir.path()).unwrap();
            assert!(rec.replay.commits() > 0);
            rec
        })
    });
    g.finish();
}

criterion_group!(benches, redo);
criterion_main!(benches);
