//! The PostgresMain-style loop, driven by a real client (tokio-postgres, simple and
//! extended protocol) through a test QueryHandler, and by raw bytes for the catalogue of
//! malformed input. Texts and SQLSTATEs are PostgreSQL 15's (CONFORMANCE §7).

#![allow(clippy::result_large_err)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{errors, start_server, RawClient};
use tokio_postgres::{NoTls, SimpleQueryMessage};
use walstream_sender::backend::query::{
    Column, Datum, DatumType, HandlerFuture, Param, QueryHandler, QueryOutput, QuerySession,
    SessionInfo, SimpleQueryResult, StatementDescription,
};
use walstream_sender::config::Settings;
use walstream_sender::protocol::wire::{BackendMessage, ErrorFields, TransactionStatus};

/// A handler with a few statements: `values N`, `echo $1`, `fail`, `slow`, and empty.
struct TestHandler;

struct TestSession;

impl QueryHandler for TestHandler {
    fn session(&self, _info: &SessionInfo) -> Box<dyn QuerySession> {
        Box::new(TestSession)
    }
}

fn describe(sql: &str) -> Result<StatementDescription, ErrorFields> {
    let sql = sql.trim();
    Ok(if sql.is_empty() {
        StatementDescription { params: vec![], columns: None }
    } else if sql.starts_with("values") {
        StatementDescription {
            params: vec![],
            columns: Some(vec![
                Column::new("n", DatumType::Int4),
                Column::new("t", DatumType::Text),
            ]),
        }
    } else if sql == "echo $1" {
        StatementDescription {
            params: vec![25],
            columns: Some(vec![Column::new("echo", DatumType::Text)]),
        }
    } else if sql == "fail" || sql == "slow" {
        StatementDescription { params: vec![], columns: None }
    } else {
        return Err(ErrorFields::error("42601", format!("syntax error at or near \"{sql}\"")));
    })
}

async fn run(sql: &str, params: &[Param]) -> Result<QueryOutput, ErrorFields> {
    let sql = sql.trim();
    describe(sql)?;
    if sql.is_empty() {
        return Ok(QueryOutput::Empty);
    }
    if let Some(n) = sql.strip_prefix("values") {
        let n: i32 = n.trim().parse().unwrap_or(0);
        return Ok(QueryOutput::Rows {
            columns: describe(sql)?.columns.unwrap(),
            rows: (1..=n).map(|i| vec![Datum::Int4(i), Datum::Text(format!("row {i}"))]).collect(),
            tag: format!("SELECT {n}"),
        });
    }
    if sql == "echo $1" {
        let v = params[0].to_text(0)?;
        return Ok(QueryOutput::Rows {
            columns: describe(sql)?.columns.unwrap(),
            rows: vec![vec![v.map_or(Datum::Null, Datum::Text)]],
            tag: "SELECT 1".into(),
        });
    }
    if sql == "slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return Ok(QueryOutput::Command("SLOW".into()));
    }
    Err(ErrorFields::error("P0001", "test failure"))
}

impl QuerySession for TestSession {
    fn simple_query<'a>(&'a mut self, sql: &'a str) -> HandlerFuture<'a, SimpleQueryResult> {
        Box::pin(async move {
            let mut result = SimpleQueryResult::default();
            let parts: Vec<&str> = sql.split(';').filter(|s| !s.trim().is_empty()).collect();
            if parts.is_empty() {
                result.outputs.push(QueryOutput::Empty);
            }
            for part in parts {
                match run(part, &[]).await {
                    Ok(o) => result.outputs.push(o),
                    Err(e) => {
                        result.error = Some(e);
                        break;
                    }
                }
            }
            result
        })
    }
    fn describe<'a>(
        &'a mut self,
        sql: &'a str,
        _t: &'a [u32],
    ) -> HandlerFuture<'a, Result<StatementDescription, ErrorFields>> {
        Box::pin(async move { describe(sql) })
    }
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> HandlerFuture<'a, Result<QueryOutput, ErrorFields>> {
        Box::pin(run(sql, params))
    }
}

async fn server() -> common::TestServer {
    start_server(Arc::new(TestHandler), Settings::default()).await
}

