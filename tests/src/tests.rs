//! Tests of the harness itself: clusters start, answer, honour settings and go away.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;

#[test]
fn cluster_starts_answers_and_is_removed() {
    let root;
    {
        let c = PgCluster::start(&PgConfig::small_segments()).expect("start");
        root = c.root().to_path_buf();
        assert_eq!(c.psql("SELECT 1").unwrap(), "1");
        assert_eq!(c.psql("SHOW wal_segment_size").unwrap(), "1MB");
        let segments = fs::read_dir(c.wal_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name().len() == 24 && e.file_name().to_string_lossy().starts_with("00000001")
            })
            .count();
        assert!(segments > 0, "no WAL segment in pg_wal");
    }
    assert!(!root.exists(), "cluster directory left behind");
}

#[test]
fn per_test_segment_size_settings_and_hba() {
    let cfg = PgConfig::default()
        .wal_segsize_mb(2)
        .set("wal_sender_timeout", "12s")
        .set("cluster_name", "it's quoted")
        .hba_lines(&[
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 reject",
        ]);
    let c = PgCluster::start(&cfg).expect("start");
    assert_eq!(c.psql("SHOW wal_segment_size").unwrap(), "2MB");
    assert_eq!(c.psql("SHOW wal_sender_timeout").unwrap(), "12s");
    assert_eq!(c.psql("SHOW cluster_name").unwrap(), "it's quoted");
    let refused = pg_command(pg_bin("psql"))
        .arg(format!("{} replication=true", c.conninfo("postgres")))
        .args(["-XAtc", "IDENTIFY_SYSTEM"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("pg_hba.conf rejects replication connection"), "{err}");
}

#[test]
fn cluster_is_stopped_when_a_test_panics() {
    let port = std::sync::Mutex::new(0u16);
    let r = std::panic::catch_unwind(|| {
        let c = PgCluster::start(&PgConfig::small_segments()).expect("start");
        *port.lock().unwrap() = c.port();
        panic!("test failure");
    });
    assert!(r.is_err());
    let port = *port.lock().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "server still up");
}

#[test]
fn raw_client_reports_results_and_errors() {
    let c = PgCluster::start(&PgConfig::small_segments()).expect("start");
    let mut conn = rawclient::RawReplicationConn::connect(c.port()).expect("connect");
    let lines = conn.query("IDENTIFY_SYSTEM").unwrap();
    assert_eq!(lines[0], "T systemid:25,timeline:23,xlogpos:25,dbname:25");
    assert!(lines[1].starts_with("D ") && lines[1].ends_with("|NULL"), "{lines:?}");
    assert_eq!(lines[2..], ["C IDENTIFY_SYSTEM", "Z I"]);
    let lines = conn.query("SELECT 1").unwrap();
    assert_eq!(
        lines,
        [
            "E SERROR C0A000 Mcannot execute SQL commands in WAL sender for physical replication",
            "Z I"
        ]
    );
}

#[test]
fn run_bounded_stops_a_command_that_overruns() {
    let started = std::time::Instant::now();
    let err = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let out =
        run_bounded(Command::new("sh").args(["-c", "echo hi; exit 3"]), Duration::from_secs(10))
            .unwrap();
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b"hi\n"[..]));
}

#[test]
fn serve_process_reports_a_server_that_exits() {
    let dir = tempfile::tempdir().unwrap();
    let err = ServeProcess::start(Path::new("/bin/false"), dir.path(), &[]).unwrap_err();
    assert!(err.to_string().contains("exited with"), "{err}");
}

#[test]
fn pg_programs_run_as_postgres_with_their_own_pid() {
    let out = run_ok(pg_command("id").arg("-un")).unwrap();
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if running_as_root() {
        assert_eq!(user, "postgres");
    }
    let mut child = ChildGuard::spawn_captured(pg_command("sleep").arg("30"), "sleep").unwrap();
    let pid = child.pid();
    assert!(child.stop(Duration::from_secs(5)).is_some());
    // SAFETY: signal 0 only checks whether the pid exists.
    assert_ne!(unsafe { libc::kill(pid as libc::pid_t, 0) }, 0, "process {pid} still running");
}

#[test]
fn lsn_and_segment_arithmetic_of_scenarios() {
    let seg = scenario::seg_size();
    assert_eq!(seg.bytes(), 1 << 20);
    let b = cluster::next_segment_boundary("0/12A39A8".parse().unwrap(), seg);
    assert_eq!(b.to_string(), "0/1300000");
    assert_eq!(cluster::next_segment_boundary(b, seg), b);
    let names = scenario::segments_between("000000010000000000000011", b);
    assert_eq!(names, ["000000010000000000000011", "000000010000000000000012"]);
}
