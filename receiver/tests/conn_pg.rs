//! `ReplicationConn` against a real PostgreSQL 15: every authentication method, the
//! password file, replication commands and a CopyBoth exchange.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bytes::BytesMut;
use walstream_protocol::replication::{
    parse_server_copy_data, ServerCopyData, StandbyStatusUpdate, TimestampTz,
};
use walstream_protocol::Lsn;
use walstream_receiver::conn::{
    ConnError, CopyEvent, ReplicationConn, ReplicationMode, StartOutcome,
};
use walstream_receiver::conninfo::ConnInfo;
use walstream_tests::{wait_for, PgCluster, PgConfig};

const HBA: &[&str] = &[
    "local all all trust",
    "host all postgres 127.0.0.1/32 trust",
    "host replication postgres 127.0.0.1/32 trust",
    "host replication pwuser 127.0.0.1/32 password",
    "host replication md5user 127.0.0.1/32 md5",
    "host replication scramuser 127.0.0.1/32 scram-sha-256",
    "host all scramuser 127.0.0.1/32 scram-sha-256",
];

fn info(cluster: &PgCluster, extra: &str) -> ConnInfo {
    let s = format!("host=127.0.0.1 port={} {extra}", cluster.port());
    // No environment: no PGPASSWORD or ~/.pgpass of the machine running the tests.
    ConnInfo::parse_with_env(&s, &|k| (k == "USER").then(|| "postgres".to_string())).unwrap()
}

async fn physical(info: &ConnInfo) -> Result<ReplicationConn, ConnError> {
    ReplicationConn::connect(info, ReplicationMode::Physical).await
}

fn auth_cluster() -> PgCluster {
    let cluster = PgCluster::start(&PgConfig::small_segments().hba_lines(HBA)).unwrap();
    cluster
        .psql(
            "CREATE ROLE pwuser LOGIN REPLICATION PASSWORD 'pw secret';
             CREATE ROLE scramuser LOGIN REPLICATION PASSWORD 'scr:am\\pw';
             CREATE ROLE norule LOGIN REPLICATION PASSWORD 'x';
             SET password_encryption = md5;
             CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'md5pw';",
        )
        .unwrap();
    cluster
}

#[tokio::test]
async fn authentication_methods() {
    let cluster = auth_cluster();
    let trust = physical(&info(&cluster, "user=postgres application_name=t")).await.unwrap();
    assert_eq!(trust.parameter("application_name"), Some("t"));
    trust.terminate().await;

    for (user, pw) in [("pwuser", "pw secret"), ("md5user", "md5pw"), ("scramuser", "scr:am\\pw")] {
        let conninfo =
            info(&cluster, &format!("user={user} password='{}'", pw.replace('\\', "\\\\")));
        let conn = physical(&conninfo).await.unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(conn.parameter("session_authorization"), Some(user));
        conn.terminate().await;
    }

    // SCRAM for an ordinary (non-replication) connection too.
    let mut conn = ReplicationConn::connect(
        &info(&cluster, "user=scramuser password='scr:am\\\\pw' dbname=postgres"),
        ReplicationMode::Off,
    )
    .await
    .unwrap();
    let r = conn.simple_query("SELECT current_user, 1 + 1").await.unwrap();
    assert_eq!((r.get_text(0, 0), r.get_text(0, 1)), (Some("scramuser"), Some("2")));
    assert_eq!(r.tag, "SELECT 1");
    conn.terminate().await;
}

