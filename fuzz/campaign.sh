#!/usr/bin/env bash
# Fuzz campaign: every target (or those named) until 10M executions or one hour,
# the committed corpus as seed, new inputs into a scratch corpus (not committed).
#   fuzz/campaign.sh [TARGET...]          results: one line per target on stdout
# Env: RUNS (10000000), SECS (3600), SANITIZER (none: the parsers hold no unsafe code;
# overflow checks and debug assertions stay on), SCRATCH (/tmp/fuzz-campaign).
# A crash leaves its input in fuzz/artifacts/TARGET/; copy it into fuzz/corpus/TARGET/
# once fixed so that CI replays it.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
SECS=${SECS:-3600}
SANITIZER=${SANITIZER:-none}
SCRATCH=${SCRATCH:-/tmp/fuzz-campaign}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -a -s "$SANITIZER" >&2
# Targets that write files (receiver_resume) go to memory, not the disk.
export TMPDIR=${TMPDIR:-/dev/shm}
for t in "${targets[@]}"; do
    mkdir -p "$SCRATCH/$t"
    log="$SCRATCH/$t.log"
    start=$(date +%s)
    rc=0
    cargo +nightly fuzz run -O -a -s "$SANITIZER" "$t" "$SCRATCH/$t" "corpus/$t" -- \
        -runs="$RUNS" -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "$t runs=$runs secs=$secs rc=$rc"
done
