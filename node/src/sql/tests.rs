//! Session tests: pgbench's statements, transactions, parameters, errors.

use std::sync::Arc;

use walstream_protocol::wire::TransactionStatus;
use walstream_sender::backend::query::{Datum, Param, QueryOutput, QuerySession, SessionInfo};

use super::*;
use crate::engine::testlog::VolatileLog;
use crate::engine::Engine;

fn info(pid: i32) -> SessionInfo {
    SessionInfo {
        pid,
        user: "postgres".into(),
        database: "postgres".into(),
        application_name: "t".into(),
        settings: Vec::new(),
    }
}

fn setup() -> (Arc<Engine>, Arc<TestServer>) {
    (
        Engine::new(crate::engine::FIRST_NORMAL_XID, Arc::new(VolatileLog::default())),
        TestServer::new(),
    )
}

fn session(e: &Arc<Engine>, s: &Arc<TestServer>) -> Session {
    Session::new(Arc::clone(e), Arc::clone(s) as Arc<dyn ServerContext>, info(42))
}

/// Runs `sql`, returning each statement's tag or rows as text, or the error.
async fn q(s: &mut Session, sql: &str) -> Result<Vec<String>, (String, String)> {
    let r = s.simple_query(sql).await;
    if let Some(e) = r.error {
        return Err((e.code, e.message));
    }
    Ok(r.outputs
        .into_iter()
        .filter_map(|o| match o {
            QueryOutput::Command(t) => Some(t),
            QueryOutput::Rows { rows, tag, .. } => Some(format!(
                "{tag}: {}",
                rows.iter()
                    .map(|r| r.iter().map(show).collect::<Vec<_>>().join(","))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
            _ => None,
        })
        .collect())
}

fn show(d: &Datum) -> String {
    match d.encode(0) {
        None => "NULL".into(),
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

async fn one(s: &mut Session, sql: &str) -> String {
    match q(s, sql).await {
        Ok(v) => v.join("; "),
        Err((c, m)) => format!("ERROR {c}: {m}"),
    }
}

#[tokio::test]
async fn pgbench_path() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    assert_eq!(
        one(
            &mut s,
            "CREATE TABLE acc (aid int PRIMARY KEY, bal int NOT NULL DEFAULT 0, filler text)"
        )
        .await,
        "CREATE TABLE"
    );
    assert_eq!(
        one(&mut s, "INSERT INTO acc (aid, filler) VALUES (1, 'a'), (2, 'b'), (3, 'c')").await,
        "INSERT 0 3"
    );
    assert_eq!(one(&mut s, "UPDATE acc SET bal = bal + 5 WHERE aid = 2").await, "UPDATE 1");
    assert_eq!(one(&mut s, "SELECT bal FROM acc WHERE aid = 2").await, "SELECT 1: 5");
    assert_eq!(
        one(&mut s, "SELECT aid, bal FROM acc WHERE aid >= 2 ORDER BY aid DESC LIMIT 5").await,
        "SELECT 2: 3,0 | 2,5"
    );
    assert_eq!(one(&mut s, "DELETE FROM acc WHERE aid < 2").await, "DELETE 1");
    assert_eq!(
        one(&mut s, "INSERT INTO acc VALUES (9, 1, 'x') RETURNING aid, bal * 2 AS dbl").await,
        "INSERT 0 1: 9,2"
    );
    assert_eq!(
        one(&mut s, "SELECT count(*), sum(bal), min(aid), max(aid), avg(bal) FROM acc").await,
        "SELECT 1: 3,6,2,9,2.0000000000000000"
    );
    assert_eq!(one(&mut s, "TRUNCATE acc").await, "TRUNCATE TABLE");
    assert_eq!(one(&mut s, "SELECT count(*) FROM acc").await, "SELECT 1: 0");
    assert_eq!(one(&mut s, "DROP TABLE IF EXISTS acc").await, "DROP TABLE");
    assert_eq!(one(&mut s, "DROP TABLE IF EXISTS acc").await, "DROP TABLE");
    assert_eq!(one(&mut s, "DROP TABLE acc").await, "ERROR 42P01: table \"acc\" does not exist");
}

#[tokio::test]
async fn transaction_blocks_and_25p02() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    let mut other = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    assert_eq!(one(&mut s, "BEGIN").await, "BEGIN");
    assert_eq!(s.transaction_status(), TransactionStatus::InTransaction);
    assert_eq!(one(&mut s, "INSERT INTO t VALUES (1, 'a')").await, "INSERT 0 1");
    assert_eq!(one(&mut other, "SELECT count(*) FROM t").await, "SELECT 1: 0");
    assert_eq!(
        one(&mut s, "INSERT INTO t VALUES (1, 'b')").await,
        "ERROR 23505: duplicate key value violates unique constraint \"t_pkey\""
    );
    assert_eq!(s.transaction_status(), TransactionStatus::Failed);
    assert!(one(&mut s, "SELECT 1").await.starts_with("ERROR 25P02"));
    assert_eq!(one(&mut s, "COMMIT").await, "ROLLBACK");
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    assert_eq!(one(&mut s, "SELECT count(*) FROM t").await, "SELECT 1: 0");
    assert_eq!(
        one(&mut s, "BEGIN; INSERT INTO t VALUES (2, 'x'); COMMIT").await,
        "BEGIN; INSERT 0 1; COMMIT"
    );
    assert_eq!(one(&mut other, "SELECT k, v FROM t").await, "SELECT 1: 2,x");
}

#[tokio::test]
async fn parameters_are_inferred_and_bound() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k bigint PRIMARY KEY, v text, f double precision)").await;
    let d = s.describe("INSERT INTO t VALUES ($1, $2, $3)", &[]).await.unwrap();
    assert_eq!(d.params, vec![20, 25, 701]);
    assert!(d.columns.is_none());
    let p = |v: &str| Param { type_oid: 0, format: 0, value: Some(v.to_string().into()) };
    let out = s
        .execute("INSERT INTO t VALUES ($1, $2, $3)", &[p("7"), p("seven"), p("1.5")])
        .await
        .unwrap();
    assert_eq!(out, QueryOutput::Command("INSERT 0 1".into()));
    let d = s.describe("SELECT v, f FROM t WHERE k = $1", &[]).await.unwrap();
    assert_eq!(d.params, vec![20]);
    assert_eq!(d.columns.unwrap().iter().map(|c| c.ty.oid()).collect::<Vec<_>>(), vec![25, 701]);
    let out = s.execute("SELECT v, f FROM t WHERE k = $1", &[p("7")]).await.unwrap();
    let QueryOutput::Rows { rows, tag, .. } = out else { panic!() };
    assert_eq!(tag, "SELECT 1");
    assert_eq!(rows[0], vec![Datum::Text("seven".into()), Datum::Float8(1.5)]);
    let err = s.execute("SELECT v FROM t WHERE k = $1", &[p("x")]).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("22P02", "invalid input syntax for type bigint: \"x\"")
    );
}

