//! A node standby streams a node primary's WAL, replays it into its read-only engine and
//! converges to the primary's tables; it survives its own restart and the primary's, and a
//! cascaded standby behind it converges too.

mod common;

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::{copy_dir, create_t, init, insert, make_standby, opts, rows};
use walstream_node::engine::{EngineError, Oid, RowAction, Value};
use walstream_node::server::{Node, NodeRole};
use walstream_protocol::Lsn;
use walstream_sender::postmaster::ShutdownMode;

async fn update_some(node: &Node, oid: Oid, ks: Range<i64>) {
    let mut t = node.engine().begin();
    for k in ks.step_by(3) {
        t.modify_row::<EngineError>(oid, &vec![Value::Int8(k)], |r| {
            let mut r = r.clone();
            r[1] = Value::Text(format!("u{k}"));
            Ok(RowAction::Update(r))
        })
        .await
        .unwrap();
    }
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
}

async fn wait_replayed(standby: &Node, lsn: Lsn) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut replay = standby.walreceiver().unwrap().replay.clone();
    while replay.borrow_and_update().replayed < lsn {
        assert!(Instant::now() < deadline, "standby did not replay to {lsn}");
        let _ = tokio::time::timeout(Duration::from_millis(200), replay.changed()).await;
    }
}

fn flushed(node: &Node) -> Lsn {
    node.writer().unwrap().flush_position()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_converge_across_restarts_and_cascade() {
    let tmp = tempfile::tempdir().unwrap();
    let pdir: PathBuf = tmp.path().join("primary");
    let sdir: PathBuf = tmp.path().join("standby");
    let cdir: PathBuf = tmp.path().join("cascade");
    init(&pdir);

    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    let oid = create_t(&primary).await;
    insert(&primary, oid, 0..500).await;
    primary.stop(ShutdownMode::Fast).await.unwrap();
    copy_dir(&pdir, &sdir);

    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    make_standby(&sdir, primary.local_addr().port());
    let standby = Node::start(opts(&sdir, &[])).await.unwrap();
    assert_eq!(standby.role(), NodeRole::Standby);
    assert!(standby.engine().is_read_only());
    assert_eq!(rows(&standby).len(), 500, "the copy's own WAL is replayed at start");

    // Streaming while the primary writes, across segments.
    for round in 1..20 {
        insert(&primary, oid, round * 1000..round * 1000 + 300).await;
        update_some(&primary, oid, round * 1000..round * 1000 + 300).await;
    }
    wait_replayed(&standby, flushed(&primary)).await;
    assert_eq!(rows(&standby), rows(&primary));
    let mut w = standby.engine().begin();
    let err = w.insert(oid, vec![Value::Int8(-1), Value::Null]).await.unwrap_err();
    assert_eq!(err.sqlstate(), "25006", "{err}");

    // A cascaded standby behind the standby.
    // The standby restarts while the primary goes on writing: it restarts from its own
    // restartpoint and WAL, then streams what it missed.
    standby.stop(ShutdownMode::Fast).await.unwrap();
    insert(&primary, oid, 40_000..40_200).await;
    copy_dir(&sdir, &cdir);
    let standby = Node::start(opts(&sdir, &[])).await.unwrap();
    make_standby(&cdir, standby.local_addr().port());
    let cascade = Node::start(opts(&cdir, &[])).await.unwrap();
    insert(&primary, oid, 50_000..50_400).await;
    let target = flushed(&primary);
    wait_replayed(&standby, target).await;
    wait_replayed(&cascade, target).await;
    assert_eq!(rows(&cascade), rows(&primary));

    // The primary restarts mid-stream: the standbys reconnect and go on.
    let port = primary.local_addr().port();
    primary.stop(ShutdownMode::Fast).await.unwrap();
    let mut p_opts = opts(&pdir, &[]);
    p_opts.listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let primary = Node::start(p_opts).await.unwrap();
    insert(&primary, oid, 60_000..60_300).await;
    let target = flushed(&primary);
    wait_replayed(&standby, target).await;
    wait_replayed(&cascade, target).await;
    assert_eq!(rows(&standby), rows(&primary));
    assert_eq!(rows(&cascade), rows(&primary));

    cascade.stop(ShutdownMode::Fast).await.unwrap();
    standby.stop(ShutdownMode::Fast).await.unwrap();
    primary.stop(ShutdownMode::Fast).await.unwrap();
}
