#!/usr/bin/env bash
# Load benchmark of the front door (not part of scripts/test.sh).
#
#   scripts/bench-ingest.sh                      # 3 rounds of 10 s runs, 256 connections
#   DURATION=30s ROUNDS=5 CONNECTIONS=128 scripts/bench-ingest.sh
#   SCENARIOS=single-hc ROUNDS=9 scripts/bench-ingest.sh   # only the load target's scenario
#
# In one run it starts, on free loopback ports:
#   * fake-firehose  (examples/fake-firehose.rs): answers PutRecordBatch instantly, counts calls
#   * ingest         (the release binary) pointed at it through AWS_ENDPOINT_URL
#   * minimal        (examples/minimal.rs): an axum handler that reads the body and answers 200
#   * forwarder      (examples/forwarder.rs): splits a batch and sends it with aws-sdk-firehose,
#                    one call per request, nothing else; loaded in the batch scenario only, to
#                    show what the SDK alone costs
# and loads ingest and minimal alike with wrk, for 1 KB events sent one per request ("single")
# and 100 per request ("batch"). It prints requests/s, events/s, events per CPU-second of the
# server (ingest's and minimal's own CPU time from /proc), p50/p99 latency, peak RSS (VmHWM),
# the ratio ingest/minimal, and Firehose API calls against events. CPU per request is shown as
# user + system time: the kernel's share (sockets, loopback TCP) is about the same for every
# server, so the user-space figure is where the services differ.
#
# The host's speed can drift by a factor of two within minutes on a shared VM, so each scenario
# runs ROUNDS rounds (minimal, [forwarder,] ingest, back to back) and each ratio is the median
# of the rounds' ratios, with each round's figure shown. The CPU-per-request ratio (each
# server's own CPU time from /proc over the requests it answered) is printed beside it: with
# PIN=1 it is the capacity ratio of one core.
#
# wrk is a closed loop: each connection waits for its answer. A single-event request waits for
# the producer's linger (INGEST_LINGER, 10 ms by default) before its batch leaves, so with C
# connections ingest cannot pass C / linger requests per second; use enough connections to
# measure CPU cost rather than that latency bound: the single-event scenario also runs at
# HIGH_CONNECTIONS (default 1024) for that reason. ingest logs at INGEST_LOG (default info: one
# access-log line per request, as in production) to a temporary file.
#
# PIN=1 pins the server under test (ingest, minimal or forwarder) to CPU 0 and wrk and the fake
# Firehose to the other CPUs (taskset), so each server gets exactly one core of its own: in production
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
# Any of: single single-hc batch.
SCENARIOS="${SCENARIOS:-single single-hc batch}"
for name in $SCENARIOS; do
  case "$name" in single | single-hc | batch) ;; *) echo "unknown scenario '$name' in SCENARIOS (single, single-hc, batch)" >&2; exit 2 ;; esac
