//! `walstream serve` at the limits (issue 11 §2, "accept loop at the file-descriptor
//! limit"): connections alive at once are capped at PostgreSQL's MaxLivePostmasterChildren
//! (twice max_connections + max_wal_senders), the ones beyond get FATAL 53300 "sorry, too
//! many clients already" at once; at the descriptor limit a failed accept is retried after
//! 100 ms, not in a spin, and logged at most once per interval; once descriptors are free
//! again, clients get in.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use walstream_tests::{pg_bin, pg_command, ServeProcess};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// A node data directory's pg_wal: one valid segment to serve.
fn wal_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let st = Command::new(WALSTREAM)
        .args(["initdb", "--wal-segsize", "1", "-D"])
        .arg(tmp.path().join("d"))
        .status()
        .unwrap();
    assert!(st.success());
    tmp
}

fn psql_stderr(port: u16) -> String {
    let out = pg_command(pg_bin("psql"))
        .args(["-X", "-At", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"))
        .args(["-c", "SELECT 1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// User + system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let cols: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = cols[11].parse::<f64>().unwrap() + cols[12].parse::<f64>().unwrap();
    // SAFETY: sysconf with a constant name.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn connections_beyond_the_limit_are_refused_at_once() {
    let tmp = wal_dir();
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        &tmp.path().join("d/pg_wal"),
        &["-c", "max_connections=2", "-c", "max_wal_senders=1"],
    )
    .unwrap();
    // 2 × (2 + 1) = 6 alive at once, sending nothing.
    let held: Vec<TcpStream> =
        (0..6).map(|_| TcpStream::connect(("127.0.0.1", serve.port())).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        psql_stderr(serve.port()),
        format!(
            "psql: error: connection to server at \"127.0.0.1\", port {} failed: FATAL:  sorry, \
             too many clients already",
            serve.port()
        )
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(psql_stderr(serve.port()), "");
}

#[test]
fn at_the_descriptor_limit_accept_neither_spins_nor_floods_the_log() {
    let tmp = wal_dir();
    // walstream serve with 40 descriptors at most.
    let wrapper = tmp.path().join("limited");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec prlimit --nofile=40:40 {WALSTREAM} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let serve = ServeProcess::start(&wrapper, &tmp.path().join("d/pg_wal"), &[]).unwrap();
    let held: Vec<TcpStream> =
        (0..60).filter_map(|_| TcpStream::connect(("127.0.0.1", serve.port())).ok()).collect();
    assert!(held.len() >= 40, "only {} connections were made", held.len());
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(serve.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(serve.pid()) - before;
    assert!(spent < 0.5, "serve used {spent:.2} CPU s in 2 s at the descriptor limit");
    let log = serve.log();
    let lines = log.matches("could not accept new connection").count();
    assert!((1..=2).contains(&lines), "{lines} accept-failure lines:\n{log}");
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(psql_stderr(serve.port()), "", "{}", serve.log());
}
