//! `walstream receivewal` as the synchronous standby of a real PostgreSQL 15 primary
//! (CONFORMANCE scenario 5): commits wait for its flush reports and are released
//! promptly while it streams; with it stopped they block in `SyncRep`, and a restarted
//! walstream releases them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use walstream_tests::standby::{replication_row, spawn_receivewal, ReplicationRow};
use walstream_tests::{pg_bin, pg_command, scenario, wait_for, ChildGuard, Lsn, PgCluster};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
/// The standby name the primary waits for.
const SYNC_NAME: &str = "walsync";

fn start_walstream(primary: &PgCluster, dir: &Path) -> anyhow::Result<ChildGuard> {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres application_name={SYNC_NAME}",
        primary.port()
    );
    spawn_receivewal(Path::new(WALSTREAM), &conninfo, dir, &[])
}

/// Waits until walstream is the primary's synchronous standby, streaming.
fn wait_sync(primary: &PgCluster, child: &ChildGuard) -> anyhow::Result<ReplicationRow> {
    wait_for("walstream receivewal as the sync standby", Duration::from_secs(15), || {
        Ok(replication_row(primary, SYNC_NAME)?
            .filter(|r| r.state == "streaming" && r.sync_state == "sync"))
    })
    .with_context(|| child.stderr_text())
}

/// A psql session running `sql` in the background as application `name`.
fn background_psql(primary: &PgCluster, name: &str, sql: &str) -> anyhow::Result<ChildGuard> {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{} application_name={name}", primary.conninfo("postgres")))
        .args(["-c", sql]);
    ChildGuard::spawn_captured(&mut cmd, "psql")
}

#[test]
fn commits_wait_for_walstream_as_the_synchronous_standby() -> anyhow::Result<()> {
    let cfg = scenario::source_config().set("synchronous_standby_names", SYNC_NAME);
    let primary = PgCluster::start(&cfg)?;
    let dir = tempfile::tempdir()?;
    let mut child = start_walstream(&primary, dir.path())?;
    wait_sync(&primary, &child)?;

    // While it streams, commits are released promptly by its flush reports.
    primary.psql("CREATE TABLE t (i int)")?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let started = Instant::now();
    primary.pgbench(&["-n", "-c", "1", "-t", "100"])?;
    let took = started.elapsed();
    eprintln!("100 synchronous pgbench commits took {took:?}");
    ensure!(took < Duration::from_secs(10), "100 commits took {took:?}\n{}", child.stderr_text());
    // A commit returned: the standby's flush is at or past it.
    primary.psql("INSERT INTO t VALUES (1000)")?;
    let commit: Lsn = primary.psql("SELECT pg_current_wal_insert_lsn()")?.parse()?;
    let row = wait_for("flush_lsn at the commit", Duration::from_secs(5), || {
        Ok(replication_row(&primary, SYNC_NAME)?.filter(|r| r.flush.is_some_and(|f| f >= commit)))
    })
    .with_context(|| child.stderr_text())?;
    ensure!(row.sync_state == "sync", "{row:?}");

    // Stopped, it releases nothing: a commit blocks in SyncRep.
    child.interrupt();
    let status = child.wait_timeout(Duration::from_secs(10))?;
    ensure!(status.is_some_and(|s| s.success()), "{status:?}\n{}", child.stderr_text());
    let mut blocked = background_psql(&primary, "blocked", "INSERT INTO t VALUES (2000)")?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        blocked.try_wait()?.is_none(),
        "the commit finished without a synchronous standby: {}",
        blocked.stderr_text()
    );
    let wait_event = primary
        .psql("SELECT wait_event FROM pg_stat_activity WHERE application_name = 'blocked'")?;
    ensure!(wait_event == "SyncRep", "the blocked commit waits on {wait_event:?}");

    // Started again, it resumes from its files and releases the commit.
    let mut again = start_walstream(&primary, dir.path())?;
    let released = Instant::now();
    let status = blocked.wait_timeout(Duration::from_secs(15))?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "the commit was not released ({status:?}); walstream:\n{}",
        again.stderr_text()
    );
    eprintln!("the blocked commit was released {:?} after walstream restarted", released.elapsed());
    ensure!(primary.psql("SELECT count(*) FROM t WHERE i = 2000")? == "1");
    wait_sync(&primary, &again)?;
    again.interrupt();
    let status = again.wait_timeout(Duration::from_secs(10))?;
    ensure!(status.is_some_and(|s| s.success()), "{status:?}\n{}", again.stderr_text());
    Ok(())
}