async fn client(addr: std::net::SocketAddr) -> tokio_postgres::Client {
    let conninfo = format!("host={} port={} user=postgres dbname=postgres", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn tokio_postgres_simple_and_extended_queries() {
    let srv = server().await;
    let c = client(srv.addr).await;
    // Simple protocol, two statements in one Query.
    let msgs = c.simple_query("values 2; values 1").await.unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        [("1".into(), "row 1".into()), ("2".into(), "row 2".into()), ("1".into(), "row 1".into())]
    );
    // Extended protocol: binary results, a text parameter, a prepared statement reused.
    let rows = c.query("values 3", &[]).await.unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, "row 1".into()), (2, "row 2".into()), (3, "row 3".into())]);
    let stmt = c.prepare("echo $1").await.unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::TEXT]);
    for word in ["hello", "wörld"] {
        let row = c.query_one(&stmt, &[&word]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), word);
    }
    let row = c.query_one(&stmt, &[&None::<String>]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    // Errors leave the connection usable, in both protocols.
    let e = c.query("fail", &[]).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "P0001");
    let e = c.simple_query("values 1; fail; values 2").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().message(), "test failure");
    let e = c.prepare("bogus").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42601");
    assert_eq!(c.query("values 1", &[]).await.unwrap().len(), 1);
    srv.task.abort();
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Parse/Bind/Execute with a row limit: PortalSuspended, then the rest and CommandComplete.
#[tokio::test]
async fn execute_with_a_row_limit_suspends_the_portal() {
    let srv = server().await;
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    let mut parse = cstr("");
    parse.extend(cstr("values 3"));
    parse.extend(0u16.to_be_bytes());
    c.send_msg(b'P', &parse).await;
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend([0, 0, 0, 0, 0, 0]); // no param formats, no params, no result formats
    c.send_msg(b'B', &bind).await;
    let mut exec = cstr("");
    exec.extend(2i32.to_be_bytes());
    c.send_msg(b'E', &exec).await;
    c.send_msg(b'E', &exec).await;
    c.send_msg(b'S', &[]).await;
    let msgs = c.until_ready().await;
    let kinds: Vec<String> = msgs
        .iter()
        .map(|m| match m {
            BackendMessage::ParseComplete => "1".into(),
            BackendMessage::BindComplete => "2".into(),
            BackendMessage::DataRow(_) => "D".into(),
            BackendMessage::PortalSuspended => "s".into(),
            BackendMessage::CommandComplete(t) => format!("C {t}"),
            BackendMessage::ReadyForQuery(_) => "Z".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["1", "2", "D", "D", "s", "D", "C SELECT 3", "Z"]);
    srv.task.abort();
}

/// After an error in the extended protocol every message up to Sync is skipped, and Sync
/// answers exactly one ReadyForQuery (postgres.c: ignore_till_sync).
#[tokio::test]
async fn an_extended_protocol_error_skips_until_sync() {
    let srv = server().await;
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    let mut bind = cstr("");
    bind.extend(cstr("nosuch"));
    bind.extend([0, 0, 0, 0, 0, 0]);
    c.send_msg(b'B', &bind).await;
    let mut exec = cstr("");
    exec.extend(0i32.to_be_bytes());
    c.send_msg(b'E', &exec).await;
    c.send_msg(b'Q', &cstr("values 1")).await; // skipped too
    c.send_msg(b'S', &[]).await;
    let msgs = c.until_ready().await;
    assert_eq!(
        errors(&msgs),
        [("ERROR".into(), "26000".into(), "prepared statement \"nosuch\" does not exist".into())]
    );
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(matches!(msgs[1], BackendMessage::ReadyForQuery(TransactionStatus::Idle)));
    // And the connection goes on.
    let msgs = c.query("values 1").await;
    assert!(errors(&msgs).is_empty());
    srv.task.abort();
}

/// `H` flushes without a visible answer; `d c f` are ignored outside COPY; an empty query
/// gets EmptyQueryResponse; `X` ends the backend and frees its registry entry.
#[tokio::test]
async fn flush_copy_messages_empty_query_and_terminate() {
    let srv = server().await;
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    assert_eq!(srv.server.registry.list().len(), 1);
    c.send_msg(b'H', &[]).await;
    c.send_msg(b'd', b"xyz").await;
    c.send_msg(b'c', &[]).await;
    c.send_msg(b'f', &cstr("oops")).await;
    let msgs = c.query("").await;
    assert!(matches!(msgs[0], BackendMessage::EmptyQueryResponse), "{msgs:?}");
    assert_eq!(msgs.len(), 2);
    c.send_msg(b'X', &[]).await;
    assert!(c.until_closed().await.is_empty());
    for _ in 0..100 {
        if srv.server.registry.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(srv.server.registry.list().is_empty());
    srv.task.abort();
}

/// The catalogue of malformed input: each gets PostgreSQL's answer, and the server keeps
/// serving other connections.
#[tokio::test]
async fn malformed_input_gets_postgresql_answers_and_the_server_goes_on() {
    let srv = server().await;
    let (mut bystander, _) = RawClient::startup(srv.addr, &[]).await;

    // Unknown message type: FATAL 08P01.
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    c.send_msg(b'x', &[]).await;
    let msgs = c.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [("FATAL".into(), "08P01".into(), "invalid frontend message type 120".into())]
    );

    // A length word below 4, and an oversize Sync: closed without a word (COMMERROR).
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    c.send(&[b'Q', 0, 0, 0, 2]).await;
    assert!(c.until_closed().await.is_empty());
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    c.send(&[b'S', 0, 0, 0x4e, 0x20]).await; // 20000 > 10000
    assert!(c.until_closed().await.is_empty());

    // A body that does not parse: an ERROR, and the connection goes on.
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    c.send_msg(b'Q', b"no terminator").await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].1, "08P01");
    assert!(errors(&c.query("values 1").await).is_empty());

    // `p` outside authentication.
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    c.send_msg(b'p', &cstr("secret")).await;
    let msgs = c.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [("FATAL".into(), "08P01".into(), "invalid frontend message type 112".into())]
    );

    // Garbage startup packets.
    let mut c = RawClient::connect(srv.addr).await;
    c.send(&[0, 0, 0, 3]).await;
    assert!(c.until_closed().await.is_empty(), "invalid length of startup packet is only logged");
    let mut c = RawClient::connect(srv.addr).await;
    c.send(&[0, 0, 0, 8, 0, 4, 0, 1]).await;
    let msgs = c.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [(
            "FATAL".into(),
            "0A000".into(),
            "unsupported frontend protocol 4.1: server supports 3.0 to 3.0".into()
        )]
    );
    let mut c = RawClient::connect(srv.addr).await;
    let mut pkt = vec![0, 0, 0, 0, 0, 3, 0, 0];
    pkt.extend(b"user\0postgres\0replication\0maybe\0\0");
    let len = pkt.len() as u32;
    pkt[..4].copy_from_slice(&len.to_be_bytes());
    c.send(&pkt).await;
    let msgs = c.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [(
            "FATAL".into(),
            "22023".into(),
            "invalid value for parameter \"replication\": \"maybe\"".into()
        )]
    );

    // Extended protocol in a replication connection: ERROR, skip to Sync, one Z.
    let (mut c, _) = RawClient::startup(srv.addr, &[("replication", "true")]).await;
    let mut parse = cstr("");
    parse.extend(cstr("IDENTIFY_SYSTEM"));
    parse.extend(0u16.to_be_bytes());
    c.send_msg(b'P', &parse).await;
    c.send_msg(b'D', b"S\0").await;
    c.send_msg(b'S', &[]).await;
    let msgs = c.until_ready().await;
    assert_eq!(
        errors(&msgs),
        [(
            "ERROR".into(),
            "08P01".into(),
            "extended query protocol not supported in a replication connection".into()
        )]
    );
    assert_eq!(msgs.len(), 2);
    c.send_msg(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    let msgs = c.until_ready().await;
    assert_eq!(
        errors(&msgs)[0].2,
        "fastpath function calls not supported in a replication connection"
    );
    let msgs = c.query("SELECT 1").await;
    assert_eq!(
        errors(&msgs),
        [(
            "ERROR".into(),
            "0A000".into(),
            "cannot execute SQL commands in WAL sender for physical replication".into()
        )]
    );

    // The bystander never noticed.
    assert!(errors(&bystander.query("values 2").await).is_empty());
    srv.task.abort();
}

