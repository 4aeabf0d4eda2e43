#!/usr/bin/env bash
# Paired A/B of two ingest binaries (not part of scripts/test.sh): is a change faster, on a
# host whose speed drifts by more than the change?
#
#   cp "$CARGO_TARGET_DIR/release/ingest" /tmp/ingest-before   # build, copy, change, build
#   scripts/ab-ingest.sh /tmp/ingest-before "$CARGO_TARGET_DIR/release/ingest"
#   ROUNDS=8 DURATION=10s CONNECTIONS=1024 scripts/ab-ingest.sh A B
#
# Both binaries and the minimal handler (examples/minimal.rs) run at once, each pinned to CPU
# 0 and loaded in turn (wrk and the fake Firehose on the other CPUs), with single 1 KB events.
# Each round loads the minimal handler, then A and B, alternating which goes first, so drift
# within a round hits both alike. Prints one line per run (requests/s, the server's own CPU
# µs per request from /proc) and, per binary, the median and range of CPU µs per request, and
# the median and range of the per-round differences B - A. Needs 2+ CPUs, taskset and wrk.
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
(($# == 2)) || { echo "usage: $0 INGEST_A INGEST_B" >&2; exit 2; }
a_bin=$(realpath "$1")
b_bin=$(realpath "$2")
ROUNDS="${ROUNDS:-6}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-1024}"
(($(nproc) >= 2)) || { echo "needs at least 2 CPUs" >&2; exit 1; }
for tool in taskset wrk; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/setup.sh" >&2; exit 1; }
done
cargo build --release --locked -p ingest --example fake-firehose --example minimal
load_cpu=(taskset -c "1-$(($(nproc) - 1))")
work=$(mktemp -d)
trap '_stop_servers; rm -rf "$work"' EXIT

start_stand_ins "$work" taskset -c 0
declare -A port pid admin
for name in A B; do
  exe=$a_bin
  [[ "$name" == B ]] && exe=$b_bin
  port[$name]=$(free_port)
  admin[$name]=$(free_port)
  mapfile -t vars < <(ingest_env "$fake_port" "${port[$name]}" "${admin[$name]}")
  env "${vars[@]}" RUST_LOG=info taskset -c 0 "$exe" >"$work/$name.log" 2>&1 &
  pid[$name]=$!
  _server_pids+=("$!")
done
for name in A B; do
  wait_ingest "${pid[$name]}" "${admin[$name]}" "$work/$name.log"
done

bench_events "$work" 1
wrk_post_script "$work"

# run NAME PID PORT ROUND: one wrk run; prints it and appends "round us" to $work/NAME.
run() {
  local name=$1 server=$2 at=$3 round=$4 before after out requests us
  before=$(cpu_ticks "$server")
  out=$(BODY_FILE="$work/single.json" "${load_cpu[@]}" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" \
    -s "$work/post.lua" "http://127.0.0.1:$at/v1/events")
  after=$(cpu_ticks "$server")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  us=$(awk -v t=$((after - before)) -v hz="$clock_hz" -v n="$requests" 'BEGIN {printf "%.2f", n ? t / hz * 1e6 / n : 0}')
  printf 'round %d %-8s %10s req/s %8s cpu-us/req  non-2xx %s\n' "$round" "$name" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$us" "$(awk '/Non-2xx/ {n = $5} END {print n + 0}' <<<"$out")"
  echo "$round $us" >>"$work/$name"
}

echo "== A = $a_bin"
echo "== B = $b_bin"
echo "== $ROUNDS rounds of $DURATION runs, $CONNECTIONS connections, servers on CPU 0"
for ((round = 1; round <= ROUNDS; round++)); do
  run minimal "$minimal_pid" "$minimal_port" "$round"
  order=(A B)
  ((round % 2)) || order=(B A)
  for name in "${order[@]}"; do
    run "$name" "${pid[$name]}" "${port[$name]}" "$round"
  done
done

# median_range FORMAT: numbers on stdin, one per line; prints "median M, range MIN..MAX" with
# each figure in FORMAT.
median_range() {
  sort -g | awk -v f="$1" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "median " f ", range " f ".." f "\n", m, v[1], v[NR] }'
}

echo
for name in minimal A B; do
  printf '%-8s CPU us/req: %s\n' "$name" "$(awk '{print $2}' "$work/$name" | median_range %.2f)"
done
printf 'B - A per round, CPU us/req: %s\n' \
  "$(paste -d" " "$work/A" "$work/B" | awk '{print $4 - $2}' | median_range %+.2f)"
