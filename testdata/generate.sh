#!/usr/bin/env bash
# Generates real PostgreSQL 15 WAL in chosen shapes, and pg_waldump's output for it.
#
#   testdata/generate.sh            # rewrites testdata/wal/ and testdata/expected/
#
# Uses throwaway clusters (initdb --wal-segsize=1) in a temp dir owned by the postgres
# user, on free loopback ports, and stops them on exit. Shapes:
#   wal/shapes/    timeline 1: full-page images (plain, with holes, pglz/lz4/zstd
#                  compressed), B-tree and heap records, ~3000 logical messages of varying
#                  size (some record headers cross a page boundary), records larger than a
#                  page and larger than a segment (pg_logical_emit_message), pg_switch_wal(),
#                  a shutdown checkpoint at the end.
#   wal/timeline/  a standby's pg_wal after promotion: timeline 1 up to the switch point,
#                  timeline 2 after it, and 00000002.history.
# expected/<shape>*.txt hold pg_waldump's stdout, stderr and exit code for each.
set -euo pipefail

BIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/walstream-testdata.XXXXXX)
PIDS_TO_STOP=()

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for d in "${PIDS_TO_STOP[@]}"; do as_pg "$BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"

start() { # datadir port
  cat >>"$1/postgresql.conf" <<EOF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
EOF
  as_pg "$BIN/pg_ctl" -D "$1" -l "$1.log" -w start >/dev/null
  PIDS_TO_STOP+=("$1")
}
sql() { as_pg "$BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }

P=$WORK/primary; PP=$(free_port)
as_pg "$BIN/initdb" -D "$P" --wal-segsize=1 -A trust -U postgres --no-sync >/dev/null
cat >>"$P/postgresql.conf" <<EOF
wal_level = replica
full_page_writes = on
max_wal_senders = 4
autovacuum = off
min_wal_size = 4MB
max_wal_size = 64MB
wal_keep_size = 256MB
EOF
start "$P" "$PP"

# Start at a fresh segment so the shapes are all in the committed files.
sql "$PP" "SELECT pg_switch_wal()" >/dev/null
sql "$PP" "CHECKPOINT"
START=$(sql "$PP" "SELECT pg_walfile_name_offset(pg_current_wal_insert_lsn())" | sed 's/[(),]/ /g' | awk '{print $1}')

# Heap, B-tree, and full-page images: after a checkpoint the first change to a page logs it.
sql "$PP" "CREATE TABLE t (id int PRIMARY KEY, v text) WITH (fillfactor = 50)"
sql "$PP" "INSERT INTO t SELECT g, repeat('v', g % 200) FROM generate_series(1, 3000) g"
for comp in off pglz lz4 zstd; do
  sql "$PP" "CHECKPOINT"
  sql "$PP" "SET wal_compression = $comp; UPDATE t SET v = v || 'u' WHERE id % 7 = 0"
done
# Logical messages of varying sizes: page-crossing record headers appear among them.
sql "$PP" "SELECT count(pg_logical_emit_message(false, 'walstream', repeat('m', (g * 37) % 700))) FROM generate_series(1, 3000) g" >/dev/null
# Larger than a page, larger than a segment.
sql "$PP" "SELECT pg_logical_emit_message(false, 'page', repeat('p', 20000))" >/dev/null
sql "$PP" "SELECT pg_logical_emit_message(true, 'segment', repeat('s', 2500000))" >/dev/null
sql "$PP" "SELECT pg_switch_wal()" >/dev/null
sql "$PP" "INSERT INTO t SELECT g, 'after switch' FROM generate_series(3001, 3100) g"

# A standby, promoted to timeline 2.
S=$WORK/standby; SP=$(free_port)
as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PP" -U postgres -D "$S" -X stream -c fast -R >/dev/null
start "$S" "$SP"
sql "$PP" "INSERT INTO t SELECT g, 'streamed' FROM generate_series(3101, 3200) g"
TARGET=$(sql "$PP" "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 100); do
  [ "$(sql "$SP" "SELECT pg_last_wal_replay_lsn() >= '$TARGET'")" = t ] && break
  sleep 0.1
done
as_pg "$BIN/pg_ctl" -D "$S" -w promote >/dev/null
sql "$SP" "INSERT INTO t SELECT g, 'timeline 2' FROM generate_series(3201, 3300) g"
sql "$SP" "CHECKPOINT"
as_pg "$BIN/pg_ctl" -D "$S" -m fast -w stop >/dev/null
as_pg "$BIN/pg_ctl" -D "$P" -m fast -w stop >/dev/null

copy_wal() { # from-dir to-dir first-segment-name
  rm -rf "$2"; mkdir -p "$2"
  for f in "$1"/pg_wal/*; do
    b=$(basename "$f")
    case "$b" in
      *.history) cp "$f" "$2/" ;;
      [0-9A-F]*) [[ "${b:8}" < "${3:8}" ]] || cp "$f" "$2/" ;;
    esac
  done
}
copy_wal "$P" "$HERE/wal/shapes" "$START"
copy_wal "$S" "$HERE/wal/timeline" "$START"

# pg_waldump's view of each, from the first segment (a segment start is no record boundary:
# pg_waldump finds the first record as XLogFindNextRecord does).
mkdir -p "$HERE/expected"
dump() { # name dir args...
  local name=$1 dir=$2; shift 2
  set +e
  "$BIN/pg_waldump" -p "$dir" "$@" >"$HERE/expected/$name.txt" 2>"$HERE/expected/$name.stderr"
  echo $? >"$HERE/expected/$name.status"
  set -e
}
seg_lsn() { printf '%X/%X' $((16#${1:8:8})) $((16#${1:16:8} * 1048576)); }
FIRST_LSN=$(seg_lsn "$START")
T1_FIRST=$(seg_lsn "$(cd "$HERE/wal/timeline" && ls 00000001???????????????? | head -1)")
dump shapes "$HERE/wal/shapes" -s "$FIRST_LSN"
dump shapes-stats "$HERE/wal/shapes" -s "$FIRST_LSN" --stats
dump shapes-stats-record "$HERE/wal/shapes" -s "$FIRST_LSN" --stats=record
SWITCH=$(cut -f2 "$HERE/wal/timeline/00000002.history" | tail -1)
dump timeline-1 "$HERE/wal/timeline" -t 1 -s "$T1_FIRST" -e "$SWITCH"
dump timeline-2 "$HERE/wal/timeline" -t 2 -s "$SWITCH"
echo "$FIRST_LSN" >"$HERE/expected/shapes.start"
echo "$T1_FIRST" >"$HERE/expected/timeline.start"
echo "$SWITCH" >"$HERE/expected/timeline.switch"

# The shapes the tests rely on must really be there.
grep -q 'FPI' "$HERE/expected/shapes.txt" || { echo "no full-page image" >&2; exit 1; }
grep -q 'SWITCH' "$HERE/expected/shapes.txt" || { echo "no WAL switch" >&2; exit 1; }
python3 - "$HERE/expected/shapes.txt" <<'PY' || { echo "no page-crossing header" >&2; exit 1; }
import re, sys
offs = [int(m.group(1), 16) % 8192 for m in re.finditer(r"lsn: [0-9A-F]+/([0-9A-F]+)", open(sys.argv[1]).read())]
sys.exit(0 if any(o > 8192 - 24 for o in offs) else 1)
PY
echo "testdata: $(ls "$HERE/wal/shapes" | wc -l) shapes files, $(ls "$HERE/wal/timeline" | wc -l) timeline files, start $FIRST_LSN, switch $SWITCH"