/// SSLRequest and GSSENCRequest are answered `N`; bytes sent before the answer are refused.
#[tokio::test]
async fn ssl_and_gss_requests_are_declined() {
    let srv = server().await;
    let mut c = RawClient::connect(srv.addr).await;
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await;
    let mut n = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut n).await.unwrap();
    assert_eq!(&n, b"N");
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).await;
    tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut n).await.unwrap();
    assert_eq!(&n, b"N");
    // A second SSLRequest is an unsupported protocol.
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await;
    let msgs = c.until_closed().await;
    assert_eq!(
        errors(&msgs)[0].2,
        "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0"
    );
    // Data pipelined behind the SSLRequest.
    let mut c = RawClient::connect(srv.addr).await;
    let mut pkt = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    pkt.extend([0, 0, 0, 8, 0, 3, 0, 0]);
    c.send(&pkt).await;
    let mut n = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut n).await.unwrap();
    let msgs = c.until_closed().await;
    assert_eq!(errors(&msgs)[0].2, "received unencrypted data after SSL request");
    srv.task.abort();
}

/// The startup greeting is a PostgreSQL 15 server's: ParameterStatus in its order, then
/// BackendKeyData and ReadyForQuery; 3.1 and `_pq_` options get NegotiateProtocolVersion.
#[tokio::test]
async fn greeting_matches_postgresql_15() {
    let srv = server().await;
    let (_c, msgs) = RawClient::startup(srv.addr, &[("application_name", "tester")]).await;
    let names: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            BackendMessage::ParameterStatus { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "application_name",
            "client_encoding",
            "DateStyle",
            "default_transaction_read_only",
            "in_hot_standby",
            "integer_datetimes",
            "IntervalStyle",
            "is_superuser",
            "server_encoding",
            "server_version",
            "session_authorization",
            "standard_conforming_strings",
            "TimeZone"
        ]
    );
    assert!(msgs.iter().any(|m| matches!(m, BackendMessage::ParameterStatus { name, value } if name == "server_version" && value.starts_with("15."))));
    assert!(matches!(msgs[msgs.len() - 2], BackendMessage::BackendKeyData { .. }));
    let mut c = RawClient::connect(srv.addr).await;
    let mut pkt = vec![0, 0, 0, 0, 0, 3, 0, 1];
    pkt.extend(b"user\0postgres\0_pq_.extra\0x\0\0");
    let len = pkt.len() as u32;
    pkt[..4].copy_from_slice(&len.to_be_bytes());
    c.send(&pkt).await;
    let msgs = c.until_ready().await;
    assert!(
        msgs.iter().any(|m| matches!(m, BackendMessage::NegotiateProtocolVersion { .. })),
        "{msgs:?}"
    );
    srv.task.abort();
}

