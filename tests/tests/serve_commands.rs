//! Every replication command through `psql "... replication=true"` against a real
//! PostgreSQL 15 server on timeline 2 and against `walstream serve` over a copy of its
//! pg_wal: psql's output and error texts (SQLSTATEs included) must match line by line,
//! once what must differ (LSNs, pids, file/line locations) is normalized.

use std::path::Path;
use std::time::Duration;

use walstream_tests::rawclient::RawReplicationConn;
use walstream_tests::{psql_replication, scenario, Lsn, PgCluster, ServeProcess};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// One psql session: its commands, and whether LSNs in its output are normalized.
struct Session {
    commands: &'static [&'static str],
    normalize_lsns: bool,
}

const fn session(commands: &'static [&'static str]) -> Session {
    Session { commands, normalize_lsns: true }
}

/// The sessions, in order (later ones see the slots earlier ones left).
const SESSIONS: &[Session] = &[
    session(&["IDENTIFY_SYSTEM"]),
    session(&["SHOW wal_segment_size", "SHOW data_directory_mode", "SHOW nosuch"]),
    Session { commands: &["TIMELINE_HISTORY 1", "TIMELINE_HISTORY 2"], normalize_lsns: false },
    session(&[
        "CREATE_REPLICATION_SLOT s PHYSICAL",
        "CREATE_REPLICATION_SLOT s PHYSICAL",
        "READ_REPLICATION_SLOT s",
        "CREATE_REPLICATION_SLOT r PHYSICAL RESERVE_WAL",
        "READ_REPLICATION_SLOT r",
        "CREATE_REPLICATION_SLOT \"n\" PHYSICAL (RESERVE_WAL)",
        "CREATE_REPLICATION_SLOT t TEMPORARY PHYSICAL",
        "READ_REPLICATION_SLOT t",
        "READ_REPLICATION_SLOT nosuch",
        "DROP_REPLICATION_SLOT s",
        "DROP_REPLICATION_SLOT s",
        "DROP_REPLICATION_SLOT nosuch",
    ]),
    // The temporary slot went with its session; the others persist.
    session(&["READ_REPLICATION_SLOT t", "READ_REPLICATION_SLOT r", "READ_REPLICATION_SLOT n"]),
    session(&["SELECT 1", "identify_system", "CREATE_REPLICATION_SLOT", "DROP_REPLICATION_SLOT n"]),
];

/// Replaces every `%X/%X` LSN except `0/0` with `<lsn>`.
fn normalize_lsns(line: &str) -> String {
    let lsn_char = |c: char| c.is_ascii_hexdigit() || c == '/';
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find(lsn_char) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run.find(|c: char| !lsn_char(c)).unwrap_or(run.len());
        let (tok, after) = run.split_at(len);
        let halves = tok.split('/').collect::<Vec<_>>();
        let is_lsn = halves.len() == 2 && halves.iter().all(|h| !h.is_empty() && h.len() <= 8);
        out.push_str(if is_lsn && tok != "0/0" { "<lsn>" } else { tok });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Normalizes psql output: drops `LOCATION:` lines (PostgreSQL's C file and line),
/// replaces pids and (when asked) LSNs.
fn normalize(text: &str, lsns: bool) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("LOCATION:"))
        .map(|l| {
            let l = match l.find("PID ") {
                Some(at) => format!("{}PID <pid>", &l[..at]),
                None => l.to_string(),
            };
            if lsns {
                normalize_lsns(&l)
            } else {
                l
            }
        })
        .collect()
}

/// START_REPLICATION commands, each on its own raw connection (their errors come
/// after CopyBothResponse, which psql cannot show); `{switch}` is replaced with the
/// LSN where timeline 1 ends and `{tli2}` with the start of the first timeline-2
/// segment.
const STARTS: &[&str] = &[
    "START_REPLICATION 5/0",
    "START_REPLICATION 5/0 TIMELINE 2",
    "START_REPLICATION SLOT nosuch PHYSICAL 0/1000000",
    "START_REPLICATION 0/1000000 TIMELINE 7",
    "START_REPLICATION 0/0 TIMELINE 0",
    "START_REPLICATION 0/1000000 TIMELINE 1",
    "START_REPLICATION 0/1000000 TIMELINE 2",
    "START_REPLICATION {switch} TIMELINE 1",
    "START_REPLICATION {tli2} TIMELINE 2",
    "START_REPLICATION SLOT r PHYSICAL {tli2} TIMELINE 2",
    "IDENTIFY_SYSTEM",
];

/// Runs each of [`STARTS`] on its own raw connection to 127.0.0.1:`port`; returns
/// the normalized message lines.
fn raw_transcript(port: u16, switch: Lsn, tli2: Lsn) -> Vec<(String, Vec<String>)> {
    STARTS
        .iter()
        .map(|c| {
            let cmd =
                c.replace("{switch}", &switch.to_string()).replace("{tli2}", &tli2.to_string());
            let lines = RawReplicationConn::connect(port)
                .and_then(|mut conn| conn.query(&cmd))
                .unwrap_or_else(|e| vec![format!("client error: {e:#}")]);
            let lines = lines.iter().flat_map(|l| normalize(l, true)).collect();
            (c.to_string(), lines)
        })
        .collect()
}

