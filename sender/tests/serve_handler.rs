//! What `walstream serve` answers on an ordinary connection: SELECT 1, SHOW, the
//! signalling functions with PostgreSQL 15's results and warnings, and 0A000 for the rest.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{errors, start_server_full, NoWal, RawClient};
use walstream_sender::auth::Roles;
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::protocol::wire::BackendMessage;
use walstream_sender::registry::Registry;
use walstream_sender::serve_handler::ServeHandler;

async fn serve() -> common::TestServer {
    let registry = Registry::new();
    let settings = Settings::default();
    let shown = settings.clone();
    let handler = ServeHandler::new(Arc::new(move |n: &str| shown.show(n)), registry.clone());
    let (hba, roles) = (HbaFile::loopback_trust(), Roles::permissive());
    start_server_full(Arc::new(handler), settings, hba, roles, NoWal::new(), registry).await
}

fn data(msgs: &[BackendMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            BackendMessage::DataRow(r) => Some(
                r.iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn notices(msgs: &[BackendMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            BackendMessage::NoticeResponse(f) => Some(format!("{}: {}", f.severity, f.message)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn select_one_show_and_unsupported_sql() {
    let srv = serve().await;
    let (mut c, _) = RawClient::startup(srv.addr, &[]).await;
    assert_eq!(data(&c.query("SELECT 1").await), [[Some("1".into())]]);
    assert_eq!(data(&c.query("show wal_sender_timeout;").await), [[Some("1min".into())]]);
    let msgs = c.query("SHOW nosuch").await;
    assert_eq!(errors(&msgs)[0].1, "42704");
    let msgs = c.query("CREATE TABLE t (a int)").await;
    assert_eq!(errors(&msgs), [("ERROR".into(), "0A000".into(), "feature not supported".into())]);
    srv.task.abort();
}

#[tokio::test]
async fn terminate_and_cancel_backends_by_pid() {
    let srv = serve().await;
    let (mut admin, _) = RawClient::startup(srv.addr, &[]).await;
    // No such backend: a WARNING and false, as PostgreSQL answers.
    let msgs = admin.query("SELECT pg_terminate_backend(1)").await;
    assert_eq!(notices(&msgs), ["WARNING: PID 1 is not a PostgreSQL backend process"]);
    assert_eq!(data(&msgs), [[Some("f".into())]]);
    let msgs = admin.query("SELECT pg_cancel_backend(1)").await;
    assert_eq!(data(&msgs), [[Some("f".into())]]);
    let msgs = admin.query("SELECT pg_terminate_backend(1, -1)").await;
    // signalfuncs.c: 22003, checked against PostgreSQL 15.18.
    assert_eq!(errors(&msgs)[0].1, "22003");
    assert_eq!(errors(&msgs)[0].2, "\"timeout\" must not be negative");
    // A live one: terminated with FATAL 57P01; with a timeout the call waits for it to go.
    let (mut victim, greeting) = RawClient::startup(srv.addr, &[("replication", "true")]).await;
    let pid = greeting
        .iter()
        .find_map(|m| match m {
            BackendMessage::BackendKeyData { pid, .. } => Some(*pid),
            _ => None,
        })
        .unwrap();
    let msgs = admin.query(&format!("SELECT pg_cancel_backend({pid})")).await;
    assert_eq!(data(&msgs), [[Some("t".into())]]);
    let msgs = admin.query(&format!("SELECT pg_terminate_backend({pid}, 5000)")).await;
    assert_eq!(data(&msgs), [[Some("t".into())]]);
    let msgs = victim.until_closed().await;
    assert_eq!(
        errors(&msgs),
        [(
            "FATAL".into(),
            "57P01".into(),
            "terminating connection due to administrator command".into()
        )]
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(srv.server.registry.get(pid).is_none());
    srv.task.abort();
}

/// `pg_stat_activity` and `pg_stat_replication` list the registry's backends with
/// PostgreSQL 15's columns; the signalling functions apply row by row.
#[tokio::test]
async fn stat_views_list_backends() {
    let srv = serve().await;
    let (mut admin, _) = RawClient::startup(srv.addr, &[("application_name", "admin")]).await;
    let (_ws, _) =
        RawClient::startup(srv.addr, &[("replication", "true"), ("application_name", "wal1")])
            .await;
    let msgs = admin.query("SELECT * FROM pg_stat_replication").await;
    let desc = msgs.iter().find_map(|m| match m {
        BackendMessage::RowDescription(f) => Some(f.clone()),
        _ => None,
    });
    let names: Vec<String> = desc.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names.len(), 20);
    assert_eq!(names[0], "pid");
    assert_eq!(names[10], "sent_lsn");
    let rows = data(&msgs);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][3].as_deref(), Some("wal1"));
    assert_eq!(rows[0][9].as_deref(), Some("startup"));
    assert_eq!(rows[0][18].as_deref(), Some("async"));
    let rows =
        data(&admin.query("select application_name, backend_type from pg_stat_activity").await);
    assert_eq!(
        rows,
        [
            [Some("admin".to_string()), Some("client backend".to_string())],
            [Some("wal1".to_string()), Some("walsender".to_string())]
        ]
    );
    let msgs = admin.query("SELECT nosuch FROM pg_stat_activity").await;
    assert_eq!(errors(&msgs)[0].1, "42703");
    let rows =
        data(&admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_replication").await);
    assert_eq!(rows, [[Some("t".to_string())]]);
    srv.task.abort();
}