/// Cancel: a CancelRequest with the right key cancels a running query (57014); a wrong key
/// does nothing; an idle backend ignores it. Terminate ends a backend with FATAL 57P01.
#[tokio::test]
async fn cancel_and_terminate() {
    let srv = server().await;
    let c = client(srv.addr).await;
    let token = c.cancel_token();
    let slow = tokio::spawn(async move {
        let r = c.simple_query("slow").await;
        (c, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel_query(NoTls).await.unwrap();
    let (c, r) = tokio::time::timeout(Duration::from_secs(5), slow).await.unwrap().unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "57014");
    assert_eq!(e.as_db_error().unwrap().message(), "canceling statement due to user request");
    // Idle: no effect.
    token.cancel_query(NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.simple_query("values 1").await.unwrap().len(), 3);
    // Terminate from the registry (what pg_terminate_backend does).
    let (mut raw, msgs) = RawClient::startup(srv.addr, &[]).await;
    let pid = msgs
        .iter()
        .find_map(|m| match m {
            BackendMessage::BackendKeyData { pid, .. } => Some(*pid),
            _ => None,
        })
        .unwrap();
    assert!(srv.server.registry.terminate(pid));
    let msgs = raw.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [(
            "FATAL".into(),
            "57P01".into(),
            "terminating connection due to administrator command".into()
        )]
    );
    srv.task.abort();
}

/// Connection caps: max_connections for client backends, max_wal_senders for walsenders.
#[tokio::test]
async fn connection_limits() {
    let settings = Settings { max_connections: 1, max_wal_senders: 1, ..Settings::default() };
    let srv = start_server(Arc::new(TestHandler), settings).await;
    let (_a, _) = RawClient::startup(srv.addr, &[]).await;
    let (_w, _) = RawClient::startup(srv.addr, &[("replication", "true")]).await;
    for params in [&[][..], &[("replication", "true")][..]] {
        let mut c = RawClient::connect(srv.addr).await;
        let mut all = vec![("user".to_string(), "postgres".to_string())];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut out = bytes::BytesMut::new();
        walstream_sender::protocol::wire::StartupMessage::new(all).encode(&mut out);
        c.send(&out).await;
        let msgs = c.until_closed().await;
        assert_eq!(
            errors(&msgs),
            [("FATAL".into(), "53300".into(), "sorry, too many clients already".into())]
        );
    }
    srv.task.abort();
}