/// Rows of an Execute, as text.
async fn exec_rows(s: &mut Session, sql: &str, params: &[&str]) -> Result<Vec<String>, String> {
    let params: Vec<Param> = params
        .iter()
        .map(|v| Param { type_oid: 0, format: 0, value: Some(v.to_string().into()) })
        .collect();
    let out = s.execute(sql, &params).await.map_err(|e| format!("{}: {}", e.code, e.message))?;
    s.sync().await.map_err(|e| e.message)?;
    let QueryOutput::Rows { rows, .. } = out else { return Ok(vec![format!("{out:?}")]) };
    Ok(rows.iter().map(|r| r.iter().map(show).collect::<Vec<_>>().join(",")).collect())
}

#[tokio::test]
async fn a_kept_plan_follows_drop_and_create_of_its_tables() {
    let (e, srv) = setup();
    let mut a = session(&e, &srv);
    let mut b = Session::new(Arc::clone(&e), Arc::clone(&srv) as Arc<dyn ServerContext>, info(43));
    one(&mut b, "CREATE TABLE t (k bigint PRIMARY KEY, v text)").await;
    one(&mut b, "INSERT INTO t VALUES (1, 'one'), (2, 'two')").await;
    let sel = "SELECT v FROM t WHERE k = $1";
    let upd = "UPDATE t SET v = $2 WHERE k = $1";
    // The second Execute of each text runs the plan the first one bound.
    let kept = |a: &Session| a.kept_plan(sel).unwrap();
    assert_eq!(exec_rows(&mut a, sel, &["1"]).await.unwrap(), vec!["one"]);
    let first = kept(&a);
    assert_eq!(exec_rows(&mut a, sel, &["2"]).await.unwrap(), vec!["two"]);
    assert_eq!(first, kept(&a), "the second Execute bound again");
    exec_rows(&mut a, upd, &["1", "uno"]).await.unwrap();
    exec_rows(&mut a, upd, &["2", "dos"]).await.unwrap();
    assert_eq!(one(&mut b, "SELECT v FROM t ORDER BY k").await, "SELECT 2: uno | dos");
    // Another session replaces the table: the next Execute binds to the new one.
    one(&mut b, "DROP TABLE t").await;
    one(&mut b, "CREATE TABLE t (k bigint PRIMARY KEY, v text)").await;
    one(&mut b, "INSERT INTO t VALUES (1, 'new')").await;
    assert_eq!(exec_rows(&mut a, sel, &["1"]).await.unwrap(), vec!["new"]);
    exec_rows(&mut a, upd, &["1", "newer"]).await.unwrap();
    assert_eq!(one(&mut b, "SELECT v FROM t").await, "SELECT 1: newer");
    // Replaced inside one transaction block: the plan binds to the table it committed.
    one(&mut b, "BEGIN").await;
    one(&mut b, "DROP TABLE t").await;
    one(&mut b, "CREATE TABLE t (k bigint PRIMARY KEY, v text)").await;
    one(&mut b, "INSERT INTO t VALUES (1, 'uncommitted')").await;
    one(&mut b, "COMMIT").await;
    assert_eq!(exec_rows(&mut a, sel, &["1"]).await.unwrap(), vec!["uncommitted"]);
    // Dropped: the plan is not run against a table that is gone.
    one(&mut b, "DROP TABLE t").await;
    assert_eq!(
        exec_rows(&mut a, sel, &["1"]).await.unwrap_err(),
        "42P01: relation \"t\" does not exist"
    );
    // Other parameter types bind again.
    one(&mut b, "CREATE TABLE t (k bigint PRIMARY KEY, v text)").await;
    one(&mut b, "INSERT INTO t VALUES (3, 'three')").await;
    assert_eq!(exec_rows(&mut a, sel, &["3"]).await.unwrap(), vec!["three"]);
    let typed = Param { type_oid: 25, format: 0, value: Some("3".to_string().into()) };
    let out = a.execute(sel, &[typed]).await.unwrap_err();
    assert_eq!(out.code, "42883", "{}", out.message);
}

