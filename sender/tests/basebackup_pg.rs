//! `BASE_BACKUP` against the real PostgreSQL 15 client tools: `pg_basebackup` (plain and
//! tar, WAL streamed or fetched, throttled, to the server, refused compression) takes a
//! backup of a real cluster's data directory that walstream serves, `pg_verifybackup`
//! accepts it, and the tar headers are byte for byte those of PostgreSQL's own
//! `pg_basebackup -Ft` of the same files.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use walstream_sender::auth::Roles;
use walstream_sender::backend::QueryHandler;
use walstream_sender::basebackup::DirBackupSource;
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::ServerParts;
use walstream_sender::protocol::wire::BackendMessage;
use walstream_sender::serve_handler::ServeHandler;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions, WalSource};
use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::{pg_bin, pg_command, postgres_owned_tempdir, run_bounded};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a PostgreSQL client program as `postgres`, bounded.
fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = pg_command(pg_bin(program));
    cmd.args(args);
    run_bounded(&mut cmd, TIMEOUT).unwrap()
}

fn ok(out: &Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

/// The members of a tar file: name → header.
fn tar_headers(path: &Path) -> HashMap<String, Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut out = HashMap::new();
    let mut off = 0;
    while off + 512 <= data.len() {
        let h = &data[off..off + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..end]).into_owned();
        let size_text = std::str::from_utf8(&h[124..135]).unwrap();
        let size = u64::from_str_radix(size_text, 8).unwrap() as usize;
        out.insert(name, h.to_vec());
        off += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// A cluster with some data, stopped cleanly; a walstream server backing its data
/// directory up.
struct Fixture {
    cluster: PgCluster,
    server: common::TestServer,
    /// PostgreSQL's own `pg_basebackup -Ft` of the cluster, taken before it stopped.
    reference: tempfile::TempDir,
    /// The shapes of PostgreSQL's answers to [`COMMANDS`], taken before it stopped.
    shapes: Vec<Vec<String>>,
    /// What `pg_basebackup` [`VERBOSE`] printed taking a backup of PostgreSQL.
    verbose_log: String,
}

/// `pg_basebackup -v` arguments (the harness adds `-c fast --no-sync`).
const VERBOSE: &[&str] = &["-v", "-X", "stream", "-Ft", "-c", "fast", "--no-sync"];

/// pg_basebackup's messages with positions, file and slot names made `*`.
fn normalize(log: &str) -> Vec<String> {
    log.lines()
        .map(|line| {
            line.split(' ')
                .map(|w| {
                    let hexish =
                        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
                    let bare = w.trim_end_matches([',', '"']).trim_start_matches('"');
                    match bare.split_once('/') {
                        Some((a, b)) if hexish(a) && hexish(b) => "*".to_string(),
                        _ if bare.starts_with("pg_basebackup_") => "*".to_string(),
                        _ if bare.len() == 24 && hexish(bare) => "*".to_string(),
                        _ => w.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Commands whose answers are compared, message by message, with PostgreSQL's.
fn commands() -> Vec<String> {
    let long = "x".repeat(1025);
    let mut c: Vec<String> = COMMANDS.iter().map(|s| s.to_string()).collect();
    // Refused before anything is read, however slow MAX_RATE would make it.
    c.push(format!("BASE_BACKUP (MAX_RATE 32, LABEL '{long}')"));
    c
}

const COMMANDS: &[&str] = &[
    "BASE_BACKUP (LABEL 'x', PROGRESS, CHECKPOINT 'fast', MANIFEST 'yes', TARGET 'client')",
    "BASE_BACKUP (LABEL 'x', CHECKPOINT 'fast', WAIT 0, TARGET 'blackhole', MANIFEST 'yes')",
    "BASE_BACKUP (WAL, WAIT 0, CHECKPOINT 'fast', TABLESPACE_MAP)",
    "BASE_BACKUP (TARGET 'server', TARGET_DETAIL 'relative/dir')",
    "BASE_BACKUP (TARGET 'server', TARGET_DETAIL '/nonexistent/walstream/a')",
];

/// A message sequence with what may differ between two servers left out: data runs
/// become one `data`, positions and sizes `*`; field descriptions, tags, notices and
/// errors stay whole.
fn shape(msgs: &[BackendMessage]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in msgs {
        let token = match m {
            BackendMessage::RowDescription(f) => format!("T{f:?}"),
            BackendMessage::DataRow(cols) => {
                let nulls: Vec<bool> = cols.iter().map(Option::is_none).collect();
                format!("D{nulls:?}")
            }
            BackendMessage::CopyData(d) => match d.first() {
                Some(b'n') => format!("n{:?}", &d[1..]),
                Some(b'd') => "data".to_string(),
                Some(b'p') => "p".to_string(),
                Some(b'm') => format!("m{}", d.len()),
                other => format!("copy {other:?}"),
            },
            BackendMessage::NoticeResponse(e) | BackendMessage::ErrorResponse(e) => {
                format!(
                    "{} {} {} {}",
                    e.severity,
                    e.code,
                    e.message,
                    e.detail.clone().unwrap_or_default()
                )
            }
            other => format!("{other:?}"),
        };
        // Progress reports in the middle of the data come every second; the one that
        // ends an archive always.
        if token == "data" || token == "p" {
            while matches!(out.last().map(String::as_str), Some("data" | "p")) {
                let last = out.pop().unwrap();
                if last == "data" && token == "p" {
                    out.push("data".into());
                    break;
                }
            }
        }
        out.push(token);
    }
    out
}

async fn shapes_of(addr: std::net::SocketAddr) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for cmd in commands() {
        let (mut c, _) = common::RawClient::startup(addr, &[("replication", "true")]).await;
        all.push(shape(&c.query(&cmd).await));
    }
    all
}

async fn fixture() -> Fixture {
    let mut cluster = PgCluster::start(&PgConfig::default().set("autovacuum", "off")).unwrap();
    cluster
        .psql(
            "CREATE TABLE t (k int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g; \
             CREATE UNLOGGED TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1), (2);",
        )
        .unwrap();
    let reference = postgres_owned_tempdir("walstream-bbref.").unwrap();
    let target = reference.path().join("tar");
    cluster.basebackup_to(&target, &["-Ft", "-X", "none"]).unwrap();
    let verbose = reference.path().join("verbose");
    let out = cluster.basebackup_to(&verbose, VERBOSE).unwrap();
    let verbose_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let shapes = shapes_of(format!("127.0.0.1:{}", cluster.port()).parse().unwrap()).await;
    cluster.stop("fast").unwrap();
    let wal = DirWalSource::open(&cluster.wal_dir(), DirWalSourceOptions::default()).unwrap();
    let wal: Arc<dyn WalSource> = wal;
    let backup = Arc::new(DirBackupSource::new(cluster.data_dir(), wal.clone()));
    let settings = Settings::default();
    let registry = walstream_sender::registry::Registry::new();
    let handler: Arc<dyn QueryHandler> =
        Arc::new(ServeHandler::new(Arc::new(|_| None), registry.clone()));
    let slots = Arc::new(SlotStore::in_memory(settings.max_replication_slots as usize));
    let server = common::start_parts(ServerParts {
        settings,
        hba: HbaFile::loopback_trust(),
        roles: Roles::permissive(),
        source: wal,
        slots,
        handler,
        registry,
        backup: Some(backup),
        tls: None,
    })
    .await;
    Fixture { cluster, server, reference, shapes, verbose_log }
}

impl Fixture {
    /// `pg_basebackup` from walstream into `dir` (none if empty) with `extra` arguments.
    async fn basebackup(&self, dir: &Path, extra: &[&str]) -> Output {
        let port = self.server.addr.port().to_string();
        let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--no-sync"];
        let d = dir.to_str().unwrap().to_string();
        if !d.is_empty() {
            args.push("-D");
            args.push(&d);
        }
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run("pg_basebackup", &a)
        })
        .await
        .unwrap()
    }
}

fn verify(dir: &Path) -> String {
    ok(&run("pg_verifybackup", &[dir.to_str().unwrap()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_basebackup_and_pg_verifybackup_accept_walstreams_backups() {
    let f = fixture().await;
    let out = postgres_owned_tempdir("walstream-bb.").unwrap();

    // Plain, WAL streamed, manifest with CRC32C, progress: what most people run.
    let plain = out.path().join("plain");
    let text = ok(&f.basebackup(&plain, &["-X", "stream", "-P", "-c", "fast", "-R"]).await);
    assert!(text.contains("/"), "progress was reported: {text}");
    let label = std::fs::read_to_string(plain.join("backup_label")).unwrap();
    let lines: Vec<&str> = label.lines().collect();
    assert!(lines[0].starts_with("START WAL LOCATION: ") && lines[0].contains(" (file 0000000"));
    assert!(lines[1].starts_with("CHECKPOINT LOCATION: "));
    assert_eq!(lines[2..4], ["BACKUP METHOD: streamed", "BACKUP FROM: primary"]);
    assert!(lines[4].starts_with("START TIME: 20"));
    assert_eq!(lines[5..], ["LABEL: pg_basebackup base backup", "START TIMELINE: 1"]);
    assert!(plain.join("standby.signal").exists());
    assert!(!plain.join("postmaster.pid").exists());
    assert!(plain.join("global/pg_control").exists());
    assert!(verify(&plain).contains("backup successfully verified"));

    // The same in tar format: base.tar and pg_wal.tar, verified once unpacked.
    let tar = out.path().join("tar");
    ok(&f.basebackup(&tar, &["-Ft", "-X", "stream", "--manifest-checksums=SHA256"]).await);
    let unpacked = out.path().join("unpacked");
    std::fs::create_dir_all(unpacked.join("pg_wal")).unwrap();
    let untar = |file: &Path, into: &Path| {
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(file)
            .arg("-C")
            .arg(into)
            .status()
            .unwrap();
        assert!(st.success());
    };
    untar(&tar.join("base.tar"), &unpacked);
    untar(&tar.join("pg_wal.tar"), &unpacked.join("pg_wal"));
    std::fs::copy(tar.join("backup_manifest"), unpacked.join("backup_manifest")).unwrap();
    walstream_tests::chown_postgres(&unpacked).unwrap();
    let st = std::process::Command::new("chown")
        .args(["-R", "postgres"])
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(verify(&unpacked).contains("backup successfully verified"));
    let manifest = std::fs::read_to_string(tar.join("backup_manifest")).unwrap();
    assert!(manifest.contains("\"Checksum-Algorithm\": \"SHA256\""));

    // Every header PostgreSQL wrote for a file that has not changed since is ours too,
    // byte for byte.
    let ours = tar_headers(&tar.join("base.tar"));
    let theirs = tar_headers(&f.reference.path().join("tar/base.tar"));
    let mut same = 0;
    for (name, h) in &theirs {
        let Some(mine) = ours.get(name) else { continue };
        if mine[124..148] == h[124..148] {
            assert_eq!(mine, h, "header of {name}");
            same += 1;
        }
    }
    assert!(same > 100, "only {same} headers compared");
    // The same relation files (unlogged ones by their init forks only).
    let rel_files = |h: &HashMap<String, Vec<u8>>| {
        let mut v: Vec<String> = h.keys().filter(|n| n.starts_with("base/")).cloned().collect();
        v.sort();
        v
    };
    assert_eq!(rel_files(&ours), rel_files(&theirs));
    assert!(rel_files(&ours).iter().any(|n| n.ends_with("_init")));
    for name in ["backup_label", "pg_wal/", "./pg_wal/archive_status/", "global/pg_control"] {
        assert!(ours.contains_key(name), "{name}");
    }

    // WAL fetched inside the archive (BASE_BACKUP's WAL option), throttled.
    let fetch = out.path().join("fetch");
    ok(&f.basebackup(&fetch, &["-X", "fetch", "-r", "32M", "--manifest-force-encode"]).await);
    assert!(verify(&fetch).contains("backup successfully verified"));
    let done = std::fs::read_dir(fetch.join("pg_wal/archive_status")).unwrap().count();
    assert!(done >= 1);

    // To the server, and into the void.
    let on_server = out.path().join("on-server");
    let blank = Path::new("");
    let target = format!("server:{}", on_server.display());
    ok(&f.basebackup(blank, &["-t", &target, "-X", "none"]).await);
    assert!(on_server.join("base.tar").exists() && on_server.join("backup_manifest").exists());
    ok(&f.basebackup(blank, &["-t", "blackhole", "-X", "none"]).await);

    // pg_basebackup -v says the same things taking a backup of walstream as of PostgreSQL.
    let verbose = out.path().join("verbose");
    let mut args: Vec<&str> = VERBOSE.to_vec();
    args.retain(|a| *a != "--no-sync");
    let ours = ok(&f.basebackup(&verbose, &args).await);
    assert_eq!(normalize(&ours), normalize(&f.verbose_log), "{ours}");
    for said in ["checkpoint completed", "write-ahead log end point: ", "base backup completed"] {
        assert!(ours.contains(said), "{ours}");
    }

    // Server-side compression is refused as by a PostgreSQL built without it.
    let refused = f.basebackup(&out.path().join("gz"), &["-Ft", "--compress=server-gzip"]).await;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("could not initiate base backup: ERROR:  gzip compression is not supported by this build"),
        "{err}"
    );
    drop(f.cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_message_for_message_as_postgres_15() {
    let f = fixture().await;
    let ours = shapes_of(f.server.addr).await;
    for ((cmd, theirs), ours) in commands().iter().zip(&f.shapes).zip(&ours) {
        assert_eq!(ours, theirs, "{cmd}");
    }
    // The shapes hold what they should.
    assert!(f.shapes[0].iter().any(|t| t.starts_with("NOTICE 00000 WAL archiving is not enabled")));
    assert!(f.shapes[0].iter().any(|t| t.starts_with("m")));
    assert!(f.shapes[1].iter().all(|t| t != "data"));
    assert!(f.shapes[3].iter().any(|t| t.contains("42602 relative path not allowed")));
    assert!(f.shapes[5].iter().any(|t| t.contains("22023 backup label too long (max 1024 bytes)")));
    drop(f.cluster);
}
