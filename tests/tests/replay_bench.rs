//! `walstream replay-bench` against real PostgreSQL 15: a capture recorded from a primary
//! while pgbench runs, replayed at `max` and `original` pace by real standbys under two
//! configs (their data equal the primary's, the JSON has samples, the plots are PNG and
//! SVG, the record counts equal pg_waldump's); and bad captures refused before anything
//! is made.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use walstream_tests::{pg_bin, run_ok, PgCluster, PgConfig};

fn walstream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walstream")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const CHECKS: [&str; 4] = [
    "SELECT count(*), sum(abalance) FROM pgbench_accounts",
    "SELECT count(*), sum(bbalance) FROM pgbench_branches",
    "SELECT count(*), sum(tbalance) FROM pgbench_tellers",
    "SELECT count(*), sum(delta) FROM pgbench_history",
];

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// pg_waldump --stats=record's counts, summed per resource manager.
fn waldump_counts(wal: &Path, start: &str, end: &str) -> BTreeMap<String, u64> {
    let out = run_ok(Command::new(pg_bin("pg_waldump")).arg("-p").arg(wal).args([
        "-s",
        start,
        "-e",
        end,
        "--stats=record",
    ]))
    .unwrap();
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(n)) = (words.next(), words.next()) else { continue };
        let (Some((rmgr, _)), Ok(n)) = (name.split_once('/'), n.parse::<u64>()) else { continue };
        *counts.entry(rmgr.to_string()).or_insert(0) += n;
    }
    counts
}

fn run_bench(capture: &Path, out: &Path, pace: &str, extra: &[&str]) -> Output {
    let mut args = vec!["replay-bench", "run", capture.to_str().unwrap(), "--pace", pace];
    args.extend(["-o", out.to_str().unwrap(), "--timeout", "60"]);
    for c in CHECKS {
        args.extend(["--verify-sql", c]);
    }
    args.extend(extra);
    walstream(&args)
}