/// Runs every session against 127.0.0.1:`port`; returns, per session, the normalized
/// stdout and stderr lines.
fn transcript(port: u16) -> Vec<(Vec<String>, Vec<String>)> {
    SESSIONS
        .iter()
        .map(|s| {
            let out = psql_replication(port, s.commands).unwrap();
            let (o, e) =
                (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (normalize(&o, s.normalize_lsns), normalize(&e, s.normalize_lsns))
        })
        .collect()
}

/// Every line where the two transcripts differ, as a readable report.
fn differences(ours: &[(Vec<String>, Vec<String>)], real: &[(Vec<String>, Vec<String>)]) -> String {
    let mut report = String::new();
    for ((s, o), r) in SESSIONS.iter().zip(ours).zip(real) {
        for (what, a, b) in [("stdout", &o.0, &r.0), ("stderr", &o.1, &r.1)] {
            if a != b {
                report.push_str(&format!(
                    "session {:?} {what}:\n  walstream:\n    {}\n  PostgreSQL:\n    {}\n",
                    s.commands,
                    a.join("\n    "),
                    b.join("\n    ")
                ));
            }
        }
    }
    report
}

/// Every START_REPLICATION whose messages differ, as a readable report.
fn raw_differences(ours: &[(String, Vec<String>)], real: &[(String, Vec<String>)]) -> String {
    let mut report = String::new();
    for ((cmd, a), (_, b)) in ours.iter().zip(real) {
        if a != b {
            report.push_str(&format!(
                "{cmd}:\n  walstream:\n    {}\n  PostgreSQL:\n    {}\n",
                a.join("\n    "),
                b.join("\n    ")
            ));
        }
    }
    report
}

/// Where timeline 1 ends, from `00000002.history` in `waldir`.
fn switch_point(waldir: &Path) -> Lsn {
    let text = std::fs::read_to_string(waldir.join("00000002.history")).unwrap();
    let line = text.lines().find(|l| l.starts_with('1')).unwrap();
    line.split('\t').nth(1).unwrap().parse().unwrap()
}

#[test]
fn replication_commands_match_postgresql() {
    let mut scen = scenario::Promoted::new(0).unwrap();
    let real = transcript(scen.promoted.port());
    let switch = switch_point(&scen.promoted.wal_dir());
    let tli2 = switch.segment_start(scenario::seg_size());
    let real_raw = raw_transcript(scen.promoted.port(), switch, tli2);
    let waldir = scen.stop_and_copy().unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    let ours = transcript(serve.port());
    let ours_raw = raw_transcript(serve.port(), switch, tli2);
    let xlogpos = identify_system_xlogpos(serve.port());
    assert!(
        xlogpos >= scen.end,
        "walstream's xlogpos {xlogpos} is before the WAL's end {}",
        scen.end
    );
    let diff = differences(&ours, &real) + &raw_differences(&ours_raw, &real_raw);
    assert!(
        diff.is_empty(),
        "walstream's answers differ from PostgreSQL's:\n{diff}\nwalstream log:\n{}",
        serve.log()
    );
}

#[test]
fn normalizing_lsns() {
    assert_eq!(normalize_lsns("5/0 ahead of 0/408EDA8."), "<lsn> ahead of <lsn>.");
    assert_eq!(normalize_lsns("s|0/0||"), "s|0/0||");
    assert_eq!(normalize_lsns("physical|0/3000028|2"), "physical|<lsn>|2");
    assert_eq!(normalize_lsns("a/b/c 1/2"), "a/b/c <lsn>");
}

/// IDENTIFY_SYSTEM's `xlogpos` from 127.0.0.1:`port`.
fn identify_system_xlogpos(port: u16) -> Lsn {
    let lines = RawReplicationConn::connect(port).unwrap().query("IDENTIFY_SYSTEM").unwrap();
    let row = lines.iter().find_map(|l| l.strip_prefix("D ")).unwrap();
    row.split('|').nth(2).unwrap().parse().unwrap()
}

#[test]
fn serve_stops_on_sigint_and_sigterm() {
    let mut primary = PgCluster::start(&scenario::source_config()).unwrap();
    primary.switch_wal().unwrap();
    primary.stop("fast").unwrap();
    let waldir = scenario::copy_pg_wal(&primary).unwrap();
    for signal in ["SIGINT", "SIGTERM"] {
        let mut serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
        let conn = RawReplicationConn::connect(serve.port()).unwrap();
        if signal == "SIGINT" {
            serve.interrupt();
        } else {
            serve.terminate();
        }
        let status = serve.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.is_some(), "still running 10 s after signal {signal}:\n{}", serve.log());
        drop(conn);
    }
}

#[test]
fn slots_persist_across_restarts() {
    let mut primary = PgCluster::start(&scenario::source_config()).unwrap();
    primary.switch_wal().unwrap();
    primary.stop("fast").unwrap();
    let waldir = scenario::copy_pg_wal(&primary).unwrap();
    let read = |port| {
        let mut conn = RawReplicationConn::connect(port).unwrap();
        (
            conn.query("READ_REPLICATION_SLOT p").unwrap(),
            conn.query("READ_REPLICATION_SLOT q").unwrap(),
        )
    };

    let mut serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    let mut conn = RawReplicationConn::connect(serve.port()).unwrap();
    conn.query("CREATE_REPLICATION_SLOT p PHYSICAL RESERVE_WAL").unwrap();
    conn.query("CREATE_REPLICATION_SLOT q PHYSICAL").unwrap();
    drop(conn);
    let before = read(serve.port());
    assert!(before.0.iter().any(|l| l.starts_with("D physical|")), "{before:?}\n{}", serve.log());
    serve.terminate();
    assert!(serve.wait_timeout(Duration::from_secs(10)).unwrap().is_some(), "{}", serve.log());
    assert!(waldir.path().join("pg_replslot").is_dir(), "no pg_replslot in WALDIR");

    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    assert_eq!(read(serve.port()), before, "slots after a restart\n{}", serve.log());
}
