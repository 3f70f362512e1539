//! Recovery conflicts on a hot standby (issue 12 §3), side by side with PostgreSQL 15:
//! replay of `DROP TABLE` / `TRUNCATE` waits `max_standby_streaming_delay` for the standby
//! sessions holding the table, then cancels a running statement (ERROR 40001 "canceling
//! statement due to conflict with recovery") or ends a session idle in its transaction
//! (FATAL 40001 "terminating connection due to conflict with recovery"), with
//! PostgreSQL's DETAIL and HINT; then the table is gone on the standby too.

use std::process::Stdio;
use std::time::{Duration, Instant};

use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::node::NodeDir;
use walstream_tests::{pg_bin, pg_command};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

fn psql(port: u16, sql: &str) -> (String, String) {
    let out = pg_command(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-q", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .args(["-c", sql])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Runs `script` through psql on the standby while, `after` into it, the primary runs
/// `ddl`; returns psql's stderr.
fn conflict(standby: u16, primary: u16, script: &str, ddl: &str) -> String {
    let mut child = pg_command(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-q", "-d"])
        .arg(format!("host=127.0.0.1 port={standby} user=postgres dbname=postgres"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(700));
    let (_, err) = psql(primary, ddl);
    assert_eq!(err, "", "{ddl}");
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one server pair says for each case.
fn run_cases(primary: u16, standby: u16) -> Vec<String> {
    let setup = "CREATE TABLE a (k int PRIMARY KEY); INSERT INTO a VALUES (1), (2), (3); \
                 CREATE TABLE b (k int PRIMARY KEY); INSERT INTO b VALUES (1);";
    for sql in setup.split_inclusive(';').map(str::trim).filter(|s| !s.is_empty()) {
        assert_eq!(psql(primary, sql).1, "", "{sql}");
    }
    wait_until("the standby has b", || psql(standby, "SELECT count(*) FROM b").0 == "1");
    let mut said = Vec::new();
    // A running statement reading a table that replay drops.
    said.push(conflict(
        standby,
        primary,
        "SELECT k, pg_sleep(3) FROM a ORDER BY k;\n",
        "DROP TABLE a",
    ));
    // A session idle in its transaction after reading a table that replay truncates.
    said.push(conflict(
        standby,
        primary,
        "BEGIN;\nSELECT count(*) FROM b;\n\\! sleep 2.5\nSELECT 1;\n",
        "TRUNCATE b",
    ));
    wait_until("replay of the DDL", || psql(standby, "SELECT count(*) FROM b").0 == "0");
    said.push(psql(standby, "SELECT count(*) FROM a").1);
    said
}

#[test]
fn replay_cancels_the_standby_sessions_holding_a_dropped_table_as_postgresql_does() {
    let cfg = PgConfig::small_segments().set("wal_level", "replica");
    let pg = PgCluster::start(&cfg).unwrap();
    let standby_cfg = cfg.clone().set("max_standby_streaming_delay", "500ms");
    let pg_standby =
        PgCluster::standby(pg.basebackup(&[]).unwrap(), &standby_cfg, &pg.conninfo("postgres"))
            .unwrap();
    let want = run_cases(pg.port(), pg_standby.port());

    let pdir = NodeDir::init(bin(), 1).unwrap();
    let node = pdir.start(&[]).unwrap();
    let sdir = NodeDir::basebackup(bin(), node.port(), &[]).unwrap();
    let node_standby = sdir.start(&["max_standby_streaming_delay=500ms"]).unwrap();
    let got = run_cases(node.port(), node_standby.port());

    assert!(want[0].contains("canceling statement due to conflict with recovery"), "{want:?}");
    assert!(want[1].contains("terminating connection due to conflict with recovery"), "{want:?}");
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w, "\nnode log:\n{}", node_standby.log());
    }
}
