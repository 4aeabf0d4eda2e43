#!/usr/bin/env bash
# Load benchmark of the front door (not part of scripts/test.sh).
#
#   scripts/bench-ingest.sh                      # 3 rounds of 10 s runs, 256 connections
#   DURATION=30s ROUNDS=5 CONNECTIONS=128 scripts/bench-ingest.sh
#
# In one run it starts, on free loopback ports:
#   * fake-firehose  (examples/fake-firehose.rs): answers PutRecordBatch instantly, counts calls
#   * ingest         (the release binary) pointed at it through AWS_ENDPOINT_URL
#   * minimal        (examples/minimal.rs): an axum handler that reads the body and answers 200
# and loads ingest and minimal alike with wrk, for 1 KB events sent one per request ("single")
# and 100 per request ("batch"). It prints requests/s, events/s, events per CPU-second of the
# server (ingest's and minimal's own CPU time from /proc), p50/p99 latency, peak RSS (VmHWM),
# the ratio ingest/minimal, and Firehose API calls against events.
#
# The host's speed can drift by a factor of two within minutes on a shared VM, so each scenario
# runs ROUNDS pairs (minimal, then ingest, back to back) and the ratio is the median of the
# pairs' ratios, with each pair's figure shown. The CPU-per-request ratio (each server's own
# CPU time from /proc over the requests it answered) is printed beside it: with PIN=1 it is the
# capacity ratio of one core.
#
# wrk is a closed loop: each connection waits for its answer. A single-event request waits for
# the producer's linger (INGEST_LINGER, 10 ms by default) before its batch leaves, so with C
# connections ingest cannot pass C / linger requests per second; use enough connections to
# measure CPU cost rather than that latency bound: the single-event scenario also runs at
# HIGH_CONNECTIONS (default 1024) for that reason. ingest logs at INGEST_LOG (default info: one
# access-log line per request, as in production) to a temporary file.
#
# PIN=1 pins the server under test (ingest or minimal) to CPU 0 and wrk and the fake Firehose
# to the other CPUs (taskset), so each server gets exactly one core of its own: in production
# neither the clients nor Firehose run on the service's cores. Without it all processes share
# every core, and ingest's figure also pays for the stand-in's work and for its load generator.
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-256}"
HIGH_CONNECTIONS="${HIGH_CONNECTIONS:-1024}"
THREADS="${THREADS:-2}"
BATCH="${BATCH:-100}"
PIN="${PIN:-0}"
server_cpu=()
load_cpu=()
if [[ "$PIN" == 1 ]]; then
  (($(nproc) >= 2)) || { echo "PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  server_cpu=(taskset -c 0)
  load_cpu=(taskset -c "1-$(($(nproc) - 1))")
fi

command -v wrk >/dev/null || { echo "wrk not found: run scripts/setup.sh" >&2; exit 1; }
cargo build --release --locked -p ingest --bin ingest --example fake-firehose --example minimal
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap '_stop_servers; rm -rf "$work"' EXIT

fake_port=$(free_port)
"${load_cpu[@]}" "$bin/examples/fake-firehose" "127.0.0.1:$fake_port" >"$work/fake.log" 2>&1 &
_server_pids+=("$!")
minimal_port=$(free_port)
"${server_cpu[@]}" "$bin/examples/minimal" "127.0.0.1:$minimal_port" >"$work/minimal.log" 2>&1 &
minimal_pid=$!
_server_pids+=("$minimal_pid")
ingest_port=$(free_port)
admin_port=$(free_port)
mapfile -t ingest_vars < <(ingest_env "$fake_port" "$ingest_port" "$admin_port")
env "${ingest_vars[@]}" RUST_LOG="${INGEST_LOG:-info}" \
  "${server_cpu[@]}" "$bin/ingest" >"$work/ingest.log" 2>&1 &
ingest_pid=$!
_server_pids+=("$ingest_pid")
wait_http "http://127.0.0.1:$fake_port/stats" 30
wait_http "http://127.0.0.1:$minimal_port/" 30
until curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null; do
  kill -0 "$ingest_pid" || { cat "$work/ingest.log"; exit 1; }
  sleep 0.2
done

# 1 KB events: a realistic log object padded to 1,000 bytes.
bench_events "$work" "$BATCH"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
calls() { curl -s "http://127.0.0.1:$fake_port/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["calls"], d["records"])'; }
hz=$(getconf CLK_TCK)

# run NAME PID URL BODY EVENTS_PER_REQUEST CONNECTIONS: one wrk run; prints its line and
# appends "rps cpu_us_per_request" to $work/NAME.runs.
run() {
  local name=$1 pid=$2 url=$3 body=$4 per=$5 conns=$6 before after out
  before=$(cpu_ticks "$pid")
  out=$(BODY_FILE="$body" "${load_cpu[@]}" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$work/post.lua" "$url")
  after=$(cpu_ticks "$pid")
  local rps p50 p99 non2xx secs requests
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  secs=$(awk -v t=$((after - before)) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')
  printf '%-16s %10.0f req/s %10.0f events/s %10.0f events/cpu-s %7.1f cpu-us/req  p50 %-9s p99 %-9s non-2xx %s\n' \
    "$name" "$rps" "$(awk -v r="$rps" -v p="$per" 'BEGIN {print r * p}')" \
    "$(awk -v n="$requests" -v p="$per" -v s="$secs" 'BEGIN {if (s > 0) print n * p / s; else print 0}')" \
    "$(awk -v n="$requests" -v s="$secs" 'BEGIN {if (n > 0) print s * 1e6 / n; else print 0}')" \
    "$p50" "$p99" "${non2xx:-0}"
  echo "$rps $(awk -v n="$requests" -v s="$secs" 'BEGIN {if (n > 0) print s * 1e6 / n; else print 0}')" >>"$work/$name.runs"
}

# scenario NAME BODY EVENTS_PER_REQUEST CONNECTIONS: ROUNDS pairs of runs, minimal then ingest,
# so both see the same host speed; the ratios are taken pair by pair and their median printed.
scenario() {
  local name=$1 body=$2 per=$3 conns=$4 round
  for ((round = 1; round <= ROUNDS; round++)); do
    run "minimal-$name" "$minimal_pid" "http://127.0.0.1:$minimal_port/v1/events" "$body" "$per" "$conns"
    run "ingest-$name" "$ingest_pid" "http://127.0.0.1:$ingest_port/v1/events" "$body" "$per" "$conns"
  done
  paste -d' ' "$work/ingest-$name.runs" "$work/minimal-$name.runs" | awk -v name="$name" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { n++; rate[n] = 100 * $1 / $3; cpu[n] = ($2 > 0) ? 100 * $4 / $2 : 0; all = all sprintf(" %.1f", rate[n]) }
    END { printf "%s: ingest/minimal request rate, median of %d pairs %.1f %% (each:%s); CPU per request, minimal/ingest %.1f %%\n", name, n, median(rate, n), all, median(cpu, n) }' \
    >>"$work/summary"
}

pinned="all processes share $(nproc) cores"
[[ "$PIN" == 1 ]] && pinned="server pinned to CPU 0; wrk and the fake Firehose on CPUs 1-$(($(nproc) - 1))"
echo "== $DURATION per run, $ROUNDS rounds per scenario, $CONNECTIONS connections, $THREADS wrk threads, batch of $BATCH x 1 KB; $pinned"
read -r calls0 records0 < <(calls)
scenario single "$work/single.json" 1 "$CONNECTIONS"
# The same with enough connections that the linger no longer bounds a closed loop
# (C / linger = 1024 / 10 ms ~ 100k req/s): what the CPU allows.
scenario single-hc "$work/single.json" 1 "$HIGH_CONNECTIONS"
read -r calls1 records1 < <(calls)
scenario batch "$work/batch.json" "$BATCH" "$CONNECTIONS"
read -r calls2 records2 < <(calls)

echo
cat "$work/summary"
echo "(target >= 70 %; single-hc is single events at $HIGH_CONNECTIONS connections)"
awk -v c=$((calls1 - calls0)) -v r=$((records1 - records0)) 'BEGIN {printf "single: %d events in %d PutRecordBatch calls = %.0f events per call\n", r, c, (c ? r / c : 0)}'
awk -v c=$((calls2 - calls1)) -v r=$((records2 - records1)) 'BEGIN {printf "batch:  %d events in %d PutRecordBatch calls = %.0f events per call\n", r, c, (c ? r / c : 0)}'
echo "peak RSS: ingest $(awk '/VmHWM/ {print $2, $3}' "/proc/$ingest_pid/status"), minimal $(awk '/VmHWM/ {print $2, $3}' "/proc/$minimal_pid/status")"
