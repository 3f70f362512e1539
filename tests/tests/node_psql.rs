//! psql against a node and against PostgreSQL 15, side by side: the same script
//! (`\x`, `\timing`, `\copy ... to`, COPY TO STDOUT with NULLs and characters COPY
//! escapes) gives the same output and the same files.

use std::process::Command;

use walstream_tests::node::PgAndNode;
use walstream_tests::{pg_bin, wait_for, PgConfig};

/// How long a test waits for a server to get somewhere.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

const SETUP: &str = "CREATE TABLE t (k int PRIMARY KEY, v text, b bool, f float8);
INSERT INTO t VALUES (1, 'plain', true, 1.5), (2, NULL, false, NULL),
  (3, E'tab\\there\\nline\\\\slash', NULL, -0.25), (4, '', true, 1e20);";

const SCRIPT: &str = "\\x on
SELECT * FROM t WHERE k = 1;
\\x off
\\copy t to 'DIR@/all.txt'
\\copy (SELECT k, v FROM t WHERE k > 1 ORDER BY k) to 'DIR@/some.txt'
COPY t (v, k) TO STDOUT;
\\timing on
SELECT count(*) FROM t;
";

/// PostgreSQL 15 and a node, to run the same thing on both.
fn both() -> PgAndNode {
    PgAndNode::start(env!("CARGO_BIN_EXE_walstream").as_ref(), &PgConfig::default(), &[]).unwrap()
}

fn psql(conninfo: &str, script: &str) -> (String, String) {
    let out = Command::new(pg_bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", script])
        .output()
        .unwrap();
    let mut stdout = String::new();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "psql failed: {stderr}");
    stdout.push_str(&String::from_utf8_lossy(&out.stdout));
    (stdout, stderr)
}

