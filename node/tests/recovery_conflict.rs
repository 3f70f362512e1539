//! Replay of a dropped table waits for the standby transactions holding it, up to
//! `max_standby_streaming_delay`, then asks them to give up.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{init, opts};
use walstream_node::engine::{ColumnDef, ConflictHandler, SqlType, TableDef};
use walstream_node::server::Node;
use walstream_sender::postmaster::ShutdownMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_drop_waits_the_delay_then_asks_the_holder_to_give_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (pdir, sdir) = (tmp.path().join("p"), tmp.path().join("s"));
    init(&pdir);
    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    let mut t = primary.engine().begin();
    let col = ColumnDef { name: "k".into(), ty: SqlType::Int8, not_null: false, default: None };
    let def = TableDef { oid: 0, name: "t".into(), columns: vec![col], pkey: vec![0] };
    t.create_table(def, false).await.unwrap();
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
    primary.stop(ShutdownMode::Fast).await.unwrap();
    std::process::Command::new("cp").arg("-a").arg(&pdir).arg(&sdir).status().unwrap();
    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    std::fs::write(sdir.join("standby.signal"), "").unwrap();
    let conninfo = format!(
        "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n",
        primary.local_addr().port()
    );
    std::fs::write(sdir.join("postgresql.auto.conf"), conninfo).unwrap();
    let standby =
        Node::start(opts(&sdir, &[("max_standby_streaming_delay", "300ms")])).await.unwrap();

    let asked = Arc::new(AtomicUsize::new(0));
    let mut reader = standby.engine().begin();
    let a = asked.clone();
    reader.set_conflict_handler(Some(ConflictHandler(Arc::new(move || {
        a.fetch_add(1, Ordering::SeqCst);
    }))));
    reader.table("t").unwrap();
    let t0 = Instant::now();
    let mut d = primary.engine().begin();
    d.drop_table("t", false).await.unwrap();
    d.end_statement().unwrap();
    d.commit(SystemTime::now()).await.unwrap();
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the holder was never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(t0.elapsed() >= Duration::from_millis(300), "asked before the delay");
    assert!(standby.engine().begin().table("t").is_ok(), "replay waits for the holder");
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby.engine().begin().table("t").is_ok() {
        assert!(Instant::now() < deadline, "replay did not go on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    standby.stop(ShutdownMode::Fast).await.unwrap();
    primary.stop(ShutdownMode::Fast).await.unwrap();
}
