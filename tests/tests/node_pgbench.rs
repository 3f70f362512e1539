//! Real `pgbench -n -f SCRIPT` against a node in all three `-M` modes with 4 clients
//! (issue 8, tests item 2): the totals agree with the transactions pgbench reports.

use walstream_tests::node::NodeDir;
use walstream_tests::{pg_bin, run_ok};

const SCRIPT: &str = "\\set k random(1, 200)
INSERT INTO kv (k, v) VALUES (:k, 1) ON CONFLICT (k) DO UPDATE SET v = kv.v + 1;
SELECT v FROM kv WHERE k = :k;
";

fn transactions(out: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in pgbench's output:\n{out}"))
}

#[test]
fn pgbench_scripts_in_every_query_mode() {
    let dir = NodeDir::init(env!("CARGO_BIN_EXE_walstream").as_ref(), 16).unwrap();
    let node = dir.start(&[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("upsert.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    let psql = |sql: &str| node.psql(sql).unwrap();
    psql("CREATE TABLE kv (k int PRIMARY KEY, v bigint NOT NULL)");
    let mut total = 0;
    for mode in ["simple", "extended", "prepared"] {
        let out = run_ok(
            std::process::Command::new(pg_bin("pgbench"))
                .args(["-n", "-c", "4", "-j", "2", "-t", "200", "-M", mode, "-f"])
                .arg(&script)
                .arg(node.conninfo("postgres")),
        )
        .unwrap_or_else(|e| panic!("pgbench -M {mode}: {e}\nnode log:\n{}", node.log()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = transactions(&text);
        assert_eq!(n, 800, "-M {mode}: {text}");
        total += n;
        assert_eq!(psql("SELECT sum(v) FROM kv"), total.to_string(), "after -M {mode}");
    }
    node.stop().unwrap();
}
