#!/usr/bin/env python3
"""Side-by-side: `walstream waldump --stats` vs `pg_waldump --stats` on the same WAL.

    python3 bench/waldump_vs_pg_waldump.py [--gb 1.0] [--runs 5] [--scale 60] [--keep DIR]
                                           [--workload oltp|bulk]

Makes a throwaway PostgreSQL 15 cluster (16 MB segments) on a free loopback port, makes
WAL until at least --gb GB exist, stops the server,
then times both tools alternately on the same segments (same start and end LSN), --runs
times each, and prints records, wall seconds, CPU seconds and records per second (median),
and the ratio walstream / pg_waldump; walstream runs twice per round, on both cores and
pinned to one (`taskset -c 0`), for the per-core ratio. Every run of all must print the
same statistics, byte for byte.

Workloads: `oltp` (default): pgbench -i, then pgbench transactions (small records, one
full-page image per page after each checkpoint); `bulk`: what loads make — COPY
(`pgbench -i`'s multi-insert records), CREATE INDEX (whole index pages logged), a
checkpoint then an UPDATE of one row in 50 (a full-page image in nearly every record),
repeated.
The cluster is stopped and removed at the end (or kept in --keep for reuse).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from pgutil import BIN, as_pg, free_port, lsn_to_int, run_timed, walstream_binary



def sql(port, q):
    out = as_pg([f"{BIN}/psql", "-XAtq", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 "-d", "postgres", "-c", q], capture_output=True, text=True)
    return out.stdout.strip()


def bulk_rounds(port, gb, start, scale):
    """COPY, CREATE INDEX, CHECKPOINT + UPDATE of a row per page: large, page-crossing records and
    full-page images, until gb GB of WAL exist (bounded: at most 40 rounds)."""
    pgbench = [f"{BIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    for _ in range(40):
        done = lsn_to_int(sql(port, "SELECT pg_current_wal_lsn()")) - lsn_to_int(start)
        if done >= gb * 1e9:
            break
        as_pg(pgbench + ["-i", "-q", "-s", str(scale), "postgres"], capture_output=True)
        sql(port, "CREATE INDEX ON pgbench_accounts (abalance, aid)")
        sql(port, "CHECKPOINT")
        # One row in ~50 (pgbench_accounts holds ~61 per page): a full-page image in
        # nearly every record.
        sql(port, "UPDATE pgbench_accounts SET filler = filler WHERE aid % 50 = 0")


def make_wal(work, gb, scale, workload="oltp"):
    data = os.path.join(work, "data")
    as_pg([f"{BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
          stdout=subprocess.DEVNULL)
    port = free_port()
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
                "fsync = off\nsynchronous_commit = off\nmax_wal_size = 8GB\nwal_keep_size = 8GB\n"
                "checkpoint_timeout = 1h\nautovacuum = off\n")
    as_pg([f"{BIN}/pg_ctl", "-D", data, "-l", os.path.join(work, "log"), "-w", "start"],
          stdout=subprocess.DEVNULL)
    try:
        start = sql(port, "SELECT pg_current_wal_lsn()")
        pgbench = [f"{BIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        if workload == "bulk":
            bulk_rounds(port, gb, start, scale)
        else:
            as_pg(pgbench + ["-i", "-q", "-s", str(scale), "postgres"], capture_output=True)
        for _ in range(40 if workload == "oltp" else 0):  # bounded: at most 40 x 30 s
            done = lsn_to_int(sql(port, "SELECT pg_current_wal_lsn()")) - lsn_to_int(start)
            if done >= gb * 1e9:
                break
            as_pg(pgbench + ["-c", "4", "-j", "2", "-T", "30", "-n", "postgres"], capture_output=True)
        sql(port, "SELECT pg_switch_wal()")
        end = sql(port, "SELECT pg_current_wal_lsn()")
    finally:
        as_pg([f"{BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL)
    return os.path.join(data, "pg_wal"), start, end


def timed(cmd):
    out, wall, cpu = run_timed(cmd)
    m = re.search(r"^Total\s+(\d+)", out.stdout, re.M)
    if out.returncode not in (0, 1) or not m:
        sys.exit(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return int(m.group(1)), wall, cpu, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=int, default=60, help="pgbench -i scale before the transactions")
    ap.add_argument("--keep", help="keep (or reuse) the generated WAL in this directory")
    ap.add_argument("--workload", choices=["oltp", "bulk"], default="oltp")
    ap.add_argument("--generate-only", action="store_true", help="only make the WAL (needs --keep)")
    args = ap.parse_args()
    if args.generate_only and not args.keep:
        sys.exit("--generate-only needs --keep DIR")

    walstream = None if args.generate_only else walstream_binary()

    meta = os.path.join(args.keep, "range") if args.keep else None
    work = None
    if meta and os.path.exists(meta):
        waldir = os.path.join(args.keep, "data", "pg_wal")
        start, end = open(meta).read().split()
    else:
        work = args.keep or tempfile.mkdtemp(prefix="walstream-bench.")
        os.makedirs(work, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(work, "postgres", "postgres")
        waldir, start, end = make_wal(work, args.gb, args.scale, args.workload)
        if meta:
            open(meta, "w").write(f"{start} {end}\n")
    if args.generate_only:
        print(f"WAL in {waldir}: {start} .. {end}")
        return
    try:
        size = lsn_to_int(end) - lsn_to_int(start)
        common = ["-p", waldir, "-s", start, "-e", end, "--stats"]
        results = {"pg_waldump": [], "walstream": [], "walstream 1 core": []}
        for _ in range(args.runs):  # alternate so all see the same cache state
            results["pg_waldump"].append(timed([f"{BIN}/pg_waldump"] + common))
            results["walstream"].append(timed([walstream, "waldump"] + common))
            results["walstream 1 core"].append(timed(["taskset", "-c", "0", walstream, "waldump"] + common))
        outputs = set()
        for v in results.values():
            outputs |= {r[3] for r in v}
        if len(outputs) != 1:
            sys.exit("the tools' --stats output differs")
        print(f"WAL ({args.workload}): {size / 1e9:.2f} GB, {start} .. {end}, {args.runs} runs each, median")
        for k, v in results.items():
            print(f"  {k} wall s per run: " + " ".join(f"{r[1]:.2f}" for r in v))
        print(f"{'tool':<16} {'records':>10} {'wall s':>8} {'cpu s':>8} {'records/s':>12} {'MB/s':>8}")
        rate = {}
        for k, v in results.items():
            wall = statistics.median(r[1] for r in v)
            cpu = statistics.median(r[2] for r in v)
            rate[k] = v[0][0] / wall
            print(f"{k:<16} {v[0][0]:>10} {wall:>8.2f} {cpu:>8.2f} {rate[k]:>12.0f} {size / 1e6 / wall:>8.0f}")
        print(f"ratio walstream/pg_waldump records per second: {rate['walstream'] / rate['pg_waldump']:.2f}x")
        print(f"per core (walstream pinned to one core): {rate['walstream 1 core'] / rate['pg_waldump']:.2f}x")
    finally:
        if work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
