//! The crash-restart cycle of a node process (issue 12 §4): under load, a critical task
//! (the WAL writer, then the checkpointer) is made to fail through the test builds'
//! `walstream_fail_task()`; every client gets PostgreSQL's FATAL 57P02, the node runs
//! crash recovery on the same port and accepts connections again, and no acknowledged
//! commit is lost. The example background worker samples pg_stat_replication into a
//! table and shows in pg_stat_activity with its type.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use walstream_tests::node::{NodeDir, NodeProcess};
use walstream_tests::receivewal::ReceiveWal;

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Inserts keys from `first` until told to stop or the connection dies; returns the
/// acknowledged keys and the error that ended it.
fn writer(
    conninfo: String,
    first: i32,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i32>>>,
) -> std::thread::JoinHandle<Option<String>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (client, conn) =
                tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
            let conn = tokio::spawn(conn);
            for k in first..first + 1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                match client.execute("INSERT INTO t VALUES ($1, 'x')", &[&k]).await {
                    Ok(_) => acked.lock().unwrap().push(k),
                    Err(e) => {
                        // The FATAL arrives as the statement's error, or as the
                        // connection's own when it came between two statements.
                        let show = |d: &tokio_postgres::error::DbError| {
                            format!("{} {}: {}", d.severity(), d.code().code(), d.message())
                        };
                        if let Some(d) = e.as_db_error() {
                            return Some(show(d));
                        }
                        let fatal = match conn.await {
                            Ok(Err(c)) => c.as_db_error().map(show),
                            _ => None,
                        };
                        return Some(fatal.unwrap_or_else(|| e.to_string()));
                    }
                }
            }
            None
        })
    })
}

fn crash_under_load(node: &NodeProcess, task: &str, first: i32) -> Vec<i32> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(node.conninfo("postgres"), first, stop.clone(), acked.clone());
    // A session in the middle of a statement when the crash comes.
    let sleeper = walstream_tests::pg_command(walstream_tests::pg_bin("psql"))
        .args(["-X", "-At", "-d", &node.conninfo("postgres"), "-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("commits", || acked.lock().unwrap().len() >= 200);
    assert_eq!(node.psql(&format!("SELECT walstream_fail_task('{task}')")).unwrap(), "t");
    let ended = w.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(ended.is_some(), "{task}: the writing client was not disconnected");
    let out = sleeper.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // PostgreSQL 15's words for every backend in the crash-restart cycle.
    let want = "FATAL:  terminating connection because of crash of another server process\n\
                DETAIL:  The postmaster has commanded this server process to roll back the \
                current transaction and exit, because another server process exited \
                abnormally and possibly corrupted shared memory.\n\
                HINT:  In a moment you should be able to reconnect to the database and repeat \
                your command.";
    assert!(said.starts_with(want), "{task}: {said}");
    let acked = acked.lock().unwrap().clone();
    acked
}

#[test]
fn a_crashed_task_restarts_the_node_and_no_acknowledged_commit_is_lost() {
    let dir = NodeDir::init(bin(), 1).unwrap();
    // The example worker, sampling every second.
    let node = dir.start_with_args(&["--sample-replication", "1"], &[]).unwrap();
    node.psql("CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    let archive = ReceiveWal::new().unwrap();
    let mut receivewal = archive.spawn(node.port(), &["--no-loop"]).unwrap();
    wait_until("a sample of pg_stat_replication", || {
        node.psql("SELECT count(*) > 0 FROM walstream_replication_samples").is_ok_and(|v| v == "t")
    });
    assert_eq!(
        node.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'replication sampler'"
        )
        .unwrap(),
        "1"
    );
    receivewal.signal(libc::SIGINT);

    let mut all: HashSet<i32> = HashSet::new();
    let restarts = |node: &NodeProcess| {
        node.log().matches("all server processes terminated; reinitializing").count()
    };
    for (n, (task, first)) in
        [("walwriter", 1), ("checkpointer", 1_000_000)].into_iter().enumerate()
    {
        let acked = crash_under_load(&node, task, first);
        wait_until("the restart", || restarts(&node) > n);
        wait_until("the node back", || node.psql("SELECT 1").is_ok_and(|v| v == "1"));
        all.extend(acked);
        let keys = node.psql("SELECT k FROM t").unwrap();
        let keys: HashSet<i32> = keys.lines().map(|l| l.parse().unwrap()).collect();
        let lost: Vec<&i32> = all.iter().filter(|k| !keys.contains(k)).collect();
        assert!(lost.is_empty(), "{task}: acknowledged commits lost: {}", lost.len());
    }
    let log = node.log();
    for line in [
        "WAL writer process (PID ",
        "terminating any other active server processes",
        "all server processes terminated; reinitializing",
    ] {
        assert!(log.contains(line), "{line} not in\n{log}");
    }
    // The worker runs again after each restart.
    wait_until("the sampler back", || {
        node.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'replication sampler'",
        )
        .is_ok_and(|v| v == "1")
    });
}

/// A record a standby cannot replay ends its startup process, and with it the standby
/// (PostgreSQL: "shutting down due to startup process failure"); nothing is restarted.
#[test]
fn a_replay_failure_shuts_the_standby_down() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    primary.psql("CREATE TABLE t (k int PRIMARY KEY)").unwrap();
    let sdir = NodeDir::basebackup(bin(), primary.port(), &[]).unwrap();
    let mut standby = sdir.start(&[]).unwrap();
    assert_eq!(standby.psql("SELECT walstream_fail_task('startup')").unwrap(), "t");
    primary.psql("INSERT INTO t VALUES (1)").unwrap();
    let status = standby.wait_exit(Duration::from_secs(30)).unwrap().expect("still running");
    assert!(!status.success());
    let log = standby.log();
    for line in
        ["FATAL:  could not apply WAL record at ", "shutting down due to startup process failure"]
    {
        assert!(log.contains(line), "{line} not in\n{log}");
    }
}