fn run(conninfo: &str, dir: &std::path::Path) -> (String, Vec<u8>, Vec<u8>) {
    // psql -c runs one command per -c; feed the script through stdin instead.
    psql(conninfo, SETUP);
    let script = SCRIPT.replace("DIR@", dir.to_str().unwrap());
    let out = Command::new(pg_bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // \timing's milliseconds differ; the line is there on both.
    let text: String = text
        .lines()
        .map(|l| if l.starts_with("Time: ") { "Time: ..." } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    (
        text,
        std::fs::read(dir.join("all.txt")).unwrap(),
        std::fs::read(dir.join("some.txt")).unwrap(),
    )
}

#[test]
fn psql_gives_the_same_output_and_files() {
    let both = both();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let theirs = run(&both.pg.conninfo("postgres"), a.path());
    let ours = run(&both.node.conninfo("postgres"), b.path());
    assert!(theirs.0.contains("Time: ..."), "{}", theirs.0);
    assert_eq!(ours.0, theirs.0, "psql's output");
    assert_eq!(String::from_utf8_lossy(&ours.1), String::from_utf8_lossy(&theirs.1), "\\copy t");
    assert_eq!(
        String::from_utf8_lossy(&ours.2),
        String::from_utf8_lossy(&theirs.2),
        "\\copy (query)"
    );
    both.node.stop().unwrap();
}

fn cstr(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

/// A Parse body: statement `name` of `sql`, no parameter types given.
fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    let mut parse = cstr(&[name, sql]);
    parse.extend_from_slice(&0u16.to_be_bytes());
    parse
}

/// A Bind body: statement `statement` into the unnamed portal, `params` in text, results
/// in text.
fn bind_msg(statement: &str, params: &[&str]) -> Vec<u8> {
    let mut bind = cstr(&["", statement]);
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        bind.extend_from_slice(&(p.len() as u32).to_be_bytes());
        bind.extend_from_slice(p.as_bytes());
    }
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind
}

/// An Execute body: the unnamed portal, every row.
fn execute_msg() -> Vec<u8> {
    let mut execute = cstr(&[""]);
    execute.extend_from_slice(&0u32.to_be_bytes());
    execute
}

/// Bind of statement `statement` with text `params`, Execute, Sync; what came back.
fn bind_execute_sync(
    c: &mut walstream_tests::rawclient::RawReplicationConn,
    statement: &str,
    params: &[&str],
) -> Vec<String> {
    c.send(b'B', &bind_msg(statement, params)).unwrap();
    c.send(b'E', &execute_msg()).unwrap();
    c.send(b'S', &[]).unwrap();
    c.read_until(b'Z').unwrap()
}

/// Parse, Bind and Execute of `sql` (unnamed, no parameters), without Sync.
fn parse_bind_execute(c: &mut walstream_tests::rawclient::RawReplicationConn, sql: &str) {
    c.send(b'P', &parse_msg("", sql)).unwrap();
    c.send(b'B', &bind_msg("", &[])).unwrap();
    c.send(b'E', &execute_msg()).unwrap();
}

/// The extended protocol's implicit transaction on `port`: the Executes between two
/// Syncs commit together at Sync, an error rolls all of them back, others do not see
/// them before Sync, BEGIN takes them into a block, ROLLBACK warns and drops them.
fn implicit_transactions(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    let mut a = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut b = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut seen = a.query("CREATE TABLE implicit_t (k int PRIMARY KEY)").unwrap();
    let count = |b: &mut RawReplicationConn| b.query("SELECT count(*) FROM implicit_t").unwrap();
    // An error rolls back the Executes before it.
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (1)");
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (1)");
    a.send(b'S', &[]).unwrap();
    seen.extend(a.read_until(b'Z').unwrap());
    seen.extend(count(&mut b));
    // Not visible before Sync; both at Sync.
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (2)");
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (3)");
    a.send(b'H', &[]).unwrap();
    seen.extend(a.read_until(b'C').unwrap());
    seen.extend(a.read_until(b'C').unwrap());
    seen.extend(count(&mut b));
    a.send(b'S', &[]).unwrap();
    seen.extend(a.read_until(b'Z').unwrap());
    seen.extend(count(&mut b));
    // ROLLBACK in the implicit transaction warns and rolls it back.
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (4)");
    parse_bind_execute(&mut a, "ROLLBACK");
    a.send(b'S', &[]).unwrap();
    seen.extend(a.read_until(b'Z').unwrap());
    seen.extend(count(&mut b));
    // BEGIN takes the Executes before it into the block, which outlives Sync.
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (5)");
    parse_bind_execute(&mut a, "BEGIN");
    parse_bind_execute(&mut a, "INSERT INTO implicit_t VALUES (6)");
    a.send(b'S', &[]).unwrap();
    seen.extend(a.read_until(b'Z').unwrap());
    seen.extend(count(&mut b));
    seen.extend(a.query("ROLLBACK").unwrap());
    seen.extend(count(&mut b));
    seen
}

#[test]
fn extended_protocol_executes_share_one_implicit_transaction_until_sync() {
    let both = both();
    let theirs = implicit_transactions(both.pg.port());
    assert!(theirs.iter().any(|l| l.contains("23505")), "{theirs:#?}");
    assert_eq!(implicit_transactions(both.node.port()), theirs);
}

/// Parse, Bind, Execute of the extended protocol without Sync, on `port`: the replies
/// wait in the server's send buffer until Flush (PostgreSQL writes at ReadyForQuery, at
/// Flush and when its buffer fills), an ErrorResponse goes out at once, and Sync ends
/// it with ReadyForQuery. Returns every message seen, in order.
fn extended_exchange(port: u16) -> Vec<String> {
    use std::time::Duration;
    use walstream_tests::rawclient::RawReplicationConn;

    let mut c = RawReplicationConn::connect_with(port, &[("database", "postgres")]).unwrap();
    c.send(b'P', &parse_msg("", "SELECT 1 AS one")).unwrap();
    c.send(b'B', &bind_msg("", &[])).unwrap();
    c.send(b'D', b"P\0").unwrap();
    c.send(b'E', &execute_msg()).unwrap();
    assert!(c.silent_for(Duration::from_millis(300)).unwrap(), "replies before Flush or Sync");
    c.send(b'H', &[]).unwrap();
    let mut seen = c.read_until(b'C').unwrap();
    // An error is written at once, without waiting for Sync.
    c.send(b'P', &parse_msg("", "SELEC 1")).unwrap();
    seen.extend(c.read_until(b'E').unwrap());
    c.send(b'S', &[]).unwrap();
    seen.extend(c.read_until(b'Z').unwrap());
    seen
}

#[test]
fn extended_protocol_replies_wait_for_flush_or_sync_as_postgresql_does() {
    let both = both();
    let theirs = extended_exchange(both.pg.port());
    assert_eq!(theirs.first().map(String::as_str), Some("1"), "{theirs:?}");
    assert_eq!(extended_exchange(both.node.port()), theirs);
}

/// SET LOCAL lasts to the end of its transaction block (a WARNING and no effect outside
/// one); a plain SET in a block is kept by COMMIT and undone by ROLLBACK or an error.
const SET_SCRIPT: &[&str] = &[
    "SET LOCAL synchronous_commit = off",
    "SHOW synchronous_commit",
    "BEGIN",
    "SET LOCAL synchronous_commit = off",
    "SET statement_timeout = '7s'",
    "SHOW synchronous_commit",
    "COMMIT",
    "SHOW synchronous_commit",
    "SHOW statement_timeout",
    "BEGIN",
    "SET statement_timeout = '9s'",
    "ROLLBACK",
    "SHOW statement_timeout",
    "BEGIN",
    "SET LOCAL statement_timeout = '5s'",
    "SET statement_timeout = '6s'",
    "COMMIT",
    "SHOW statement_timeout",
    "BEGIN",
    "SET statement_timeout = '8s'",
    "SELECT 1/0",
    "ROLLBACK",
    "SHOW statement_timeout",
    "SET LOCAL synchronous_commit = off; SHOW synchronous_commit",
    "SHOW synchronous_commit",
];

fn run_set_script(conninfo: &str) -> String {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-d", conninfo]);
    for s in SET_SCRIPT {
        cmd.args(["-c", s]);
    }
    let out = cmd.output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn set_local_and_transactional_set_as_postgresql() {
    let both = both();
    let theirs = run_set_script(&both.pg.conninfo("postgres"));
    assert!(theirs.contains("SET LOCAL can only be used in transaction blocks"), "{theirs}");
    assert_eq!(run_set_script(&both.node.conninfo("postgres")), theirs);
}

const ALTER_SYSTEM: &[&str] = &[
    "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (a, \"B\")'",
    "ALTER SYSTEM SET statement_timeout TO 5000",
    "ALTER SYSTEM SET lock_timeout = '2s'",
    "ALTER SYSTEM SET nosuch = 1",
    "ALTER SYSTEM SET statement_timeout = 'x'",
    "ALTER SYSTEM SET wal_segment_size = 1",
    "BEGIN",
    "ALTER SYSTEM RESET statement_timeout",
    "ROLLBACK",
    "ALTER SYSTEM SET synchronous_standby_names = 'a b'",
    "ALTER SYSTEM RESET lock_timeout",
    "SELECT pg_reload_conf()",
];

/// ALTER SYSTEM's checks and texts, the `postgresql.auto.conf` it writes, and
/// `pg_reload_conf()` applying it to new sessions.
fn alter_system(conninfo: &str, data: &std::path::Path) -> (String, String, String) {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-d", conninfo]);
    for s in ALTER_SYSTEM {
        cmd.args(["-c", s]);
    }
    let out = cmd.output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    // The reload happens in the background on both: wait (bounded) for it.
    let shown = wait_for("the reload", TIMEOUT, || {
        Ok(Some(psql(conninfo, "SHOW statement_timeout").0).filter(|s| s.contains("5s")))
    })
    .unwrap();
    let show = shown + &psql(conninfo, "SHOW synchronous_standby_names").0;
    (text, auto, show)
}

#[test]
fn alter_system_and_reload_as_postgresql() {
    let both = both();
    let theirs = alter_system(&both.pg.conninfo("postgres"), &both.pg.data_dir());
    assert!(theirs.2.contains("5s"), "{theirs:?}");
    let ours = alter_system(&both.node.conninfo("postgres"), &both.node_dir.data_dir());
    assert_eq!(ours, theirs);
    // Both logs name the changes as the file wrote them.
    for line in [
        "LOG:  received SIGHUP, reloading configuration files",
        "LOG:  parameter \"statement_timeout\" changed to \"5000\"",
        "LOG:  parameter \"synchronous_standby_names\" changed to \"FIRST 1 (a, \"B\")\"",
    ] {
        assert!(both.pg.log().contains(line), "{line}: {}", both.pg.log());
        assert!(both.node.log().contains(line), "{line}: {}", both.node.log());
    }
}

/// pg_cancel_backend / pg_terminate_backend on pids that are no backends, and a negative
/// timeout: the same WARNINGs, errors and SQLSTATEs as PostgreSQL's.
#[test]
fn signalling_functions_as_postgresql() {
    let both = both();
    let run = |conninfo: &str, verbosity: &str| {
        let out = Command::new(pg_bin("psql"))
            .args(["-X", "-v", &format!("VERBOSITY={verbosity}"), "-d", conninfo])
            .args(["-c", "SELECT pg_cancel_backend(1)"])
            .args(["-c", "SELECT pg_terminate_backend(1, -1)"])
            .args(["-c", "SELECT pg_terminate_backend(1, 100)"])
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    for verbosity in ["default", "sqlstate"] {
        let theirs = run(&both.pg.conninfo("postgres"), verbosity);
        assert!(theirs.contains("WARNING:"), "{theirs}");
        assert_eq!(run(&both.node.conninfo("postgres"), verbosity), theirs, "{verbosity}");
    }
}

/// A session idle in a transaction block shows `idle in transaction`, and past
/// `idle_in_transaction_session_timeout` it ends with FATAL 25P03.
fn idle_in_transaction(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    let mut c = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut other = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut seen = c.query("BEGIN").unwrap();
    seen.extend(c.query("SET idle_in_transaction_session_timeout = 500").unwrap());
    seen.extend(
        other
            .query("SELECT state FROM pg_stat_activity WHERE state = 'idle in transaction'")
            .unwrap(),
    );
    seen.extend(c.read_until_or_eof(b'Z').unwrap());
    seen
}

#[test]
fn idle_in_transaction_session_timeout_as_postgresql() {
    let both = both();
    let theirs = idle_in_transaction(both.pg.port());
    assert!(theirs.iter().any(|l| l.contains("25P03")), "{theirs:?}");
    assert_eq!(idle_in_transaction(both.node.port()), theirs);
}

/// A long `INSERT … SELECT generate_series` is cancelled by pg_cancel_backend from
/// another session (which gets answers meanwhile): 57014, and none of its rows visible.
fn cancel_long_insert(port: u16, query: &dyn Fn(&str) -> String) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    query("CREATE TABLE big (k int PRIMARY KEY, v text)");
    let mut c = RawReplicationConn::connect_with(port, &[("database", "postgres")]).unwrap();
    c.send(b'Q', b"INSERT INTO big SELECT g, 'x' FROM generate_series(1, 1900000) g\0").unwrap();
    let active = "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT%'";
    let pid = wait_for("the INSERT", TIMEOUT, || Ok(Some(query(active)).filter(|p| !p.is_empty())))
        .unwrap();
    let mut seen = vec![query(&format!("SELECT pg_cancel_backend({pid})"))];
    seen.extend(c.read_until(b'Z').unwrap());
    seen.push(query("SELECT count(*) FROM big"));
    seen
}

#[test]
fn a_long_insert_is_cancelled_as_postgresql() {
    let both = both();
    let theirs = cancel_long_insert(both.pg.port(), &|q| both.pg.psql(q).unwrap());
    assert!(theirs.iter().any(|l| l.contains("57014")), "{theirs:?}");
    assert_eq!(cancel_long_insert(both.node.port(), &|q| both.node.psql(q).unwrap()), theirs);
}

/// A backend waiting for another transaction's row lock shows `Lock` / `transactionid`
/// in pg_stat_activity, and goes on when the holder ends.
fn lock_wait(port: u16, query: &dyn Fn(&str) -> String) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    query("CREATE TABLE lk (k int PRIMARY KEY, v int); INSERT INTO lk VALUES (1, 0)");
    let mut a = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut b = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut seen = a.query("BEGIN").unwrap();
    seen.extend(a.query("UPDATE lk SET v = 1 WHERE k = 1").unwrap());
    b.send(b'Q', b"UPDATE lk SET v = 2 WHERE k = 1\0").unwrap();
    let waiting = "SELECT wait_event_type, wait_event, state FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock'";
    seen.push(
        wait_for("the lock wait", TIMEOUT, || Ok(Some(query(waiting)).filter(|w| !w.is_empty())))
            .unwrap(),
    );
    seen.extend(a.query("COMMIT").unwrap());
    seen.extend(b.read_until(b'Z').unwrap());
    seen.push(query(waiting));
    seen.push(query("SELECT v FROM lk"));
    seen
}

#[test]
fn a_row_lock_wait_shows_in_pg_stat_activity_as_postgresql() {
    let both = both();
    let theirs = lock_wait(both.pg.port(), &|q| both.pg.psql(q).unwrap());
    assert!(theirs.iter().any(|l| l == "Lock|transactionid|active"), "{theirs:?}");
    assert_eq!(lock_wait(both.node.port(), &|q| both.node.psql(q).unwrap()), theirs);
}

/// A session open across ALTER SYSTEM + pg_reload_conf() takes the new values at its next
/// command, except for what it SET itself.
fn reload_reaches_open_sessions(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    let mut a = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut admin = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut seen = a.query("SET lock_timeout = '1s'").unwrap();
    seen.extend(admin.query("ALTER SYSTEM SET statement_timeout = '3s'").unwrap());
    seen.extend(admin.query("ALTER SYSTEM SET lock_timeout = '2s'").unwrap());
    seen.extend(admin.query("SELECT pg_reload_conf()").unwrap());
    // The reload is asynchronous on both: wait (bounded) until a new session sees it.
    wait_for("the reload", TIMEOUT, || {
        let mut probe = RawReplicationConn::connect_with(port, &db)?;
        Ok(probe.query("SHOW statement_timeout")?.iter().any(|l| l == "D 3s").then_some(()))
    })
    .unwrap();
    seen.extend(a.query("SHOW statement_timeout").unwrap());
    seen.extend(a.query("SHOW lock_timeout").unwrap());
    seen.extend(a.query("RESET lock_timeout").unwrap());
    seen.extend(a.query("SHOW lock_timeout").unwrap());
    seen
}

#[test]
fn a_reload_reaches_open_sessions_as_postgresql() {
    let both = both();
    let theirs = reload_reaches_open_sessions(both.pg.port());
    assert!(theirs.iter().any(|l| l == "D 3s"), "{theirs:?}");
    assert_eq!(reload_reaches_open_sessions(both.node.port()), theirs);
}

/// ALTER SYSTEM refuses a value with a newline as PostgreSQL does (found by fuzzing the
/// configuration file writer: such a value would have split its line).
#[test]
fn alter_system_refuses_a_newline_in_a_value() {
    let both = both();
    let sql = "ALTER SYSTEM SET primary_conninfo = E'host=a\\nport=1'";
    let text = |conninfo: &str| {
        let out = Command::new(pg_bin("psql"))
            .args(["-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", sql])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.lines().filter(|l| !l.starts_with("LOCATION:")).collect::<Vec<_>>().join("\n")
    };
    let theirs = text(&both.pg.conninfo("postgres"));
    assert_eq!(
        theirs,
        "ERROR:  22023: parameter value for ALTER SYSTEM must not contain a newline"
    );
    assert_eq!(text(&both.node.conninfo("postgres")), theirs);
    both.node.stop().unwrap();
}

/// Identifiers over 63 bytes, quoted or not, in both protocols: each gets NOTICE 42622
/// when the statement is scanned (before ParseComplete in the extended protocol) and
/// is used truncated, a multibyte character never cut in half.
fn long_identifiers(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let mut c = RawReplicationConn::connect_with(port, &[("database", "postgres")]).unwrap();
    let (table, column) = ("T".repeat(70), "c".repeat(64));
    let quoted = format!("{}é", "q".repeat(62));
    let mut seen = Vec::new();
    for sql in [
        format!("CREATE TABLE {table} (k int PRIMARY KEY, {column} text)"),
        format!("INSERT INTO {table} VALUES (1, 'one')"),
        format!("SELECT {column}, k AS \"{quoted}\" FROM \"{}\"", "t".repeat(63)),
        format!("SELECT {} FROM {table}", "c".repeat(63)),
    ] {
        seen.extend(c.query(&sql).unwrap());
    }
    parse_bind_execute(&mut c, &format!("SELECT k AS {} FROM {table}", "K".repeat(65)));
    c.send(b'D', b"P\0").unwrap();
    c.send(b'S', &[]).unwrap();
    seen.extend(c.read_until(b'Z').unwrap());
    seen
}

#[test]
fn long_identifiers_are_truncated_with_a_notice_as_postgresql() {
    let both = both();
    let theirs = long_identifiers(both.pg.port());
    assert!(theirs.iter().filter(|l| l.contains("42622")).count() >= 5, "{theirs:#?}");
    assert_eq!(long_identifiers(both.node.port()), theirs);
}

/// A prepared statement across DROP and CREATE of its table: Bind runs it against the
/// new table while its result stays the same, fails with 0A000 when the result would
/// change and with 42P01 when the table is gone (`RevalidateCachedQuery`).
fn prepared_across_ddl(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let db = [("database", "postgres")];
    let mut c = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut ddl = RawReplicationConn::connect_with(port, &db).unwrap();
    let mut seen = ddl.query("CREATE TABLE pd (k int PRIMARY KEY, v text)").unwrap();
    seen.extend(ddl.query("INSERT INTO pd VALUES (1, 'one')").unwrap());
    c.send(b'P', &parse_msg("s1", "SELECT * FROM pd WHERE k > $1")).unwrap();
    c.send(b'S', &[]).unwrap();
    seen.extend(c.read_until(b'Z').unwrap());
    let run = |c: &mut RawReplicationConn| bind_execute_sync(c, "s1", &["0"]);
    seen.extend(run(&mut c));
    seen.extend(run(&mut c));
    for sql in [
        "DROP TABLE pd",
        "CREATE TABLE pd (k int PRIMARY KEY, v text)",
        "INSERT INTO pd VALUES (2, 'two')",
    ] {
        seen.extend(ddl.query(sql).unwrap());
    }
    seen.extend(run(&mut c));
    seen.extend(ddl.query("DROP TABLE pd").unwrap());
    seen.extend(ddl.query("CREATE TABLE pd (k int PRIMARY KEY, w int)").unwrap());
    seen.extend(run(&mut c));
    seen.extend(run(&mut c));
    seen.extend(ddl.query("DROP TABLE pd").unwrap());
    seen.extend(run(&mut c));
    seen.extend(c.query("SELECT 1").unwrap());
    seen
}

#[test]
fn a_prepared_statement_across_drop_and_create_as_postgresql() {
    let both = both();
    let theirs = prepared_across_ddl(both.pg.port());
    assert!(theirs.iter().any(|l| l.contains("0A000")), "{theirs:#?}");
    assert!(theirs.iter().any(|l| l.contains("42P01")), "{theirs:#?}");
    assert_eq!(prepared_across_ddl(both.node.port()), theirs);
}

/// Bind in a failed transaction block: 25P02 for anything but COMMIT or ROLLBACK
/// (`exec_bind_message`), which ends the block.
fn bind_in_a_failed_block(port: u16) -> Vec<String> {
    use walstream_tests::rawclient::RawReplicationConn;
    let mut c = RawReplicationConn::connect_with(port, &[("database", "postgres")]).unwrap();
    let mut seen = Vec::new();
    for (name, sql) in [("sel", "SELECT 1"), ("fin", "COMMIT")] {
        c.send(b'P', &parse_msg(name, sql)).unwrap();
    }
    c.send(b'S', &[]).unwrap();
    seen.extend(c.read_until(b'Z').unwrap());
    seen.extend(c.query("BEGIN").unwrap());
    seen.extend(c.query("SELECT 1/0").unwrap());
    for name in ["sel", "fin", "sel"] {
        seen.extend(bind_execute_sync(&mut c, name, &[]));
    }
    seen
}

#[test]
fn bind_in_a_failed_block_as_postgresql() {
    let both = both();
    let theirs = bind_in_a_failed_block(both.pg.port());
    assert!(theirs.iter().any(|l| l.contains("25P02")), "{theirs:#?}");
    assert_eq!(bind_in_a_failed_block(both.node.port()), theirs);
}
