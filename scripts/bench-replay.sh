#!/usr/bin/env bash
# How replay's cost per object grows with the number of objects (not part of scripts/test.sh).
#
#   scripts/bench-replay.sh                 # 1,000 and 16,000 objects
#   SMALL=500 LARGE=8000 scripts/bench-replay.sh
#   REPLAY=/path/to/an/older/replay scripts/bench-replay.sh   # another build of replay
#
# Writes SMALL and LARGE objects of one small event each in the Firehose backup layout, starts
# the release ingest (INGEST_LINGER=1ms) against examples/fake-firehose, and replays each set to
# it with --to-http and a fresh checkpoint. Each object is one request and one checkpoint save,
# so the run measures the per-object overhead, the checkpoint's above all. It prints wall time
# and CPU (user + system) per object for both sets and their ratio, large/small, measured in the
# same run: about 1 when a save costs the same however many objects are finished; above 1 when
# saves grow with the list of finished objects (2.0 at 16,000/1,000 when every save rewrote the
# whole checkpoint, as before the journal: the fixed cost per object hides part of the growth).
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
SMALL="${SMALL:-1000}"
LARGE="${LARGE:-16000}"

[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) not found: run scripts/setup.sh" >&2; exit 1; }
cargo build --release --locked -p ingest --bin ingest --example fake-firehose -p replay --bin replay
bin="$CARGO_TARGET_DIR/release"
replay="${REPLAY:-$bin/replay}"
work=$(mktemp -d)
trap '_stop_servers; rm -rf "$work"' EXIT

python3 - "$work" "$SMALL" "$LARGE" <<'PY'
import os, sys
work = sys.argv[1]
for n in map(int, sys.argv[2:]):
    for i in range(n):
        hour = i % 24
        d = f"{work}/src{n}/2026/11/25/{hour:02d}"
        os.makedirs(d, exist_ok=True)
        name = f"bench-1-2026-11-25-{hour:02d}-00-00-{i:08d}-0000-4000-8000-000000000000"
        with open(f"{d}/{name}", "w") as f:
            f.write('{"event":"replayed","n":%d}\n' % i)
PY

start_fake_firehose "$work"
ingest_port=$(free_port)
admin_port=$(free_port)
mapfile -t vars < <(ingest_env "$fake_port" "$ingest_port" "$admin_port")
env "${vars[@]}" INGEST_LINGER=1ms RUST_LOG=warn "$bin/ingest" >"$work/ingest.log" 2>&1 &
pid=$!
_server_pids+=("$pid")
wait_ingest "$pid" "$admin_port" "$work/ingest.log"

# Prints "<wall µs per object> <CPU µs per object>" for a replay of the n objects.
run() {
  local n=$1 start end
  start=$(date +%s%N)
  /usr/bin/time -f '%U %S' -o "$work/time$n" "$replay" "$work/src$n" \
    --to-http "http://127.0.0.1:$ingest_port/v1/events" --checkpoint "$work/cp$n.json" \
    >"$work/summary$n" 2>"$work/replay$n.log" \
    || { echo "replay of $n objects failed:" >&2; tail -5 "$work/replay$n.log" >&2; exit 1; }
  end=$(date +%s%N)
  grep -q " $n sent," "$work/summary$n" \
    || { echo "replay of $n objects did not send them all:" >&2; cat "$work/summary$n" >&2; exit 1; }
  awk -v n="$n" -v ns=$((end - start)) '{printf "%.0f %.0f\n", ns / 1000 / n, ($1 + $2) * 1e6 / n}' "$work/time$n"
}

read -r small_wall small_cpu < <(run "$SMALL")
read -r large_wall large_cpu < <(run "$LARGE")
printf '%-16s %16s %16s\n' objects "wall µs/object" "CPU µs/object"
printf '%-16s %16s %16s\n' "$SMALL" "$small_wall" "$small_cpu"
printf '%-16s %16s %16s\n' "$LARGE" "$large_wall" "$large_cpu"
awk -v s="$SMALL" -v l="$LARGE" -v sw="$small_wall" -v lw="$large_wall" -v sc="$small_cpu" \
  -v lc="$large_cpu" 'BEGIN {printf "per object, %s/%s: wall %.2fx, CPU %.2fx\n", l, s, lw / sw, lc / sc}'
