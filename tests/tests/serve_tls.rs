//! TLS on walstream's servers (issue 11 §1): psql and pg_receivewal with
//! `sslmode=verify-full` against `walstream serve` and `walstream relay` (certificates from
//! a test root made with rcgen), what `pg_stat_ssl` shows compared with a real PostgreSQL
//! 15 with `ssl=on`, and `hostssl` / `hostnossl` rules refusing connections with
//! PostgreSQL's own FATAL, compared line for line with the real server's on the same rules.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::certs::ServerPki;
use walstream_tests::{
    assert_same_wal_files, pg_bin, pg_command, run_bounded, scenario, ChildGuard, Lsn, PgCluster,
    ReceiveWal, ServeProcess, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// libpq's environment for `sslmode=verify-full` against `root`.
fn verify_full(root: &Path) -> Vec<(&'static str, String)> {
    vec![("PGSSLMODE", "verify-full".to_string()), ("PGSSLROOTCERT", root.display().to_string())]
}

/// psql to `host=localhost hostaddr=127.0.0.1 port=P` with `conninfo`, one command.
fn psql(port: u16, conninfo: &str, env: &[(&str, String)], command: &str) -> Output {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XAt", "-w", "-d"])
        .arg(format!("host=localhost hostaddr=127.0.0.1 port={port} {conninfo}"))
        .arg("-c")
        .arg(command);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, Duration::from_secs(30)).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// stderr with the port made neutral.
fn stderr(out: &Output, port: u16) -> String {
    String::from_utf8_lossy(&out.stderr).replace(&format!("port {port}"), "port P")
}

/// A primary with `ssl=on` and the test root's server certificate.
fn ssl_primary(pki: &ServerPki, hba: &[&str]) -> anyhow::Result<PgCluster> {
    let mut cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string());
    if !hba.is_empty() {
        cfg = cfg.hba_lines(hba);
    }
    PgCluster::start(&cfg)
}

