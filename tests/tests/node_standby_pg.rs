//! A node standby made with the real `pg_basebackup -R -X stream` (issue 8, tests item 5):
//! `pg_verifybackup` accepts the backup; under load on the primary the standby converges
//! to identical tables; writes are refused with 25006; `pg_stat_replication` on the
//! primary shows it streaming; a cascaded standby behind it converges too; the standby
//! and the primary restart mid-stream.

use std::process::Command;
use std::time::{Duration, Instant};

use walstream_tests::node::{NodeDir, NodeProcess};
use walstream_tests::{pg_bin, run_ok};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

fn psql(node: &NodeProcess, sql: &str) -> Result<String, String> {
    node.psql(sql)
}

fn basebackup(from: &NodeProcess, extra: &[&str]) -> NodeDir {
    let tmp = tempfile::Builder::new().prefix("walstream-nodebb.").tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok(
        Command::new(pg_bin("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-c", "fast", "-X", "stream", "-R", "-p"])
            .arg(from.port().to_string())
            .arg("-D")
            .arg(&data)
            .args(extra),
    )
    .unwrap();
    NodeDir::adopt(bin(), tmp)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_replayed(standby: &NodeProcess, primary: &NodeProcess) {
    let target = psql(primary, "SELECT pg_current_wal_flush_lsn()").unwrap();
    wait_until("replay", || {
        psql(standby, &format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"))
            .is_ok_and(|v| v == "t")
    });
}

const TABLE: &str = "SELECT count(*), sum(k), sum(length(v)) FROM t";

#[test]
fn pg_basebackup_standby_converges_cascades_and_survives_restarts() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    psql(&primary, "CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    psql(&primary, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g").unwrap();

    let sdir = basebackup(&primary, &[]);
    run_ok(Command::new(pg_bin("pg_verifybackup")).arg(sdir.data_dir())).unwrap();
    let standby = sdir.start(&[]).unwrap();
    assert_eq!(psql(&standby, "SELECT pg_is_in_recovery()").unwrap(), "t");

    for round in 0..10 {
        let lo = 10_000 + round * 1000;
        psql(
            &primary,
            &format!(
                "INSERT INTO t SELECT g, md5(g::text) || 'x' FROM generate_series({lo}, {}) g",
                lo + 999
            ),
        )
        .unwrap();
        psql(&primary, &format!("UPDATE t SET v = v || 'u' WHERE k % 7 = {round}")).unwrap();
        psql(&primary, &format!("DELETE FROM t WHERE k % 11 = {round}")).unwrap();
    }
    wait_replayed(&standby, &primary);
    assert_eq!(psql(&standby, TABLE), psql(&primary, TABLE));

    let err = psql(&standby, "INSERT INTO t VALUES (-1, 'no')").unwrap_err();
    assert!(err.contains("cannot execute INSERT in a read-only transaction"), "{err}");
    let rep =
        psql(&primary, "SELECT state, sent_lsn = replay_lsn FROM pg_stat_replication").unwrap();
    assert!(rep.starts_with("streaming|"), "pg_stat_replication: {rep}");
    let types = |n: &NodeProcess| {
        psql(n, "SELECT DISTINCT backend_type FROM pg_stat_activity ORDER BY backend_type").unwrap()
    };
    assert_eq!(types(&primary), "checkpointer\nclient backend\nwalsender\nwalwriter");
    assert_eq!(types(&standby), "checkpointer\nclient backend\nstartup\nwalreceiver");
    let rcv = psql(&standby, "SELECT status FROM pg_stat_wal_receiver").unwrap();
    assert_eq!(rcv, "streaming");

    // A cascaded standby, backed up from the primary, streaming from the standby.
    let cdir = basebackup(&primary, &[]);
    let auto = cdir.data_dir().join("postgresql.auto.conf");
    let conf = std::fs::read_to_string(&auto).unwrap();
    let conf =
        conf.replace(&format!("port={}", primary.port()), &format!("port={}", standby.port()));
    std::fs::write(&auto, conf).unwrap();
    let cascade = cdir.start(&[]).unwrap();
    psql(&primary, "INSERT INTO t SELECT g, 'c' FROM generate_series(50000, 50999) g").unwrap();
    wait_replayed(&standby, &primary);
    wait_replayed(&cascade, &primary);
    assert_eq!(psql(&cascade, TABLE), psql(&primary, TABLE));

    // The standby restarts while the primary writes; then the primary restarts.
    let sport = standby.port();
    standby.stop().unwrap();
    psql(&primary, "INSERT INTO t SELECT g, 'while down' FROM generate_series(60000, 60999) g")
        .unwrap();
    let standby = sdir.start_on(sport, &[]).unwrap();
    wait_replayed(&standby, &primary);
    let pport = primary.port();
    primary.stop().unwrap();
    let primary = pdir.start_on(pport, &[]).unwrap();
    psql(&primary, "INSERT INTO t SELECT g, 'after restart' FROM generate_series(70000, 70999) g")
        .unwrap();
    wait_replayed(&standby, &primary);
    wait_replayed(&cascade, &primary);
    assert_eq!(psql(&standby, TABLE), psql(&primary, TABLE));
    assert_eq!(psql(&cascade, TABLE), psql(&primary, TABLE));

    cascade.stop().unwrap();
    standby.stop().unwrap();
    primary.stop().unwrap();
}

#[test]
fn pg_basebackup_tar_format_of_a_node() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    psql(&primary, "CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(pg_bin("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-Ft", "-X", "stream", "-p"])
            .arg(primary.port().to_string())
            .arg("-D")
            .arg(tmp.path().join("tar")),
    )
    .unwrap();
    for f in ["base.tar", "pg_wal.tar", "backup_manifest"] {
        assert!(tmp.path().join("tar").join(f).exists(), "{f}");
    }
    primary.stop().unwrap();
}