#[tokio::test]
async fn errors_carry_postgresql_texts() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    let r = s.simple_query("select nope from t").await.error.unwrap();
    assert_eq!(
        (r.code.as_str(), r.message.as_str(), r.position.as_deref()),
        ("42703", "column \"nope\" does not exist", Some("8"))
    );
    let r = s.simple_query("select * from nope").await.error.unwrap();
    assert_eq!((r.code.as_str(), r.position.as_deref()), ("42P01", Some("15")));
    let r = s.simple_query("selec 1").await.error.unwrap();
    assert_eq!(
        (r.code.as_str(), r.message.as_str(), r.position.as_deref()),
        ("42601", "syntax error at or near \"selec\"", Some("1"))
    );
    let r = s.simple_query("select * from t where v = 1").await.error.unwrap();
    assert_eq!(
        (r.code.as_str(), r.message.as_str(), r.position.as_deref()),
        ("42883", "operator does not exist: text = integer", Some("25"))
    );
    let r = s.simple_query("insert into t values (null)").await.error.unwrap();
    assert_eq!(r.detail.as_deref(), Some("Failing row contains (null, null)."));
    assert_eq!(one(&mut s, "select 1/0").await, "ERROR 22012: division by zero");
    assert_eq!(one(&mut s, "select 2147483647 + 1").await, "ERROR 22003: integer out of range");
    assert_eq!(
        one(&mut s, "select 'a'::int").await,
        "ERROR 22P02: invalid input syntax for type integer: \"a\""
    );
    assert_eq!(one(&mut s, "insert into t values (1.5, 'x') returning k").await, "INSERT 0 1: 2");
    let r = s.simple_query("insert into t values (2, 'y')").await.error.unwrap();
    assert_eq!(r.detail.as_deref(), Some("Key (k)=(2) already exists."));
}