#[test]
fn psql_and_pg_receivewal_stream_from_serve_with_verify_full() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let pg = ssl_primary(&pki, &[])?;
    pg.psql("SELECT pg_switch_wal()")?;
    let end = pg.switch_wal()?;
    let first = scenario::first_segment(&pg)?;
    let wal = scenario::copy_pg_wal(&pg)?;
    // server.crt and server.key in the served directory: the settings' default names.
    pki.install(wal.path(), false)?;
    let serve = ServeProcess::start(WALSTREAM.as_ref(), wal.path(), &["-c", "ssl=on"])?;
    let env = verify_full(&pki.root());

    // What pg_stat_ssl shows of psql's own connection, as PostgreSQL shows it.
    let query =
        "SELECT ssl, version, cipher, bits, client_dn, client_serial, issuer_dn FROM pg_stat_ssl";
    let real = psql(pg.port(), "user=postgres dbname=postgres", &env, query);
    let ours = psql(serve.port(), "user=postgres dbname=postgres", &env, query);
    ensure!(real.status.success(), "PostgreSQL: {real:?}");
    ensure!(ours.status.success(), "walstream: {ours:?}\n{}", serve.log());
    ensure!(stdout(&real).starts_with("t|TLSv1.3|"), "{real:?}");
    ensure!(stdout(&ours) == stdout(&real), "pg_stat_ssl: {ours:?} vs PostgreSQL {real:?}");

    // pg_receivewal with verify-full receives every segment, byte for byte.
    let recv = ReceiveWal::new()?;
    recv.seed_partial(&first, scenario::seg_size())?;
    let mut cmd = recv.command(serve.port(), &["-E", &Lsn(end.0 - 1).to_string(), "-n"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(60))?;
    ensure!(
        out.status.success(),
        "pg_receivewal: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    assert_same_wal_files(recv.dir(), wal.path())?;

    // A client that trusts another root is refused by libpq before a word is said.
    let other = walstream_tests::certs::TestCa::new("another root")?;
    let other_root = pki.dir.write("other.crt", &other.pem(), false)?;
    let out =
        psql(serve.port(), "user=postgres dbname=postgres", &verify_full(&other_root), "SELECT 1");
    ensure!(!out.status.success(), "{out:?}");
    ensure!(stderr(&out, serve.port()).contains("certificate verify failed"), "{out:?}");
    Ok(())
}

/// Starts `walstream relay` from `upstream_port` into `dir` with `extra` arguments.
fn relay(upstream_port: u16, dir: &Path, extra: &[&str]) -> anyhow::Result<(ChildGuard, u16)> {
    walstream_tests::relay::start(WALSTREAM.as_ref(), upstream_port, dir, extra)
}

#[test]
fn pg_receivewal_streams_through_a_relay_with_verify_full() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let primary = PgCluster::start(&scenario::source_config())?;
    let start = primary.current_lsn()?;
    let dir = tempfile::tempdir()?;
    // Absolute file names this time.
    let cert = format!("ssl_cert_file={}", pki.dir.path().join("server.crt").display());
    let key_path = dir.path().join("relay.key");
    walstream_tests::certs::write_pem(&key_path, &pki.server_key, true)?;
    let key = format!("ssl_key_file={}", key_path.display());
    let (relay_proc, relay_port) =
        relay(primary.port(), dir.path(), &["-c", "ssl=on", "-c", &cert, "-c", &key])?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let end = primary.switch_wal()?;
    let seg_size = scenario::seg_size();
    let first = segment_file_name(TimeLineId(1), start.segno(seg_size), seg_size);
    let recv = ReceiveWal::new()?;
    recv.seed_partial(&first, seg_size)?;
    let mut cmd = recv.command(relay_port, &["-E", &Lsn(end.0 - 1).to_string(), "-n"]);
    for (k, v) in verify_full(&pki.root()) {
        cmd.env(k, v);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(90))?;
    ensure!(
        out.status.success(),
        "pg_receivewal through the relay: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        relay_proc.stderr_text()
    );
    let got = assert_same_wal_files(recv.dir(), &primary.wal_dir())?;
    ensure!(!got.is_empty(), "nothing received");
    // The relay's walsender was encrypted.
    let env = verify_full(&pki.root());
    let shown = psql(
        relay_port,
        "user=postgres dbname=postgres",
        &env,
        "SELECT ssl, version FROM pg_stat_ssl",
    );
    ensure!(stdout(&shown) == "t|TLSv1.3", "{shown:?}");
    Ok(())
}

/// hostssl for `postgres` and replication, hostnossl for `template1`.
const HBA: &[&str] = &[
    "local all all trust",
    "hostssl postgres all 127.0.0.1/32 trust",
    "hostssl replication all 127.0.0.1/32 trust",
    "hostnossl template1 all 127.0.0.1/32 trust",
];

/// conninfo, command, and the FATAL PostgreSQL gives (empty: it succeeds).
const CASES: &[(&str, &str, &str)] = &[
    (
        "user=postgres dbname=postgres sslmode=disable",
        "SELECT 1",
        "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption",
    ),
    ("user=postgres dbname=postgres sslmode=require", "SELECT 1", ""),
    (
        "user=postgres replication=true sslmode=disable",
        "IDENTIFY_SYSTEM",
        "FATAL:  no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"postgres\", no encryption",
    ),
    ("user=postgres replication=true sslmode=require", "IDENTIFY_SYSTEM", ""),
    (
        "user=postgres dbname=template1 sslmode=require",
        "SELECT 1",
        "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"template1\", SSL encryption",
    ),
    ("user=postgres dbname=template1 sslmode=disable", "SELECT 1", ""),
    // allow: plain first, refused, then again over TLS.
    ("user=postgres dbname=postgres sslmode=allow", "SELECT 1", ""),
];

