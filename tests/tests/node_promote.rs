//! Promotion of node standbys (issue 12 §2), side by side with PostgreSQL 15:
//! - under load, the primary is killed and the most advanced of two synchronous-quorum
//!   standbys is promoted with `walstream promote`; no acknowledged commit is lost; the
//!   other standby follows the new primary after `ALTER SYSTEM SET primary_conninfo` +
//!   `pg_reload_conf()`; a cascaded standby follows on its own; `pg_receivewal` and
//!   `walstream receivewal` archive across the switch (the history file and the new
//!   timeline's segment);
//! - `pg_promote()`'s errors and the standby's log lines are PostgreSQL 15's.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::node::{NodeDir, NodeProcess};
use walstream_tests::receivewal::ReceiveWal;
use walstream_tests::standby::spawn_receivewal;
use walstream_tests::{pg_bin, pg_command, run_ok};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

fn basebackup(from_port: u16) -> NodeDir {
    NodeDir::basebackup(bin(), from_port, &[]).unwrap()
}

/// Points the standby in `dir` at `port` as `application_name`.
fn follow(dir: &NodeDir, port: u16, application_name: &str) {
    let auto = dir.data_dir().join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&format!(
        "primary_conninfo = 'host=127.0.0.1 port={port} user=postgres \
         application_name={application_name}'\nwal_retrieve_retry_interval = '100ms'\n"
    ));
    std::fs::write(&auto, text).unwrap();
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lsn(node: &NodeProcess, sql: &str) -> walstream_protocol::Lsn {
    node.psql(sql).unwrap().parse().unwrap()
}

