//! `kill -9` rounds (issue 11, campaigns): `walstream serve` and `walstream relay` killed at
//! random moments while `walstream receivewal` streams from them and restarted on the
//! same port; the client reconnects by itself, and at the end every directory is a
//! gapless, byte-identical copy of the primary's WAL.
//!
//! `KILL9_ROUNDS` sets the number of kills per test (default 5, what CI runs; the
//! campaign runs 100); `KILL9_SEED` the moments (printed on every run).

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::faults::Rng;
use walstream_tests::standby::spawn_receivewal;
use walstream_tests::walcheck::assert_gapless_copy;
use walstream_tests::{
    complete_wal_files, free_port, scenario, wait_for, ChildGuard, Lsn, PgCluster, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

fn rounds() -> usize {
    std::env::var("KILL9_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

/// Waits until something accepts connections on `port`, or `child` exits.
fn wait_listening(child: &mut ChildGuard, port: u16) -> Result<()> {
    wait_for("listening", Duration::from_secs(20), || {
        if let Some(status) = child.try_wait()? {
            bail!("{} exited with {status}: {}", child.name(), child.stderr_text());
        }
        Ok(TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(()))
    })
}

fn start(args: &[&str], name: &str, port: u16) -> Result<ChildGuard> {
    let mut cmd = Command::new(WALSTREAM);
    cmd.args(args).env("RUST_BACKTRACE", "1");
    let mut child = ChildGuard::spawn_captured(&mut cmd, name)?;
    wait_listening(&mut child, port)?;
    Ok(child)
}

/// `walstream receivewal` from 127.0.0.1:`port` into `dir` (it reconnects by itself).
fn receivewal(port: u16, dir: &Path) -> Result<ChildGuard> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres");
    spawn_receivewal(WALSTREAM.as_ref(), &conninfo, dir, &[])
}

/// Kills `child` with SIGKILL and waits for it.
fn kill9(child: &mut ChildGuard) -> Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!("{} exited by itself ({status}):\n{}", child.name(), child.stderr_text());
    }
    child.signal(libc::SIGKILL);
    child.wait_timeout(Duration::from_secs(10))?.context("SIGKILL did not stop it")?;
    Ok(())
}

/// Waits until `dir` holds the complete segment `last`.
fn wait_for_segment(dir: &Path, last: &str, who: &ChildGuard) -> Result<()> {
    wait_for(&format!("{last} in {}", dir.display()), Duration::from_secs(60), || {
        Ok(complete_wal_files(dir)?.iter().any(|n| n == last).then_some(()))
    })
    .with_context(|| who.stderr_text())
}

/// The relay, between a primary under pgbench and `walstream receivewal`, killed and
/// restarted: the relay's own directory and the client's are gapless copies.
#[test]
fn relay_killed_at_random_moments_loses_nothing() -> Result<()> {
    let t0 = Instant::now();
    let mut rng = Rng::from_env("KILL9_SEED");
    let seg = scenario::seg_size();
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let mut pgbench = walstream_tests::ChildGuard::spawn_captured(
        walstream_tests::pg_command(walstream_tests::pg_bin("pgbench"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-c", "2", "-T", "600", "-p"])
            .arg(primary.port().to_string())
            .arg("postgres"),
        "pgbench",
    )?;
    let relay_dir = tempfile::tempdir()?;
    let client_dir = tempfile::tempdir()?;
    let port = free_port()?;
    let upstream = format!("host=127.0.0.1 port={} user=postgres", primary.port());
    let listen = format!("127.0.0.1:{port}");
    let relay_args = [
        "relay",
        "-D",
        relay_dir.path().to_str().context("path")?,
        "--upstream",
        &upstream,
        "--listen",
        &listen,
    ];
    let mut relay = start(&relay_args, "walstream relay", port)?;
    let client = receivewal(port, client_dir.path())?;
    let mut moments = Vec::new();
    for _ in 0..rounds() {
        let ms = rng.between(50, 500);
        std::thread::sleep(Duration::from_millis(ms));
        kill9(&mut relay)?;
        moments.push(ms);
        relay = start(&relay_args, "walstream relay", port)?;
    }
    eprintln!("relay killed after (ms): {moments:?}");
    pgbench.stop(Duration::from_secs(10));
    let end = primary.switch_wal()?;
    let last = segment_file_name(TimeLineId(1), Lsn(end.0 - 1).segno(seg), seg);
    wait_for_segment(relay_dir.path(), &last, &relay)?;
    wait_for_segment(client_dir.path(), &last, &client)?;
    let relayed = assert_gapless_copy(relay_dir.path(), &primary.wal_dir(), seg)
        .with_context(|| relay.stderr_text())?;
    let received = assert_gapless_copy(client_dir.path(), &primary.wal_dir(), seg)
        .with_context(|| client.stderr_text())?;
    eprintln!(
        "{} kills; relay {} segments, client {} segments, {:?}",
        moments.len(),
        relayed.len(),
        received.len(),
        t0.elapsed()
    );
    Ok(())
}

/// `walstream serve` over a directory that grows a segment at a time (as an archive
/// does), killed and restarted between and during the client's reads.
#[test]
fn serve_killed_at_random_moments_loses_nothing() -> Result<()> {
    let t0 = Instant::now();
    let mut rng = Rng::from_env("KILL9_SEED");
    let seg = scenario::seg_size();
    let mut source = scenario::Source::pgbench()?;
    let first = source.first_segment()?;
    let all = source.stop_and_copy()?;
    let names = scenario::segments_between(&first, source.end);
    let served = tempfile::tempdir()?;
    let client_dir = tempfile::tempdir()?;
    // The client starts at the first segment: an empty .partial of it is where it resumes.
    let seed = client_dir.path().join(format!("{first}.partial"));
    std::fs::File::create(&seed)?.set_len(u64::from(seg.bytes()))?;
    // Segments appear atomically (copied under another name, then renamed).
    let publish = |name: &str| -> Result<()> {
        let tmp = served.path().join(format!("{name}.copying"));
        std::fs::copy(all.path().join(name), &tmp)?;
        std::fs::rename(&tmp, served.path().join(name))?;
        Ok(())
    };
    publish(&names[0])?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let serve_args = ["serve", "-D", served.path().to_str().context("path")?, "--listen", &listen];
    let mut serve = start(&serve_args, "walstream serve", port)?;
    let client = receivewal(port, client_dir.path())?;
    let total = rounds();
    let mut next = 1;
    let mut moments = Vec::new();
    for round in 0..total {
        // Spread the remaining segments over the rounds.
        let upto = names.len() * (round + 1) / total;
        while next < upto.max(next.min(names.len())) {
            publish(&names[next])?;
            next += 1;
        }
        let ms = rng.between(20, 300);
        std::thread::sleep(Duration::from_millis(ms));
        kill9(&mut serve)?;
        moments.push(ms);
        serve = start(&serve_args, "walstream serve", port)?;
    }
    while next < names.len() {
        publish(&names[next])?;
        next += 1;
    }
    eprintln!("serve killed after (ms): {moments:?}");
    let last = names.last().context("no segments")?;
    wait_for_segment(client_dir.path(), last, &client)?;
    let received = assert_gapless_copy(client_dir.path(), all.path(), seg)
        .with_context(|| format!("{}\n{}", client.stderr_text(), serve.stderr_text()))?;
    anyhow::ensure!(
        received.first() == Some(&first) && received.len() >= names.len(),
        "received {received:?}, served {names:?}"
    );
    eprintln!("{} kills; {} segments received, {:?}", moments.len(), received.len(), t0.elapsed());
    Ok(())
}
