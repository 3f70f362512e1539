//! Background workers under the node's supervisor: a failing worker is restarted after its
//! interval, one registered "never" stays gone, one that returns Ok is unregistered, each
//! shows its type in pg_stat_activity while it runs, and a crashed one (a panic) asks for
//! the crash-restart cycle.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{init, opts};
use walstream_node::bgworker::{BgWorker, BgWorkerStart, Restart, WorkerContext, WorkerFuture};
use walstream_node::server::Node;
use walstream_sender::postmaster::ShutdownMode;

type Runs = Arc<Mutex<Vec<Instant>>>;

fn worker(
    name: &str,
    restart: Restart,
    runs: &Runs,
    body: fn(WorkerContext) -> WorkerFuture,
) -> BgWorker {
    let runs = runs.clone();
    BgWorker {
        name: name.into(),
        bgw_type: "test worker",
        start: BgWorkerStart::PostmasterStart,
        restart,
        main: Arc::new(move |ctx| {
            runs.lock().unwrap().push(Instant::now());
            body(ctx)
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_restart_by_their_rules_and_a_crash_asks_for_the_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let (flaky, never, done, sleeper): (Runs, Runs, Runs, Runs) = Default::default();
    let every = Restart::After(Duration::from_millis(200));
    let workers = vec![
        worker("flaky", every, &flaky, |_| Box::pin(async { Err("boom".to_string()) })),
        worker("never", Restart::Never, &never, |_| Box::pin(async { Err("boom".to_string()) })),
        worker("done", every, &done, |_| Box::pin(async { Ok(()) })),
        worker("sleeper", every, &sleeper, |mut ctx| {
            Box::pin(async move {
                // A worker runs SQL through its session.
                let r = ctx.sql.simple_query("CREATE TABLE w (k int PRIMARY KEY)").await;
                assert!(r.error.is_none(), "{:?}", r.error);
                ctx.shutdown.cancelled().await;
                Ok(())
            })
        }),
    ];
    let node = Node::start_with_workers(opts(&dir, &[]), workers).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while flaky.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "the failing worker was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let starts = flaky.lock().unwrap().clone();
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(200), "restarted before its interval");
    }
    assert_eq!(never.lock().unwrap().len(), 1, "a worker registered never was restarted");
    assert_eq!(done.lock().unwrap().len(), 1, "a worker that exited 0 was restarted");
    assert_eq!(sleeper.lock().unwrap().len(), 1);
    let types: Vec<&str> = node.registry().list().iter().map(|e| e.backend_type.as_str()).collect();
    assert!(types.contains(&"test worker"), "{types:?}");
    assert!(node.engine().begin().table("w").is_ok());
    assert!(node.crashed().borrow().is_none());
    node.stop(ShutdownMode::Fast).await.unwrap();

    // A worker that panics: the server must go through the crash-restart cycle.
    let crashing: Runs = Runs::default();
    let w =
        worker("crasher", Restart::Never, &crashing, |_| Box::pin(async { panic!("worker bug") }));
    let node = Node::start_with_workers(opts(&dir, &[]), vec![w]).await.unwrap();
    let mut crashed = node.crashed();
    tokio::time::timeout(Duration::from_secs(10), crashed.wait_for(|c| c.is_some()))
        .await
        .expect("no crash reported")
        .unwrap();
    let why = crashed.borrow().clone().unwrap();
    assert!(why.starts_with("background worker \"crasher\" (PID "), "{why}");
    node.crash_stop().await.unwrap();
    // The cycle's start: crash recovery, and the table is there.
    let node = Node::start(opts(&dir, &[])).await.unwrap();
    assert!(node.engine().begin().table("w").is_ok());
    node.stop(ShutdownMode::Fast).await.unwrap();
}
