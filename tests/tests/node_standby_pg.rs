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
    NodeDir::basebackup(bin(), from.port(), extra).unwrap()
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

fn follow_as(dir: &NodeDir, name: &str) {
    let auto = dir.data_dir().join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).unwrap();
    let text = text
        .replace("primary_conninfo = '", &format!("primary_conninfo = 'application_name={name} "));
    std::fs::write(&auto, text).unwrap();
}

fn states(primary: &NodeProcess) -> String {
    let rows = psql(
        primary,
        "SELECT application_name, sync_state, sync_priority FROM pg_stat_replication \
         ORDER BY application_name",
    )
    .unwrap();
    rows.lines().map(|l| l.replace('|', ":")).collect::<Vec<_>>().join(",")
}

/// Commits with `synchronous_commit = on` finish within `limit`.
/// `sql` run by psql on `node`, in the background.
fn spawn_psql(node: &NodeProcess, sql: &str) -> std::process::Child {
    Command::new(pg_bin("psql"))
        .args(["-X", "-At", "-d", &node.conninfo("postgres"), "-c", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether `child` exits within `limit`.
fn finishes_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Commits with `synchronous_commit = on` finish within 2 s.
fn commits_go_on(primary: &NodeProcess, k: i32) -> bool {
    let mut child = spawn_psql(primary, &format!("INSERT INTO t VALUES ({k}, 'z')"));
    let done = finishes_within(&mut child, Duration::from_secs(2));
    if !done {
        let _ = child.kill();
    }
    let _ = child.wait();
    done
}

/// `FIRST 2 (s1, s2, s3)` and `ANY 2 (s1, s2, s3)` with three node standbys: the states and
/// priorities pg_stat_replication shows (PostgreSQL's: FIRST gives the first two listed
/// `sync` and the third `potential`; ANY gives all three `quorum` with priority 1), a
/// potential standby taking over when a synchronous one goes, and commits waiting while
/// fewer standbys than the number asked for are there.
#[test]
fn first_and_any_with_three_node_standbys() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&[]).unwrap();
    psql(&primary, "CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    let dirs: Vec<NodeDir> = (1..=3).map(|_| basebackup(&primary, &[])).collect();
    for (i, d) in dirs.iter().enumerate() {
        follow_as(d, &format!("s{}", i + 1));
    }
    let mut standbys: Vec<Option<NodeProcess>> =
        dirs.iter().map(|d| Some(d.start(&[]).unwrap())).collect();
    let set = |names: &str| {
        psql(&primary, &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'")).unwrap();
        psql(&primary, "SELECT pg_reload_conf()").unwrap();
    };
    set("FIRST 2 (s1, s2, s3)");
    wait_until("FIRST 2 states", || states(&primary) == "s1:sync:1,s2:sync:2,s3:potential:3");
    assert!(commits_go_on(&primary, 1));
    // s2 goes: s3 takes its place and commits go on.
    let s2port = standbys[1].as_ref().unwrap().port();
    standbys[1].take().unwrap().stop().unwrap();
    wait_until("s3 sync", || states(&primary) == "s1:sync:1,s3:sync:3");
    assert!(commits_go_on(&primary, 2));

    set("ANY 2 (s1, s2, s3)");
    wait_until("ANY 2 states", || states(&primary) == "s1:quorum:1,s3:quorum:1");
    assert!(commits_go_on(&primary, 3));
    // Only one standby left of the two needed: commits wait until a second is back.
    standbys[2].take().unwrap().stop().unwrap();
    wait_until("one standby", || states(&primary) == "s1:quorum:1");
    assert!(!commits_go_on(&primary, 4), "a commit did not wait for the quorum");
    standbys[1] = Some(dirs[1].start_on(s2port, &[]).unwrap());
    wait_until("s2 back", || states(&primary) == "s1:quorum:1,s2:quorum:1");
    assert!(commits_go_on(&primary, 5));
    assert_eq!(psql(&primary, "SELECT count(*) FROM t WHERE k = 4").unwrap(), "1");
}

/// Each `synchronous_commit` level against a synchronous node standby that is paused
/// (SIGSTOP): `off` and `local` commit, `remote_write`, `on` and `remote_apply` wait (the
/// node is one process, so the pause stops its receive, flush and apply at once), and all
/// of them finish once it goes on (SIGCONT).
#[test]
fn a_paused_synchronous_standby_holds_exactly_the_levels_that_need_it() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&["synchronous_standby_names=s1"]).unwrap();
    psql(&primary, "SET synchronous_commit = local; CREATE TABLE t (k int PRIMARY KEY, v text)")
        .unwrap();
    let sdir = basebackup(&primary, &[]);
    follow_as(&sdir, "s1");
    let mut standby = sdir.start(&[]).unwrap();
    wait_until("s1 sync", || states(&primary) == "s1:sync:1");
    standby.signal(libc::SIGSTOP);
    let mut waiting = Vec::new();
    for (k, level) in ["off", "local", "remote_write", "on", "remote_apply"].iter().enumerate() {
        let sql = format!("SET synchronous_commit = {level}; INSERT INTO t VALUES ({k}, 'x')");
        let mut child = spawn_psql(&primary, &sql);
        let done = finishes_within(&mut child, Duration::from_millis(1500));
        let needs_standby = k >= 2;
        assert_eq!(done, !needs_standby, "synchronous_commit = {level}");
        waiting.push(child);
    }
    assert_eq!(
        psql(&primary, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            .unwrap(),
        "3"
    );
    standby.signal(libc::SIGCONT);
    for mut c in waiting {
        assert!(c.wait().unwrap().success());
    }
    wait_replayed(&standby, &primary);
    assert_eq!(psql(&standby, "SELECT count(*) FROM t").unwrap(), "5");
}

/// A hot standby answers while it replays a backlog (PostgreSQL's startup process runs
/// beside the backends): during the replay of a large transaction a query returns at once
/// with a replay position short of the end.
#[test]
fn a_standby_answers_queries_while_it_catches_up() {
    let pdir = NodeDir::init(bin(), 16).unwrap();
    let primary = pdir.start(&[]).unwrap();
    psql(&primary, "CREATE TABLE t (k int PRIMARY KEY, v text)").unwrap();
    let sdir = basebackup(&primary, &[]);
    psql(&primary, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 400000) g")
        .unwrap();
    let end: walstream_protocol::Lsn =
        psql(&primary, "SELECT pg_current_wal_flush_lsn()").unwrap().parse().unwrap();
    let standby = sdir.start(&[]).unwrap();
    let mut short_of_end = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let asked = Instant::now();
        let got: walstream_protocol::Lsn =
            psql(&standby, "SELECT pg_last_wal_replay_lsn()").unwrap().parse().unwrap();
        if got >= end {
            break;
        }
        assert!(asked.elapsed() < Duration::from_secs(2), "a query waited for replay");
        short_of_end += 1;
        assert!(Instant::now() < deadline, "the standby did not catch up");
    }
    assert!(short_of_end > 0, "no answer came before the end of the backlog");
    assert_eq!(psql(&standby, "SELECT count(*) FROM t").unwrap(), "400000");
}