#[test]
fn promotion_under_load_two_standbys_and_a_cascade_follow_and_no_acknowledged_commit_is_lost() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    primary.psql("CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    let (s1dir, s2dir, cdir) =
        (basebackup(primary.port()), basebackup(primary.port()), basebackup(primary.port()));
    follow(&s1dir, primary.port(), "s1");
    follow(&s2dir, primary.port(), "s2");
    let s1 = s1dir.start(&[]).unwrap();
    let s2 = s2dir.start(&[]).unwrap();
    follow(&cdir, s1.port(), "c");
    let cascade = cdir.start(&[]).unwrap();
    let archive = ReceiveWal::new().unwrap();
    let mut receivewal = archive.spawn(s1.port(), &["--no-loop"]).unwrap();
    let ours = tempfile::Builder::new().prefix("walstream-rw.").tempdir().unwrap();
    let mut walstream_receivewal =
        spawn_receivewal(bin(), &s1.conninfo("postgres"), ours.path(), &[]).unwrap();
    primary.psql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (s1, s2)'").unwrap();
    primary.psql("SELECT pg_reload_conf()").unwrap();
    wait_until("a quorum", || {
        primary
            .psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")
            .is_ok_and(|n| n == "2")
    });

    // Clients write; each acknowledged commit is logged.
    let acked = Arc::new(Mutex::new(Vec::<i32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let conninfo = primary.conninfo("postgres");
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (client, conn) =
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                for k in 1..=100_000i32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match client.execute("INSERT INTO t VALUES ($1, 'x')", &[&k]).await {
                        Ok(_) => acked.lock().unwrap().push(k),
                        Err(_) => break,
                    }
                }
            })
        })
    };
    wait_until("commits", || acked.lock().unwrap().len() >= 300);
    let _ = primary.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();

    // The failover: the standby with the most WAL received is promoted.
    let received = |s: &NodeProcess| lsn(s, "SELECT pg_last_wal_receive_lsn()");
    std::thread::sleep(Duration::from_millis(300));
    let (new, newdir, other) =
        if received(&s1) >= received(&s2) { (&s1, &s1dir, &s2) } else { (&s2, &s2dir, &s1) };
    let out = run_ok(Command::new(bin()).args(["promote", "-D"]).arg(newdir.data_dir())).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("waiting for server to promote..."), "{said}");
    assert!(said.ends_with(" done\nserver promoted\n"), "{said}");
    assert_eq!(new.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    let keys = new.psql("SELECT k FROM t ORDER BY k").unwrap();
    let keys: std::collections::HashSet<i32> = keys.lines().map(|l| l.parse().unwrap()).collect();
    let lost: Vec<i32> = acked.iter().copied().filter(|k| !keys.contains(k)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    new.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(200001, 200500) g").unwrap();

    // The other standby follows once pointed at the new primary; the cascade on its own.
    let to_new = format!("host=127.0.0.1 port={} user=postgres", new.port());
    other.psql(&format!("ALTER SYSTEM SET primary_conninfo = '{to_new}'")).unwrap();
    other.psql("SELECT pg_reload_conf()").unwrap();
    let target = lsn(new, "SELECT pg_current_wal_flush_lsn()");
    let count = new.psql("SELECT count(*) FROM t").unwrap();
    for (name, s) in [("the other standby", other), ("the cascade", &cascade)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s
            .psql(&format!("SELECT pg_last_wal_replay_lsn() >= '{target}'"))
            .is_ok_and(|v| v == "t")
        {
            assert!(Instant::now() < deadline, "{name} did not follow:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(s.psql("SELECT count(*) FROM t").unwrap(), count, "{name}");
        assert_eq!(s.psql("SELECT received_tli FROM pg_stat_wal_receiver").unwrap(), "2", "{name}");
    }
    // pg_receivewal and walstream receivewal followed too: the history file and timeline
    // 2's segment.
    for dir in [archive.dir(), ours.path()] {
        wait_until("receivewal on timeline 2", || {
            std::fs::read_dir(dir).unwrap().flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("00000002") && n.len() >= 24
            })
        });
        assert!(dir.join("00000002.history").exists(), "{}", dir.display());
    }
    receivewal.signal(libc::SIGINT);
    walstream_receivewal.signal(libc::SIGINT);

    let log = new.log();
    for line in
        ["received promote request", "selected new timeline ID: 2", "archive recovery complete"]
    {
        assert!(log.contains(&format!("LOG:  {line}")), "{line} not in\n{log}");
    }
    drop(cascade);
}

fn psql_stderr(port: u16, sql: &str) -> String {
    let out = pg_command(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .args(["-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn pg_promote_says_what_postgresql_says() {
    let cfg = PgConfig::small_segments().set("wal_level", "replica");
    let pg = PgCluster::start(&cfg).unwrap();
    let pg_standby =
        PgCluster::standby(pg.basebackup(&[]).unwrap(), &cfg, &pg.conninfo("postgres")).unwrap();
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let node = pdir.start(&[]).unwrap();
    let sdir = basebackup(node.port());
    let node_standby = sdir.start(&[]).unwrap();

    for (on_pg, on_node, sql) in [
        (pg.port(), node.port(), "SELECT pg_promote()"),
        (pg_standby.port(), node_standby.port(), "SELECT pg_promote(true, 0)"),
        (pg_standby.port(), node_standby.port(), "SELECT pg_promote(true, -1)"),
    ] {
        let want = psql_stderr(on_pg, sql);
        assert!(want.starts_with("ERROR:"), "{sql}: {want}");
        assert_eq!(psql_stderr(on_node, sql), want, "{sql}");
    }
    // Without waiting: true at once, and the promotion happens.
    assert_eq!(node_standby.psql("SELECT pg_promote(false)").unwrap(), "t");
    wait_until("promotion", || {
        node_standby.psql("SELECT pg_is_in_recovery()").is_ok_and(|v| v == "f")
    });
    // walstream promote on a primary: pg_ctl's refusal.
    let out = Command::new(bin()).args(["promote", "-D"]).arg(sdir.data_dir()).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "walstream promote: cannot promote server; server is not in standby mode"
    );
}
