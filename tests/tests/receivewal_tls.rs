//! `walstream receivewal` over TLS from a real PostgreSQL 15 primary with `ssl=on` and
//! `hostssl`-only rules (issue 11 §1): with `sslmode=verify-full` it streams segments
//! byte-identical to the primary's; with the wrong root, the wrong host name, an expired
//! server certificate, a missing root file, or no TLS at all it is refused with the text
//! psql (libpq) prints on the same setup, compared in the test.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::ensure;
use walstream_tests::certs::{ServerPki, TestCa};
use walstream_tests::{
    assert_same_wal_files, pg_bin, pg_command, run_bounded, scenario, Lsn, PgCluster,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// Replication and SQL over TLS only (the harness's own psql uses the Unix socket).
const HBA: &[&str] = &[
    "local all all trust",
    "hostssl replication all 127.0.0.1/32 trust",
    "hostssl all all 127.0.0.1/32 trust",
];

fn primary(pki: &ServerPki) -> anyhow::Result<PgCluster> {
    let cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string())
        .hba_lines(HBA);
    PgCluster::start(&cfg)
}

/// `walstream receivewal -D dir -d conninfo -n` with `args`.
fn receivewal(conninfo: &str, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(WALSTREAM);
    cmd.arg("receivewal").arg("-D").arg(dir).args(["-d", conninfo, "-n"]).args(args);
    run_bounded(&mut cmd, Duration::from_secs(60)).unwrap()
}

/// psql with the same conninfo on a replication connection.
fn psql(conninfo: &str) -> Output {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XAtw", "-d"])
        .arg(format!("{conninfo} replication=true"))
        .args(["-c", "IDENTIFY_SYSTEM"]);
    run_bounded(&mut cmd, Duration::from_secs(30)).unwrap()
}

/// What follows `error: ` on stderr (the program's name before it differs).
fn error_text(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    s.split_once("error: ").map_or_else(|| s.to_string(), |(_, rest)| rest.trim_end().to_string())
}

#[test]
fn receivewal_verify_full_streams_and_refusals_read_as_libpq() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let pg = primary(&pki)?;
    let root = pki.root().display().to_string();
    let base = format!("host=localhost hostaddr=127.0.0.1 port={} user=postgres", pg.port());
    let seg_size = scenario::seg_size();

    // verify-full: streams every segment, byte for byte.
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g")?;
    let first = scenario::first_segment(&pg)?;
    let end = pg.switch_wal()?;
    let dir = tempfile::tempdir()?;
    std::fs::File::create(dir.path().join(format!("{first}.partial")))?
        .set_len(u64::from(seg_size.bytes()))?;
    let good = format!("{base} sslmode=verify-full sslrootcert={root}");
    let out = receivewal(&good, dir.path(), &["-E", &Lsn(end.0 - 1).to_string()]);
    ensure!(out.status.success(), "receivewal verify-full: {}", error_text(&out));
    let got = assert_same_wal_files(dir.path(), &pg.wal_dir())?;
    ensure!(!got.is_empty(), "nothing received");
    // sslmode=allow: refused in plain text by the hostssl rules, then again over TLS.
    let dir = tempfile::tempdir()?;
    std::fs::File::create(dir.path().join(format!("{first}.partial")))?
        .set_len(u64::from(seg_size.bytes()))?;
    let allow = format!("{base} sslmode=allow");
    let out = receivewal(&allow, dir.path(), &["-E", &Lsn(end.0 - 1).to_string()]);
    ensure!(out.status.success(), "receivewal sslmode=allow: {}", error_text(&out));
    assert_same_wal_files(dir.path(), &pg.wal_dir())?;

    // Refusals: each as psql says it.
    let other = TestCa::new("another root")?;
    let other_root = pki.dir.write("other.crt", &other.pem(), false)?.display().to_string();
    let missing = pki.dir.path().join("missing.crt").display().to_string();
    let mut cases = vec![
        ("wrong root", format!("{base} sslmode=verify-full sslrootcert={other_root}")),
        ("wrong root, verify-ca", format!("{base} sslmode=verify-ca sslrootcert={other_root}")),
        (
            "wrong host name",
            format!(
                "host=wronghost hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert={root}",
                pg.port()
            ),
        ),
        ("missing root file", format!("{base} sslmode=verify-full sslrootcert={missing}")),
        ("no TLS", format!("{base} sslmode=disable")),
    ];
    let mut report = Vec::new();
    let mut check = |name: &str, conninfo: &str| -> anyhow::Result<()> {
        let theirs = psql(conninfo);
        ensure!(!theirs.status.success(), "{name}: psql connected: {theirs:?}");
        let ours = receivewal(conninfo, tempfile::tempdir()?.path(), &[]);
        ensure!(!ours.status.success(), "{name}: walstream receivewal connected");
        let (want, got) = (error_text(&theirs), error_text(&ours));
        // A server's FATAL is printed without libpq's "connection to server at ...
        // failed: " before it, as walstream receivewal prints every FATAL at connect.
        let want = if got.starts_with("FATAL:") {
            want.split_once("failed: ").map_or(want.clone(), |(_, w)| w.to_string())
        } else {
            want
        };
        if want != got {
            report.push(format!("{name}:\n  psql:     {want}\n  walstream: {got}"));
        }
        Ok(())
    };
    for (name, conninfo) in &cases {
        check(name, conninfo)?;
    }

    // An expired server certificate, loaded by a reload.
    let (crt, key) = pki.ca.issue("localhost", &["localhost", "127.0.0.1"], true)?;
    let crt_path = pki.dir.write("expired.crt", &crt, false)?;
    let key_path = pki.dir.write("expired.key", &key, true)?;
    pg.append_conf(&format!(
        "ssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        crt_path.display(),
        key_path.display()
    ))?;
    pg.psql("SELECT pg_reload_conf()")?;
    std::thread::sleep(Duration::from_millis(500));
    cases.clear();
    check("expired certificate", &good)?;
    ensure!(report.is_empty(), "differences from libpq:\n{}", report.join("\n"));
    // ... and with verification off (require without a root file) it connects
    // (over TLS 1.2 this time)
    let require =
        format!("{base} sslmode=require sslrootcert={missing} ssl_max_protocol_version=TLSv1.2");
    let theirs = psql(&require);
    ensure!(theirs.status.success(), "psql require: {theirs:?}");
    let dir = tempfile::tempdir()?;
    std::fs::File::create(dir.path().join(format!("{first}.partial")))?
        .set_len(u64::from(seg_size.bytes()))?;
    let ours = receivewal(&require, dir.path(), &["-E", &Lsn(end.0 - 1).to_string()]);
    ensure!(ours.status.success(), "receivewal require: {}", error_text(&ours));
    Ok(())
}