#[tokio::test]
async fn authentication_failures() {
    let cluster = auth_cluster();
    for user in ["pwuser", "md5user", "scramuser"] {
        let err =
            physical(&info(&cluster, &format!("user={user} password=wrong"))).await.unwrap_err();
        let fields = err.server_fields().unwrap_or_else(|| panic!("{user}: {err}"));
        assert_eq!(fields.severity, "FATAL");
        assert_eq!(fields.code, "28P01");
        assert_eq!(fields.message, format!("password authentication failed for user \"{user}\""));
        assert!(!err.is_transient());

        let err = physical(&info(&cluster, &format!("user={user}"))).await.unwrap_err();
        assert!(matches!(err, ConnError::Auth(_)), "{user}: {err:?}");
        assert_eq!(err.to_string(), "fe_sendauth: no password supplied");
    }

    let err = physical(&info(&cluster, "user=norule password=x")).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("28000"));
    assert_eq!(
        err.server_fields().map(|f| f.message.as_str()),
        Some(
            "no pg_hba.conf entry for replication connection from host \"127.0.0.1\", \
             user \"norule\", no encryption"
        )
    );

    // The cluster has ssl = off: it answers N to SSLRequest.
    let err = physical(&info(&cluster, "user=postgres sslmode=require")).await.unwrap_err();
    assert_eq!(err.to_string(), "server does not support SSL, but SSL was required");
    physical(&info(&cluster, "user=postgres sslmode=prefer")).await.unwrap().terminate().await;
    physical(&info(&cluster, "user=postgres sslmode=allow")).await.unwrap().terminate().await;
}

#[tokio::test]
async fn password_file() {
    let cluster = auth_cluster();
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    fs::write(
        &passfile,
        format!(
            "# for the tests\n127.0.0.1:{}:postgres:scramuser:nope\n\
             127.0.0.1:{}:replication:scramuser:scr\\:am\\\\pw\n*:*:*:md5user:md5pw\n",
            cluster.port(),
            cluster.port()
        ),
    )
    .unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    let with_file =
        |user: &str| info(&cluster, &format!("user={user} passfile='{}'", passfile.display()));
    // Physical connections look the password up for database "replication".
    physical(&with_file("scramuser")).await.unwrap().terminate().await;
    physical(&with_file("md5user")).await.unwrap().terminate().await;

    // With group or world access the file is ignored, as libpq does.
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o644)).unwrap();
    let err = physical(&with_file("md5user")).await.unwrap_err();
    assert_eq!(err.to_string(), "fe_sendauth: no password supplied");
}

async fn replication_conn(cluster: &PgCluster) -> ReplicationConn {
    physical(&info(cluster, "user=postgres application_name=conn_pg")).await.unwrap()
}

#[tokio::test]
async fn replication_commands() {
    let cluster = PgCluster::start(&PgConfig::small_segments()).unwrap();
    let mut conn = replication_conn(&cluster).await;
    let version = conn.server_version_num().unwrap();
    assert!((150_000..160_000).contains(&version), "{version}");
    assert_eq!(conn.parameter("integer_datetimes"), Some("on"));
    assert!(conn.backend_key().is_some());

    let ident = conn.simple_query("IDENTIFY_SYSTEM").await.unwrap();
    assert_eq!(ident.columns.len(), 4);
    assert_eq!(ident.rows.len(), 1);
    assert_eq!(ident.tag, "IDENTIFY_SYSTEM");
    let sysid = cluster.psql("SELECT system_identifier FROM pg_control_system()").unwrap();
    assert_eq!(ident.get_text(0, 0), Some(sysid.as_str()));
    assert_eq!(ident.get_text(0, 1), Some("1"));
    assert_eq!(ident.get_text(0, 3), None, "dbname is NULL for a physical connection");

    let size = conn.simple_query("SHOW wal_segment_size").await.unwrap();
    assert_eq!(size.get_text(0, 0), Some("1MB"));
    assert_eq!(size.tag, "SHOW");

    let err = conn.simple_query("START_REPLICATION SLOT \"nosuch\" 0/0").await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("42704"));
    // The connection is still usable after an ERROR.
    assert_eq!(conn.simple_query("IDENTIFY_SYSTEM").await.unwrap().rows.len(), 1);
    conn.terminate().await;
}

