//! Promotion of a standby node: it replays what it has, starts timeline 2 with PostgreSQL's
//! history file and end-of-recovery record, takes writes without a restart, and a cascaded
//! standby follows it onto the new timeline; it restarts (cleanly and after a crash) on
//! timeline 2 with everything; the old primary, which wrote on after the fork, cannot
//! follow it: its WAL and rows stay as they were, and its next start stops with
//! PostgreSQL's FATAL.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{copy_dir, create_t, init, insert, make_standby, opts, rows};
use walstream_node::engine::Value;
use walstream_node::server::{Node, NodeRole};
use walstream_node::xlog::{ControlFile, DbState};
use walstream_protocol::{Lsn, TimeLineId};
use walstream_sender::postmaster::ShutdownMode;

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_replayed(standby: &Node, lsn: Lsn) {
    let replay = standby.walreceiver().unwrap().replay.clone();
    wait_until("replay", || replay.borrow().replayed >= lsn).await;
}

fn flushed(node: &Node) -> Lsn {
    node.writer().unwrap().flush_position()
}

fn segments(dir: &Path, tli: u32) -> Vec<String> {
    let prefix = format!("{tli:08X}");
    let mut v: Vec<String> = std::fs::read_dir(dir.join("pg_wal"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.starts_with(&prefix))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_writes_on_timeline_2_and_its_cascade_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let pdir: PathBuf = tmp.path().join("primary");
    let sdir: PathBuf = tmp.path().join("standby");
    let cdir: PathBuf = tmp.path().join("cascade");
    init(&pdir);

    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    let oid = create_t(&primary).await;
    insert(&primary, oid, 0..300).await;
    primary.stop(ShutdownMode::Fast).await.unwrap();
    copy_dir(&pdir, &sdir);
    copy_dir(&pdir, &cdir);

    let primary = Node::start(opts(&pdir, &[])).await.unwrap();
    make_standby(&sdir, primary.local_addr().port());
    let standby = Node::start(opts(&sdir, &[])).await.unwrap();
    make_standby(&cdir, standby.local_addr().port());
    let cascade = Node::start(opts(&cdir, &[])).await.unwrap();
    for round in 1..8 {
        insert(&primary, oid, round * 1000..round * 1000 + 400).await;
    }
    // A transaction still open on the primary at promotion never commits anywhere.
    let mut open = primary.engine().begin();
    open.insert(oid, vec![Value::Int8(-5), Value::Null]).await.unwrap();
    open.end_statement().unwrap();
    primary.writer().unwrap().flush(primary.insert_lsn()).await.unwrap();
    let before = flushed(&primary);
    wait_replayed(&standby, before).await;
    wait_replayed(&cascade, before).await;
    let at_promotion = rows(&primary);
    assert_eq!(rows(&standby), at_promotion);

    // Promotion, as pg_promote() asks for it: the promote file, then the request.
    std::fs::write(sdir.join("promote"), "").unwrap();
    standby.request_promotion();
    wait_until("promotion", || standby.role() == NodeRole::Primary).await;
    assert_eq!(standby.timeline(), TimeLineId(2));
    assert!(!sdir.join("standby.signal").exists());
    assert!(!sdir.join("promote").exists());
    let history = std::fs::read_to_string(sdir.join("pg_wal/00000002.history")).unwrap();
    let (parent, rest) = history.split_once('\t').unwrap();
    let (switch, reason) = rest.split_once('\t').unwrap();
    assert_eq!(parent, "1");
    assert_eq!(reason, "no recovery target specified\n");
    let switch: Lsn = switch.parse().unwrap();
    assert!(switch >= before, "the switch point {switch} is after everything replayed");
    // What pg_ctl promote waits for, once sessions see the primary.
    wait_until("the control file in production", || {
        ControlFile::read(&sdir).is_ok_and(|c| c.state == DbState::InProduction)
    })
    .await;
    assert_eq!(ControlFile::read(&sdir).unwrap().timeline(), TimeLineId(2));
    assert!(!standby.engine().is_read_only());

    // The new primary takes writes; its cascade follows onto timeline 2.
    insert(&standby, oid, 20_000..20_500).await;
    let target = flushed(&standby);
    wait_until("the cascade on timeline 2", || {
        cascade.walreceiver().unwrap().positions.borrow().tli == TimeLineId(2)
    })
    .await;
    wait_replayed(&cascade, target).await;
    assert_eq!(rows(&cascade), rows(&standby));
    assert!(rows(&standby).iter().all(|r| r[0] != Value::Int8(-5)));
    assert!(cascade.data_dir().wal_dir().join("00000002.history").exists());

    // A clean restart and a crash restart: still timeline 2, nothing lost.
    let written = rows(&standby);
    standby.stop(ShutdownMode::Fast).await.unwrap();
    let standby = Node::start(opts(&sdir, &[])).await.unwrap();
    assert_eq!(standby.role(), NodeRole::Primary);
    assert_eq!(standby.timeline(), TimeLineId(2));
    assert_eq!(rows(&standby), written);
    insert(&standby, oid, 30_000..30_100).await;
    let written = rows(&standby);
    standby.stop(ShutdownMode::Immediate).await.unwrap();
    let standby = Node::start(opts(&sdir, &[])).await.unwrap();
    assert_eq!(standby.timeline(), TimeLineId(2));
    assert_eq!(rows(&standby), written);

    // The old primary wrote on after the fork: as a standby of the new one it streams
    // nothing, keeps its rows and WAL, and its next start stops with the FATAL.
    drop(open);
    insert(&primary, oid, 90_000..90_100).await;
    let diverged = rows(&primary);
    primary.stop(ShutdownMode::Fast).await.unwrap();
    make_standby(&pdir, standby.local_addr().port());
    let old = Node::start(opts(&pdir, &[])).await.unwrap();
    let history = pdir.join("pg_wal/00000002.history");
    wait_until("the history file fetched", || history.exists()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(&old), diverged);
    assert_eq!(old.role(), NodeRole::Standby);
    assert_eq!(segments(&pdir, 2), Vec::<String>::new());
    old.stop(ShutdownMode::Fast).await.unwrap();
    let e = Node::start(opts(&pdir, &[])).await.unwrap_err().to_string();
    assert!(
        e.starts_with("requested timeline 2 is not a child of this server's history\nDETAIL:  Latest checkpoint is at "),
        "{e}"
    );
    assert!(e.ends_with(&format!("on timeline 1, but in the history of the requested timeline, the server forked off from that timeline at {switch}.")), "{e}");

    cascade.stop(ShutdownMode::Fast).await.unwrap();
    standby.stop(ShutdownMode::Fast).await.unwrap();
}