done
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
server_cpu=()
load_cpu=()
if [[ "$PIN" == 1 ]]; then
  (($(nproc) >= 2)) || { echo "PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  server_cpu=(taskset -c 0)
  load_cpu=(taskset -c "1-$(($(nproc) - 1))")
fi

command -v wrk >/dev/null || { echo "wrk not found: run scripts/setup.sh" >&2; exit 1; }
cargo build --release --locked -p ingest --bin ingest --example fake-firehose --example minimal --example forwarder
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap '_stop_servers; rm -rf "$work"' EXIT

start_stand_ins "$work" "${server_cpu[@]}"
ingest_port=$(free_port)
admin_port=$(free_port)
mapfile -t ingest_vars < <(ingest_env "$fake_port" "$ingest_port" "$admin_port")
env "${ingest_vars[@]}" RUST_LOG="${INGEST_LOG:-info}" \
  "${server_cpu[@]}" "$bin/ingest" >"$work/ingest.log" 2>&1 &
ingest_pid=$!
_server_pids+=("$ingest_pid")
forwarder_port=$(free_port)
# ingest's environment (it reads the stream and AWS settings, ignores the INGEST_* ones).
env "${ingest_vars[@]}" "${server_cpu[@]}" "$bin/examples/forwarder" "127.0.0.1:$forwarder_port" \
  >"$work/forwarder.log" 2>&1 &
forwarder_pid=$!
_server_pids+=("$forwarder_pid")
wait_ingest "$ingest_pid" "$admin_port" "$work/ingest.log"

# 1 KB events: a realistic log object padded to 1,000 bytes.
bench_events "$work" "$BATCH"
wrk_post_script "$work"

calls() { curl -s "http://127.0.0.1:$fake_port/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["calls"], d["records"])'; }

# run NAME PID URL BODY EVENTS_PER_REQUEST CONNECTIONS: one wrk run; prints its line and
# appends "rps cpu_us_per_request" to $work/NAME.runs and "calls records" to $work/NAME.calls.
run() {
  local name=$1 pid=$2 url=$3 body=$4 per=$5 conns=$6 before after out calls_before calls_after fake_before fake_after
  calls_before=$(calls)
  before=$(cpu_ticks_split "$pid")
  fake_before=$(cpu_ticks "$fake_pid")
  out=$(BODY_FILE="$body" "${load_cpu[@]}" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$work/post.lua" "$url")
  after=$(cpu_ticks_split "$pid")
  fake_after=$(cpu_ticks "$fake_pid")
  calls_after=$(calls)
  # PutRecordBatch calls and records the fake Firehose saw during this run.
  echo "$calls_before $calls_after" | awk '{print $3 - $1, $4 - $2}' >>"$work/$name.calls"
  local rps p50 p99 non2xx secs requests us user_us sys_us fake_us
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  # CPU microseconds per request: user, system, and both.
  read -r user_us sys_us < <(awk -v b="$before" -v a="$after" -v n="$requests" -v hz="$clock_hz" 'BEGIN {
    split(b, x, " "); split(a, y, " "); f = (n > 0) ? 1e6 / hz / n : 0
    print (y[1] - x[1]) * f, (y[2] - x[2]) * f }')
  us=$(awk -v u="$user_us" -v s="$sys_us" 'BEGIN {print u + s}')
  # The fake Firehose's CPU per request of this run: shared cores, so it is load on the host
  # that production does not have (0 for the minimal handler, which sends nothing).
  fake_us=$(awk -v b="$fake_before" -v a="$fake_after" -v n="$requests" -v hz="$clock_hz" \
    'BEGIN {print (n > 0) ? (a - b) * 1e6 / hz / n : 0}')
  secs=$(awk -v u="$user_us" -v s="$sys_us" -v n="$requests" 'BEGIN {print (u + s) * n / 1e6}')
  printf '%-16s %10.0f req/s %10.0f events/s %10.0f events/cpu-s %7.1f cpu-us/req (user %.1f, sys %.1f; fake Firehose %.1f)  p50 %-9s p99 %-9s non-2xx %s\n' \
    "$name" "$rps" "$(awk -v r="$rps" -v p="$per" 'BEGIN {print r * p}')" \
    "$(awk -v n="$requests" -v p="$per" -v s="$secs" 'BEGIN {if (s > 0) print n * p / s; else print 0}')" \
    "$us" "$user_us" "$sys_us" "$fake_us" "$p50" "$p99" "${non2xx:-0}"
  echo "$rps $us" >>"$work/$name.runs"
}

# scenario NAME BODY EVENTS_PER_REQUEST CONNECTIONS [forwarder]: ROUNDS rounds of back-to-back
# runs (minimal, [forwarder,] ingest), so all see the same host speed; the ratios are taken
# round by round and their median printed.
scenario() {
  local name=$1 body=$2 per=$3 conns=$4 with_forwarder=${5:-} round
  for ((round = 1; round <= ROUNDS; round++)); do
    run "minimal-$name" "$minimal_pid" "http://127.0.0.1:$minimal_port/v1/events" "$body" "$per" "$conns"
    if [[ -n "$with_forwarder" ]]; then
      run "forwarder-$name" "$forwarder_pid" "http://127.0.0.1:$forwarder_port/v1/events" "$body" "$per" "$conns"
    fi
    run "ingest-$name" "$ingest_pid" "http://127.0.0.1:$ingest_port/v1/events" "$body" "$per" "$conns"
  done
  ratios "$name" ingest minimal
  if [[ -n "$with_forwarder" ]]; then
    ratios "$name" ingest forwarder
    ratios "$name" forwarder minimal
  fi
}

# ratios SCENARIO A B: the median over the rounds of A's request rate over B's, and of B's CPU
# per request over A's.
ratios() {
  paste -d' ' "$work/$2-$1.runs" "$work/$3-$1.runs" | awk -v name="$1" -v a="$2" -v b="$3" '
    function median(v, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    { n++; rate[n] = 100 * $1 / $3; cpu[n] = ($2 > 0) ? 100 * $4 / $2 : 0; all = all sprintf(" %.1f", rate[n]) }
    END { printf "%s: %s/%s request rate, median of %d rounds %.1f %% (each:%s); CPU per request, %s/%s %.1f %%\n", name, a, b, n, median(rate, n), all, b, a, median(cpu, n) }' \
    >>"$work/summary"
}

pinned="all processes share $(nproc) cores"
[[ "$PIN" == 1 ]] && pinned="server pinned to CPU 0; wrk and the fake Firehose on CPUs 1-$(($(nproc) - 1))"
echo "== $DURATION per run, $ROUNDS rounds per scenario, $CONNECTIONS connections, $THREADS wrk threads, batch of $BATCH x 1 KB; $pinned"
if wants single; then scenario single "$work/single.json" 1 "$CONNECTIONS"; fi
# The same with enough connections that the linger no longer bounds a closed loop
# (C / linger = 1024 / 10 ms ~ 100k req/s): what the CPU allows.
if wants single-hc; then scenario single-hc "$work/single.json" 1 "$HIGH_CONNECTIONS"; fi
if wants batch; then scenario batch "$work/batch.json" "$BATCH" "$CONNECTIONS" forwarder; fi

echo
cat "$work/summary"
echo "(target >= 70 % of minimal; single-hc is single events at $HIGH_CONNECTIONS connections;"
echo " forwarder: examples/forwarder.rs, the SDK alone with nothing of ingest's, in the batch scenario)"
for name in $SCENARIOS; do
  awk -v name="$name" '{c += $1; r += $2} END {printf "ingest %s: %d events in %d PutRecordBatch calls = %.0f events per call\n", name, r, c, (c ? r / c : 0)}' \
    "$work/ingest-$name.calls"
done
if wants batch; then
  awk '{c += $1; r += $2} END {printf "forwarder batch: %d events in %d calls = %.0f per call (one call per request)\n", r, c, (c ? r / c : 0)}' \
    "$work/forwarder-batch.calls"
fi
echo "peak RSS: ingest $(awk '/VmHWM/ {print $2, $3}' "/proc/$ingest_pid/status"), minimal $(awk '/VmHWM/ {print $2, $3}' "/proc/$minimal_pid/status")"
