//! Real `pgbench -n -f SCRIPT` in `-M simple`, `extended` and `prepared`, 4 clients, against
//! node [`Session`]s served by the sender's postmaster and backend loop; the totals in the
//! tables agree with the number of transactions pgbench reports.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use walstream_node::engine::testlog::VolatileLog;
use walstream_node::engine::{Engine, FIRST_NORMAL_XID};
use walstream_node::sql::{ServerContext, Session, SqlHandler, TestServer};
use walstream_sender::auth::Roles;
use walstream_sender::backend::query::{QuerySession, SessionInfo};
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, ServerParts};
use walstream_sender::protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};
use walstream_tests::{pg_bin, pg_command};

/// No WAL to stream: these tests only run SQL.
struct NoWal(watch::Sender<WalEnd>);

impl WalSource for NoWal {
    fn system_id(&self) -> u64 {
        7_000_000_000_000_000_002
    }
    fn seg_size(&self) -> WalSegSize {
        WalSegSize::new(16 << 20).unwrap()
    }
    fn end(&self) -> watch::Receiver<WalEnd> {
        self.0.subscribe()
    }
    fn history_file(&self, _tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        Ok(None)
    }
    fn read(&self, _t: TimeLineId, start: Lsn, _len: usize) -> Result<Bytes, WalSourceError> {
        Err(WalSourceError::SegmentRemoved { segment: format!("{start}") })
    }
}

const SCRIPT: &str = "\\set aid random(1, 20)
BEGIN;
UPDATE acc SET bal = bal + 1 WHERE aid = :aid;
SELECT bal FROM acc WHERE aid = :aid;
INSERT INTO cnt VALUES (:client_id, 1) ON CONFLICT (c) DO UPDATE SET n = cnt.n + EXCLUDED.n;
END;
";

/// Serves `engine` through the sender's postmaster on a loopback port.
async fn serve(engine: &Arc<Engine>, server: &Arc<dyn ServerContext>) -> std::net::SocketAddr {
    let handler = SqlHandler::new(Arc::clone(engine), Arc::clone(server));
    let settings = Settings::default();
    let slots = Arc::new(SlotStore::in_memory(settings.max_replication_slots as usize));
    let parts = ServerParts {
        backup: None,
        settings,
        hba: HbaFile::loopback_trust(),
        roles: Roles::permissive(),
        source: Arc::new(NoWal(watch::Sender::new(WalEnd {
            tli: TimeLineId(1),
            flushed: Lsn(0x0100_0000),
        }))),
        slots,
        handler,
        registry: walstream_sender::registry::Registry::new(),
        tls: None,
    };
    let pm = Postmaster::bind("127.0.0.1:0".parse().unwrap(), parts).await.unwrap();
    let addr = pm.local_addr().unwrap();
    let (shutdown, rx) = watch::channel(None);
    tokio::spawn(async move {
        pm.run(rx).await;
        drop(shutdown);
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_protocol_mode_agrees_with_the_tables() {
    let engine = Engine::new(FIRST_NORMAL_XID, Arc::new(VolatileLog::default()));
    let server: Arc<dyn ServerContext> = TestServer::new();
    let addr = serve(&engine, &server).await;

    let mut setup = Session::new(
        Arc::clone(&engine),
        Arc::clone(&server),
        SessionInfo {
            pid: 1,
            user: "postgres".into(),
            database: "postgres".into(),
            application_name: String::new(),
            settings: Vec::new(),
        },
    );
    let r = setup
        .simple_query(
            "CREATE TABLE acc (aid int PRIMARY KEY, bal bigint NOT NULL); \
             INSERT INTO acc SELECT i, 0 FROM generate_series(1, 20) s(i); \
             CREATE TABLE cnt (c int PRIMARY KEY, n int NOT NULL)",
        )
        .await;
    assert!(r.error.is_none(), "{:?}", r.error);

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut total = 0u64;
    for mode in ["simple", "extended", "prepared"] {
        let (port, script) = (addr.port().to_string(), script.clone());
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::task::spawn_blocking(move || {
                pg_command(pg_bin("pgbench"))
                    .args([
                        "-n",
                        "-M",
                        mode,
                        "-c",
                        "4",
                        "-t",
                        "25",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                        "-f",
                    ])
                    .arg(&script)
                    .arg("postgres")
                    .output()
                    .unwrap()
            }),
        )
        .await
        .expect("pgbench finishes")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench -M {mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let processed = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|l| l.split('/').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no count in {stdout}"));
        assert_eq!(processed, 100, "-M {mode}: {stdout}");
        total += processed;
        let sums = setup.simple_query("SELECT sum(bal) FROM acc; SELECT sum(n) FROM cnt").await;
        assert!(sums.error.is_none());
        let got: Vec<String> = sums
            .outputs
            .iter()
            .filter_map(|o| match o {
                walstream_sender::backend::query::QueryOutput::Rows { rows, .. } => {
                    rows[0][0].encode(0).map(|b| String::from_utf8_lossy(&b).into_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![total.to_string(), total.to_string()], "-M {mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_binds_and_reads_binary_values() {
    let engine = Engine::new(FIRST_NORMAL_XID, Arc::new(VolatileLog::default()));
    let server: Arc<dyn ServerContext> = TestServer::new();
    let addr = serve(&engine, &server).await;
    let conninfo = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", addr.port());
    let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE b (k bigint PRIMARY KEY, i int, s smallint, t text, f float8, ok bool, y bytea)")
        .await
        .unwrap();
    let ins = c.prepare("INSERT INTO b VALUES ($1, $2, $3, $4, $5, $6, $7)").await.unwrap();
    for k in 1..=3i64 {
        let n = c
            .execute(
                &ins,
                &[
                    &k,
                    &(k as i32 * 10),
                    &(k as i16),
                    &format!("t{k}"),
                    &(k as f64 / 4.0),
                    &(k % 2 == 0),
                    &vec![k as u8, 0xff],
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let rows = c
        .query("SELECT k, i, s, t, f, ok, y FROM b WHERE k >= $1 ORDER BY k DESC", &[&2i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<_, i64>(0), 3);
    assert_eq!(r.get::<_, i32>(1), 30);
    assert_eq!(r.get::<_, i16>(2), 3);
    assert_eq!(r.get::<_, String>(3), "t3");
    assert_eq!(r.get::<_, f64>(4), 0.75);
    assert!(!r.get::<_, bool>(5));
    assert_eq!(r.get::<_, Vec<u8>>(6), vec![3, 0xff]);
    let n: i64 = c.query_one("SELECT count(*) FROM b", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let e = c
        .execute(&ins, &[&1i64, &0i32, &0i16, &"x", &0.0f64, &true, &Vec::<u8>::new()])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!((db.code().code(), db.detail()), ("23505", Some("Key (k)=(1) already exists.")));
    // the transaction status follows the session
    c.batch_execute("BEGIN; UPDATE b SET i = i + 1 WHERE k = 1").await.unwrap();
    assert!(c.execute("SELECT 1/0", &[]).await.is_err());
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let i: i32 = c.query_one("SELECT i FROM b WHERE k = 1", &[]).await.unwrap().get(0);
    assert_eq!(i, 10);
}
