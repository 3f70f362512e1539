//! Crash-recovery redo speed, on two shapes of the node's own WAL, each in a data directory
//! left without a shutdown checkpoint as a crash leaves it:
//!
//! - `insert_update` (~73 MB): 200,000 rows of `(k int, v text)` with a 192-byte `v`,
//!   inserted in transactions of 1,000 rows, then every other row updated.
//! - `bulk_wide_delete` (~66 MB): a bulk load of 10,000 wide rows of `(k bigint, v text)`,
//!   `v` of 500 to 12,499 bytes (most records cross a WAL page, many several), in
//!   transactions of 2,500 rows, then every third row deleted in one transaction.
//!
//! Measured on each: reading it (`read_wal`: segment reads, decode, CRC, no apply) and the
//! whole redo (`startup::recover`: that plus applying every change and commit to the
//! engine). Both write nothing, so every iteration redoes the same WAL.

// The allocator of the `walstream` binary, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walstream_node::engine::{
    ColumnDef, Engine, EngineError, Oid, RowAction, SqlType, TableDef, Value,
};
use walstream_node::startup::{open_database, recover, Follow, StartOptions};
use walstream_node::xlog::{bootstrap, read_wal, ControlFile, ReadOptions};
use walstream_protocol::WalSegSize;

const ROWS: i32 = 200_000;
const PER_TXN: i32 = 1_000;
const WIDE_ROWS: i64 = 10_000;
const WIDE_PER_TXN: i64 = 2_500;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn wide(k: i32) -> Value {
    Value::Text(format!("{:0>192}", k))
}

/// 500 to 12,499 bytes, varying from row to row.
fn wider(k: i64) -> Value {
    let len = 500 + (k * 7919 % 12_000) as usize;
    Value::Text(format!("{k:x>len$}"))
}

async fn create(engine: &Arc<Engine>, key: SqlType) -> Oid {
    let col = |n: &str, ty| ColumnDef { name: n.into(), ty, not_null: false, default: None };
    let def = TableDef {
        oid: 0,
        name: "t".into(),
        columns: vec![col("k", key), col("v", SqlType::Text)],
        pkey: vec![0],
    };
    let mut t = engine.begin();
    let oid = t.create_table(def, false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
    oid
}

/// 1,000-row inserts, then updates of every other row, 1,000 per transaction.
async fn insert_update(engine: &Arc<Engine>) {
    let oid = create(engine, SqlType::Int4).await;
    for lo in (0..ROWS).step_by(PER_TXN as usize) {
        let mut t = engine.begin();
        for k in lo..lo + PER_TXN {
            t.insert(oid, vec![Value::Int4(k), wide(k)]).await.unwrap();
        }
        t.end_statement().unwrap();
        t.commit(now()).await.unwrap();
    }
    for lo in (0..ROWS).step_by(2 * PER_TXN as usize) {
        let mut t = engine.begin();
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
}

/// A bulk load of wide rows in 2,500-row transactions, then every third row deleted.
async fn bulk_wide_delete(engine: &Arc<Engine>) {
    let oid = create(engine, SqlType::Int8).await;
    for lo in (0..WIDE_ROWS).step_by(WIDE_PER_TXN as usize) {
        let mut t = engine.begin();
        for k in lo..lo + WIDE_PER_TXN {
            t.insert(oid, vec![Value::Int8(k), wider(k)]).await.unwrap();
        }
        t.end_statement().unwrap();
        t.commit(now()).await.unwrap();
    }
    let mut t = engine.begin();
    for k in (0..WIDE_ROWS).step_by(3) {
        t.modify_row::<EngineError>(oid, &vec![Value::Int8(k)], |_| Ok(RowAction::Delete))
            .await
            .unwrap();
    }
    t.end_statement().unwrap();
    t.commit(now()).await.unwrap();
}

#[derive(Clone, Copy)]
enum Shape {
    InsertUpdate,
    BulkWideDelete,
}

/// A crashed data directory and the number of WAL bytes from its redo point to its end.
fn crashed_cluster(shape: Shape) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), WalSegSize::new(16 << 20).unwrap(), now()).unwrap();
    let db = open_database(dir.path(), StartOptions { fsync: false }, now()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        match shape {
            Shape::InsertUpdate => insert_update(&db.engine).await,
            Shape::BulkWideDelete => bulk_wide_delete(&db.engine).await,
        }
    });
    db.writer.shutdown().unwrap();
    drop(db);
    let rec = recover(dir.path(), Follow::ControlFile).unwrap();
    let bytes = rec.end.write_start().start.0 - rec.redo.0;
    (dir, bytes)
}

fn read_only(dir: &Path) -> usize {
    let control = ControlFile::read(dir).unwrap();
    let read =
        ReadOptions::single(control.seg_size, control.timeline(), Some(control.system_identifier));
    let mut n = 0usize;
    read_wal(&dir.join("pg_wal"), control.redo(), &read, |_| {
        n += 1;
        Ok::<(), walstream_node::xlog::XlogError>(())
    })
    .unwrap();
    n
}

fn redo(c: &mut Criterion) {
    for (name, shape) in
        [("insert_update", Shape::InsertUpdate), ("bulk_wide_delete", Shape::BulkWideDelete)]
    {
        let (dir, bytes) = crashed_cluster(shape);
        let mut g = c.benchmark_group(format!("xlog_recovery/{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("read_wal_decode_crc", |b| b.iter(|| read_only(dir.path())));
        // The recovered engine is dropped outside the timing: a starting node keeps it.
        g.bench_function("recover_redo_all", |b| {
            b.iter_with_large_drop(|| {
                let rec = recover(dir.path(), Follow::ControlFile).unwrap();
                assert!(rec.replay.commits() > 0);
                rec
            })
        });
        g.finish();
    }
}

criterion_group!(benches, redo);
criterion_main!(benches);