#[tokio::test]
async fn upserts_series_groups_and_functions() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY, g int, v text)").await;
    assert_eq!(
        one(&mut s, "INSERT INTO t SELECT i, i % 3, 'v' || i FROM generate_series(1, 10) AS s(i)")
            .await,
        "INSERT 0 10"
    );
    assert_eq!(
        one(&mut s, "SELECT g, count(*), sum(k) FROM t GROUP BY g ORDER BY g").await,
        "SELECT 3: 0,3,18 | 1,4,22 | 2,3,15"
    );
    assert_eq!(one(&mut s, "INSERT INTO t VALUES (1, 9, 'new') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v || t.v").await, "INSERT 0 1");
    assert_eq!(one(&mut s, "SELECT v FROM t WHERE k = 1").await, "SELECT 1: newv1");
    assert_eq!(
        one(&mut s, "INSERT INTO t VALUES (1, 9, 'x') ON CONFLICT DO NOTHING").await,
        "INSERT 0 0"
    );
    assert_eq!(
        one(&mut s, "SELECT k FROM t WHERE k IN (2, 4) OR k BETWEEN 9 AND 20 ORDER BY 1").await,
        "SELECT 4: 2 | 4 | 9 | 10"
    );
    assert_eq!(
        one(&mut s, "SELECT md5('a'), length('abc'), upper('x'), lower('Y'), coalesce(NULL, 3)")
            .await,
        "SELECT 1: 0cc175b9c0f1b6a831c399e269772661,3,X,y,3"
    );
    assert_eq!(one(&mut s, "SELECT current_setting('synchronous_commit')").await, "SELECT 1: on");
    assert_eq!(one(&mut s, "SET synchronous_commit = off").await, "SET");
    assert_eq!(one(&mut s, "SHOW synchronous_commit").await, "SHOW: off");
    assert_eq!(one(&mut s, "RESET synchronous_commit").await, "RESET");
    assert_eq!(one(&mut s, "SHOW synchronous_commit").await, "SHOW: on");
    assert_eq!(one(&mut s, "SELECT pg_backend_pid(), pg_is_in_recovery()").await, "SELECT 1: 42,f");
    assert_eq!(one(&mut s, "SELECT pg_sleep(0)").await, "SELECT 1: ");
    assert_eq!(one(&mut s, "CHECKPOINT").await, "CHECKPOINT");
    assert_eq!(*srv.checkpoints.lock(), 1);
    assert_eq!(
        one(&mut s, "SELECT nosuch(1)").await,
        "ERROR 42883: function nosuch(integer) does not exist"
    );
}

mod never_panics {
    use proptest::prelude::*;

    const SEEDS: &[&str] = &[
        "SELECT k, v FROM t WHERE k BETWEEN 2 AND 5 ORDER BY v DESC LIMIT 3",
        "INSERT INTO t VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v RETURNING *",
        "UPDATE t SET f = f * 2, v = v || 'x' WHERE k = 3 OR k IS NULL",
        "SELECT count(*), sum(k), avg(f) FROM t GROUP BY k % 3 HAVING count(*) > 1 ORDER BY 1",
        "SELECT 'a' LIKE '%a%', -k::int2, 1.5 * k / 0.3, coalesce(NULL, f) FROM t",
        "DELETE FROM t WHERE v IN ('v1', 'v2') RETURNING k",
        "SET synchronous_commit TO off; SHOW synchronous_commit; RESET ALL",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text(s in ".{0,80}") {
            super::super::fuzz_sql(s.as_bytes());
        }

        #[test]
        fn mutated_statements(seed in 0..SEEDS.len(), cut in 0usize..120, at in 0usize..120, ins in "[ ()$',;%a-z0-9*+-/=<>.:]{0,6}") {
            let mut s: Vec<char> = SEEDS[seed].chars().collect();
            let at = at.min(s.len());
            let cut = cut.min(s.len() - at).min(4);
            s.splice(at..at + cut, ins.chars());
            let text: String = s.into_iter().collect();
            super::super::fuzz_sql(text.as_bytes());
        }
    }
}

