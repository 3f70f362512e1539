//! `walstream waldump` against PostgreSQL 15's pg_waldump: the recorded outputs in
//! `testdata/expected/`, and live runs of the real pg_waldump on WAL that a throwaway
//! cluster wrote under pgbench.

use std::path::Path;
use std::process::{Command, Output};

use walstream_testdata as testdata;
use walstream_tests::{pg_bin, PgCluster, PgConfig};

/// Resource managers whose descriptions walstream does not write (only the type name).
const UNDESCRIBED: &[&str] =
    &["Hash", "Gin", "Gist", "SPGist", "BRIN", "MultiXact", "ReplicationOrigin"];

fn walstream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walstream"))
        .arg("waldump")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("run walstream")
}

fn pg_waldump(args: &[&str]) -> Output {
    Command::new(pg_bin("pg_waldump")).args(args).env("TZ", "UTC").output().expect("run pg_waldump")
}

/// The line up to and including the record type name after `desc: `.
fn through_type_name(line: &str) -> &str {
    let Some(at) = line.find("desc: ") else { return line };
    let rest = &line[at + 6..];
    let end = rest.find(' ').map_or(line.len(), |i| at + 6 + i);
    &line[..end]
}

/// Compares record listings line by line: whole lines, except the text after the type
/// name for the resource managers walstream does not describe.
fn assert_same_listing(ours: &str, theirs: &str) {
    let (o, t): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    for (i, (a, b)) in o.iter().zip(&t).enumerate() {
        let rmgr = b.get(6..).and_then(|s| s.split_whitespace().next()).unwrap_or("");
        if UNDESCRIBED.contains(&rmgr) {
            assert_eq!(through_type_name(a), through_type_name(b), "line {}", i + 1);
        } else {
            assert_eq!(a, b, "line {}", i + 1);
        }
    }
    assert_eq!(o.len(), t.len(), "number of lines");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_same_run(args: &[&str], exact: bool) {
    let (ours, theirs) = (walstream(args), pg_waldump(args));
    if exact {
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "stdout of {args:?}");
    } else {
        assert_same_listing(&text(&ours.stdout), &text(&theirs.stdout));
    }
    assert_eq!(text(&ours.stderr), text(&theirs.stderr), "stderr of {args:?}");
    assert_eq!(ours.status.code(), theirs.status.code(), "exit code of {args:?}");
}

fn check_expected(name: &str, args: &[&str]) {
    let exp = testdata::expected(name);
    let out = walstream(args);
    assert_eq!(text(&out.stdout), exp.stdout, "{name}: stdout");
    assert_eq!(text(&out.stderr), exp.stderr, "{name}: stderr");
    assert_eq!(out.status.code(), Some(exp.status), "{name}: exit code");
}

#[test]
fn recorded_shapes_listing_stats_and_end_of_wal() {
    let dir = testdata::shapes_dir();
    let (dir, start) = (dir.to_str().unwrap(), testdata::expected_value("shapes.start"));
    check_expected("shapes", &["-p", dir, "-s", &start]);
    check_expected("shapes-stats", &["-p", dir, "-s", &start, "--stats"]);
    check_expected("shapes-stats-record", &["-p", dir, "-s", &start, "--stats=record"]);
}

#[test]
fn recorded_timelines() {
    let dir = testdata::timeline_dir();
    let dir = dir.to_str().unwrap();
    let start = testdata::expected_value("timeline.start");
    let history =
        std::fs::read_to_string(testdata::timeline_dir().join("00000002.history")).unwrap();
    let switch = history.lines().last().and_then(|l| l.split('\t').nth(1)).unwrap().to_string();
    check_expected("timeline-1", &["-p", dir, "-t", "1", "-s", &start, "-e", &switch]);
    check_expected("timeline-2", &["-p", dir, "-t", "2", "-s", &switch]);
}

#[test]
fn argument_errors_as_pg_waldump() {
    let dir = testdata::shapes_dir();
    let dir = dir.to_str().unwrap();
    assert_same_run(&["-p", dir, "--stats=foo", "-s", "0/700000"], true);
    assert_same_run(&["-p", dir], true);
    assert_same_run(&["-p", "/nonexistent/dir", "-s", "0/700000"], true);
    assert_same_run(&["-p", dir, "-s", "zz"], true);
    assert_same_run(&["-p", dir, "-r", "NoSuchRmgr", "-s", "0/700000"], true);
    assert_same_run(&["-p", dir, "000000010000000000000001"], true);
}

