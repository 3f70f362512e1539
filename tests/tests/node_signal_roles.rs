//! Who may signal whom (issue 12 §3, `signalfuncs.c`), side by side with PostgreSQL 15: a
//! role that is not a superuser may cancel or terminate only its own role's backends —
//! never a superuser's — and may not call pg_promote(); each refusal is PostgreSQL's 42501
//! text. A backend that cancels or terminates itself ends inside that statement.

use std::process::{Child, Stdio};
use std::time::Duration;

use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::node::NodeDir;
use walstream_tests::{pg_bin, pg_command};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

fn psql(port: u16, user: &str, sql: &str) -> (String, String) {
    let out = pg_command(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-q", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user={user} dbname=postgres"))
        .args(["-c", sql])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn sleeper(port: u16, user: &str) -> Child {
    pg_command(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-q", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user={user} dbname=postgres"))
        .args(["-c", "SELECT pg_sleep(4)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn pid_of(port: u16, user: &str) -> String {
    for _ in 0..100 {
        let (pid, _) = psql(
            port,
            "postgres",
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE usename = '{user}' \
                 AND query LIKE '%pg_sleep(4)%' AND pid <> pg_backend_pid()"
            ),
        );
        if !pid.is_empty() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no pg_sleep backend of {user}");
}

/// What bob is told for each attempt on the server at `port`.
fn attempts(port: u16) -> Vec<(String, String)> {
    let mut sleepers = vec![sleeper(port, "postgres"), sleeper(port, "carol")];
    let (su, carol) = (pid_of(port, "postgres"), pid_of(port, "carol"));
    let mut said = Vec::new();
    for f in ["pg_cancel_backend", "pg_terminate_backend"] {
        for pid in [&su, &carol] {
            said.push(psql(port, "bob", &format!("SELECT {f}({pid})")));
        }
    }
    said.push(psql(port, "bob", "SELECT pg_promote()"));
    // bob's own backend, and the superuser's right to signal anyone.
    said.push(psql(port, "bob", "SELECT pg_cancel_backend(pg_backend_pid())"));
    said.push(psql(port, "postgres", &format!("SELECT pg_cancel_backend({carol})")));
    said.push(psql(port, "bob", "SELECT pg_terminate_backend(pg_backend_pid())"));
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    said
}

#[test]
fn only_superusers_and_the_same_role_may_signal_a_backend() {
    let pg = PgCluster::start(&PgConfig::small_segments()).unwrap();
    pg.psql("CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN").unwrap();
    let want = attempts(pg.port());

    let dir = NodeDir::init(bin(), 1).unwrap();
    let roles = dir.data_dir().join("global/walstream_roles");
    let mut text = std::fs::read_to_string(&roles).unwrap();
    text.push_str("bob: LOGIN\ncarol: LOGIN\n");
    std::fs::write(&roles, text).unwrap();
    let node = dir.start(&[]).unwrap();
    let got = attempts(node.port());

    assert_eq!(want[0].1, "ERROR:  must be a superuser to cancel superuser query");
    assert_eq!(got, want, "\nnode log:\n{}", node.log());
}
