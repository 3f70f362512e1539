//! `walstream failover` (issue 13) against real PostgreSQL 15 clusters and walstream
//! nodes: a primary and two standbys (`ANY 1` synchronous), clients and pgbench through
//! `--listen`, `kill -9` of the primary; a primary that is only slow; a standby stopped
//! and started again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::node::{NodeDir, NodeProcess};
use walstream_tests::{free_port, pg_bin, pg_command, ChildGuard};

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

/// One member of the cluster under test.
enum Server {
    Pg(PgCluster),
    Node(NodeProcess),
    /// A PostgreSQL cluster whose postmaster was killed; its directory is kept.
    Killed(PgCluster),
    Gone,
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Pg(c) => c.port(),
            Server::Node(n) => n.port(),
            Server::Killed(c) => c.port(),
            Server::Gone => 0,
        }
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        match self {
            Server::Pg(c) => c.psql(sql).map_err(|e| format!("{e:#}")),
            Server::Node(n) => n.psql(sql),
            Server::Killed(_) | Server::Gone => Err("gone".into()),
        }
    }

    /// `kill -9` of the server (PostgreSQL: its postmaster, by the pid in postmaster.pid;
    /// its backends notice the postmaster's death and exit).
    fn kill9(&mut self) {
        match std::mem::replace(self, Server::Gone) {
            Server::Pg(c) => {
                let pid = postmaster_pid(&c.data_dir());
                // SAFETY: kill(2) on the postmaster this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let deadline = Instant::now() + Duration::from_secs(20);
                while std::net::TcpStream::connect(("127.0.0.1", c.port())).is_ok() {
                    assert!(Instant::now() < deadline, "postmaster still answers");
                    std::thread::sleep(Duration::from_millis(50));
                }
                *self = Server::Killed(c);
            }
            Server::Node(n) => {
                n.kill9();
            }
            Server::Killed(_) | Server::Gone => {}
        }
    }

    /// Starts a killed PostgreSQL server again (crash recovery, then what it was).
    fn restart(&mut self) {
        if let Server::Killed(c) = self {
            // The killed postmaster's pid may linger (a zombie nobody reaps in a
            // container), and pg_ctl would take it for a running server: the lock file
            // goes, as an operator would remove it.
            let _ = std::fs::remove_file(c.data_dir().join("postmaster.pid"));
            wait_until("the old primary to start", Duration::from_secs(30), || {
                c.start_server().ok()
            });
        }
        if let Server::Killed(c) = std::mem::replace(self, Server::Gone) {
            *self = Server::Pg(c);
        }
    }
}