/// A node standby as the synchronous standby of a node (`synchronous_standby_names =
/// '*'`): it shows as `sync`; with `remote_apply` each commit is visible on the standby
/// the moment the primary acknowledges it; with the standby stopped commits wait
/// (`SyncRep`) and go on when it is back.
#[test]
fn a_node_standby_is_a_synchronous_standby_with_remote_apply() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&["synchronous_standby_names=*"]).unwrap();
    psql(&primary, "SET synchronous_commit = local; CREATE TABLE t (k int PRIMARY KEY, v text)")
        .unwrap();
    let sdir = basebackup(&primary, &[]);
    let standby = sdir.start(&[]).unwrap();
    wait_until("a sync standby", || {
        psql(&primary, "SELECT sync_state FROM pg_stat_replication").is_ok_and(|s| s == "sync")
    });
    for k in 1..=20 {
        psql(
            &primary,
            &format!("SET synchronous_commit = remote_apply; INSERT INTO t VALUES ({k}, 'x')"),
        )
        .unwrap();
        assert_eq!(psql(&standby, "SELECT count(*) FROM t").unwrap(), k.to_string());
    }
    // No standby: the commit waits, and completes once the standby is back.
    let sport = standby.port();
    standby.stop().unwrap();
    let conninfo = primary.conninfo("postgres");
    let waiter = std::thread::spawn(move || {
        Command::new(pg_bin("psql"))
            .args(["-X", "-At", "-d", &conninfo, "-c", "INSERT INTO t VALUES (21, 'y')"])
            .output()
            .unwrap()
    });
    wait_until("a commit waiting for the standby", || {
        psql(&primary, "SELECT wait_event FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            .is_ok_and(|s| s == "SyncRep")
    });
    assert!(!waiter.is_finished());
    let standby = sdir.start_on(sport, &[]).unwrap();
    let out = waiter.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "INSERT 0 1");
    wait_replayed(&standby, &primary);
    assert_eq!(psql(&standby, "SELECT count(*) FROM t").unwrap(), "21");
}

/// `ALTER SYSTEM SET primary_conninfo` + `pg_reload_conf()` on a standby restarts its
/// walreceiver with the new connection, without a restart (as PostgreSQL 15 does): a
/// standby of the primary moves to cascade from another standby and keeps converging.
#[test]
fn a_reloaded_primary_conninfo_moves_a_standby_without_a_restart() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    psql(&primary, "CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    // The directories must outlive the processes.
    let s1dir = basebackup(&primary, &[]);
    let s1 = s1dir.start(&[]).unwrap();
    let s2dir = basebackup(&primary, &[]);
    let s2 = s2dir.start(&[]).unwrap();
    wait_until("two standbys", || {
        psql(&primary, "SELECT count(*) FROM pg_stat_replication").is_ok_and(|n| n == "2")
    });
    let to_s1 = format!("host=127.0.0.1 port={} user=postgres", s1.port());
    psql(&s2, &format!("ALTER SYSTEM SET primary_conninfo = '{to_s1}'")).unwrap();
    psql(&s2, "SELECT pg_reload_conf()").unwrap();
    wait_until("s2 streaming from s1", || {
        psql(&s1, "SELECT count(*) FROM pg_stat_replication").is_ok_and(|n| n == "1")
            && psql(&primary, "SELECT count(*) FROM pg_stat_replication").is_ok_and(|n| n == "1")
    });
    let shown = psql(&s2, "SELECT conninfo FROM pg_stat_wal_receiver").unwrap();
    assert!(shown.contains(&format!("port='{}'", s1.port())), "{shown}");
    psql(&primary, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g").unwrap();
    wait_replayed(&s2, &primary);
    assert_eq!(psql(&s2, "SELECT count(*) FROM t").unwrap(), "100");
}