/// The first WAL segment file of a directory.
fn first_segment(dir: &Path) -> String {
    segments(dir).remove(0)
}

#[test]
fn pgbench_wal_matches_pg_waldump() {
    let cfg = PgConfig::small_segments()
        .set("wal_keep_size", "1GB")
        .set("max_wal_size", "1GB")
        .set("track_commit_timestamp", "on")
        .set("wal_compression", "pglz");
    let mut pg = PgCluster::start(&cfg).expect("start PostgreSQL 15");
    pg.pgbench(&["-i", "-s", "2"]).expect("pgbench -i");
    pg.pgbench(&["-c", "2", "-t", "8000"]).expect("pgbench run");
    pg.psql("select pg_logical_emit_message(true, 'p', 'hello'); select pg_create_restore_point('r'); checkpoint; select pg_switch_wal();")
        .expect("psql");
    pg.stop("fast").expect("stop");
    let wal = pg.wal_dir();
    let first = first_segment(&wal);
    let dir = wal.to_str().unwrap();
    let seg_start = {
        let (log, seg) = (
            u64::from_str_radix(&first[8..16], 16).unwrap(),
            u64::from_str_radix(&first[16..24], 16).unwrap(),
        );
        let lsn = log << 32 | seg << 20;
        format!("{:X}/{:X}", lsn >> 32, lsn as u32)
    };
    let listing = pg_waldump(&["-p", dir, "-s", &seg_start]);
    let records = text(&listing.stdout).lines().count();
    assert!(records >= 100_000, "only {records} records");
    assert_same_run(&["-p", dir, "-s", &seg_start], false);
    assert_same_run(&["-p", dir, "-s", &seg_start, "--stats"], true);
    assert_same_run(&["-p", dir, "-s", &seg_start, "--stats=record"], true);
    assert_same_run(&["-p", dir, "-s", &seg_start, "-q"], true);
    let mid = format!("{}{}", &seg_start[..seg_start.len() - 5], "12345");
    assert_same_run(&["-p", dir, "-s", &mid, "-n", "50", "-b"], false);
    assert_same_run(&["-p", dir, &first], false);
    assert_same_run(&["-p", dir, "-r", "Transaction", "-s", &seg_start], true);
    split_stats_match(&wal, &seg_start);
}

/// The WAL segment files of a directory, sorted.
fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    names
}

/// `X/Y` of byte `offset` of a 1 MB segment file.
fn lsn_in(name: &str, offset: u64) -> String {
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    let lsn = (log << 32 | seg << 20) + offset;
    format!("{:X}/{:X}", lsn >> 32, lsn as u32)
}

/// `--stats` with an end LSN over many segments (decoded in parts on several threads)
/// gives pg_waldump's result, also when the range ends in an error or a corrupt page.
fn split_stats_match(wal: &Path, start: &str) {
    let names = segments(wal);
    assert!(names.len() >= 8, "only {} segments", names.len());
    let dir = wal.to_str().unwrap();
    let end = lsn_in(&names[names.len() * 2 / 3], 0x4567);
    for stats in ["--stats", "--stats=record"] {
        assert_same_run(&["-p", dir, "-s", start, "-e", &end, stats], true);
    }
    assert_same_run(&["-p", dir, "-s", "0/1234567", "-e", &end, "--stats", "-r", "Heap"], true);
    let beyond = lsn_in(names.last().unwrap(), 5 << 20);
    assert_same_run(&["-p", dir, "-s", start, "-e", &beyond, "--stats"], true);
    // A bad page magic (then repaired), then a flipped record byte, mid-range.
    let copy = tempfile::tempdir().unwrap();
    for n in &names {
        std::fs::copy(wal.join(n), copy.path().join(n)).unwrap();
    }
    let victim = copy.path().join(&names[names.len() / 2]);
    let cdir = copy.path().to_str().unwrap();
    let edits = [(0x6000usize, 0x01u8, true), (0x6000, 0x01, false), (0x8000 + 1000, 0x40, true)];
    for (offset, xor, check) in edits {
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[offset] ^= xor;
        std::fs::write(&victim, bytes).unwrap();
        if check {
            assert_same_run(&["-p", cdir, "-s", start, "-e", &end, "--stats"], true);
        }
    }
}
