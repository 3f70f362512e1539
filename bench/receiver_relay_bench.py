#!/usr/bin/env python3
"""Receiver and relay: `walstream receivewal` / `walstream relay` against PostgreSQL's own.

    python3 bench/receiver_relay_bench.py [--keep DIR] [--gb 1.5] [--scale 100] SUBCOMMAND ...

Subcommands (each can run alone on a kept cluster; `all` runs the three in order;
`setup` only makes the cluster and its backlog):

  backlog [--runs 3] [--no-sync]
      A physical slot (`bench`, reserved at once) holds >= --gb GB of pgbench WAL on a
      throwaway primary (16 MB segments). Both clients stream the whole backlog without a
      slot, each into an empty directory seeded with a zero-filled full-size `.partial` of
      the slot's first segment (both tools resume at a `.partial`'s segment start), with
      `-E <end - 1> -n` where <end> is the segment boundary after `pg_switch_wal()`.
      Alternating runs; wall seconds, MB/s and the child's user+sys CPU seconds per GB.
      Every run: the number of complete segments and every segment byte-identical (cmp)
      to the primary's pg_wal.
  syncrep [--rounds 3] [--secs 15]
      synchronous_standby_names = 'bench', fsync and synchronous_commit on. The standby is
      (a) `walstream receivewal -d "... application_name=bench"`, (b) `pg_receivewal
      --synchronous -d "... application_name=bench"`, (c) none (baseline, names = '').
      pgbench -c 1 and -c 8 (-j 2), -T --secs, transaction logs (-l): p50/p99 latency.
  fanout [--runs 2] [--fanout-gb 1.0] [--clients 8]
      --clients pg_receivewal --no-sync, each from its own seeded start, -E at the first
      segment boundary >= --fanout-gb GB after the start, connected to `walstream relay`
      (which first caught up with the backlog from the primary) or straight to the
      primary. Aggregate MB/s = clients x bytes / wall time until all finish. Every
      client's segment count and a sample of its segments are checked against the primary.

The cluster is stopped at the end and removed (or kept in --keep for reuse).
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from pgutil import (BIN, ROOT, as_pg, children_cpu, free_port, lsn_to_int, run_timed,
                    walstream_binary)

SEG = 16 * 1024 * 1024


def int_to_lsn(v):
    return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}"


def seg_name(segno, tli=1):
    per = 0x100000000 // SEG
    return f"{tli:08X}{segno // per:08X}{segno % per:08X}"


def median(xs):
    return statistics.median(xs)


class Primary:
    """A throwaway PostgreSQL 15 cluster in `work`, started on a free loopback port."""

    def __init__(self, work):
        self.work = work
        self.data = os.path.join(work, "data")
        self.port = None

    def conninfo(self, extra=""):
        return f"host=127.0.0.1 port={self.port} user=postgres {extra}".strip()

    def init(self):
        as_pg([f"{BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"],
              stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.work}'\n"
                    "max_wal_size = 32GB\ncheckpoint_timeout = 1h\nautovacuum = off\n"
                    "max_wal_senders = 30\nmax_connections = 60\nshared_buffers = 512MB\n")

    def start(self):
        self.port = free_port()
        as_pg([f"{BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.work, "log"), "-w",
               "-o", f"-p {self.port}", "start"], stdout=subprocess.DEVNULL)

    def stop(self):
        as_pg([f"{BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
              stdout=subprocess.DEVNULL)

    def sql(self, q):
        out = as_pg([f"{BIN}/psql", "-XAtq", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                     "postgres", "-d", "postgres", "-c", q], capture_output=True, text=True)
        return out.stdout.strip()

    def pgbench(self, args, **kw):
        return as_pg([f"{BIN}/pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                      "postgres"] + args + ["postgres"], **kw)

    def set(self, **settings):
        for k, v in settings.items():
            self.sql(f"ALTER SYSTEM SET {k} = '{v}'")
        self.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)

    def make_backlog(self, gb, scale):
        """The slot `bench`, then pgbench WAL until >= gb GB after its restart_lsn."""
        self.sql("SELECT pg_create_physical_replication_slot('bench', true)")
        start = self.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'bench'")
        self.set(fsync="off", synchronous_commit="off")
        self.pgbench(["-i", "-q", "-s", str(scale)], capture_output=True)
        for _ in range(40):  # bounded: at most 40 x 20 s
            done = lsn_to_int(self.sql("SELECT pg_current_wal_lsn()")) - lsn_to_int(start)
            if done >= gb * 1e9:
                break
            self.pgbench(["-c", "4", "-j", "2", "-T", "20", "-n"], capture_output=True)
        switch = lsn_to_int(self.sql("SELECT pg_switch_wal()"))
        end = (switch + SEG - 1) // SEG * SEG
        self.set(fsync="on", synchronous_commit="on")
        self.sql("CHECKPOINT")
        return start, int_to_lsn(end)


def seed(directory, start):
    """An empty directory holding a zero-filled full-size .partial of start's segment."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    with open(os.path.join(directory, seg_name(lsn_to_int(start) // SEG) + ".partial"), "wb") as f:
        f.truncate(SEG)