#[test]
fn hostssl_and_hostnossl_refuse_as_postgresql_does() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let pg = ssl_primary(&pki, HBA)?;
    pg.switch_wal()?;
    let wal = scenario::copy_pg_wal(&pg)?;
    let conf = tempfile::tempdir()?;
    let hba_path = conf.path().join("pg_hba.conf");
    std::fs::write(&hba_path, HBA.join("\n") + "\n")?;
    pki.install(wal.path(), false)?;
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        wal.path(),
        &["--hba", hba_path.to_str().context("path")?, "-c", "ssl=on"],
    )?;
    let mut report = Vec::new();
    for &(conninfo, command, fatal) in CASES {
        let ok = fatal.is_empty();
        let real = psql(pg.port(), conninfo, &[], command);
        let ours = psql(serve.port(), conninfo, &[], command);
        let (real_err, our_err) = (stderr(&real, pg.port()), stderr(&ours, serve.port()));
        ensure!(real.status.success() == ok, "{conninfo}: PostgreSQL {real:?}");
        ensure!(real_err.contains(fatal), "{conninfo}: PostgreSQL says {real_err}");
        if ours.status.success() != ok || real_err != our_err {
            report.push(format!("{conninfo}:\n  PostgreSQL: {real_err}  walstream:  {our_err}"));
        }
    }
    ensure!(report.is_empty(), "differences:\n{}\n{}", report.join("\n"), serve.log());
    Ok(())
}

#[test]
fn serve_refuses_to_start_without_its_certificate_as_postgresql_does() -> anyhow::Result<()> {
    let wal = tempfile::tempdir()?;
    let err = ServeProcess::start(WALSTREAM.as_ref(), wal.path(), &["-c", "ssl=on"]).unwrap_err();
    // postgres -c ssl=on in a data directory without server.crt says the same.
    ensure!(
        format!("{err:#}").contains(
            "could not load server certificate file \"server.crt\": No such file or directory"
        ),
        "{err:#}"
    );
    Ok(())
}

/// Client certificates: `cert` for everyone over TLS (the harness's own psql, with
/// libpq's `prefer`, falls back to the plain `trust` line).
const CERT_HBA: &[&str] = &[
    "local all all trust",
    "hostssl all all 127.0.0.1/32 cert",
    "hostssl replication all 127.0.0.1/32 cert",
    "hostnossl all all 127.0.0.1/32 trust",
];

