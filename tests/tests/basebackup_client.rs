//! `walstream basebackup` against a real PostgreSQL 15 primary: `pg_verifybackup` accepts
//! what it wrote (WAL streamed or fetched), and a real PostgreSQL standby started on it
//! with `-R`'s files replicates.

use std::process::Command;
use std::time::Duration;

use walstream_tests::{
    chown_postgres, pg_bin, pg_command, postgres_owned_tempdir, run_ok, BaseBackup, PgCluster,
    PgConfig,
};

fn walstream_basebackup(port: u16, dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walstream"))
        .args(["basebackup", "-h", "127.0.0.1", "-U", "postgres", "-c", "fast", "-p"])
        .arg(port.to_string())
        .arg("-D")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn chown_tree(path: &std::path::Path) {
    let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap();
    assert!(st.success());
}

#[test]
fn verified_backups_and_a_real_standby() {
    let cfg = PgConfig::small_segments();
    let primary = PgCluster::start(&cfg).unwrap();
    primary
        .psql("CREATE TABLE t (k int PRIMARY KEY, v text); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
        .unwrap();

    // -X fetch: the WAL is in the archive.
    let fetched = postgres_owned_tempdir("walstream-bb-fetch.").unwrap();
    let out = walstream_basebackup(primary.port(), &fetched.path().join("data"), &["-X", "fetch"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    chown_tree(fetched.path());
    run_ok(pg_command(pg_bin("pg_verifybackup")).arg(fetched.path().join("data"))).unwrap();

    // -X stream -R, with writes going on: a standby.
    let streamed = postgres_owned_tempdir("walstream-bb-stream.").unwrap();
    let data = streamed.path().join("data");
    let out = walstream_basebackup(primary.port(), &data, &["-X", "stream", "-R", "-P"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("standby.signal").exists());
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("primary_conninfo = '"), "{auto}");
    assert!(!auto.contains("walstream basebackup"), "no program name as application_name");
    chown_tree(streamed.path());
    chown_postgres(&data).unwrap();
    run_ok(pg_command(pg_bin("pg_verifybackup")).arg(&data)).unwrap();

    let backup = BaseBackup::from_dir(streamed, primary.seg_size());
    let standby = PgCluster::standby(backup, &cfg, &primary.conninfo("postgres")).unwrap();
    primary.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(20001, 21000) g").unwrap();
    let lsn = primary.current_lsn().unwrap();
    standby.wait_replayed(lsn, Duration::from_secs(60)).unwrap();
    assert_eq!(
        standby.psql("SELECT count(*), sum(k) FROM t").unwrap(),
        primary.psql("SELECT count(*), sum(k) FROM t").unwrap()
    );
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
}

#[test]
fn refusals_as_pg_basebackup_words_them() {
    let cfg = PgConfig::small_segments();
    let primary = PgCluster::start(&cfg).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("x"), "").unwrap();
    let out = walstream_basebackup(primary.port(), tmp.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("directory \"{}\" exists but is not empty", tmp.path().display())),
        "{err}"
    );
    let out = walstream_basebackup(primary.port(), &tmp.path().join("new"), &["-X", "bogus"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "invalid wal-method option \"bogus\", must be \"fetch\", \"stream\", or \"none\""
        ),
        "{err}"
    );
}