fn postmaster_pid(data: &Path) -> i32 {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The manager under test, with its configuration and status file.
struct Manager {
    child: ChildGuard,
    conf: PathBuf,
    status: PathBuf,
    listen: u16,
    metrics: u16,
    _dir: tempfile::TempDir,
}

struct Timing {
    period: u64,
    timeout: u64,
    retries: u32,
    retry_delay: u64,
}

const FAST: Timing = Timing { period: 1, timeout: 2, retries: 2, retry_delay: 1 };

impl Manager {
    fn start(
        servers: &[&Server],
        dirs: &[PathBuf],
        apps: &[&str],
        t: &Timing,
        extra: &str,
        args: &[&str],
    ) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("failover_command.out");
        let mut conf = String::new();
        for (i, s) in servers.iter().enumerate() {
            writeln!(
                conf,
                "backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {}\nbackend_weight{i} = 1\n\
                 backend_data_directory{i} = '{}'\nbackend_application_name{i} = '{}'\n\
                 backend_flag{i} = 'ALLOW_TO_FAILOVER'",
                s.port(),
                dirs[i].display(),
                apps[i]
            )
            .unwrap();
        }
        writeln!(
            conf,
            "health_check_period = {}\nhealth_check_timeout = {}\nhealth_check_max_retries = {}\n\
             health_check_retry_delay = {}\nconnect_timeout = 2000\nhealth_check_user = 'postgres'\n\
             sr_check_period = 1\nsr_check_user = 'postgres'\nsearch_primary_node_timeout = 30\n\
             failover_command = 'echo \"%d %h %p %D %m %H %M %P %r %R %N %S %%\" >> {}; exit 3'\n\
             work_dir = '{}'\nnum_init_children = 32\n{extra}\n",
            t.period,
            t.timeout,
            t.retries,
            t.retry_delay,
            out.display(),
            dir.path().display()
        )
        .unwrap();
        let conf_path = dir.path().join("pgpool.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let (listen, metrics) = (free_port().unwrap(), free_port().unwrap());
        let child = ChildGuard::spawn_captured(
            Command::new(bin())
                .args(["failover", "-c"])
                .arg(&conf_path)
                .args(["--listen", &format!("127.0.0.1:{listen}")])
                .args(["--metrics", &format!("127.0.0.1:{metrics}")])
                .args(args),
            "walstream failover",
        )
        .unwrap();
        let status = dir.path().join("walstream_failover_status.json");
        Manager { child, conf: conf_path, status, listen, metrics, _dir: dir }
    }

    fn snapshot(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn primary(&self) -> Option<u64> {
        self.snapshot()?["primary"].as_u64()
    }

    fn node(&self, id: usize, field: &str) -> Option<String> {
        self.snapshot()?["nodes"][id][field].as_str().map(str::to_string)
    }

    fn failovers(&self) -> u64 {
        self.snapshot().and_then(|s| s["failovers"].as_u64()).unwrap_or(0)
    }

    fn log(&self) -> String {
        self.child.stderr_text()
    }

    fn command_output(&self) -> String {
        std::fs::read_to_string(self.status.with_file_name("failover_command.out"))
            .unwrap_or_default()
    }

    fn wait_ready(&self, n: usize) {
        wait_until(
            "the manager to see every node up and node 0 primary",
            Duration::from_secs(60),
            || {
                let all_up = (0..n).all(|i| self.node(i, "status").as_deref() == Some("up"));
                (all_up && self.primary() == Some(0)).then_some(())
            },
        );
    }

    fn status_table(&self) -> String {
        let out = Command::new(bin())
            .args(["failover", "status", "-c"])
            .arg(&self.conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A client writing numbered rows through `--listen` until it fails; the numbers whose
/// commit was acknowledged.
fn acked_writer(listen: u16, stop_after: Duration) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let conninfo = format!("host=127.0.0.1 port={listen} user=postgres dbname=postgres");
            let (client, conn) =
                tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let mut acked = Vec::new();
            let deadline = Instant::now() + stop_after;
            for k in 1.. {
                if Instant::now() > deadline {
                    break;
                }
                let sql = format!("INSERT INTO acked (k) VALUES ({k})");
                match tokio::time::timeout(Duration::from_secs(30), client.simple_query(&sql)).await
                {
                    Ok(Ok(_)) => acked.push(k),
                    _ => break,
                }
            }
            acked
        })
    })
}