#[tokio::test]
async fn a_second_writer_waits_then_rechecks() {
    let (e, srv) = setup();
    let mut a = session(&e, &srv);
    let mut b = session(&e, &srv);
    one(&mut a, "CREATE TABLE t (k int PRIMARY KEY, n int)").await;
    one(&mut a, "INSERT INTO t VALUES (1, 0)").await;
    assert_eq!(one(&mut a, "BEGIN").await, "BEGIN");
    assert_eq!(one(&mut a, "UPDATE t SET n = n + 1 WHERE k = 1").await, "UPDATE 1");
    let mut c = session(&e, &srv);
    // b's and c's updates wait for a's row lock, then re-check the committed row: b's
    // WHERE still holds (n + 10 from n = 1), c's no longer does (n = 0 was true before).
    let waiter = tokio::spawn(async move {
        let r = one(&mut b, "UPDATE t SET n = n + 10 WHERE k = 1 RETURNING n").await;
        (r, b)
    });
    let stale =
        tokio::spawn(async move { one(&mut c, "UPDATE t SET n = -1 WHERE k = 1 AND n = 0").await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the second writer must wait");
    assert!(!stale.is_finished(), "the third writer must wait");
    assert_eq!(one(&mut a, "SELECT n FROM t").await, "SELECT 1: 1");
    assert_eq!(one(&mut a, "COMMIT").await, "COMMIT");
    let (r, _b) = waiter.await.unwrap();
    assert_eq!(r, "UPDATE 1: 11");
    assert_eq!(stale.await.unwrap(), "UPDATE 0");
    assert_eq!(one(&mut a, "SELECT n FROM t").await, "SELECT 1: 11");
}

#[tokio::test]
async fn readers_never_see_uncommitted_rows_and_standbys_refuse_writes() {
    let (e, srv) = setup();
    let mut a = session(&e, &srv);
    let mut b = session(&e, &srv);
    one(&mut a, "CREATE TABLE t (k int PRIMARY KEY)").await;
    one(&mut a, "BEGIN").await;
    one(&mut a, "INSERT INTO t VALUES (1)").await;
    assert_eq!(one(&mut b, "SELECT count(*) FROM t").await, "SELECT 1: 0");
    one(&mut a, "ROLLBACK").await;
    e.set_read_only(true);
    assert_eq!(
        one(&mut b, "INSERT INTO t VALUES (2)").await,
        "ERROR 25006: cannot execute INSERT in a read-only transaction"
    );
    assert_eq!(
        one(&mut b, "CREATE TABLE u (k int PRIMARY KEY)").await,
        "ERROR 25006: cannot execute CREATE TABLE in a read-only transaction"
    );
    assert_eq!(one(&mut b, "SELECT count(*) FROM t").await, "SELECT 1: 0");
}

#[tokio::test]
async fn server_relations_and_unsupported_features() {
    let (e, srv) = setup();
    srv.activity
        .lock()
        .extend([(7, "psql".to_string(), "active".to_string()), (9, "x".into(), "idle".into())]);
    *srv.lsn.lock() = 0x1_0000_0028;
    let mut s = session(&e, &srv);
    assert_eq!(
        one(&mut s, "SELECT pid, application_name FROM pg_stat_activity WHERE state = 'idle' OR pid < 8 ORDER BY pid DESC").await,
        "SELECT 2: 9,x | 7,psql"
    );
    assert_eq!(one(&mut s, "SELECT count(*) FROM pg_stat_activity").await, "SELECT 1: 2");
    assert_eq!(one(&mut s, "SELECT pg_current_wal_lsn()").await, "SELECT 1: 1/28");
    assert_eq!(
        one(&mut s, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").await,
        "SELECT 1: 4294967336"
    );
    assert_eq!(
        one(&mut s, "SELECT pg_create_physical_replication_slot('s1')").await,
        "SELECT 1: (s1,)"
    );
    assert_eq!(
        one(&mut s, "SELECT slot_name, lsn FROM pg_create_physical_replication_slot('s 2')").await,
        "SELECT 1: s 2,NULL"
    );
    assert_eq!(
        one(&mut s, "SELECT pg_current_wal_lsn() - '0/28', pg_current_wal_lsn() > '0/FF'").await,
        "SELECT 1: 4294967296,t"
    );
    let d = s.describe("SELECT * FROM pg_current_wal_lsn()", &[]).await.unwrap();
    assert_eq!(d.columns.unwrap()[0].name, "pg_current_wal_lsn");
    let d = s.describe("SELECT pg_create_physical_replication_slot($1)", &[]).await.unwrap();
    assert_eq!((d.params, d.columns.unwrap()[0].ty.oid()), (vec![19], 2249));
    let d = s.describe("SELECT pg_current_wal_lsn()", &[]).await.unwrap();
    assert_eq!(d.columns.unwrap()[0].ty.oid(), 3220);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY)").await;
    for sql in [
        "SELECT * FROM t JOIN t u ON true",
        "SELECT (SELECT 1)",
        "SELECT 1 UNION SELECT 2",
        "CREATE TABLE s (k serial PRIMARY KEY)",
        "CREATE INDEX i ON t (k)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
    ] {
        let r = s.simple_query(sql).await.error.unwrap();
        assert_eq!(r.code, "0A000", "{sql}: {}", r.message);
        assert!(r.message.ends_with("is not supported"), "{sql}: {}", r.message);
    }
}

#[tokio::test]
async fn a_canceled_statement_fails_its_block() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY)").await;
    one(&mut s, "BEGIN").await;
    one(&mut s, "INSERT INTO t VALUES (1)").await;
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(30),
        s.simple_query("SELECT pg_sleep(5)"),
    )
    .await;
    assert!(dropped.is_err());
    assert_eq!(s.transaction_status(), TransactionStatus::Failed);
    assert!(one(&mut s, "SELECT 1").await.starts_with("ERROR 25P02"));
    assert_eq!(one(&mut s, "ROLLBACK").await, "ROLLBACK");
    assert_eq!(one(&mut s, "SELECT count(*) FROM t").await, "SELECT 1: 0");
}

