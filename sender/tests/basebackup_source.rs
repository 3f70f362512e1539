//! `BASE_BACKUP` from a server's own [`BackupSource`] (no PostgreSQL needed): what the
//! source is asked and when, its control file sent last, its exclusions, the refusal
//! without a source, and the abort when the client goes away half-way.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walstream_sender::auth::Roles;
use walstream_sender::backend::QueryHandler;
use walstream_sender::basebackup::{BackupSource, BackupStart, BackupStop, BoxFuture};
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::ServerParts;
use walstream_sender::protocol::wire::{BackendMessage, ErrorFields};
use walstream_sender::protocol::{Lsn, TimeLineId};
use walstream_sender::serve_handler::ServeHandler;
use walstream_sender::slots::SlotStore;

/// A node-like source: its own control file name, a temp file it leaves out, and
/// counts of what it was asked.
struct NodeLike {
    dir: tempfile::TempDir,
    started: AtomicUsize,
    stopped: AtomicUsize,
    aborted: AtomicUsize,
}

impl BackupSource for NodeLike {
    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }
    fn start(&self, fast: bool) -> BoxFuture<'_, Result<BackupStart, ErrorFields>> {
        Box::pin(async move {
            assert!(fast);
            self.started.fetch_add(1, Ordering::SeqCst);
            Ok(BackupStart {
                lsn: Lsn(0x300_0028),
                tli: TimeLineId(1),
                checkpoint: Lsn(0x300_0060),
                time: "2026-12-07T06:33:57+00:00[Etc/UTC]".parse().unwrap(),
                in_recovery: false,
            })
        })
    }
    fn stop<'a>(&'a self, s: &'a BackupStart) -> BoxFuture<'a, Result<BackupStop, ErrorFields>> {
        Box::pin(async move {
            self.stopped.fetch_add(1, Ordering::SeqCst);
            Ok(BackupStop { lsn: Lsn(s.lsn.0 + 0x100), tli: TimeLineId(1) })
        })
    }
    fn abort(&self, _start: &BackupStart) {
        self.aborted.fetch_add(1, Ordering::SeqCst);
    }
    fn control_file(&self) -> String {
        "global/walstream_control".into()
    }
    fn exclude(&self, rel: &[u8]) -> bool {
        rel.ends_with(b".tmp")
    }
}

fn node_like() -> Arc<NodeLike> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for d in ["global", "base", "pg_wal"] {
        std::fs::create_dir(p.join(d)).unwrap();
    }
    std::fs::write(p.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(p.join("global/walstream_control"), [7u8; 100]).unwrap();
    std::fs::write(p.join("base/walstream_state"), vec![1u8; 300_000]).unwrap();
    std::fs::write(p.join("base/walstream_state.tmp"), b"half-written").unwrap();
    std::fs::write(p.join("pg_wal/000000010000000000000003"), b"not sent").unwrap();
    std::fs::write(p.join("postmaster.pid"), b"123").unwrap();
    Arc::new(NodeLike {
        dir,
        started: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
        aborted: AtomicUsize::new(0),
    })
}

async fn server(backup: Option<Arc<dyn BackupSource>>) -> common::TestServer {
    let settings = Settings::default();
    let registry = walstream_sender::registry::Registry::new();
    let handler: Arc<dyn QueryHandler> =
        Arc::new(ServeHandler::new(Arc::new(|_| None), registry.clone()));
    let slots = Arc::new(SlotStore::in_memory(4));
    common::start_parts(ServerParts {
        settings,
        hba: HbaFile::loopback_trust(),
        roles: Roles::permissive(),
        source: common::NoWal::new(),
        slots,
        handler,
        registry,
        backup,
        tls: None,
    })
    .await
}

/// The archive and manifest bytes of a copystream answer.
fn unpack(msgs: &[BackendMessage]) -> (Vec<u8>, Vec<u8>) {
    let (mut tar, mut manifest, mut in_manifest) = (Vec::new(), Vec::new(), false);
    for m in msgs {
        if let BackendMessage::CopyData(d) = m {
            match d[0] {
                b'n' => in_manifest = false,
                b'm' => in_manifest = true,
                b'd' if in_manifest => manifest.extend_from_slice(&d[1..]),
                b'd' => tar.extend_from_slice(&d[1..]),
                _ => {}
            }
        }
    }
    (tar, manifest)
}