def check_segments(directory, pgwal, start, end, sample=None):
    """Every complete segment in [start, end) is there and equal to the primary's."""
    first, last = lsn_to_int(start) // SEG, lsn_to_int(end) // SEG
    names = [seg_name(s) for s in range(first, last)]
    have = {os.path.basename(p) for p in glob.glob(os.path.join(directory, "0*"))
            if not p.endswith(".partial")}
    missing = [n for n in names if n not in have]
    if missing:
        sys.exit(f"{directory}: {len(missing)} of {len(names)} segments missing, e.g. {missing[:3]}")
    check = names if sample is None else sorted({names[0], names[-1]} |
                                                set(names[::max(1, len(names) // sample)]))
    for n in check:
        r = subprocess.run(["cmp", "-s", os.path.join(directory, n), os.path.join(pgwal, n)])
        if r.returncode != 0:
            sys.exit(f"{directory}/{n} differs from the primary's")
    return len(names), len(check)


def timed(cmd):
    out, wall, cpu = run_timed(cmd)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, cpu


def clients(walstream):
    return {"pg_receivewal": [f"{BIN}/pg_receivewal"], "walstream": [walstream, "receivewal"]}


def load_note():
    return f"load average at start: {os.getloadavg()[0]:.2f}"


def bench_backlog(pg, walstream, start, end, args):
    pgwal = os.path.join(pg.data, "pg_wal")
    size = lsn_to_int(end) - lsn_to_int(start) // SEG * SEG  # both stream from the segment start
    stop = int_to_lsn(lsn_to_int(end) - 1)
    out = os.path.join(pg.work, "recv")
    extra = ["--no-sync"] if args.no_sync else []
    results = {k: [] for k in clients(walstream)}
    print(f"backlog: {size / 1e9:.2f} GB, {start} .. {end}, -E {stop}"
          f"{' --no-sync' if args.no_sync else ''}; {load_note()}", flush=True)
    for i in range(args.runs):
        for tool, cmd in clients(walstream).items():
            seed(out, start)
            wall, cpu = timed(cmd + ["-d", pg.conninfo(), "-D", out, "-E", stop, "-n"] + extra)
            nseg, ncmp = check_segments(out, pgwal, start, end)
            shutil.rmtree(out)
            results[tool].append((wall, cpu))
            print(f"  run {i + 1} {tool:<14} {wall:7.2f} s {size / 1e6 / wall:7.0f} MB/s "
                  f"cpu {cpu:6.2f} s ({cpu / (size / 1e9):5.2f} s/GB); {nseg} segments, "
                  f"{ncmp} cmp-identical; load {os.getloadavg()[0]:.2f}", flush=True)
    med = {}
    for tool, v in results.items():
        wall, cpu = median(r[0] for r in v), median(r[1] for r in v)
        med[tool] = (size / 1e6 / wall, cpu / (size / 1e9))
        print(f"  median {tool:<14} {wall:7.2f} s {med[tool][0]:7.0f} MB/s "
              f"{med[tool][1]:5.2f} CPU s/GB")
    print(f"  walstream / pg_receivewal: MB/s {med['walstream'][0] / med['pg_receivewal'][0]:.2f}x, "
          f"CPU per GB {med['walstream'][1] / med['pg_receivewal'][1]:.2f}x", flush=True)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def pgbench_latencies(pg, nclients, secs):
    logdir = tempfile.mkdtemp(prefix="pgblog.", dir=pg.work)
    shutil.chown(logdir, "postgres") if os.geteuid() == 0 else None
    pg.pgbench(["-n", "-c", str(nclients), "-j", str(min(nclients, 2)), "-T", str(secs), "-l",
                f"--log-prefix={logdir}/tx"], capture_output=True)
    lat = []
    for path in glob.glob(os.path.join(logdir, "tx*")):
        with open(path) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 3:
                    lat.append(int(cols[2]))
    shutil.rmtree(logdir)
    return percentile(lat, 50), percentile(lat, 99), len(lat) / secs


def start_standby(pg, walstream, mode, directory):
    info = pg.conninfo("application_name=bench")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    if mode == "walstream":
        cmd = [walstream, "receivewal", "-d", info, "-D", directory, "-n"]
    else:
        cmd = [f"{BIN}/pg_receivewal", "--synchronous", "-d", info, "-D", directory, "-n"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):  # bounded: 60 s
        state = pg.sql("SELECT state || ' ' || sync_state || ' ' || (flush_lsn >= "
                       "pg_current_wal_lsn()) FROM pg_stat_replication "
                       "WHERE application_name = 'bench'")
        if state == "streaming sync true":
            return proc
        if proc.poll() is not None:
            sys.exit(f"{mode} standby exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"{mode} standby never became the synchronous standby ({state!r})")


def bench_syncrep(pg, walstream, args):
    modes = ["baseline", "walstream", "pg_receivewal"]
    res = {(m, c): [] for m in modes for c in (1, 8)}
    standby_dir = os.path.join(pg.work, "standby")
    print(f"syncrep: pgbench -T {args.secs}, {args.rounds} rounds; {load_note()}", flush=True)
    for r in range(args.rounds):
        for mode in modes:
            proc = None
            if mode == "baseline":
                pg.set(synchronous_standby_names="")
            else:
                pg.set(synchronous_standby_names="bench")
                proc = start_standby(pg, walstream, mode, standby_dir)
            try:
                for c in (1, 8):
                    p50, p99, tps = pgbench_latencies(pg, c, args.secs)
                    res[(mode, c)].append((p50, p99, tps))
                    print(f"  round {r + 1} {mode:<14} -c {c}: p50 {p50:6d} us, p99 {p99:6d} us, "
                          f"{tps:7.0f} tps; load {os.getloadavg()[0]:.2f}", flush=True)
            finally:
                if proc:
                    proc.terminate()
                    proc.wait(timeout=30)
                    pg.set(synchronous_standby_names="")
    shutil.rmtree(standby_dir, ignore_errors=True)
    for c in (1, 8):
        med = {m: tuple(median(x[i] for x in res[(m, c)]) for i in range(3)) for m in modes}
        for m in modes:
            print(f"  median -c {c} {m:<14} p50 {med[m][0]:8.0f} us, p99 {med[m][1]:8.0f} us, "
                  f"{med[m][2]:7.0f} tps")
        for i, what in ((0, "p50"), (1, "p99")):
            ws = med["walstream"][i] - med["baseline"][i]
            pr = med["pg_receivewal"][i] - med["baseline"][i]
            ratio = f"{ws / pr:.2f}x" if pr > 0 else "n/a"
            print(f"  -c {c} added {what}: walstream {ws:.0f} us, pg_receivewal {pr:.0f} us, "
                  f"ratio {ratio}", flush=True)


def wait_relay(rdir, last_name, proc, timeout=900):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(os.path.join(rdir, last_name)):
            return time.time() - t0
        if proc.poll() is not None:
            sys.exit("walstream relay exited while catching up")
        time.sleep(0.2)
    sys.exit("walstream relay did not catch up in time")


def bench_fanout(pg, walstream, start, end, args):
    pgwal = os.path.join(pg.data, "pg_wal")
    first = lsn_to_int(start) // SEG * SEG  # both stream from the segment start
    fend = min(lsn_to_int(end), (first + int(args.fanout_gb * 1e9) + SEG - 1) // SEG * SEG)
    fend_lsn = int_to_lsn(fend)
    size = fend - first
    stop = int_to_lsn(fend - 1)
    rdir = os.path.join(pg.work, "relay")
    seed(rdir, start)
    rport = free_port()
    rlog = open(os.path.join(pg.work, "relay.log"), "w")
    relay = subprocess.Popen([walstream, "relay", "-D", rdir, "--upstream", pg.conninfo(),
                              "--listen", f"127.0.0.1:{rport}", "-c", "max_wal_senders=30"],
                             stdout=rlog, stderr=subprocess.STDOUT)
    try:
        caught = wait_relay(rdir, seg_name(lsn_to_int(end) // SEG - 1), relay)
        print(f"fanout: {args.clients} x pg_receivewal --no-sync, {size / 1e9:.2f} GB each "
              f"({start} .. {fend_lsn}); relay caught up with the whole backlog in "
              f"{caught:.1f} s; {load_note()}", flush=True)
        targets = {"direct": pg.conninfo(), "relay": f"host=127.0.0.1 port={rport} user=postgres"}
        res = {k: [] for k in targets}
        ceilings = []
        for i in range(args.runs):
            for name, info in targets.items():
                dirs = [os.path.join(pg.work, f"down{j}") for j in range(args.clients)]
                for d in dirs:
                    seed(d, start)
                cpu0 = children_cpu()
                t0 = time.perf_counter()
                procs = [subprocess.Popen([f"{BIN}/pg_receivewal", "-d", info, "-D", d, "-E",
                                           stop, "-n", "--no-sync"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                         for d in dirs]
                for p in procs:
                    p.wait()
                wall = time.perf_counter() - t0
                client_cpu = children_cpu() - cpu0
                for p in procs:
                    if p.returncode != 0:
                        sys.exit(f"pg_receivewal via {name} failed: {p.stderr.read()[-2000:]}")
                for d in dirs:
                    nseg, ncmp = check_segments(d, pgwal, start, fend_lsn, sample=8)
                    shutil.rmtree(d)
                mbs = args.clients * size / 1e6 / wall
                res[name].append(mbs)
                # What the clients alone allow on this machine: all its cores doing nothing
                # but their work (the server's own CPU not counted).
                per_gb = client_cpu / (args.clients * size / 1e9)
                ceiling = os.cpu_count() / per_gb * 1e3
                ceilings.append(ceiling)
                print(f"  run {i + 1} {name:<7} {wall:7.2f} s, aggregate {mbs:7.0f} MB/s; "
                      f"clients' CPU {client_cpu:5.1f} s ({per_gb:.2f} s/GB: at most "
                      f"{ceiling:.0f} MB/s on {os.cpu_count()} cores); "
                      f"each: {nseg} segments, {ncmp} cmp-identical; "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
        d, r = median(res["direct"]), median(res["relay"])
        print(f"  median direct {d:.0f} MB/s, relay {r:.0f} MB/s, relay/direct {r / d:.2f}x; "
              f"the clients' own CPU caps the aggregate at {median(ceilings):.0f} MB/s, "
              f"{median(ceilings) / d:.2f}x direct", flush=True)
    finally:
        relay.terminate()
        relay.wait(timeout=30)
        shutil.rmtree(rdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="keep (or reuse) the cluster and its backlog here")
    ap.add_argument("--gb", type=float, default=1.5)
    ap.add_argument("--scale", type=int, default=100)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backlog")
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--no-sync", action="store_true")
    s = sub.add_parser("syncrep")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--secs", type=int, default=15)
    f = sub.add_parser("fanout")
    f.add_argument("--runs", type=int, default=2)
    f.add_argument("--fanout-gb", type=float, default=1.0)
    f.add_argument("--clients", type=int, default=8)
    sub.add_parser("setup", help="only make the cluster and its backlog (needs --keep)")
    a = sub.add_parser("all")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--no-sync", action="store_true")
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--secs", type=int, default=15)
    a.add_argument("--fanout-gb", type=float, default=1.0)
    a.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()

    if args.cmd == "setup" and not args.keep:
        sys.exit("setup needs --keep DIR")
    walstream = os.environ.get("WALSTREAM")
    if not walstream and args.cmd != "setup":
        walstream = walstream_binary()

    work = args.keep or tempfile.mkdtemp(prefix="walstream-rbench.")
    os.makedirs(work, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    pg = Primary(work)
    meta = os.path.join(work, "range")
    fresh = not os.path.exists(meta)
    if fresh:
        pg.init()
    pg.start()
    try:
        if fresh:
            start, end = pg.make_backlog(args.gb, args.scale)
            open(meta, "w").write(f"{start} {end}\n")
        start, end = open(meta).read().split()
        if args.cmd in ("backlog", "all"):
            bench_backlog(pg, walstream, start, end, args)
        if args.cmd in ("syncrep", "all"):
            bench_syncrep(pg, walstream, args)
        if args.cmd in ("fanout", "all"):
            bench_fanout(pg, walstream, start, end, args)
    finally:
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
