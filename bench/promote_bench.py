#!/usr/bin/env python3
"""Promotion: a walstream node standby against a PostgreSQL 15 standby, side by side.

    python3 bench/promote_bench.py [--rounds 3] [--rows 100000]

Builds `cargo build --release --bin walstream` first (or takes $WALSTREAM). Each round,
for PostgreSQL and for the node (alternating which goes first):
  a primary with `t(k int PRIMARY KEY, v text)` of --rows rows; standby S1 made with
  `pg_basebackup -R -X stream -c fast` of it; standby S2 made the same way, its
  primary_conninfo pointed at S1 (a cascade); both caught up; the primary stopped (fast),
  as in a failover. Then, from the moment `SELECT pg_promote(false)` is sent to S1:
  - first write: an open psql session on S1 repeats `INSERT ... RETURNING 1` until one
    succeeds;
  - S2 on the new timeline: an open psql session on S2 polls
    `pg_stat_wal_receiver.received_tli` until it shows 2 with status 'streaming'.
  Both servers run with their defaults otherwise (wal_retrieve_retry_interval 5 s for
  both), fsync on. Medians of the rounds and node/PostgreSQL ratios are printed.
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_bench import (Node, Pg, Session, basebackup, load_note, median,  # noqa: E402
                        wait_replayed)
from pgutil import walstream_binary  # noqa: E402


def point_at(data, port):
    with open(os.path.join(data, "postgresql.auto.conf"), "a") as f:
        f.write(f"primary_conninfo = 'host=127.0.0.1 port={port} user=postgres'\n")


def make(kind, walstream, work, name):
    if kind == "node":
        return Node(walstream, work, f"{name}", ["fsync=on"])
    return Pg(work, name)


def until(what, f, timeout=120):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = f()
        if v:
            return v
    sys.exit(f"timed out: {what}")


def one_round(kind, walstream, work, rows):
    primary = make(kind, walstream, work, f"{kind}-p")
    primary.init()
    primary.start()
    s1 = make(kind, walstream, work, f"{kind}-s1")
    s2 = make(kind, walstream, work, f"{kind}-s2")
    started = [primary]
    try:
        primary.sql("CREATE TABLE t (k int PRIMARY KEY, v text)")
        primary.sql(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g")
        basebackup(primary, s1.data)
        s1.start()
        started.append(s1)
        basebackup(primary, s2.data)
        point_at(s2.data, s1.port)
        s2.start()
        started.append(s2)
        end = primary.sql("SELECT pg_current_wal_flush_lsn()")
        wait_replayed(s1, end)
        wait_replayed(s2, end)
        until("S2 streaming from S1",
              lambda: s2.sql("SELECT status FROM pg_stat_wal_receiver", check=False)
              == "streaming")
        primary.stop()
        started.remove(primary)
        w, r = Session(s1), Session(s2)
        follow = {}

        def watch():
            follow["t"] = until("S2 on timeline 2", lambda: (
                r.query("SELECT received_tli, status FROM pg_stat_wal_receiver") == ["2|streaming"]
                and time.perf_counter()))

        t0 = time.perf_counter()
        if s1.sql("SELECT pg_promote(false)") != "t":
            sys.exit(f"{kind}: pg_promote(false) did not return true")
        th = threading.Thread(target=watch)
        th.start()
        first = until("the first write", lambda: (
            w.query(f"INSERT INTO t VALUES ({rows + 1}, 'x') RETURNING 1") == ["1"]
            and time.perf_counter()))
        th.join()
        w.close()
        r.close()
        return first - t0, follow["t"] - t0
    finally:
        for s in started:
            s.stop()
        if os.environ.get("PROMOTE_DEBUG") and os.path.exists(s1.log):
            with open(s1.log) as f:
                print("".join(f.readlines()[-25:]))
        for s in (primary, s1, s2):
            shutil.rmtree(s.data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    walstream = walstream_binary()
    work = tempfile.mkdtemp(prefix="walstream-promote.")
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    res = {"node": [], "postgres": []}
    try:
        print(f"promotion: {args.rounds} alternating rounds, {args.rows} rows; "
              f"{os.cpu_count()} cores; {load_note()}", flush=True)
        for i in range(args.rounds):
            for kind in (("node", "postgres") if i % 2 == 0 else ("postgres", "node")):
                write, follow = one_round(kind, walstream, work, args.rows)
                res[kind].append((write, follow))
                print(f"  round {i + 1} {kind:<8}: first write {write * 1000:8.1f} ms, "
                      f"S2 streaming timeline 2 {follow * 1000:8.1f} ms; {load_note()}",
                      flush=True)
        med = {k: (median(x[0] for x in v), median(x[1] for x in v)) for k, v in res.items()}
        for k, (w, f) in med.items():
            print(f"  median {k:<8}: first write {w * 1000:8.1f} ms, "
                  f"S2 streaming timeline 2 {f * 1000:8.1f} ms")
        n, p = med["node"], med["postgres"]
        print(f"  node/postgres: first write {n[0] / p[0]:.2f}x, second standby {n[1] / p[1]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