#[test]
fn psql_with_a_client_certificate_authenticates_to_serve_as_to_postgresql() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let root = pki.root().display().to_string();
    let mut cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string())
        .set("ssl_ca_file", &root);
    cfg = cfg.hba_lines(CERT_HBA);
    let pg = PgCluster::start(&cfg)?;
    pg.switch_wal()?;
    let wal = scenario::copy_pg_wal(&pg)?;
    pki.install(wal.path(), false)?;
    let conf = tempfile::tempdir()?;
    let hba_path = conf.path().join("pg_hba.conf");
    std::fs::write(&hba_path, CERT_HBA.join("\n") + "\n")?;
    let ca = format!("ssl_ca_file={root}");
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        wal.path(),
        &["--hba", hba_path.to_str().context("path")?, "-c", "ssl=on", "-c", &ca],
    )?;
    // Certificates for postgres and for alice, from the same root.
    let (crt, key) = pki.ca.issue("postgres", &[], false)?;
    let pg_crt = pki.dir.write("postgres.crt", &crt, false)?.display().to_string();
    let pg_key = pki.dir.write("postgres.key", &key, true)?.display().to_string();
    let (crt, key) = pki.ca.issue("alice", &[], false)?;
    let alice_crt = pki.dir.write("alice.crt", &crt, false)?.display().to_string();
    let alice_key = pki.dir.write("alice.key", &key, true)?.display().to_string();
    let verify = format!("sslmode=verify-full sslrootcert={root}");
    let as_postgres = format!("user=postgres {verify} sslcert={pg_crt} sslkey={pg_key}");
    let as_alice_cert = format!("user=postgres {verify} sslcert={alice_crt} sslkey={alice_key}");
    let none = pki.dir.path().join("none.crt").display().to_string();
    let no_cert = format!("user=postgres {verify} sslcert={none}");
    let query = "SELECT ssl, client_dn, client_serial, issuer_dn FROM pg_stat_ssl";
    let cases: [(&str, String, &str, &str); 5] = [
        ("client certificate", format!("{as_postgres} dbname=postgres"), query, ""),
        ("replication", format!("{as_postgres} replication=true"), "IDENTIFY_SYSTEM", ""),
        (
            "another name",
            format!("{as_alice_cert} dbname=postgres"),
            "SELECT 1",
            "FATAL:  certificate authentication failed for user \"postgres\"",
        ),
        (
            "no certificate",
            format!("{no_cert} dbname=postgres"),
            "SELECT 1",
            "FATAL:  connection requires a valid client certificate",
        ),
        (
            "no certificate, replication",
            format!("{no_cert} replication=true"),
            "IDENTIFY_SYSTEM",
            "FATAL:  connection requires a valid client certificate",
        ),
    ];
    let mut report = Vec::new();
    for (name, conninfo, command, fatal) in &cases {
        let real = psql(pg.port(), conninfo, &[], command);
        let ours = psql(serve.port(), conninfo, &[], command);
        let (real_err, our_err) = (stderr(&real, pg.port()), stderr(&ours, serve.port()));
        ensure!(real.status.success() == fatal.is_empty(), "{name}: PostgreSQL {real:?}");
        ensure!(real_err.contains(fatal), "{name}: PostgreSQL says {real_err}");
        if *command == query {
            // The client's subject, serial and issuer as PostgreSQL shows them.
            ensure!(stdout(&real).starts_with("t|/CN=postgres|"), "{real:?}");
            if stdout(&ours) != stdout(&real) {
                report.push(format!(
                    "{name}: pg_stat_ssl {:?} vs {:?}",
                    stdout(&ours),
                    stdout(&real)
                ));
            }
        }
        if ours.status.success() != real.status.success() || real_err != our_err {
            report.push(format!("{name}:\n  PostgreSQL: {real_err}  walstream:  {our_err}"));
        }
    }
    ensure!(report.is_empty(), "differences:\n{}\n{}", report.join("\n"), serve.log());
    Ok(())
}

#[test]
fn psql_with_channel_binding_require_authenticates_to_serve() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    const SCRAM_HBA: &[&str] = &[
        "local all all trust",
        "hostssl all replicator 127.0.0.1/32 scram-sha-256",
        "hostssl replication replicator 127.0.0.1/32 scram-sha-256",
        "hostssl all md5user 127.0.0.1/32 md5",
        "host all postgres 127.0.0.1/32 trust",
    ];
    let pg = ssl_primary(&pki, SCRAM_HBA)?;
    pg.psql(
        "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'secret';
         SET password_encryption = 'md5';
         CREATE ROLE md5user LOGIN PASSWORD 'wonderland';",
    )?;
    let roles = pg.psql(
        "SELECT rolname || ':' || coalesce(rolpassword, '')
                || CASE WHEN rolsuper THEN ' SUPERUSER' ELSE '' END
                || CASE WHEN rolreplication THEN ' REPLICATION' ELSE '' END
         FROM pg_authid WHERE rolcanlogin ORDER BY rolname",
    )?;
    pg.switch_wal()?;
    let wal = scenario::copy_pg_wal(&pg)?;
    pki.install(wal.path(), false)?;
    let conf = tempfile::tempdir()?;
    let hba_path = conf.path().join("pg_hba.conf");
    std::fs::write(&hba_path, SCRAM_HBA.join("\n") + "\n")?;
    let pw_path = conf.path().join("passwords");
    std::fs::write(&pw_path, &roles)?;
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        wal.path(),
        &[
            "--hba",
            hba_path.to_str().context("path")?,
            "--passwords",
            pw_path.to_str().context("path")?,
            "-c",
            "ssl=on",
        ],
    )?;
    let root = pki.root().display().to_string();
    let tls = format!("sslmode=verify-full sslrootcert={root} channel_binding=require");
    let cases: [(String, &str, &str); 4] = [
        (format!("{tls} user=replicator password=secret dbname=postgres"), "SELECT 1", ""),
        (format!("{tls} user=replicator password=secret replication=true"), "IDENTIFY_SYSTEM", ""),
        (
            format!("{tls} user=replicator password=wrong dbname=postgres"),
            "SELECT 1",
            "FATAL:  password authentication failed for user \"replicator\"",
        ),
        (
            format!("{tls} user=md5user password=wonderland dbname=postgres"),
            "SELECT 1",
            "channel binding required but not supported by server's authentication request",
        ),
    ];
    let mut report = Vec::new();
    for (conninfo, command, fatal) in &cases {
        let real = psql(pg.port(), conninfo, &[], command);
        let ours = psql(serve.port(), conninfo, &[], command);
        let (real_err, our_err) = (stderr(&real, pg.port()), stderr(&ours, serve.port()));
        ensure!(real.status.success() == fatal.is_empty(), "{conninfo}: PostgreSQL {real:?}");
        ensure!(real_err.contains(fatal), "{conninfo}: PostgreSQL says {real_err}");
        if ours.status.success() != real.status.success() || real_err != our_err {
            report.push(format!("{conninfo}:\n  PostgreSQL: {real_err}  walstream:  {our_err}"));
        }
    }
    ensure!(report.is_empty(), "differences:\n{}\n{}", report.join("\n"), serve.log());
    Ok(())
}

