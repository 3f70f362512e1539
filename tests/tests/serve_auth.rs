//! Authentication against `walstream serve` with roles copied from a real PostgreSQL 15:
//! the same pg_hba.conf rules and the same `pg_authid.rolpassword` verifiers on both
//! servers, driven by psql and pg_receivewal. Successes succeed on both, and every refusal
//! gives PostgreSQL's FATAL, compared line for line with the real server's.

use std::process::Output;
use std::time::Duration;

use anyhow::ensure;
use walstream_tests::{
    pg_bin, pg_command, run_bounded, scenario, Lsn, PgCluster, ReceiveWal, ServeProcess,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// The rules both servers use (the `postgres` lines keep the harness's own psql working;
/// walstream parses `local` lines and never matches them, having no Unix socket).
const HBA: &[&str] = &[
    "local all all trust",
    "host replication postgres 127.0.0.1/32 trust",
    "host all postgres 127.0.0.1/32 trust",
    "host replication replicator 127.0.0.1/32 scram-sha-256",
    "host replication md5user 127.0.0.1/32 md5",
    "host replication plain 127.0.0.1/32 scram-sha-256",
    "host replication blocked 127.0.0.1/32 reject",
    "host replication ghost 127.0.0.1/32 scram-sha-256",
    "host all all 127.0.0.1/32 scram-sha-256",
];

/// Roles with passwords, made on the real server; their verifiers go to walstream.
fn make_roles(pg: &PgCluster) -> String {
    pg.psql(
        "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'secret';
         CREATE ROLE plain LOGIN PASSWORD 'plainpw';
         CREATE ROLE blocked LOGIN REPLICATION PASSWORD 'x';
         SET password_encryption = 'md5';
         CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'wonderland';",
    )
    .unwrap();
    let rows = pg
        .psql(
            "SELECT rolname || ':' || coalesce(rolpassword, '')
                    || CASE WHEN rolsuper THEN ' SUPERUSER' ELSE '' END
                    || CASE WHEN rolreplication THEN ' REPLICATION' ELSE '' END
             FROM pg_authid WHERE rolcanlogin ORDER BY rolname",
        )
        .unwrap();
    assert!(rows.contains("replicator:SCRAM-SHA-256$4096:"), "{rows}");
    assert!(rows.contains("md5user:md5"), "{rows}");
    rows
}

/// psql with `conninfo` and `PGPASSWORD`, one command.
fn psql(port: u16, conninfo: &str, password: &str, command: &str) -> Output {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XAt", "-w", "-d"])
        .arg(format!("host=127.0.0.1 port={port} {conninfo}"))
        .arg("-c")
        .arg(command)
        .env("PGPASSWORD", password);
    run_bounded(&mut cmd, Duration::from_secs(30)).unwrap()
}

/// psql's stderr with the port made neutral.
fn stderr(out: &Output, port: u16) -> String {
    String::from_utf8_lossy(&out.stderr).replace(&format!("port {port}"), "port P")
}

/// The cases: conninfo, password, command, and what PostgreSQL's stderr says (empty for
/// success). Both servers must print exactly the same.
const CASES: &[(&str, &str, &str, &str)] = &[
    ("user=replicator replication=true", "secret", "IDENTIFY_SYSTEM", ""),
    ("user=md5user replication=true", "wonderland", "IDENTIFY_SYSTEM", ""),
    (
        "user=replicator replication=true",
        "wrong",
        "IDENTIFY_SYSTEM",
        "FATAL:  password authentication failed for user \"replicator\"",
    ),
    (
        "user=md5user replication=true",
        "wrong",
        "IDENTIFY_SYSTEM",
        "FATAL:  password authentication failed for user \"md5user\"",
    ),
    (
        "user=plain replication=true",
        "plainpw",
        "IDENTIFY_SYSTEM",
        "FATAL:  must be superuser or replication role to start walsender",
    ),
    (
        "user=nobody replication=true",
        "x",
        "IDENTIFY_SYSTEM",
        "FATAL:  no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"nobody\", no encryption",
    ),
    (
        "user=ghost replication=true",
        "x",
        "IDENTIFY_SYSTEM",
        "FATAL:  password authentication failed for user \"ghost\"",
    ),
    (
        "user=blocked replication=true",
        "x",
        "IDENTIFY_SYSTEM",
        "FATAL:  pg_hba.conf rejects replication connection for host \"127.0.0.1\", user \"blocked\", no encryption",
    ),
    (
        "user=plain dbname=postgres",
        "wrong",
        "SELECT 1",
        "FATAL:  password authentication failed for user \"plain\"",
    ),
    ("user=plain dbname=postgres", "plainpw", "SELECT 1", ""),
];

#[test]
fn psql_and_pg_receivewal_authenticate_as_with_postgresql() -> anyhow::Result<()> {
    let cfg = scenario::source_config().hba_lines(HBA);
    let pg = PgCluster::start(&cfg)?;
    let roles = make_roles(&pg);
    pg.psql("SELECT pg_switch_wal()")?;
    let end = pg.switch_wal()?;
    let first = scenario::first_segment(&pg)?;
    let wal = scenario::copy_pg_wal(&pg)?;
    let conf = tempfile::tempdir()?;
    let hba_path = conf.path().join("pg_hba.conf");
    std::fs::write(&hba_path, HBA.join("\n") + "\n")?;
    let pw_path = conf.path().join("passwords");
    std::fs::write(&pw_path, &roles)?;
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        wal.path(),
        &["--hba", hba_path.to_str().unwrap(), "--passwords", pw_path.to_str().unwrap()],
    )?;
    let mut report = Vec::new();
    for &(conninfo, password, command, fatal) in CASES {
        let ok = fatal.is_empty();
        let real = psql(pg.port(), conninfo, password, command);
        let ours = psql(serve.port(), conninfo, password, command);
        ensure!(real.status.success() == ok, "{conninfo}: PostgreSQL {real:?}");
        ensure!(stderr(&real, pg.port()).contains(fatal), "{conninfo}: PostgreSQL {real:?}");
        if ours.status.success() != ok {
            report.push(format!("{conninfo} / {password}: walstream {ours:?}"));
            continue;
        }
        let (real_err, our_err) = (stderr(&real, pg.port()), stderr(&ours, serve.port()));
        if real_err != our_err {
            report.push(format!(
                "{conninfo} / {password}:\n  PostgreSQL: {real_err}  walstream:  {our_err}"
            ));
        }
    }
    ensure!(report.is_empty(), "differences:\n{}\n{}", report.join("\n"), serve.log());

    // pg_receivewal with SCRAM and with md5 streams every segment.
    for (user, password) in [("replicator", "secret"), ("md5user", "wonderland")] {
        let recv = ReceiveWal::new()?;
        recv.seed_partial(&first, scenario::seg_size())?;
        let mut cmd = recv.command(serve.port(), &["-E", &Lsn(end.0 - 1).to_string(), "-n"]);
        // The harness connects as postgres; this run names its own user.
        cmd.args(["-U", user]).env("PGPASSWORD", password);
        let out = run_bounded(&mut cmd, Duration::from_secs(60))?;
        ensure!(
            out.status.success(),
            "pg_receivewal as {user}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            serve.log()
        );
        walstream_tests::assert_same_wal_files(recv.dir(), wal.path())?;
    }
    // And is refused with the same text as by PostgreSQL when the password is wrong.
    let mut texts = Vec::new();
    for port in [pg.port(), serve.port()] {
        let recv = ReceiveWal::new()?;
        let mut cmd = recv.command(port, &["-n"]);
        cmd.args(["-U", "replicator"]).env("PGPASSWORD", "wrong");
        let out = run_bounded(&mut cmd, Duration::from_secs(30))?;
        ensure!(!out.status.success());
        texts.push(stderr(&out, port));
    }
    ensure!(texts[0] == texts[1], "pg_receivewal refusals differ:\n{}\n{}", texts[0], texts[1]);
    Ok(())
}