fn check_results(out: &Path, primary: &[String], end: &str, configs: &[&str]) {
    let v = json(&out.join("samples.json"));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), configs.len());
    for (run, config) in runs.iter().zip(configs) {
        assert_eq!(run["config"], *config);
        let samples = run["samples"].as_array().unwrap();
        assert!(!samples.is_empty(), "{run}");
        let last = samples.last().unwrap();
        assert_eq!(last["replay_lsn"].as_str().map(|l| l >= end), Some(true), "{last}");
        let answers: Vec<String> = run["verify"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                q["rows"][0]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        assert_eq!(answers, primary, "the standby's data equal the primary's");
        assert!(run["summary"]["mb_per_second"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(v["configs"].as_array().unwrap().len(), 2);
    let png = std::fs::read(out.join("replay.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = std::fs::read_to_string(out.join("replay.svg")).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

fn copy_capture(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

#[test]
fn record_replay_and_refuse_bad_captures() {
    let primary = PgCluster::start(&PgConfig::small_segments()).unwrap();
    primary.pgbench(&["-i", "-s", "1", "-q"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("capture");

    // record while pgbench runs
    let rec = Command::new(env!("CARGO_BIN_EXE_walstream"))
        .args(["replay-bench", "record", "--from", &primary.conninfo("postgres"), "-o"])
        .arg(&capture)
        .args(["--seconds", "6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    primary.pgbench(&["-T", "3", "-c", "2"]).unwrap();
    let recorded = rec.wait_with_output().unwrap();
    assert!(recorded.status.success(), "{}", text(&recorded));
    let manifest = json(&capture.join("manifest.json"));
    let (start, end) =
        (manifest["start_lsn"].as_str().unwrap(), manifest["end_lsn"].as_str().unwrap());
    assert!(manifest["commits"].as_u64().unwrap() > 100, "{manifest}");
    let primary_answers: Vec<String> = CHECKS.iter().map(|q| primary.psql(q).unwrap()).collect();

    // records per resource manager as pg_waldump counts them
    let counts: BTreeMap<String, u64> =
        serde_json::from_value(manifest["records"].clone()).unwrap();
    assert_eq!(counts, waldump_counts(&capture.join("wal"), start, end));

    let configs =
        ["--config", "noprefetch:recovery_prefetch=off", "--config", "big:shared_buffers=32MB"];
    let out_max = tmp.path().join("max");
    let ran = run_bench(&capture, &out_max, "max", &configs);
    assert!(ran.status.success(), "{}", text(&ran));
    assert!(text(&ran).contains("noprefetch"), "the table: {}", text(&ran));
    check_results(&out_max, &primary_answers, end, &["noprefetch", "big"]);

    // The paced run with --metrics: the walsender serving the capture is scraped while
    // the standby replays.
    let out_orig = tmp.path().join("original");
    let metrics_port = walstream_tests::free_port().unwrap();
    let listen = format!("127.0.0.1:{metrics_port}");
    let mut paced: Vec<&str> = configs.to_vec();
    paced.extend(["--metrics", &listen]);
    let ran = std::thread::scope(|s| {
        let bench = s.spawn(|| run_bench(&capture, &out_orig, "original", &paced));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        while !bench.is_finished() && std::time::Instant::now() < deadline {
            if let Ok(body) = walstream_tests::scrape(metrics_port) {
                if body.contains("walstream_walsender_sent_lsn_bytes{") {
                    seen = body;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!seen.is_empty(), "no walsender in /metrics while the paced run streamed");
        bench.join().unwrap()
    });
    assert!(ran.status.success(), "{}", text(&ran));
    check_results(&out_orig, &primary_answers, end, &["noprefetch", "big"]);
    let v = json(&out_orig.join("samples.json"));
    let samples = v["runs"][0]["samples"].as_array().unwrap();
    // paced: WAL arrives over the original ~3 s, not all at once
    let t_end = samples.last().unwrap()["t"].as_f64().unwrap();
    assert!(t_end >= 2.0, "original pace took {t_end} s");

    // a standby that fails to start: its log's last lines in the error
    let out_bad = tmp.path().join("bad");
    let ran = run_bench(&capture, &out_bad, "max", &["--config", "bad:shared_buffers=nonsense"]);
    assert!(!ran.status.success());
    assert!(
        text(&ran).contains("invalid value for parameter \"shared_buffers\""),
        "{}",
        text(&ran)
    );
    assert!(!out_bad.exists());

    // a missing PostgreSQL binary
    let ran = run_bench(&capture, &out_bad, "max", &["--pg-bin", "/nonexistent/bin"]);
    assert!(!ran.status.success());
    assert!(
        text(&ran).contains("could not find the PostgreSQL program \"postgres\""),
        "{}",
        text(&ran)
    );

    // a gap: a segment removed from the middle
    let gap = tmp.path().join("gap");
    copy_capture(&capture, &gap);
    let mut segs: Vec<_> = std::fs::read_dir(gap.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "{segs:?}");
    let removed = segs[segs.len() / 2].clone();
    std::fs::remove_file(gap.join("wal").join(&removed)).unwrap();
    let ran = run_bench(&gap, &out_bad, "max", &[]);
    assert!(!ran.status.success());
    let t = text(&ran);
    assert!(t.contains("gap") && t.contains(&removed), "{t}");
    assert!(!out_bad.exists() && !gap.join("results").exists());

    // a base backup of another system
    let other = tmp.path().join("other");
    copy_capture(&capture, &other);
    let control = other.join("base/global/pg_control");
    let mut bytes = std::fs::read(&control).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&control, bytes).unwrap();
    let ran = run_bench(&other, &out_bad, "max", &[]);
    assert!(!ran.status.success());
    assert!(text(&ran).contains("base backup does not match its WAL"), "{}", text(&ran));
    assert!(!out_bad.exists());
}
