//! Soak (issue 11, campaigns): `walstream serve` under 200 clients that connect, run
//! replication commands and disconnect in a loop, and 16 walsenders streaming the whole
//! served WAL to `walstream receivewal` over and over; its resident memory, sampled every
//! second, must stay flat (the last third of the run no higher than the first beyond a
//! small margin), its open descriptors bounded under the load and back to idle after it.
//!
//! `SOAK_SECS` sets the length (default 20, what CI runs; the campaign runs 600).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use walstream_tests::rawclient::RawReplicationConn;
use walstream_tests::{scenario, ServeProcess};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn serve_stays_flat_under_200_clients_and_16_walsenders() -> Result<()> {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut source = scenario::Source::pgbench()?;
    let first = source.first_segment()?;
    let end = source.end;
    let wal = source.stop_and_copy()?;
    let serve = ServeProcess::start(WALSTREAM.as_ref(), wal.path(), &[])?;
    let (port, pid) = (serve.port(), serve.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicU64::new(0));
    let streams = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..200 {
        let (stop, sessions) = (stop.clone(), sessions.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(mut c) = RawReplicationConn::connect(port) {
                    let _ = c.query("IDENTIFY_SYSTEM");
                    let _ = c.query("SHOW wal_segment_size");
                    sessions.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    let endpos = end.to_string();
    for _ in 0..16 {
        let (stop, streams) = (stop.clone(), streams.clone());
        let (first, endpos) = (first.clone(), endpos.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(dir) = tempfile::tempdir() else { return };
                let seed = dir.path().join(format!("{first}.partial"));
                let size = u64::from(scenario::seg_size().bytes());
                if std::fs::File::create(&seed).and_then(|f| f.set_len(size)).is_err() {
                    return;
                }
                let ok = Command::new(WALSTREAM)
                    .arg("receivewal")
                    .arg("-d")
                    .arg(format!("host=127.0.0.1 port={port} user=postgres"))
                    .arg("-D")
                    .arg(dir.path())
                    .args(["-n", "-E", &endpos, "--no-sync"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    streams.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut rss = Vec::new();
    let mut fds = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(status_kb(pid, "VmRSS:").context("serve's VmRSS")?);
        fds.push(open_fds(pid).context("serve's fds")?);
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let third = (rss.len() / 3).max(1);
    let (rss_first, rss_last) =
        (median(rss[..third].to_vec()), median(rss[rss.len() - third..].to_vec()));
    let (fds_first, fds_last) = (
        fds[..third].iter().copied().max().unwrap_or(0),
        fds[fds.len() - third..].iter().copied().max().unwrap_or(0),
    );
    let (n_sessions, n_streams) =
        (sessions.load(Ordering::Relaxed), streams.load(Ordering::Relaxed));
    eprintln!(
        "{secs} s: {n_sessions} sessions, {n_streams} complete streams; RSS kB first third median {rss_first}, \
         last third {rss_last} (all: {rss:?}); fds first third max {fds_first}, last third {fds_last}"
    );
    ensure!(
        n_sessions > 200 && n_streams >= 16,
        "the load did not run: {n_sessions} sessions, {n_streams} streams"
    );
    ensure!(
        rss_last <= rss_first + rss_first / 5 + 8192,
        "serve's RSS grew: {rss_first} kB -> {rss_last} kB"
    );
    // Descriptors follow the sessions open at each moment (the load ramps up, so the first
    // third may hold fewer): bounded by 200 sessions and 16 walsenders plus the listener
    // and files while loaded, and back to idle after it (below).
    ensure!(
        fds_first.max(fds_last) < 400,
        "serve held {fds_first} / {fds_last} descriptors under the load"
    );
    // After the load: back to idle.
    std::thread::sleep(Duration::from_secs(2));
    let idle = open_fds(pid).context("fds")?;
    ensure!(idle < 32, "{idle} descriptors open when idle");
    Ok(())
}
