"""What the side-by-side benchmark scripts share: PostgreSQL's programs run as the
postgres user (PostgreSQL refuses root), a free loopback port, LSN arithmetic, and the
wall and CPU time of the programs they run."""
import os
import resource
import socket
import subprocess
import time

BIN = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def as_pg(args, **kw):
    """Runs a PostgreSQL program, as the postgres user when we are root."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lsn_to_int(s):
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def children_cpu():
    """User + system CPU seconds of the children waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd):
    """Runs `cmd` capturing its output; returns (CompletedProcess, wall s, CPU s)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    return out, time.perf_counter() - t0, children_cpu() - cpu0


def walstream_binary():
    """$WALSTREAM, or the release `walstream` built now (`cargo build --release`)."""
    walstream = os.environ.get("WALSTREAM")
    if walstream:
        return walstream
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "walstream"], cwd=ROOT,
                   check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "walstream")
