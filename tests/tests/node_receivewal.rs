//! pg_receivewal and `walstream receivewal` archive a node's WAL byte-identically to the
//! node's own pg_wal, streaming it while it is written (issue 8, tests item 6).

use std::ops::Range;
use std::process::Command;
use std::time::SystemTime;

use walstream_node::engine::{ColumnDef, Oid, SqlType, TableDef, Value};
use walstream_node::initdb::{initdb, InitdbOptions};
use walstream_node::server::{Node, NodeOptions};
use walstream_protocol::{Lsn, WalSegSize};
use walstream_sender::postmaster::ShutdownMode;
use walstream_tests::receivewal::ReceiveWal;

const SEG: u64 = 1 << 20;

async fn insert(node: &Node, oid: Oid, ks: Range<i64>) {
    let mut t = node.engine().begin();
    for k in ks {
        t.insert(oid, vec![Value::Int8(k), Value::Text(format!("row {k:>40}"))]).await.unwrap();
    }
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
}

fn segment_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_segments_equal_the_nodes_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let opts = InitdbOptions { dir: dir.clone(), wal_segsize_mb: 1, superuser: "postgres".into() };
    initdb(&opts, SystemTime::now()).unwrap();
    let node = Node::start(NodeOptions {
        dir: dir.clone(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![("fsync".into(), "off".into())],
    })
    .await
    .unwrap();
    let port = node.local_addr().port();
    let first = "000000010000000000000001";

    // Both receivers stream from the first segment while the load runs, and stop once they
    // have finished segment 4.
    let endpos = Lsn(5 * SEG - 1);
    let pg = ReceiveWal::new().unwrap();
    pg.seed_partial(first, WalSegSize::new(SEG).unwrap()).unwrap();
    let pg_run = {
        let mut cmd = pg.command(port, &["-E", &endpos.to_string(), "-n"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    let ours = tempfile::tempdir().unwrap();
    std::fs::File::create(ours.path().join(format!("{first}.partial")))
        .unwrap()
        .set_len(SEG)
        .unwrap();
    let ours_run = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walstream"));
        cmd.args(["receivewal", "-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
            .arg("-D")
            .arg(ours.path())
            .args(["-E", &endpos.to_string(), "-n"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };

    let mut t = node.engine().begin();
    let def = TableDef {
        oid: 0,
        name: "t".into(),
        columns: vec![
            ColumnDef { name: "k".into(), ty: SqlType::Int8, not_null: true, default: None },
            ColumnDef { name: "v".into(), ty: SqlType::Text, not_null: false, default: None },
        ],
        pkey: vec![0],
    };
    let oid = t.create_table(def, false).await.unwrap().unwrap().oid;
    t.end_statement().unwrap();
    t.commit(SystemTime::now()).await.unwrap();
    let mut k = 0;
    // Bounded: 5 MB of WAL takes far fewer rounds than this.
    for _ in 0..10_000 {
        if node.insert_lsn().0 > 5 * SEG + 4096 {
            break;
        }
        insert(&node, oid, k..k + 200).await;
        k += 200;
    }
    assert!(node.insert_lsn().0 > 5 * SEG, "the load wrote past segment 4");

    let pg_out = tokio::task::spawn_blocking(move || pg_run.join().unwrap()).await.unwrap();
    assert!(pg_out.status.success(), "pg_receivewal: {}", String::from_utf8_lossy(&pg_out.stderr));
    let ours_out = tokio::task::spawn_blocking(move || ours_run.join().unwrap()).await.unwrap();
    assert!(
        ours_out.status.success(),
        "walstream receivewal: {}",
        String::from_utf8_lossy(&ours_out.stderr)
    );
    let want: Vec<String> = (1..=4).map(|s| format!("0000000100000000000000{s:02X}")).collect();
    for (name, archive) in [("pg_receivewal", pg.dir()), ("walstream receivewal", ours.path())] {
        let got = segment_names(archive);
        assert_eq!(got[..4], want[..], "{name} finished segments 1-4");
        for seg in &want {
            let a = std::fs::read(archive.join(seg)).unwrap();
            let b = std::fs::read(dir.join("pg_wal").join(seg)).unwrap();
            assert!(a == b, "{name}: {seg} differs from the node's");
        }
    }
    node.stop(ShutdownMode::Fast).await.unwrap();
}

/// `application_name`, `sync_priority` and `sync_state` of `pg_stat_replication` once
/// `n` walsenders stream, by a psql run `query`.
fn sync_states(query: impl Fn(&str) -> String, n: usize) -> String {
    let sql = "SELECT application_name, sync_priority, sync_state FROM pg_stat_replication \
               WHERE state = 'streaming' ORDER BY application_name";
    let streaming = format!("{n} streaming walsenders");
    walstream_tests::wait_for(&streaming, std::time::Duration::from_secs(30), || {
        Ok(Some(query(sql)).filter(|out| out.lines().count() == n))
    })
    .unwrap()
}

/// Three pg_receivewal standbys (application names s1, s2 with `--synchronous`, s3
/// without, so reporting no flush position) of a node and of
/// PostgreSQL 15, both with `synchronous_standby_names = 'FIRST 1 (s2, s1)'` and then
/// `'ANY 2 (s1, s3)'`: pg_stat_replication shows the same priorities and states.
#[test]
fn pg_stat_replication_shows_sync_states_as_postgresql_does() {
    use walstream_tests::node::PgAndNode;
    use walstream_tests::PgConfig;

    for names in ["FIRST 1 (s2, s1)", "ANY 2 (s1, s3)"] {
        let mut cfg = PgConfig::default();
        cfg.settings.push(("synchronous_standby_names".into(), names.to_string()));
        let setting = format!("synchronous_standby_names={names}");
        let bin = env!("CARGO_BIN_EXE_walstream").as_ref();
        let both = PgAndNode::start(bin, &cfg, &[&setting]).unwrap();
        let (pg, node) = (&both.pg, &both.node);
        let mut outputs = Vec::new();
        for port in [pg.port(), node.port()] {
            let receivers: Vec<_> = ["s1", "s2", "s3"]
                .iter()
                .map(|app| {
                    let r = ReceiveWal::new().unwrap();
                    let conn = format!("application_name={app}");
                    // Without --synchronous (and a slot) pg_receivewal reports no flush
                    // position, and PostgreSQL shows it as async whatever its name.
                    let mut args = vec!["-d", &conn, "-n"];
                    if *app != "s3" {
                        args.push("--synchronous");
                    }
                    let child = r.spawn(port, &args).unwrap();
                    (r, child)
                })
                .collect();
            let out = if port == pg.port() {
                sync_states(|q| pg.psql(q).unwrap(), 3)
            } else {
                sync_states(|q| node.psql(q).unwrap(), 3)
            };
            drop(receivers);
            outputs.push(out);
        }
        assert_eq!(outputs[0].lines().count(), 3, "{names}: {}", outputs[0]);
        let chosen = if names.starts_with("FIRST") { "|sync" } else { "|quorum" };
        assert!(outputs[0].contains(chosen), "{names}: {}", outputs[0]);
        assert_eq!(outputs[1], outputs[0], "{names}");
    }
}

/// Polls `query` (bounded) until it prints something.
fn poll_until_nonempty(query: &dyn Fn(&str) -> String, sql: &str) -> String {
    walstream_tests::wait_for(sql, std::time::Duration::from_secs(20), || {
        Ok(Some(query(sql)).filter(|out| !out.trim().is_empty()))
    })
    .unwrap()
}

/// With `synchronous_standby_names = 's9'`: a commit waits (`IPC` / `SyncRep`) while no
/// such standby streams; pg_cancel_backend ends the wait with a WARNING and the commit
/// stands; pg_terminate_backend ends it with a WARNING and closes the connection; a
/// pg_receivewal --synchronous named s9 releases commits.
fn sync_rep_waits(port: u16, query: &dyn Fn(&str) -> String) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    query("SET synchronous_commit = local; CREATE TABLE sr (k int PRIMARY KEY)");
    let mut seen = Vec::new();
    for (k, f) in [(1, "pg_cancel_backend"), (2, "pg_terminate_backend")] {
        let mut c = RawReplicationConn::connect_with(port, &db).unwrap();
        c.send(b'Q', format!("INSERT INTO sr VALUES ({k})\0").as_bytes()).unwrap();
        let waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
        let pid = poll_until_nonempty(query, waiting);
        let pid = pid.trim();
        seen.push(query(&format!(
            "SELECT wait_event_type, wait_event, state FROM pg_stat_activity WHERE pid = {pid}"
        )));
        seen.push(query(&format!("SELECT {f}({pid})")));
        seen.extend(c.read_until_or_eof(b'Z').unwrap());
    }
    let r = ReceiveWal::new().unwrap();
    let args = ["-d", "application_name=s9", "-n", "--synchronous", "-s", "1"];
    let _standby = r.spawn(port, &args).unwrap();
    let sync = "SELECT sync_state FROM pg_stat_replication WHERE sync_state = 'sync'";
    seen.push(poll_until_nonempty(query, sync));
    let mut c = RawReplicationConn::connect_with(port, &db).unwrap();
    seen.extend(c.query("INSERT INTO sr VALUES (3)").unwrap());
    seen.push(query("SELECT k FROM sr ORDER BY k"));
    // ALTER SYSTEM and a reload re-evaluate the waiters at once.
    query("ALTER SYSTEM SET synchronous_standby_names = 's10'");
    query("SELECT pg_reload_conf()");
    let applied = "SELECT 1 WHERE current_setting('synchronous_standby_names') = 's10'";
    seen.push(poll_until_nonempty(query, applied));
    c.send(b'Q', b"INSERT INTO sr VALUES (4)\0").unwrap();
    let waiting = "SELECT wait_event FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    seen.push(poll_until_nonempty(query, waiting));
    query("ALTER SYSTEM RESET synchronous_standby_names");
    query("SELECT pg_reload_conf()");
    seen.extend(c.read_until(b'Z').unwrap());
    seen
}

#[test]
fn commits_wait_for_synchronous_standbys_as_postgresql_does() {
    use walstream_tests::node::NodeDir;
    use walstream_tests::{PgCluster, PgConfig};

    let mut cfg = PgConfig::default();
    cfg.settings.push(("synchronous_standby_names".into(), "s9".into()));
    let pg = PgCluster::start(&cfg).unwrap();
    let theirs = sync_rep_waits(pg.port(), &|q| pg.psql(q).unwrap());
    for want in [
        "IPC|SyncRep|active",
        "canceling wait for synchronous",
        "terminating connection",
        "<EOF>",
        "C INSERT 0 1",
        "1\n2\n3",
    ] {
        assert!(theirs.iter().any(|l| l.contains(want)), "{want}: {theirs:#?}");
    }
    let node_dir = NodeDir::init(env!("CARGO_BIN_EXE_walstream").as_ref(), 16).unwrap();
    // In postgresql.conf, as for PostgreSQL: a -c setting would outrank ALTER SYSTEM.
    let conf = node_dir.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("synchronous_standby_names = 's9'\n");
    std::fs::write(&conf, text).unwrap();
    let node = node_dir.start(&[]).unwrap();
    let ours = sync_rep_waits(node.port(), &|q| node.psql(q).unwrap());
    assert_eq!(ours, theirs);
    // Both logs say when s9 became synchronous, in the same words.
    let line = "standby \"s9\" is now a synchronous standby with priority 1";
    assert!(pg.log().contains(line), "{}", pg.log());
    assert!(node.log().contains(line), "{}", node.log());
}

/// `walstream receivewal --synchronous` named in `synchronous_standby_names` is a
/// synchronous standby of a node: it shows as `sync` and releases commits.
#[test]
fn walstream_receivewal_is_a_synchronous_standby_of_a_node() {
    use walstream_tests::node::NodeDir;
    use walstream_tests::ChildGuard;

    let node_dir = NodeDir::init(env!("CARGO_BIN_EXE_walstream").as_ref(), 16).unwrap();
    let node = node_dir.start(&["synchronous_standby_names=wsr"]).unwrap();
    node.psql("SET synchronous_commit = local; CREATE TABLE t (k int PRIMARY KEY)").unwrap();
    let out = tempfile::tempdir().unwrap();
    let conninfo =
        format!("host=127.0.0.1 port={} user=postgres application_name=wsr", node.port());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_walstream"));
    cmd.args(["receivewal", "--synchronous", "-n", "-s", "1", "-d", &conninfo, "-D"])
        .arg(out.path());
    let _rx = ChildGuard::spawn_captured(&mut cmd, "walstream receivewal").unwrap();
    let sync = "SELECT sync_state FROM pg_stat_replication WHERE sync_state = 'sync'";
    assert_eq!(poll_until_nonempty(&|q| node.psql(q).unwrap(), sync), "sync");
    for k in 0..10 {
        node.psql(&format!("INSERT INTO t VALUES ({k})")).unwrap();
    }
    assert_eq!(node.psql("SELECT count(*) FROM t").unwrap(), "10");
}