#[test]
fn receivewal_authenticates_with_a_client_certificate() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let root = pki.root().display().to_string();
    let cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string())
        .set("ssl_ca_file", &root)
        // The harness's own psql (sslmode=prefer) falls back to the plain trust line.
        .hba_lines(&[
            "local all all trust",
            "hostssl replication all 127.0.0.1/32 cert",
            "hostnossl all all 127.0.0.1/32 trust",
        ]);
    let pg = PgCluster::start(&cfg)?;
    let (crt, key) = pki.ca.issue("postgres", &[], false)?;
    let crt = pki.dir.write("postgres.crt", &crt, false)?.display().to_string();
    let key = pki.dir.write("postgres.key", &key, true)?.display().to_string();
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g")?;
    let first = scenario::first_segment(&pg)?;
    let end = pg.switch_wal()?;
    let dir = tempfile::tempdir()?;
    std::fs::File::create(dir.path().join(format!("{first}.partial")))?
        .set_len(u64::from(scenario::seg_size().bytes()))?;
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert={root} sslcert={crt} sslkey={key}",
        pg.port()
    );
    let out = receivewal(&conninfo, dir.path(), &["-E", &Lsn(end.0 - 1).to_string()]);
    ensure!(out.status.success(), "receivewal with a client certificate: {}", error_text(&out));
    assert_same_wal_files(dir.path(), &pg.wal_dir())?;
    // Without one, refused as psql is.
    let none = pki.dir.path().join("none.crt").display().to_string();
    let bare = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert={root} sslcert={none}",
        pg.port()
    );
    let theirs = psql(&bare);
    let ours = receivewal(&bare, tempfile::tempdir()?.path(), &[]);
    ensure!(!theirs.status.success() && !ours.status.success());
    ensure!(
        error_text(&theirs).ends_with(&error_text(&ours)),
        "psql: {}\nwalstream: {}",
        error_text(&theirs),
        error_text(&ours)
    );
    Ok(())
}

#[test]
fn receivewal_with_channel_binding_require_streams_from_postgresql() -> anyhow::Result<()> {
    let pki = ServerPki::new()?;
    let root = pki.root().display().to_string();
    let cfg = scenario::source_config()
        .set("ssl", "on")
        .set("ssl_cert_file", &pki.dir.path().join("server.crt").display().to_string())
        .set("ssl_key_file", &pki.dir.path().join("server.key").display().to_string())
        .hba_lines(&[
            "local all all trust",
            "hostssl replication replicator 127.0.0.1/32 scram-sha-256",
            "hostssl replication md5user 127.0.0.1/32 md5",
            "host replication replicator 127.0.0.1/32 scram-sha-256",
            "host all postgres 127.0.0.1/32 trust",
        ]);
    let pg = PgCluster::start(&cfg)?;
    pg.psql(
        "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'secret';
         SET password_encryption = 'md5';
         CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'wonderland';
         CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g",
    )?;
    let first = scenario::first_segment(&pg)?;
    let end = pg.switch_wal()?;
    let base = format!(
        "host=localhost hostaddr=127.0.0.1 port={} sslmode=verify-full sslrootcert={root} channel_binding=require",
        pg.port()
    );
    // SCRAM-SHA-256-PLUS: streams.
    let dir = tempfile::tempdir()?;
    std::fs::File::create(dir.path().join(format!("{first}.partial")))?
        .set_len(u64::from(scenario::seg_size().bytes()))?;
    let good = format!("{base} user=replicator password=secret");
    let out = receivewal(&good, dir.path(), &["-E", &Lsn(end.0 - 1).to_string()]);
    ensure!(out.status.success(), "receivewal channel_binding=require: {}", error_text(&out));
    assert_same_wal_files(dir.path(), &pg.wal_dir())?;
    // md5 cannot bind; with TLS off SCRAM cannot either: refused as libpq refuses.
    for conninfo in [
        format!("{base} user=md5user password=wonderland"),
        format!(
            "host=127.0.0.1 port={} sslmode=disable channel_binding=require user=replicator password=secret",
            pg.port()
        ),
    ] {
        let theirs = psql(&conninfo);
        let ours = receivewal(&conninfo, tempfile::tempdir()?.path(), &[]);
        ensure!(!theirs.status.success() && !ours.status.success(), "{conninfo}");
        ensure!(error_text(&theirs).contains("channel binding"), "{}", error_text(&theirs));
        ensure!(
            error_text(&theirs).ends_with(&error_text(&ours)),
            "{conninfo}:\npsql: {}\nwalstream: {}",
            error_text(&theirs),
            error_text(&ours)
        );
    }
    Ok(())
}
