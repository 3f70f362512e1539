#!/usr/bin/env python3
"""The node's start after a crash, alternating binaries on one crashed data directory.

    python3 bench/node_redo_start.py make WALSTREAM ROWS DIR
    python3 bench/node_redo_start.py start DIR WALSTREAM [WALSTREAM ...] [--rounds 3]

`make` runs `WALSTREAM initdb` and `node` in DIR, creates `bb (k int PRIMARY KEY, v text)`,
takes a CHECKPOINT, loads ROWS rows (`v` six md5 digests, 192 bytes) by INSERT ... SELECT
generate_series in 200,000-row statements (part 3 of node_bench.py) and kills the node
(SIGKILL). `start` copies DIR afresh for every start, spawns `WALSTREAM node` on it, and
prints the time from spawn to the first accepted connection and the process's user and
system CPU at that moment; the binaries alternate for --rounds rounds. Nothing is kept
(the copy is removed; the node is stopped with SIGKILL after the measurement).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from pgutil import BIN, free_port

WIDE = " || ".join(f"md5((g + {i})::text)" for i in range(6))
SETTINGS = ["-c", "checkpoint_timeout=1h", "-c", "max_wal_size=10GB"]


def spawn(walstream, data, log):
    port = free_port()
    args = [walstream, "node", "-D", data, "--listen", f"127.0.0.1:{port}"] + SETTINGS
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), port


def accepting(port, proc):
    while True:
        if proc.poll() is not None:
            sys.exit(f"the node exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.002)


def make(walstream, rows, data):
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([walstream, "initdb", "-D", data], check=True, stdout=subprocess.DEVNULL)
    with open(data + ".log", "a") as log:
        proc, port = spawn(walstream, data, log)
        accepting(port, proc)

        def sql(q):
            subprocess.run([f"{BIN}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(port), "-U", "postgres", "-d", "postgres", "-c", q],
                           check=True)

        sql("CREATE TABLE bb (k int PRIMARY KEY, v text)")
        sql("CHECKPOINT")
        for lo in range(1, rows + 1, 200_000):
            sql(f"INSERT INTO bb SELECT g, {WIDE} FROM generate_series({lo}, "
                f"{min(rows, lo + 199_999)}) g")
        proc.kill()
        proc.wait()


def start_once(walstream, src):
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        shutil.copytree(src, data, symlinks=True)
        with open(os.path.join(tmp, "log"), "w") as log:
            t0 = time.perf_counter()
            proc, port = spawn(walstream, data, log)
            accepting(port, proc)
            wall = time.perf_counter() - t0
            with open(f"/proc/{proc.pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            proc.kill()
            proc.wait()
    return wall, int(st[11]) / tick, int(st[12]) / tick


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("walstream")
    m.add_argument("rows", type=int)
    m.add_argument("dir")
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("walstream", nargs="+")
    s.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.walstream, args.rows, args.dir)
        return
    for r in range(args.rounds):
        for w in args.walstream:
            load = os.getloadavg()[0]
            wall, user, system = start_once(w, args.dir)
            print(f"round {r + 1} {w}: accepting after {wall:.3f} s, CPU user {user:.2f} s "
                  f"system {system:.2f} s; load average {load:.2f}", flush=True)


if __name__ == "__main__":
    main()