#[tokio::test]
async fn copy_both_stream() {
    let cluster = PgCluster::start(&PgConfig::small_segments()).unwrap();
    let mut conn = replication_conn(&cluster).await;
    let ident = conn.simple_query("IDENTIFY_SYSTEM").await.unwrap();
    let flush: Lsn = ident.get_text(0, 2).unwrap().parse().unwrap();
    let seg_start = Lsn(flush.0 - flush.0 % (1 << 20));

    // walsender.c sends CopyBothResponse before checking the start point: the ERROR
    // comes as the first message in COPY mode.
    let ahead = conn.start_copy_both("START_REPLICATION 5/0 TIMELINE 1").await.unwrap();
    assert_eq!(ahead, StartOutcome::CopyBoth);
    let err = conn.recv_copy().await.unwrap_err();
    let fields = err.server_fields().unwrap();
    assert_eq!((fields.severity.as_str(), fields.code.as_str()), ("ERROR", "XX000"));
    assert!(
        fields.message.starts_with(
            "requested starting point 5/0 is ahead of the WAL flush position of this server "
        ),
        "{}",
        fields.message
    );

    let sql = format!("START_REPLICATION {seg_start} TIMELINE 1");
    assert_eq!(conn.start_copy_both(&sql).await.unwrap(), StartOutcome::CopyBoth);
    let mut received = seg_start;
    let mut first = true;
    while received < flush {
        let CopyEvent::CopyData(data) = conn.recv_copy().await.unwrap() else {
            panic!("expected CopyData");
        };
        if let ServerCopyData::XLogData(w) = parse_server_copy_data(data).unwrap() {
            if first {
                assert_eq!(w.start, seg_start, "the first XLogData starts at the segment start");
                first = false;
            }
            assert_eq!(w.start, received, "contiguous WAL");
            received = Lsn(w.start.0 + w.data.len() as u64);
        }
    }

    let mut reply = BytesMut::new();
    StandbyStatusUpdate {
        write: received,
        flush: received,
        apply: Lsn(0),
        send_time: TimestampTz::from_system_time(std::time::SystemTime::now()),
        reply_requested: true,
    }
    .encode(&mut reply);
    conn.send_copy_data(&reply).await.unwrap();
    let sql = "SELECT write_lsn FROM pg_stat_replication WHERE application_name = 'conn_pg'";
    wait_for("the status update", Duration::from_secs(10), || {
        Ok((cluster.psql(sql)? == received.to_string()).then_some(()))
    })
    .unwrap();

    conn.send_copy_done().await.unwrap();
    loop {
        match conn.recv_copy().await.unwrap() {
            CopyEvent::CopyData(_) => {}
            CopyEvent::CopyDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let end = conn.finish_copy().await.unwrap();
    assert_eq!(end.next_timeline, None);
    assert_eq!(end.command_tags, ["START_STREAMING", "START_REPLICATION"]);
    assert!(!conn.has_buffered());
    assert_eq!(conn.try_recv_copy().unwrap(), None);
    // Back to idle: another command works.
    assert_eq!(conn.simple_query("IDENTIFY_SYSTEM").await.unwrap().rows.len(), 1);
    conn.terminate().await;
}

#[tokio::test]
async fn connect_timeout_and_refusal() {
    // A listener that accepts and never answers: connect_timeout ends the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = format!("host=127.0.0.1 port={port} user=u connect_timeout=2 sslmode=disable");
    let conninfo = ConnInfo::parse_with_env(&s, &|_| None).unwrap();
    let started = std::time::Instant::now();
    let err = ReplicationConn::connect(&conninfo, ReplicationMode::Physical).await.unwrap_err();
    assert!(matches!(err, ConnError::Timeout), "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(err.is_transient());
    drop(listener);

    let err = ReplicationConn::connect(&conninfo, ReplicationMode::Physical).await.unwrap_err();
    assert!(matches!(err, ConnError::Connect { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("connection to server at \"127.0.0.1\", port {port} failed: ")));
    assert!(err.is_transient());
}