/// The member names of a tar, in order.
fn members(tar: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() && tar[off..off + 512].iter().any(|b| *b != 0) {
        let h = &tar[off..off + 512];
        let end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        names.push(String::from_utf8_lossy(&h[..end]).into_owned());
        let size = u64::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
        off += 512 + (size as usize).div_ceil(512) * 512;
    }
    names
}

#[tokio::test]
async fn a_servers_own_source_is_backed_up_with_its_control_file_last() {
    let source = node_like();
    let s = server(Some(source.clone())).await;
    let (mut c, _) = common::RawClient::startup(s.addr, &[("replication", "true")]).await;
    let msgs = c
        .query(
            "BASE_BACKUP (LABEL 'node', CHECKPOINT 'fast', WAIT 0, MANIFEST 'yes', TABLESPACE_MAP)",
        )
        .await;
    assert!(common::errors(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(common::single_row(&msgs[..2]), [Some("0/3000028".into()), Some("1".into())]);
    let tags: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            BackendMessage::CommandComplete(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tags, ["SELECT", "SELECT", "SELECT", "BASE_BACKUP"]);
    let (tar, manifest) = unpack(&msgs);
    assert_eq!(
        members(&tar),
        [
            "backup_label",
            "tablespace_map",
            "PG_VERSION",
            "base/",
            "base/walstream_state",
            "global/",
            "pg_wal/",
            "./pg_wal/archive_status/",
            "global/walstream_control",
        ]
    );
    assert!(tar.len() % 512 == 0 && tar[tar.len() - 1024..].iter().all(|b| *b == 0));
    let label = String::from_utf8_lossy(&tar[512..1024]);
    assert!(label.starts_with(
        "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
         CHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
         START TIME: 2026-12-07 06:33:57 UTC\nLABEL: node\nSTART TIMELINE: 1\n"
    ));
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["Files"].as_array().unwrap().len(), 5);
    assert_eq!(m["WAL-Ranges"][0]["End-LSN"], "0/3000128");
    let counts =
        |s: &NodeLike| [&s.started, &s.stopped, &s.aborted].map(|a| a.load(Ordering::SeqCst));
    assert_eq!(counts(&source), [1, 1, 0]);
    assert!(matches!(msgs.last(), Some(BackendMessage::ReadyForQuery(_))));

    // The client goes away half-way through a slow backup: the source hears of it.
    let (mut slow, _) = common::RawClient::startup(s.addr, &[("replication", "true")]).await;
    let mut body = b"BASE_BACKUP (CHECKPOINT 'fast', MAX_RATE 32)".to_vec();
    body.push(0);
    slow.send_msg(b'Q', &body).await;
    // The first chunks arrive, then the client leaves.
    let mut got = 0;
    while got < 3 {
        if let Some(BackendMessage::CopyData(_)) = slow.recv().await {
            got += 1;
        }
    }
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts(&source)[2] == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts(&source), [2, 1, 1]);
}

#[tokio::test]
async fn without_a_source_base_backup_is_refused_and_compression_always() {
    let s = server(None).await;
    let (mut c, _) = common::RawClient::startup(s.addr, &[("replication", "true")]).await;
    let e = common::the_error(&c.query("BASE_BACKUP").await);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("0A000", "BASE_BACKUP is not supported by walstream")
    );
    let source = node_like();
    let s = server(Some(source.clone())).await;
    let (mut c, _) = common::RawClient::startup(s.addr, &[("replication", "true")]).await;
    for (alg, text) in [("gzip", "gzip"), ("lz4", "lz4"), ("zstd", "zstd")] {
        let e = common::the_error(&c.query(&format!("BASE_BACKUP (COMPRESSION '{alg}')")).await);
        assert_eq!(e.code, "0A000");
        assert_eq!(e.message, format!("{text} compression is not supported by this build"));
    }
    let e =
        common::the_error(&c.query("BASE_BACKUP (MANIFEST_CHECKSUMS 'md5', MANIFEST 'yes')").await);
    assert_eq!(e.message, "unrecognized checksum algorithm: \"md5\"");
    assert_eq!(source.started.load(Ordering::SeqCst), 0, "refused before starting");
}
