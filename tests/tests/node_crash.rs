//! `kill -9` of a node under load, 20 rounds (issue 8, tests item 4): clients log every
//! commit the node acknowledged; after each restart every acknowledged commit is there and
//! no transaction is there in part.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use walstream_tests::node::{NodeDir, NodeProcess};

const ROUNDS: usize = 20;
const CLIENTS: i32 = 4;

async fn connect(node: &NodeProcess) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&node.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Writes transactions of two rows (`part` 0 and 1) until the connection breaks; logs each
/// one whose COMMIT was answered.
async fn client_loop(
    node_conninfo: String,
    id: i32,
    first_seq: i32,
    acked: Arc<Mutex<BTreeSet<(i32, i32)>>>,
) {
    let Ok((client, conn)) = tokio_postgres::connect(&node_conninfo, tokio_postgres::NoTls).await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Bounded: the node is killed long before this many transactions.
    for seq in first_seq..first_seq + 100_000 {
        let sql = format!(
            "BEGIN; INSERT INTO acks VALUES ({id}, {seq}, 0); \
             INSERT INTO acks VALUES ({id}, {seq}, 1); COMMIT"
        );
        if client.batch_execute(&sql).await.is_err() {
            return;
        }
        acked.lock().unwrap().insert((id, seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_kill_9() {
    let dir = NodeDir::init(env!("CARGO_BIN_EXE_walstream").as_ref(), 1).unwrap();
    let settings = ["max_wal_size=4MB", "checkpoint_timeout=30s"];
    let node = dir.start(&settings).unwrap();
    connect(&node)
        .await
        .batch_execute(
            "CREATE TABLE acks (client int, seq int, part int, PRIMARY KEY (client, seq, part))",
        )
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut node = node;
    let mut rng = rand::thread_rng();
    for round in 0..ROUNDS {
        let first_seq = (round as i32) * 1_000_000;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                tokio::spawn(client_loop(node.conninfo("postgres"), id, first_seq, acked.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
        let log = node.kill9();
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
        }
        node = dir
            .start(&settings)
            .unwrap_or_else(|e| panic!("round {round}: restart: {e}\nbefore: {log}"));
        let client = connect(&node).await;
        let rows = client
            .query("SELECT client, seq, count(*) FROM acks GROUP BY client, seq", &[])
            .await
            .unwrap();
        let mut present = BTreeSet::new();
        for r in rows {
            let (c, s, n): (i32, i32, i64) = (r.get(0), r.get(1), r.get(2));
            assert_eq!(n, 2, "round {round}: transaction ({c}, {s}) is there in part");
            present.insert((c, s));
        }
        let acked = acked.lock().unwrap();
        let missing: Vec<_> = acked.difference(&present).take(5).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged commits lost: {missing:?}");
    }
    assert!(acked.lock().unwrap().len() > ROUNDS, "the clients committed under load");
    node.stop().unwrap();
}
