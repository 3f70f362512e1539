#!/usr/bin/env python3
"""The node (`walstream node`) against PostgreSQL 15, side by side in one run.

    python3 bench/node_bench.py [--rounds 3] [--secs 10] [--rows 100000] [--lag-secs 20]
                                [--catchup-updates 20] [--gb 1.0] [--bb-runs 3] [--only PARTS]
                                [--ceiling]

Builds `cargo build --release --bin walstream` first (or takes $WALSTREAM). PostgreSQL 15
runs as the postgres user in a temp dir on a free loopback port; the node is
`walstream initdb` + `walstream node -D ... --listen 127.0.0.1:PORT`. Both run with
fsync = on, synchronous_commit = on, checkpoint_timeout = 1h, max_wal_size = 10GB;
PostgreSQL otherwise with initdb's defaults (autovacuum off). Everything is stopped and
removed at the end, also on failure.

Parts (--only 1,2,3,4; default all):
  1 write throughput: `pgbench -n -M prepared -f SCRIPT -T --secs -l` (SCRIPT: a
    single-row upsert into kv(k int PRIMARY KEY, v bigint) of --rows preloaded rows, then
    a read by key), -c 1 (-j 1) and -c 8 (-j 2), --rounds alternating rounds; TPS and
    p50/p99 of the per-transaction latencies of the logs; medians; node/PG ratios.
  2 replay lag (node, then PostgreSQL) and catch-up (node only): a standby made with
    `pg_basebackup -R -X stream -c fast` of the node, started with `walstream node`.
    pgbench -c 8 -j 2 (part 1's script) for --lag-secs while one psql session per server
    samples: every 50 ms it asks the primary's
    pg_current_wal_flush_lsn() (and pg_stat_replication.replay_lag), then polls the
    standby's pg_last_wal_replay_lsn() without pause until it passes that LSN: p50/p99/max
    of that time (flushed-to-replayed, from just before the primary was asked, so it
    includes one round trip to each server) and of the byte lag the standby's first
    answer showed. The same probe then runs against a PostgreSQL standby made the same
    way from the PostgreSQL primary. Catch-up: the node standby stopped (SIGINT),
    --catchup-updates times `UPDATE kv SET v = v + 1` (every row) on the node, the standby
    started again;
    records of the backlog from `pg_waldump --stats` of the primary's WAL; records/s from
    the standby's start (process spawn) and from its first answer, to its replay LSN
    reaching the backlog's end.
  3 crash recovery: CHECKPOINT, then --gb GB of rows (k int PRIMARY KEY, v text of 192
    bytes) loaded by INSERT ... SELECT generate_series batches, kill -9 of the node /
    `pg_ctl stop -m immediate` of PostgreSQL, start again: WAL to redo (flush LSN after the
    load minus the one after the CHECKPOINT), time from spawn to the first accepted
    connection (the node's includes its end-of-recovery checkpoint) and, for PostgreSQL,
    the `redo done ... elapsed` of its log; MB/s.
  5 synchronous replication: a standby of each (pg_basebackup -R, application_name s1),
    synchronous_standby_names = 's1', part 1's pgbench at synchronous_commit remote_write,
    on and remote_apply (ALTER SYSTEM + pg_reload_conf()), -c 1 and -c 8, --rounds alternating rounds; TPS and
    p50/p99, medians, node/PG ratios.
  --ceiling (parts 1 and 5): a third server in the same alternating rounds,
    bench/ceiling_server.rs (compiled with rustc -O): no database, just pgbench's protocol,
    a 96-byte record appended and fdatasync'ed per write with group commit, and for part 5
    a synchronous standby of its own kind (sent once flushed locally, as PostgreSQL's
    walsender sends; the standby syncs for on/remote_apply, not for remote_write). Its TPS bounds what any
    server can reach here with the same pgbench, loopback and disk; its ratio to
    PostgreSQL's is printed beside the node's.
  4 base backup of the rows of part 3: `pg_basebackup -D ... -X stream -c fast` from each,
    --bb-runs alternating runs; wall s, the client's CPU s (user+sys), the server's CPU s
    (the node process; PostgreSQL's postmaster with its live and reaped children), the
    backup's size.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from pgutil import BIN, ROOT, as_pg, free_port, lsn_to_int, run_timed, walstream_binary

SCRIPT = """\\set k random(1, {rows})
\\set v random(1, 1000000000)
INSERT INTO kv VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
SELECT v FROM kv WHERE k = :k;
"""
# 192 bytes per row: six md5 hex digests.
WIDE = " || ".join(f"md5((g + {i})::text)" for i in range(6))
ROW_BYTES = 4 + 192
TICK = os.sysconf("SC_CLK_TCK")


def median(xs):
    return statistics.median(xs)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def load_note():
    return f"load average {os.getloadavg()[0]:.2f}"


def proc_cpu(pid, children=False):
    """User + system CPU seconds of process `pid` (and of its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            cols = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(cols[11]) + int(cols[12])
    if children:
        ticks += int(cols[13]) + int(cols[14])
    return ticks / TICK


def tree_cpu(pid):
    """A postmaster's CPU: its own, its reaped children's and its live children's."""
    total = proc_cpu(pid, children=True)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    cols = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(cols[1]) == pid:
                total += proc_cpu(int(d))
    return total


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def wait_accepting(port, proc, timeout=600):
    """Seconds until 127.0.0.1:port accepts a connection (polled every 2 ms)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"the server on port {port} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.perf_counter() - t0
        except OSError:
            time.sleep(0.002)
    sys.exit(f"nothing accepted connections on port {port} within {timeout} s")


class Server:
    """What both servers share: SQL through psql, pgbench, basebackup."""
    name = "?"
    port = None

    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def sql(self, q, check=True):
        out = subprocess.run([f"{BIN}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d",
                              self.conninfo(), "-c", q], capture_output=True, text=True)
        if check and out.returncode != 0:
            sys.exit(f"{self.name}: {q[:200]}: {out.stderr.strip()[-1000:]}")
        return out.stdout.strip()

    def pgbench(self, args, env=None):
        out = subprocess.run([f"{BIN}/pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                              "postgres"] + args + ["postgres"], capture_output=True, text=True,
                             env={**os.environ, **(env or {})})
        if out.returncode != 0:
            sys.exit(f"{self.name}: pgbench {' '.join(args)}: {out.stderr[-2000:]}")
        return out


class Pg(Server):
    """A throwaway PostgreSQL 15 cluster in `work`, run as the postgres user."""
    name = "postgres"

    def __init__(self, work, name="pgdata"):
        self.work = work
        self.data = os.path.join(work, name)
        self.log = os.path.join(work, f"{name}.log")

    def init(self):
        as_pg([f"{BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"],
              stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.work}'\n"
                    "fsync = on\nsynchronous_commit = on\ncheckpoint_timeout = 1h\n"
                    "max_wal_size = 10GB\nautovacuum = off\n")

    def start(self):
        self.port = self.port or free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["runuser", "-u", "postgres", "--", f"{BIN}/postgres", "-D",
                                 self.data, "-p", str(self.port)] if os.geteuid() == 0 else
                                [f"{BIN}/postgres", "-D", self.data, "-p", str(self.port)],
                                stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        wait_accepting(self.port, proc)
        # Accepting is not yet ready (the startup packet is refused while recovering).
        while self.sql("SELECT 1", check=False) != "1":
            if proc.poll() is not None or time.perf_counter() - t0 > 600:
                sys.exit(f"postgres did not start: see {self.log}")
            time.sleep(0.002)
        return time.perf_counter() - t0

    def postmaster(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def server_cpu(self):
        return tree_cpu(self.postmaster())

    def stop(self, mode="fast"):
        as_pg([f"{BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def crash(self):
        self.stop("immediate")

    def running(self):
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))


class Node(Server):
    """A walstream node in `data`, run by this script."""

    def __init__(self, walstream, work, name, settings=()):
        self.walstream = walstream
        self.name = name
        self.data = os.path.join(work, name)
        self.log = os.path.join(work, f"{name}.log")
        self.settings = list(settings)
        self.proc = None

    def init(self):
        subprocess.run([self.walstream, "initdb", "-D", self.data], check=True,
                       stdout=subprocess.DEVNULL)

    def start(self):
        self.port = self.port or free_port()
        args = [self.walstream, "node", "-D", self.data, "--listen", f"127.0.0.1:{self.port}"]
        for s in self.settings:
            args += ["-c", s]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        wait_accepting(self.port, self.proc)
        return time.perf_counter() - t0

    def server_cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def crash(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Ceiling(Server):
    """bench/ceiling_server.rs: the fastest server pgbench's upsert script can talk to."""
    name = "ceiling"

    def __init__(self, work):
        self.work = work
        self.bin = os.path.join(work, "ceiling_server")
        self.procs = []

    def build(self):
        subprocess.run(["rustc", "-O", "--edition", "2021",
                        os.path.join(ROOT, "bench", "ceiling_server.rs"), "-o", self.bin],
                       check=True)

    def start(self, standby_sync=None):
        """(Re)starts it; with `standby_sync` True/False, behind a synchronous standby that
        syncs (or only writes) what it receives."""
        self.stop()
        args = [self.bin, "--file", os.path.join(self.work, "ceiling.wal")]
        if standby_sync is not None:
            sport = free_port()
            sb = subprocess.Popen([self.bin, "--serve-standby", str(sport), "--file",
                                   os.path.join(self.work, "ceiling-standby.wal"),
                                   "--standby-sync", "on" if standby_sync else "off"],
                                  stderr=subprocess.DEVNULL)
            self.procs.append(sb)
            wait_accepting(sport, sb)
            args += ["--standby", f"127.0.0.1:{sport}", "--send-after-flush"]
        self.port = free_port()
        proc = subprocess.Popen(args + ["--port", str(self.port)], stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_accepting(self.port, proc)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []

    def running(self):
        return bool(self.procs)


class Session:
    """One psql process kept open: a query, then lines up to a marker."""

    def __init__(self, server):
        self.p = subprocess.Popen([f"{BIN}/psql", "-XAtq", "-d", server.conninfo()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def query(self, q):
        self.p.stdin.write(f"{q};\n\\echo @@end\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line or line.strip() == "@@end":
                return lines
            lines.append(line.strip())

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


# ---------------------------------------------------------------- part 1


def make_kv(server, rows):
    server.sql("DROP TABLE IF EXISTS kv")
    server.sql("CREATE TABLE kv (k int PRIMARY KEY, v bigint)")
    step = 100_000
    for lo in range(1, rows + 1, step):
        server.sql(f"INSERT INTO kv SELECT g, g FROM generate_series({lo}, "
                   f"{min(rows, lo + step - 1)}) g")


def pgbench_run(server, script, clients, secs, work, env=None):
    logdir = tempfile.mkdtemp(prefix="pgblog.", dir=work)
    out = server.pgbench(["-n", "-M", "prepared", "-f", script, "-c", str(clients), "-j",
                          str(min(clients, 2)), "-T", str(secs), "-l",
                          f"--log-prefix={logdir}/tx"], env=env)
    lat = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 3:
                    lat.append(int(cols[2]))
    shutil.rmtree(logdir)
    m = re.search(r"tps = ([0-9.]+) \(without initial", out.stdout)
    tps = float(m.group(1)) if m else len(lat) / secs
    return tps, percentile(lat, 50), percentile(lat, 99)


def part_throughput(servers, script, args, work):
    print(f"1. write throughput: pgbench -n -M prepared, upsert + read by key, -T {args.secs}, "
          f"{args.rounds} alternating rounds; {load_note()}", flush=True)
    res = {(s.name, c): [] for s in servers for c in (1, 8)}
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for c in (1, 8):
            for s in order:
                tps, p50, p99 = pgbench_run(s, script, c, args.secs, work)
                res[(s.name, c)].append((tps, p50, p99))
                print(f"  round {r + 1} {s.name:<8} -c {c}: {tps:8.0f} tps, p50 {p50:6d} us, "
                      f"p99 {p99:6d} us; {load_note()}", flush=True)
    for c in (1, 8):
        med = {s.name: [median(x[i] for x in res[(s.name, c)]) for i in range(3)]
               for s in servers}
        for s in servers:
            t, p50, p99 = med[s.name]
            print(f"  median -c {c} {s.name:<8} {t:8.0f} tps, p50 {p50:7.0f} us, "
                  f"p99 {p99:7.0f} us")
        n, p = med["node"], med["postgres"]
        print(f"  -c {c} node/postgres: TPS {n[0] / p[0]:.2f}x (goal >= 1.5x), "
              f"p99 {n[2] / p[2]:.2f}x (goal <= 1x)", flush=True)
        if "ceiling" in med:
            print(f"  -c {c} ceiling/postgres: TPS {med['ceiling'][0] / p[0]:.2f}x (no server "
                  f"here can pass this)", flush=True)


# ---------------------------------------------------------------- part 2


def interval_ms(text):
    """psql's text of an interval (`00:00:00.001234`) in milliseconds; None if NULL."""
    if not text:
        return None
    m = re.fullmatch(r"(-?)(\d+):(\d+):([\d.]+)", text)
    if not m:
        return None
    ms = (int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))) * 1000
    return -ms if m.group(1) else ms


def wait_replayed(standby, lsn, timeout=600):
    t0 = time.perf_counter()
    target = lsn_to_int(lsn)
    first = None
    while time.perf_counter() - t0 < timeout:
        got = standby.sql("SELECT pg_last_wal_replay_lsn()", check=False)
        if got and "/" in got:
            first = first or time.perf_counter()
            if lsn_to_int(got) >= target:
                return first, time.perf_counter()
        time.sleep(0.005)
    sys.exit(f"the standby did not replay up to {lsn} within {timeout} s")


def waldump_records(wal_dir, start, end):
    out = subprocess.run([f"{BIN}/pg_waldump", "--stats", "-p", wal_dir, "-s", start, "-e", end],
                         capture_output=True, text=True)
    m = re.search(r"^Total\s+(\d+)", out.stdout, re.M)
    if not m:
        sys.exit(f"pg_waldump --stats {start}..{end}: {out.stderr[-1000:]}")
    return int(m.group(1))


def lag_probe(primary, standby, script, secs):
    """pgbench -c 8 on `primary` for `secs` while the flushed-to-replayed lag is sampled."""
    ps, ss = Session(primary), Session(standby)
    samples = []
    stop = threading.Event()

    def sample():
        # Every 50 ms: the primary's flushed end F (timed from just before asking), then
        # the standby polled without pause until its replay LSN passes F.
        while not stop.is_set():
            t = time.perf_counter()
            fl = ps.query("SELECT pg_current_wal_flush_lsn()")
            if not fl or "/" not in fl[0]:
                continue
            target, first = lsn_to_int(fl[0]), None
            while time.perf_counter() - t < 10:
                rep = ss.query("SELECT pg_last_wal_replay_lsn()")
                if rep and "/" in rep[0]:
                    first = lsn_to_int(rep[0]) if first is None else first
                    if lsn_to_int(rep[0]) >= target:
                        break
            took = (time.perf_counter() - t) * 1e3
            lag = ps.query("SELECT replay_lag FROM pg_stat_replication")
            samples.append((took, target - (first or 0),
                            interval_ms(lag[0]) if lag else None))
            time.sleep(max(0.0, 0.05 - (time.perf_counter() - t)))

    th = threading.Thread(target=sample)
    lsn0 = lsn_to_int(primary.sql("SELECT pg_current_wal_flush_lsn()"))
    th.start()
    t0 = time.perf_counter()
    pg_out = primary.pgbench(["-n", "-M", "prepared", "-f", script, "-c", "8", "-j", "2",
                              "-T", str(secs)])
    secs = time.perf_counter() - t0
    stop.set()
    th.join()
    lsn1 = lsn_to_int(primary.sql("SELECT pg_current_wal_flush_lsn()"))
    ps.close()
    ss.close()
    m = re.search(r"tps = ([0-9.]+) \(without", pg_out.stdout)
    rate = (lsn1 - lsn0) / secs
    lagb = [max(0, b) for _, b, _ in samples]
    lagt = [t for t, _, _ in samples]
    lagv = [ms for _, _, ms in samples if ms is not None]
    print(f"  {standby.name}: primary {float(m.group(1)) if m else 0:.0f} tps, WAL "
          f"{rate / 1e6:.2f} MB/s; {len(samples)} samples", flush=True)
    print(f"  flushed-to-replayed: p50 {percentile(lagt, 50):.2f} ms, p99 "
          f"{percentile(lagt, 99):.2f} ms, max {max(lagt):.2f} ms (goal p99 <= 10 ms); "
          f"byte lag when asked: p50 {percentile(lagb, 50):.0f}, p99 "
          f"{percentile(lagb, 99):.0f}, max {max(lagb)} bytes", flush=True)
    if lagv:
        print(f"  replay_lag: p50 {percentile(lagv, 50):.3f} ms, p99 {percentile(lagv, 99):.3f}"
              f" ms, max {max(lagv):.3f} ms ({len(lagv)} non-NULL samples)", flush=True)
    else:
        print("  pg_stat_replication.replay_lag: NULL in every sample", flush=True)


def basebackup(primary, data):
    """A standby's data directory `data` from `primary`: pg_basebackup -R -X stream -c fast."""
    as_pg([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
           "postgres", "-c", "fast", "-X", "stream", "-R", "-D", data],
          stdout=subprocess.DEVNULL)


def pg_standby_probe(pg, script, args, work):
    """The same probe against a PostgreSQL standby of the PostgreSQL primary."""
    st = Pg(work, "pgstandby")
    basebackup(pg, st.data)
    st.name = "postgres standby"
    st.start()
    try:
        wait_replayed(st, pg.sql("SELECT pg_current_wal_flush_lsn()"))
        lag_probe(pg, st, script, secs=args.lag_secs)
    finally:
        st.stop()
        shutil.rmtree(st.data, ignore_errors=True)


def part_standby(node, pg, script, args, work):
    sdata = os.path.join(work, "standby")
    out, wall, cpu = run_timed([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(node.port),
                                "-U", "postgres", "-c", "fast", "-X", "stream", "-R", "-D",
                                sdata])
    if out.returncode != 0:
        sys.exit(f"pg_basebackup of the node: {out.stderr[-2000:]}")
    standby = Node(node.walstream, work, "node standby")
    standby.data = sdata
    standby.start()
    try:
        wait_replayed(standby, node.sql("SELECT pg_current_wal_flush_lsn()"))
        print(f"2. standby: pg_basebackup -R -X stream of the node in {wall:.2f} s; pgbench -c 8 "
              f"-j 2 -T {args.lag_secs}, sampled every 50 ms; {load_note()}", flush=True)
        lag_probe(node, standby, script, args.lag_secs)
        pg_standby_probe(pg, script, args, work)

        # Catch-up of a backlog.
        standby.stop()
        start = node.sql("SELECT pg_current_wal_flush_lsn()")
        for _ in range(args.catchup_updates):
            node.sql("UPDATE kv SET v = v + 1")
        end = node.sql("SELECT pg_current_wal_flush_lsn()")
        records = waldump_records(os.path.join(node.data, "pg_wal"), start, end)
        nbytes = lsn_to_int(end) - lsn_to_int(start)
        t0 = time.perf_counter()
        standby.start()
        first, done = wait_replayed(standby, end)
        total, answered = done - t0, done - first
        print(f"  catch-up: {records} records ({nbytes / 1e6:.1f} MB, {start}..{end}) replayed in "
              f"{total:.2f} s from spawn ({records / total / 1e6:.2f} M records/s, "
              f"{nbytes / total / 1e6:.0f} MB/s), "
              + (f"{answered:.2f} s from its first answer ({records / answered / 1e6:.2f} M "
                 "records/s)" if answered > 0.01 else "all of it before its first answer")
              + f"; goal >= 1M records/s; {load_note()}", flush=True)
    finally:
        standby.stop()
        shutil.rmtree(sdata, ignore_errors=True)


# ---------------------------------------------------------------- parts 3 and 4


def load_rows(server, gb):
    rows = int(gb * 1e9 / ROW_BYTES)
    server.sql("DROP TABLE IF EXISTS bb")
    server.sql("CREATE TABLE bb (k int PRIMARY KEY, v text)")
    server.sql("CHECKPOINT")
    lsn0 = server.sql("SELECT pg_current_wal_flush_lsn()")
    t0 = time.perf_counter()
    step = 200_000
    for lo in range(1, rows + 1, step):
        server.sql(f"INSERT INTO bb SELECT g, {WIDE} FROM generate_series({lo}, "
                   f"{min(rows, lo + step - 1)}) g")
    load = time.perf_counter() - t0
    lsn1 = server.sql("SELECT pg_current_wal_flush_lsn()")
    return rows, lsn0, lsn1, load


def pg_redo_elapsed(log):
    """The `elapsed` of the last `redo done at` of PostgreSQL's log."""
    with open(log) as f:
        hits = re.findall(r"redo done at .*elapsed: ([0-9.]+) s", f.read())
    return float(hits[-1]) if hits else None


def part_recovery(servers, args):
    print(f"3. crash recovery: {args.gb} GB of rows (192-byte text) by INSERT ... SELECT, "
          f"kill -9 / pg_ctl stop -m immediate, start; {load_note()}", flush=True)
    for s in servers:
        rows, lsn0, lsn1, load = load_rows(s, args.gb)
        wal = lsn_to_int(lsn1) - lsn_to_int(lsn0)
        s.crash()
        secs = s.start()
        check = s.sql("SELECT count(*) FROM bb")
        if check != str(rows):
            sys.exit(f"{s.name}: {check} rows after recovery, {rows} loaded")
        line = (f"  {s.name:<8} load {rows} rows in {load:.1f} s; WAL to redo {wal / 1e6:.0f} MB "
                f"({lsn0}..{lsn1}); start after the crash {secs:.2f} s = "
                f"{wal / secs / 1e6:.0f} MB/s")
        if isinstance(s, Pg):
            el = pg_redo_elapsed(s.log)
            if el:
                line += f"; its log's redo elapsed {el:.2f} s = {wal / el / 1e6:.0f} MB/s"
        print(line + f"; rows checked; {load_note()}", flush=True)


def part_basebackup(servers, args, work):
    print(f"4. base backup: pg_basebackup -X stream -c fast, {args.bb_runs} alternating runs; "
          f"{load_note()}", flush=True)
    res = {s.name: [] for s in servers}
    target = os.path.join(work, "bb")
    for r in range(args.bb_runs):
        order = servers if r % 2 == 0 else servers[::-1]
        for s in order:
            shutil.rmtree(target, ignore_errors=True)
            cpu0 = s.server_cpu()
            out, wall, cpu = run_timed([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p",
                                        str(s.port), "-U", "postgres", "-X", "stream", "-c",
                                        "fast", "-D", target])
            time.sleep(0.5)  # PostgreSQL's walsenders reaped, their CPU in the postmaster's
            scpu = s.server_cpu() - cpu0
            if out.returncode != 0:
                sys.exit(f"pg_basebackup of {s.name}: {out.stderr[-2000:]}")
            size = du(target)
            res[s.name].append((wall, cpu, scpu, size))
            print(f"  run {r + 1} {s.name:<8} {wall:6.2f} s, {size / 1e6:6.0f} MB "
                  f"({size / 1e6 / wall:5.0f} MB/s), client CPU {cpu:5.2f} s, server CPU "
                  f"{scpu:5.2f} s; {load_note()}", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    med = {k: [median(x[i] for x in v) for i in range(4)] for k, v in res.items()}
    for k, (wall, cpu, scpu, size) in med.items():
        print(f"  median {k:<8} {wall:6.2f} s, {size / 1e6:.0f} MB, client CPU {cpu:.2f} s, "
              f"server CPU {scpu:.2f} s")
    n, p = med["node"], med["postgres"]
    print(f"  node/postgres: time {n[0] / p[0]:.2f}x, client+server CPU "
          f"{(n[1] + n[2]) / (p[1] + p[2]):.2f}x", flush=True)


# ---------------------------------------------------------------- part 5


def sync_standby(primary, work, name):
    """A standby of `primary` by pg_basebackup -R, named s1 for synchronous_standby_names."""
    if isinstance(primary, Pg):
        st = Pg(work, name)
    else:
        st = Node(primary.walstream, work, name, ["fsync=on"])
    basebackup(primary, st.data)
    with open(os.path.join(st.data, "postgresql.auto.conf"), "a") as f:
        f.write(f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user=postgres "
                "application_name=s1'\n")
    st.name = f"{primary.name} standby"
    st.start()
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 's1'")
    primary.sql("SELECT pg_reload_conf()")
    t0 = time.perf_counter()
    while primary.sql("SELECT sync_state FROM pg_stat_replication", check=False) != "sync":
        if time.perf_counter() - t0 > 60:
            sys.exit(f"{st.name} did not become synchronous")
        time.sleep(0.05)
    return st


def set_synchronous_commit(s, lv):
    """ALTER SYSTEM, not PGOPTIONS: the node ignores startup-packet settings (a run that used
    PGOPTIONS measured the node at `on`). Waits until a new session shows it."""
    s.sql(f"ALTER SYSTEM SET synchronous_commit = '{lv}'")
    s.sql("SELECT pg_reload_conf()")
    t0 = time.perf_counter()
    while s.sql("SHOW synchronous_commit") != lv:
        if time.perf_counter() - t0 > 10:
            sys.exit(f"{s.name}: synchronous_commit did not become {lv}")
        time.sleep(0.05)


def part_syncrep(servers, script, args, work):
    levels = ("remote_write", "on", "remote_apply")
    print(f"5. one synchronous standby (pg_basebackup -R, application_name s1, "
          f"synchronous_standby_names = 's1'): pgbench -n -M prepared, upsert + read by key, "
          f"-T {args.secs}, synchronous_commit by ALTER SYSTEM, {args.rounds} alternating rounds; "
          f"{load_note()}", flush=True)
    standbys = [sync_standby(s, work, f"sync-{s.name}") for s in servers
                if not isinstance(s, Ceiling)]
    res = {(s.name, lv, c): [] for s in servers for lv in levels for c in (1, 8)}
    try:
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            for lv in levels:
                for c in (1, 8):
                    for s in order:
                        if isinstance(s, Ceiling):
                            s.start(standby_sync=lv != "remote_write")
                        else:
                            set_synchronous_commit(s, lv)
                        tps, p50, p99 = pgbench_run(s, script, c, args.secs, work)
                        res[(s.name, lv, c)].append((tps, p50, p99))
                        print(f"  round {r + 1} {s.name:<8} {lv:<12} -c {c}: {tps:8.0f} tps, "
                              f"p50 {p50:6d} us, p99 {p99:6d} us; {load_note()}", flush=True)
        for lv in levels:
            for c in (1, 8):
                med = {s.name: [median(x[i] for x in res[(s.name, lv, c)]) for i in range(3)]
                       for s in servers}
                for s in servers:
                    t, p50, p99 = med[s.name]
                    print(f"  median {lv:<12} -c {c} {s.name:<8} {t:8.0f} tps, p50 {p50:7.0f} us,"
                          f" p99 {p99:7.0f} us")
                n, p = med["node"], med["postgres"]
                print(f"  {lv} -c {c} node/postgres: TPS {n[0] / p[0]:.2f}x (goal >= 1.5x), "
                      f"p50 {n[1] / p[1]:.2f}x, p99 {n[2] / p[2]:.2f}x", flush=True)
                if "ceiling" in med:
                    print(f"  {lv} -c {c} ceiling/postgres: TPS "
                          f"{med['ceiling'][0] / p[0]:.2f}x (no server here can pass this)",
                          flush=True)
    finally:
        for s in servers:
            if isinstance(s, Ceiling):
                continue
            s.sql("ALTER SYSTEM RESET synchronous_standby_names", check=False)
            s.sql("ALTER SYSTEM RESET synchronous_commit", check=False)
            s.sql("SELECT pg_reload_conf()", check=False)
        for st in standbys:
            st.stop()
            shutil.rmtree(st.data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--lag-secs", type=int, default=20)
    ap.add_argument("--catchup-updates", type=int, default=20)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--bb-runs", type=int, default=3)
    ap.add_argument("--only", default="1,2,3,4")
    ap.add_argument("--ceiling", action="store_true",
                    help="add bench/ceiling_server.rs to parts 1 and 5")
    args = ap.parse_args()
    parts = {int(p) for p in args.only.split(",")}

    walstream = walstream_binary()

    work = tempfile.mkdtemp(prefix="walstream-nbench.")
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    # synchronous_commit is on by default; not set with -c, which would outrank part 5's
    # ALTER SYSTEM (as in PostgreSQL).
    settings = ["checkpoint_timeout=1h", "max_wal_size=10GB", "fsync=on"]
    node = Node(walstream, work, "node", settings)
    pg = Pg(work)
    servers = [node, pg]
    script = os.path.join(work, "upsert.sql")
    with open(script, "w") as f:
        f.write(SCRIPT.format(rows=args.rows))
    ceiling = Ceiling(work) if args.ceiling else None
    try:
        node.init()
        pg.init()
        for s in servers:
            s.start()
        print(f"node: {walstream}; postgres: {pg.sql('SELECT version()')[:40]}; "
              f"{os.cpu_count()} cores; {load_note()}", flush=True)
        if parts & {1, 2, 5}:
            for s in servers:
                make_kv(s, args.rows)
        with_ceiling = servers
        if ceiling:
            ceiling.build()
            ceiling.start()
            with_ceiling = servers + [ceiling]
        if 1 in parts:
            part_throughput(with_ceiling, script, args, work)
        if 2 in parts:
            part_standby(node, pg, script, args, work)
        if parts & {3, 4}:
            part_recovery(servers, args)
        if 4 in parts:
            part_basebackup(servers, args, work)
        if 5 in parts:
            part_syncrep(with_ceiling, script, args, work)
    finally:
        if ceiling:
            ceiling.stop()
        for s in servers:
            try:
                if s.running():
                    s.stop()
            except Exception as e:  # noqa: BLE001 - stop the others whatever happens
                print(f"stopping {s.name}: {e}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