fn pgbench_through(listen: u16, script: &Path) -> ChildGuard {
    ChildGuard::spawn_captured(
        pg_command(pg_bin("pgbench"))
            .args(["-n", "-c", "2", "-T", "120", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(listen.to_string())
            .arg("-f")
            .arg(script)
            .arg("postgres"),
        "pgbench",
    )
    .unwrap()
}

/// The failover scenario on `servers` (0 the primary, 1 and 2 standbys named s1 and s2).
///
/// `extra` is more of pgpool.conf: with `failover_on_backend_error = off` the death is
/// found by the health checks alone; with it on (the default) the broken sessions of
/// `--listen` make the manager check at once.
fn kill_the_primary(mut servers: Vec<Server>, dirs: Vec<PathBuf>, extra: &str) {
    servers[0].sql("CREATE TABLE acked (k int PRIMARY KEY)").unwrap();
    servers[0].sql("CREATE TABLE bench (k int PRIMARY KEY, v text)").unwrap();
    // s1 stops receiving (its upstream made unreachable), so s2 is the most advanced
    // standby when the primary dies — though s1 would win a tie (lower id).
    servers[1]
        .sql("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=postgres application_name=s1'")
        .unwrap();
    servers[1].sql("SELECT pg_reload_conf()").unwrap();
    wait_until("s1 to stop streaming", Duration::from_secs(30), || {
        (servers[0].sql("SELECT application_name FROM pg_stat_replication").ok()? == "s2")
            .then_some(())
    });
    let refs: Vec<&Server> = servers.iter().collect();
    let m = Manager::start(&refs, &dirs, &["primary", "s1", "s2"], &FAST, extra, &[]);
    m.wait_ready(3);
    let table = m.status_table();
    assert!(table.contains(" primary "), "{table}");
    assert!(table.contains(" standby "), "{table}");
    assert!(table.ends_with("(3 rows)\n"), "{table}");

    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("bench.sql");
    std::fs::write(
        &script,
        "\\set k random(1, 1000000000)\nINSERT INTO bench (k, v) VALUES (:k, 'x') ON CONFLICT (k) DO NOTHING;\n",
    )
    .unwrap();
    walstream_tests::chown_postgres(script_dir.path()).unwrap();
    walstream_tests::chown_postgres(&script).unwrap();
    let mut bench = pgbench_through(m.listen, &script);
    let writer = acked_writer(m.listen, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3));
    let old_port = servers[0].port();
    servers[0].kill9();
    let killed = Instant::now();

    let acked = writer.join().unwrap();
    assert!(acked.len() > 10, "the writer got {} commits through --listen", acked.len());
    // Detection takes at most period + (retries + 1) checks of up to timeout each, with
    // the retry delays between; then promotion.
    let window = Duration::from_secs(
        FAST.period
            + u64::from(FAST.retries + 1) * FAST.timeout
            + u64::from(FAST.retries) * FAST.retry_delay,
    );
    let new = wait_until("a new primary", window + Duration::from_secs(30), || {
        m.primary().filter(|p| *p != 0)
    });
    let took = killed.elapsed();
    assert!(
        took < window + Duration::from_secs(15),
        "failover took {took:?} (window {window:?})\n{}",
        m.log()
    );
    let new = usize::try_from(new).unwrap();
    assert_eq!(new, 2, "the standby with the most WAL received is promoted\n{}", m.log());
    let other = 1;
    assert_eq!(servers[new].sql("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(m.node(0, "status").as_deref(), Some("down"));
    assert_eq!(m.failovers(), 1);

    // No acknowledged commit is lost.
    let have: Vec<i64> = servers[new]
        .sql("SELECT k FROM acked ORDER BY k")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missing: Vec<&i64> = acked.iter().filter(|k| have.binary_search(k).is_err()).collect();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");

    // failover_command ran once with Pgpool-II's placeholders.
    let ran = m.command_output();
    let expected = format!(
        "0 127.0.0.1 {old_port} {} {new} 127.0.0.1 0 0 {} {} 127.0.0.1 {old_port} %\n",
        dirs[0].display(),
        servers[new].port(),
        dirs[new].display()
    );
    assert_eq!(ran, expected, "{}", m.log());

    // The other standby follows onto the new timeline.
    let new_port = servers[new].port();
    wait_until("the other standby to stream from the new primary", Duration::from_secs(60), || {
        let r = servers[other]
            .sql("SELECT sender_port, received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'")
            .ok()?;
        (r == format!("{new_port}|2")).then_some(())
    });
    servers[new].sql("INSERT INTO acked (k) VALUES (-1)").unwrap();
    wait_until("the row on the follower", Duration::from_secs(30), || {
        (servers[other].sql("SELECT count(*) FROM acked WHERE k = -1").ok()? == "1").then_some(())
    });

    // New connections through --listen reach the new primary.
    let via = Command::new(pg_bin("psql"))
        .args([
            "-XAt",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &m.listen.to_string(),
            "-d",
            "postgres",
        ])
        .args(["-c", "SELECT pg_is_in_recovery(), current_setting('port')"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&via.stdout).trim(), format!("f|{new_port}"));

    // pgbench's clients aborted when the primary died; before that they committed.
    let _ = bench.wait_timeout(Duration::from_secs(30));
    bench.stop(Duration::from_secs(5));
    let report = bench.stdout_text();
    let processed = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(processed > 0, "pgbench through --listen: {report}{}", bench.stderr_text());
    if matches!(servers[0], Server::Killed(_)) {
        // The old primary starts again, as a primary on the old timeline: reported as a
        // false primary, never followed, and clients still go to the new one.
        servers[0].restart();
        wait_until("node 0 reported as a false primary", Duration::from_secs(30), || {
            (m.node(0, "role").as_deref() == Some("false primary")).then_some(())
        });
        assert_eq!(m.primary(), Some(new as u64));
        assert_eq!(m.failovers(), 1);
        assert!(m
            .log()
            .contains("node 0 is not in recovery but is not the primary (a false primary)"));
        let via = Command::new(pg_bin("psql"))
            .args(["-XAt", "-h", "127.0.0.1", "-U", "postgres", "-p", &m.listen.to_string()])
            .args(["-d", "postgres", "-c", "SELECT current_setting('port')"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&via.stdout).trim(), new_port.to_string());
    }
    let log = m.log();
    assert!(log.contains("node 0 is down"), "{log}");
    assert!(log.contains("failover_command failed: exit status: 3"), "{log}");
    assert!(log.contains(&format!("promoting node {new}")), "{log}");
    assert!(
        log.contains(&format!("node {other} follows the new primary node {new}")) || {
            // The follower may have been seen streaming before the log said so.
            std::thread::sleep(Duration::from_secs(2));
            m.log().contains(&format!("node {other} follows the new primary node {new}"))
        },
        "{}",
        m.log()
    );
}

fn wait_both_streaming(primary: &Server) {
    wait_until("both standbys streaming", Duration::from_secs(60), || {
        let n = primary.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'");
        (n.ok()? == "2").then_some(())
    });
}

fn pg_cluster() -> (Vec<Server>, Vec<PathBuf>) {
    let cfg = PgConfig::default()
        .set("synchronous_standby_names", "ANY 1 (s1, s2)")
        .set("wal_keep_size", "256MB");
    let primary = PgCluster::start(&cfg).unwrap();
    let mut servers = Vec::new();
    let mut dirs = vec![primary.data_dir()];
    for name in ["s1", "s2"] {
        let backup = primary.basebackup(&["-X", "stream"]).unwrap();
        let conninfo = format!("{} application_name={name}", primary.conninfo("postgres"));
        let standby = PgCluster::standby(backup, &PgConfig::default(), &conninfo).unwrap();
        dirs.push(standby.data_dir());
        servers.push(Server::Pg(standby));
    }
    servers.insert(0, Server::Pg(primary));
    wait_both_streaming(&servers[0]);
    (servers, dirs)
}

#[test]
fn postgres_primary_killed_the_most_advanced_standby_takes_over() {
    let (servers, dirs) = pg_cluster();
    kill_the_primary(servers, dirs, "");
}

#[test]
fn node_primary_killed_the_most_advanced_standby_takes_over() {
    let pdir = NodeDir::init(bin(), 1).unwrap();
    let primary = pdir.start(&["synchronous_standby_names=ANY 1 (s1, s2)"]).unwrap();
    let mut servers = vec![];
    let mut sdirs = vec![];
    for name in ["s1", "s2"] {
        let d = NodeDir::basebackup(
            bin(),
            primary.port(),
            &["-d", &format!("application_name={name}")],
        )
        .unwrap();
        sdirs.push(d);
    }
    let mut dirs = vec![pdir.data_dir()];
    for d in &sdirs {
        servers.push(Server::Node(d.start(&[]).unwrap()));
        dirs.push(d.data_dir());
    }
    servers.insert(0, Server::Node(primary));
    wait_both_streaming(&servers[0]);
    // The follower is told by follow_primary_command (psql with Pgpool-II's
    // placeholders), not natively.
    let out = tempfile::tempdir().unwrap();
    let followed = out.path().join("followed");
    let psql = pg_bin("psql");
    let extra = format!(
        "failover_on_backend_error = off\n\
         follow_primary_command = '{} -XAtq -h %h -p %p -U postgres -d postgres \
         -c \"ALTER SYSTEM SET primary_conninfo = ''host=%H port=%r user=postgres application_name=s%d''\" \
         -c \"SELECT pg_reload_conf()\" && echo \"%d %h %p %m %H %r %M %P %N %S\" >> {}'",
        psql.display(),
        followed.display()
    );
    let ports: Vec<u16> = servers.iter().map(Server::port).collect();
    kill_the_primary(servers, dirs, &extra);
    assert_eq!(
        std::fs::read_to_string(&followed).unwrap(),
        format!("1 127.0.0.1 {} 2 127.0.0.1 {} 0 0 127.0.0.1 {}\n", ports[1], ports[2], ports[0])
    );
}

#[test]
fn a_slow_primary_is_not_failed_over_and_a_stopped_standby_is_marked_down() {
    let (mut servers, dirs) = pg_cluster();
    // Window: 4 checks of up to 2 s with 1 s between: about 11 s; the pause is 3 s.
    let t = Timing { period: 1, timeout: 2, retries: 3, retry_delay: 1 };
    let refs: Vec<&Server> = servers.iter().collect();
    let m = Manager::start(&refs, &dirs, &["primary", "s1", "s2"], &t, "", &[]);
    m.wait_ready(3);

    let pid = postmaster_pid(&dirs[0]);
    // SAFETY: SIGSTOP/SIGCONT to the postmaster this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(m.primary(), Some(0), "{}", m.log());
    assert_eq!(m.failovers(), 0, "{}", m.log());
    assert_eq!(m.node(0, "status").as_deref(), Some("up"), "{}", m.log());
    assert_eq!(servers[1].sql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(servers[2].sql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert!(m.log().contains("health check failed on node 0"), "the pause was seen: {}", m.log());

    // A stopped standby: down, and nothing is promoted.
    let Server::Pg(s2) = &mut servers[2] else { unreachable!() };
    s2.stop("fast").unwrap();
    wait_until("node 2 down", Duration::from_secs(30), || {
        (m.node(2, "status").as_deref() == Some("down")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(m.primary(), Some(0));
    assert_eq!(m.failovers(), 0);
    assert_eq!(servers[1].sql("SELECT pg_is_in_recovery()").unwrap(), "t");
    let table = m.status_table();
    assert!(table.lines().any(|l| l.starts_with(" 2 ") && l.contains("| down ")), "{table}");

    let scraped = walstream_tests::scrape(m.metrics).unwrap();
    for line in [
        "walstream_failover_node_up{node_id=\"0\",hostname=\"127.0.0.1\",port=",
        "walstream_failover_node_primary{node_id=\"0\"",
        "walstream_failover_failovers_total 0",
        "walstream_failover_leader 1",
    ] {
        assert!(scraped.contains(line), "{line} not in\n{scraped}");
    }
    assert!(
        scraped.lines().any(|l| l.starts_with("walstream_failover_node_up{node_id=\"2\"") && l.ends_with(" 0")),
        "{scraped}"
    );

    // Back up: marked up.
    let Server::Pg(s2) = &mut servers[2] else { unreachable!() };
    s2.start_server().unwrap();
    wait_until("node 2 up again", Duration::from_secs(30), || {
        (m.node(2, "status").as_deref() == Some("up")).then_some(())
    });
    assert_eq!(m.failovers(), 0);

    // No standby to promote: the manager says so and keeps trying; a standby that
    // comes back is promoted.
    for i in [1, 2] {
        let Server::Pg(s) = &mut servers[i] else { unreachable!() };
        s.stop("fast").unwrap();
    }
    wait_until("both standbys down", Duration::from_secs(30), || {
        (m.node(1, "status").as_deref() == Some("down")
            && m.node(2, "status").as_deref() == Some("down"))
        .then_some(())
    });
    servers[0].kill9();
    wait_until("the manager to find no standby", Duration::from_secs(30), || {
        m.log().contains("failover failed: no standby to promote; trying again").then_some(())
    });
    assert_eq!(m.failovers(), 0);
    let Server::Pg(s1) = &mut servers[1] else { unreachable!() };
    s1.start_server().unwrap();
    wait_until("node 1 promoted", Duration::from_secs(60), || {
        (m.primary() == Some(1)).then_some(())
    });
    assert_eq!(servers[1].sql("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(m.failovers(), 1);
}

/// A three-member etcd cluster on loopback, stopped (by pid) on drop.
struct Etcd {
    members: Vec<ChildGuard>,
    clients: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let etcd = Path::new("/usr/bin/etcd");
        assert!(etcd.exists(), "etcd is not installed (Debian: apt-get install etcd-server)");
        let dir = tempfile::tempdir().unwrap();
        let clients: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
        let peers: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
        let cluster: Vec<String> =
            peers.iter().enumerate().map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}")).collect();
        let members = (0..3)
            .map(|i| {
                ChildGuard::spawn_captured(
                    Command::new(etcd)
                        .args(["--name", &format!("e{i}"), "--data-dir"])
                        .arg(dir.path().join(format!("e{i}")))
                        .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", clients[i])])
                        .args([
                            "--advertise-client-urls",
                            &format!("http://127.0.0.1:{}", clients[i]),
                        ])
                        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", peers[i])])
                        .args([
                            "--initial-advertise-peer-urls",
                            &format!("http://127.0.0.1:{}", peers[i]),
                        ])
                        .args(["--initial-cluster", &cluster.join(",")])
                        .args([
                            "--initial-cluster-state",
                            "new",
                            "--initial-cluster-token",
                            "walstream-test",
                        ])
                        .args(["--log-level", "warn"]),
                    &format!("etcd e{i}"),
                )
                .unwrap()
            })
            .collect();
        Etcd { members, clients, _dir: dir }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self.clients.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("etcd://{}", hosts.join(","))
    }

    fn stop(&mut self) {
        for m in &mut self.members {
            m.stop(Duration::from_secs(10));
        }
    }
}

impl Manager {
    fn leads(&self) -> bool {
        self.snapshot().is_some_and(|s| s["leader"].as_bool() == Some(true))
    }
}

#[test]
fn two_managers_on_etcd_fail_over_exactly_once_and_never_without_the_lease() {
    let (mut servers, dirs) = pg_cluster();
    let mut etcd = Etcd::start();
    let shared = tempfile::tempdir().unwrap();
    let ran = shared.path().join("ran");
    let extra = format!(
        "failover_command = 'echo \"%d %m\" >> {}'\nfailover_on_backend_error = off",
        ran.display()
    );
    let url = etcd.url();
    let refs: Vec<&Server> = servers.iter().collect();
    let apps = ["primary", "s1", "s2"];
    let dcs = |name: &'static str| ["--dcs", url.as_str(), "--dcs-name", name, "--dcs-ttl", "3"];
    let mut a = Manager::start(&refs, &dirs, &apps, &FAST, &extra, &dcs("a"));
    wait_until("manager a to lead", Duration::from_secs(60), || a.leads().then_some(()));
    let b = Manager::start(&refs, &dirs, &apps, &FAST, &extra, &dcs("b"));
    b.wait_ready(3);
    assert!(!b.leads(), "b must not lead while a does");

    // The leading manager dies; b takes the lease once it expires.
    a.child.signal(libc::SIGKILL);
    wait_until("manager b to lead", Duration::from_secs(30), || b.leads().then_some(()));

    // Then the primary dies: b fails over, once.
    servers[0].kill9();
    let new =
        wait_until("a new primary", Duration::from_secs(60), || b.primary().filter(|p| *p != 0));
    let new = usize::try_from(new).unwrap();
    assert_eq!(servers[new].sql("SELECT pg_is_in_recovery()").unwrap(), "f");
    std::thread::sleep(Duration::from_secs(3));
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(lines, format!("0 {new}\n"), "failover_command ran exactly once\n{}", b.log());
    let other = if new == 1 { 2 } else { 1 };
    assert_eq!(servers[other].sql("SELECT pg_is_in_recovery()").unwrap(), "t");

    // With etcd gone, no manager acts: the new primary dies and nothing is promoted.
    wait_until("the other standby to follow", Duration::from_secs(60), || {
        let port = servers[new].port();
        let r = servers[other]
            .sql("SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'")
            .ok()?;
        (r == port.to_string()).then_some(())
    });
    etcd.stop();
    wait_until("manager b to give up the lead", Duration::from_secs(30), || {
        (!b.leads()).then_some(())
    });
    servers[new].kill9();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(servers[other].sql("SELECT pg_is_in_recovery()").unwrap(), "t", "{}", b.log());
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), format!("0 {new}\n"));
    assert!(b.log().contains("does not hold the leader lease"), "{}", b.log());
}
