//! Tests of the harness itself: clusters start, answer, honour settings and go away.

use std::fs;

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