/// PostgreSQL evaluates a target list once per row: `pg_sleep` in it sleeps per row
/// (checked on PostgreSQL 15: `SELECT pg_sleep(1) FROM generate_series(1, 3)` takes 3 s).
#[tokio::test(start_paused = true)]
async fn pg_sleep_sleeps_once_per_row() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    one(&mut s, "CREATE TABLE t (k int PRIMARY KEY)").await;
    one(&mut s, "INSERT INTO t VALUES (1), (2), (3), (4)").await;
    let t0 = tokio::time::Instant::now();
    one(&mut s, "SELECT k, pg_sleep(0.5) FROM t").await;
    assert_eq!(t0.elapsed(), std::time::Duration::from_secs(2));
    let t0 = tokio::time::Instant::now();
    one(&mut s, "SELECT pg_sleep(0.5) FROM t WHERE k > 10").await;
    assert_eq!(t0.elapsed(), std::time::Duration::ZERO);
    let t0 = tokio::time::Instant::now();
    one(&mut s, "SELECT pg_sleep(0.5)").await;
    assert_eq!(t0.elapsed(), std::time::Duration::from_millis(500));
}

#[test]
fn deep_and_wide_statements_do_not_overflow() {
    let deep = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
    for text in [
        deep(5000),
        format!("SELECT 1{}", "+1".repeat(20000)),
        format!("SELECT 1{}", "+1".repeat(255)),
        format!("SELECT k FROM t WHERE k = 1{}", " OR k = 1".repeat(127)),
        format!("SELECT 'a'{}", " || 'a'".repeat(255)),
        format!(
            "SELECT * FROM t WHERE {}",
            (0..3000).map(|i| format!("k = {i}")).collect::<Vec<_>>().join(" AND ")
        ),
        format!("SELECT {}1", "-".repeat(3000)),
        format!("SELECT {}true", "NOT ".repeat(3000)),
        format!(
            "SELECT k FROM t WHERE k IN ({})",
            (0..20000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
    ] {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || super::fuzz_sql(text.as_bytes()))
            .unwrap()
            .join()
            .unwrap();
    }
}

#[tokio::test]
async fn deadlocks_fail_one_transaction_with_40p01() {
    let (e, srv) = setup();
    let mut a = session(&e, &srv);
    let mut b = session(&e, &srv);
    one(&mut a, "CREATE TABLE t (k int PRIMARY KEY, n int)").await;
    one(&mut a, "INSERT INTO t VALUES (1, 0), (2, 0)").await;
    one(&mut a, "BEGIN").await;
    one(&mut b, "BEGIN").await;
    assert_eq!(one(&mut a, "UPDATE t SET n = 1 WHERE k = 1").await, "UPDATE 1");
    assert_eq!(one(&mut b, "UPDATE t SET n = 2 WHERE k = 2").await, "UPDATE 1");
    let a_task = tokio::spawn(async move {
        let r = one(&mut a, "UPDATE t SET n = 1 WHERE k = 2").await;
        (r, a)
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let r = b.simple_query("UPDATE t SET n = 2 WHERE k = 1").await.error.unwrap();
    assert_eq!((r.code.as_str(), r.message.as_str()), ("40P01", "deadlock detected"));
    assert!(r.detail.unwrap().contains("waits for ShareLock on transaction"));
    assert_eq!(b.transaction_status(), TransactionStatus::Failed);
    assert_eq!(one(&mut b, "ROLLBACK").await, "ROLLBACK");
    let (r, mut a) = a_task.await.unwrap();
    assert_eq!(r, "UPDATE 1");
    assert_eq!(one(&mut a, "COMMIT").await, "COMMIT");
    assert_eq!(one(&mut b, "SELECT k, n FROM t ORDER BY k").await, "SELECT 2: 1,1 | 2,1");
}

#[tokio::test]
async fn statement_timeout_cancels_the_statement_not_the_session() {
    let (e, srv) = setup();
    let mut s = session(&e, &srv);
    q(&mut s, "CREATE TABLE t (k int PRIMARY KEY)").await.unwrap();
    assert_eq!(one(&mut s, "SET statement_timeout = 50").await, "SET");
    // Checked on PostgreSQL 15: SET statement_timeout=50; SELECT pg_sleep(1).
    assert_eq!(
        one(&mut s, "SELECT pg_sleep(1)").await,
        "ERROR 57014: canceling statement due to statement timeout"
    );
    assert_eq!(one(&mut s, "INSERT INTO t VALUES (1)").await, "INSERT 0 1");
    // In a block, the canceled statement fails the block.
    q(&mut s, "BEGIN").await.unwrap();
    assert!(one(&mut s, "SELECT pg_sleep(1)").await.starts_with("ERROR 57014"));
    assert!(one(&mut s, "SELECT 1").await.starts_with("ERROR 25P02"));
    assert_eq!(one(&mut s, "ROLLBACK").await, "ROLLBACK");
    assert_eq!(one(&mut s, "RESET statement_timeout").await, "RESET");
    assert_eq!(one(&mut s, "SELECT count(*) FROM t").await, "SELECT 1: 1");
}

#[tokio::test]
async fn lock_timeout_fails_a_waiting_writer_with_55p03() {
    let (e, srv) = setup();
    let mut a = session(&e, &srv);
    let mut b = session(&e, &srv);
    one(&mut a, "CREATE TABLE t (k int PRIMARY KEY, n int)").await;
    one(&mut a, "INSERT INTO t VALUES (1, 0)").await;
    one(&mut a, "BEGIN").await;
    assert_eq!(one(&mut a, "UPDATE t SET n = 1 WHERE k = 1").await, "UPDATE 1");
    assert_eq!(one(&mut b, "SET lock_timeout = '30ms'").await, "SET");
    // Checked on PostgreSQL 15: a second session's UPDATE of the locked row.
    assert_eq!(
        one(&mut b, "UPDATE t SET n = 2 WHERE k = 1").await,
        "ERROR 55P03: canceling statement due to lock timeout"
    );
    assert_eq!(one(&mut a, "COMMIT").await, "COMMIT");
    assert_eq!(one(&mut b, "UPDATE t SET n = 2 WHERE k = 1").await, "UPDATE 1");
}
