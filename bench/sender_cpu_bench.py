#!/usr/bin/env python3
"""Side-by-side: the CPU a server spends per GB of WAL it streams, `walstream serve` vs
PostgreSQL 15's walsender, serving the same backlog to `pg_receivewal --no-sync`.

    python3 bench/sender_cpu_bench.py --keep /work/benchwal-oltp [--runs 3]

Takes a cluster made by `waldump_vs_pg_waldump.py --keep DIR` (its `DIR/data`, ≥1 GB of
pgbench WAL kept by `wal_keep_size`). Each round, alternating:
- `walstream serve -D DIR/data/pg_wal` (the server stopped), pg_receivewal from it;
- the PostgreSQL server started on the same data directory, pg_receivewal from it.
pg_receivewal starts after the first segment of the range (that segment is put in its
directory, so it resumes after it) and stops at `--endpos` (the range's end). Measured:
wall time of pg_receivewal; the server's CPU from /proc (walstream: its process;
PostgreSQL: every process of the cluster, postmaster and children, so the walsender and
anything it wakes); CPU seconds per GB and the ratio walstream / PostgreSQL.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from pgutil import BIN, as_pg, free_port, lsn_to_int, walstream_binary

TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_of(pid):
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def tree_cpu(root):
    """CPU of a process and all its children, living or reaped: the root's utime + stime +
    cutime + cstime (children it waited for, e.g. a walsender that ended) plus each living
    descendant's utime + stime."""
    fields = stat_fields(root)
    total = sum(int(x) for x in fields[11:15]) / TICKS
    todo = [root]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except FileNotFoundError:
            kids = []
        for k in kids:
            total += cpu_of(k)
        todo += kids
    return total


def segment_name(lsn, seg=16 << 20, tli=1):
    segno = lsn // seg
    return f"{tli:08X}{segno // (0x100000000 // seg):08X}{segno % (0x100000000 // seg):08X}"


def receive(port, first_seg_path, end, as_postgres):
    """pg_receivewal from port until end; returns wall seconds."""
    out = tempfile.mkdtemp(prefix="walstream-recv.")
    shutil.copy(first_seg_path, out)
    if os.geteuid() == 0:
        shutil.chown(out, "postgres", "postgres")
        for f in os.listdir(out):
            shutil.chown(os.path.join(out, f), "postgres", "postgres")
    cmd = [f"{BIN}/pg_receivewal", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-D", out,
           "--no-sync", "-n", "-E", end, "--no-password"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode != 0:
        sys.exit(f"pg_receivewal failed: {res.stderr[-2000:]}")
    return wall


def wait_port(port, limit=30):
    import socket
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", required=True, help="a cluster made by waldump_vs_pg_waldump.py --keep")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = os.path.join(args.keep, "data")
    waldir = os.path.join(data, "pg_wal")
    start, end = open(os.path.join(args.keep, "range")).read().split()
    first = os.path.join(waldir, segment_name(lsn_to_int(start)))
    begin = (lsn_to_int(start) // (16 << 20) + 1) * (16 << 20)
    gb = (lsn_to_int(end) - begin) / 1e9
    walstream = walstream_binary()
    port = free_port()
    results = {"walstream serve": [], "PostgreSQL": []}
    for _ in range(args.runs):
        # walstream serve, the PostgreSQL server stopped.
        serve = subprocess.Popen([walstream, "serve", "-D", waldir, "--listen", f"127.0.0.1:{port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            cpu0 = tree_cpu(serve.pid)
            wall = receive(port, first, end, True)
            cpu = tree_cpu(serve.pid) - cpu0
        finally:
            serve.terminate()
            serve.wait(timeout=30)
        results["walstream serve"].append((wall, cpu))
        # PostgreSQL on the same WAL.
        log = os.path.join(args.keep, "bench.log")
        as_pg([f"{BIN}/pg_ctl", "-D", data, "-l", log, "-w", "-o", f"-p {port}", "start"],
              stdout=subprocess.DEVNULL)
        try:
            pid = int(open(os.path.join(data, "postmaster.pid")).readline())
            cpu0 = tree_cpu(pid)
            wall = receive(port, first, end, True)
            time.sleep(0.5)  # the walsender ends and is reaped into the postmaster's cutime
            cpu = tree_cpu(pid) - cpu0
        finally:
            as_pg([f"{BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL)
        results["PostgreSQL"].append((wall, cpu))
    print(f"backlog: {gb:.3f} GB ({segment_name(begin)} .. {end}), {args.runs} alternating rounds")
    med = {}
    for k, v in results.items():
        print(f"  {k:<16} wall s: " + " ".join(f"{w:.2f}" for w, _ in v)
              + "   CPU s: " + " ".join(f"{c:.2f}" for _, c in v))
        wall = statistics.median(w for w, _ in v)
        cpu = statistics.median(c for _, c in v)
        med[k] = (wall, cpu)
        print(f"  {k:<16} median wall {wall:.2f} s ({gb / wall:.2f} GB/s), CPU {cpu:.2f} s = {cpu / gb:.2f} CPU s/GB")
    print(f"CPU per GB, walstream / PostgreSQL: {med['walstream serve'][1] / med['PostgreSQL'][1]:.2f}x; "
          f"time: {med['walstream serve'][0] / med['PostgreSQL'][0]:.2f}x")


if __name__ == "__main__":
    main()
