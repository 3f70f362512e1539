//! The SQL corpus (`tests/sql_corpus/*.sql`): every statement runs on a live PostgreSQL 15
//! cluster and on a node [`Session`]; rows, row counts and errors (SQLSTATE, message,
//! DETAIL, position) must agree.

use std::sync::Arc;

use tokio_postgres::{NoTls, SimpleQueryMessage};
use walstream_node::engine::testlog::VolatileLog;
use walstream_node::engine::{Engine, FIRST_NORMAL_XID};
use walstream_node::sql::{ServerContext, Session, SessionInfo, TestServer};
use walstream_sender::backend::query::{QueryOutput, QuerySession};
use walstream_tests::cluster::{PgCluster, PgConfig};

/// What one statement produced, in a form both sides can give.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Column names, rows as text (None for NULL), then the command's row count.
    Ok(Vec<String>, Vec<Vec<Option<String>>>, u64),
    /// SQLSTATE, message, DETAIL, position.
    Err(String, String, Option<String>, Option<String>),
}

fn statements(ext: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == ext)) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            if line.trim().is_empty() || line.starts_with("--") {
                continue;
            }
            out.push((format!("{name}:{}", i + 1), line.to_string()));
        }
    }
    out
}

async fn on_postgres(c: &tokio_postgres::Client, sql: &str) -> Outcome {
    match c.simple_query(sql).await {
        Ok(msgs) => {
            let mut rows = Vec::new();
            let mut count = 0;
            let mut names = Vec::new();
            for m in msgs {
                match m {
                    SimpleQueryMessage::RowDescription(cols) => {
                        names = cols.iter().map(|c| c.name().to_string()).collect()
                    }
                    SimpleQueryMessage::Row(r) => {
                        rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    SimpleQueryMessage::CommandComplete(n) => count = n,
                    _ => {}
                }
            }
            Outcome::Ok(names, rows, count)
        }
        Err(e) => {
            let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            let pos = match d.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(p.to_string()),
                _ => None,
            };
            Outcome::Err(
                d.code().code().to_string(),
                d.message().to_string(),
                d.detail().map(str::to_string),
                pos,
            )
        }
    }
}

async fn on_node(s: &mut Session, sql: &str) -> Outcome {
    let r = s.simple_query(sql).await;
    if let Some(e) = r.error {
        return Outcome::Err(e.code, e.message, e.detail, e.position);
    }
    let mut rows = Vec::new();
    let mut count = 0;
    let mut names = Vec::new();
    for o in r.outputs {
        match o {
            QueryOutput::Rows { rows: rs, tag, columns } => {
                names = columns.iter().map(|c| c.name.clone()).collect();
                rows.extend(rs.iter().map(|r| {
                    r.iter()
                        .map(|d| d.encode(0).map(|b| String::from_utf8_lossy(&b).into_owned()))
                        .collect()
                }));
                count = tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
            QueryOutput::Command(tag) => {
                count = tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
            }
            _ => {}
        }
    }
    Outcome::Ok(names, rows, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_agrees_with_postgresql() {
    let cluster = PgCluster::start(&PgConfig::default()).expect("start PostgreSQL");
    let (client, conn) =
        tokio_postgres::connect(&cluster.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    let engine = Engine::new(FIRST_NORMAL_XID, Arc::new(VolatileLog::default()));
    let server: Arc<dyn ServerContext> = TestServer::new();
    let info = SessionInfo {
        pid: 1,
        user: "postgres".into(),
        database: "postgres".into(),
        application_name: String::new(),
        settings: Vec::new(),
    };
    let mut session = Session::new(engine, server, info);
    let mut mismatches = Vec::new();
    let stmts = statements("sql");
    assert!(stmts.len() > 50);
    for (at, sql) in &stmts {
        let want = on_postgres(&client, sql).await;
        let got = on_node(&mut session, sql).await;
        if want != got {
            mismatches.push(format!("{at}: {sql}\n  postgres: {want:?}\n  node:     {got:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} statements differ:\n{}",
        mismatches.len(),
        stmts.len(),
        mismatches.join("\n")
    );
}

/// `tests/sql_corpus/*.describe`: each statement is prepared on both sides (Parse with
/// unspecified parameter types, then Describe); the inferred parameter types and the
/// result columns (name, type oid) must agree. The `.sql` setup statements run first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_agrees_with_postgresql() {
    let cluster = PgCluster::start(&PgConfig::default()).expect("start PostgreSQL");
    let (client, conn) =
        tokio_postgres::connect(&cluster.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    let engine = Engine::new(FIRST_NORMAL_XID, Arc::new(VolatileLog::default()));
    let server: Arc<dyn ServerContext> = TestServer::new();
    let info = SessionInfo {
        pid: 1,
        user: "postgres".into(),
        database: "postgres".into(),
        application_name: String::new(),
        settings: Vec::new(),
    };
    let mut session = Session::new(engine, server, info);
    let setup = "CREATE TABLE d (k bigint PRIMARY KEY, i int, s smallint, t text, v varchar(10), f float8, b bool, ts timestamptz, y bytea)";
    client.simple_query(setup).await.unwrap();
    assert!(session.simple_query(setup).await.error.is_none());
    let mut mismatches = Vec::new();
    let stmts = statements("describe");
    assert!(stmts.len() > 10);
    for (at, sql) in &stmts {
        let want = match client.prepare(sql).await {
            Ok(st) => Ok((
                st.params().iter().map(|t| t.oid()).collect::<Vec<_>>(),
                st.columns()
                    .iter()
                    .map(|c| (c.name().to_string(), c.type_().oid()))
                    .collect::<Vec<_>>(),
            )),
            Err(e) => {
                Err(e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string())))
            }
        };
        let got = match session.describe(sql, &[]).await {
            Ok(d) => Ok((
                d.params,
                d.columns
                    .unwrap_or_default()
                    .iter()
                    .map(|c| (c.name.clone(), c.ty.oid()))
                    .collect::<Vec<_>>(),
            )),
            Err(e) => Err(Some((e.code, e.message))),
        };
        if want != got {
            mismatches.push(format!("{at}: {sql}\n  postgres: {want:?}\n  node:     {got:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} statements differ:\n{}",
        mismatches.len(),
        stmts.len(),
        mismatches.join("\n")
    );
}