#[test]
fn a_node_serves_tls_and_shows_it_in_pg_stat_ssl() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let pg = ssl_primary(&pki, &[])?;
    let node = walstream_tests::node::NodeDir::init(WALSTREAM.as_ref(), 1)?;
    // server.crt and server.key in the data directory, as PostgreSQL reads them.
    pki.install(&node.data_dir(), false)?;
    let running = node.start(&["ssl=on"])?;
    let env = verify_full(&pki.root());
    let query = "SELECT ssl, version, cipher, bits, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let real = psql(pg.port(), "user=postgres dbname=postgres", &env, query);
    let ours = psql(running.port(), "user=postgres dbname=postgres", &env, query);
    ensure!(real.status.success(), "PostgreSQL: {real:?}");
    ensure!(ours.status.success(), "node: {ours:?}");
    ensure!(stdout(&real).starts_with("t|TLSv1.3|"), "{real:?}");
    ensure!(stdout(&ours) == stdout(&real), "node {ours:?} vs PostgreSQL {real:?}");
    let shown = psql(running.port(), "user=postgres dbname=postgres", &env, "SHOW ssl");
    ensure!(stdout(&shown) == "on", "{shown:?}");
    Ok(())
}

#[test]
fn ssl_min_protocol_version_refuses_older_clients_as_postgresql_does() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let mut cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string())
        .set("ssl_min_protocol_version", "TLSv1.3");
    cfg = cfg.hba_lines(&["local all all trust", "host all all 127.0.0.1/32 trust"]);
    let pg = PgCluster::start(&cfg)?;
    pg.switch_wal()?;
    let wal = scenario::copy_pg_wal(&pg)?;
    pki.install(wal.path(), false)?;
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        wal.path(),
        &["-c", "ssl=on", "-c", "ssl_min_protocol_version=TLSv1.3"],
    )?;
    let mut report = Vec::new();
    for (conninfo, ok) in [
        ("user=postgres dbname=postgres sslmode=require ssl_max_protocol_version=TLSv1.2", false),
        ("user=postgres dbname=postgres sslmode=require", true),
    ] {
        let real = psql(pg.port(), conninfo, &[], "SELECT 1");
        let ours = psql(serve.port(), conninfo, &[], "SELECT 1");
        ensure!(real.status.success() == ok, "{conninfo}: PostgreSQL {real:?}");
        let (real_err, our_err) = (stderr(&real, pg.port()), stderr(&ours, serve.port()));
        if ours.status.success() != ok || real_err != our_err {
            report.push(format!("{conninfo}:\n  PostgreSQL: {real_err}  walstream:  {our_err}"));
        }
    }
    ensure!(report.is_empty(), "differences:\n{}\n{}", report.join("\n"), serve.log());
    Ok(())
}
