#!/usr/bin/env bash
# Shared by the front door's benchmarks (bench-ingest.sh, ab-ingest.sh, callgrind-ingest.sh);
# sourced, not run.
# Sourcing it enters the repo root, loads env.sh and servers.sh and sets CARGO_TARGET_DIR, and
# defines:
#   bench_events DIR [BATCH]   writes DIR/single.json (one 1 KB log event) and DIR/batch.json
#                              (BATCH such events in an array, default 100)
#   ingest_env FAKE PORT ADMIN prints the environment (one NAME=value per line, for `env`) that
#                              runs ingest on PORT/ADMIN against the fake Firehose on port FAKE
#   start_stand_ins DIR [PREFIX...]
#                              starts the release build's examples/fake-firehose (under
#                              `taskset -c 1-N` when PREFIX is given: the load side) and
#                              examples/minimal (under PREFIX) on free ports, logging to DIR;
#                              sets fake_port, minimal_port and minimal_pid
#   wrk_post_script DIR        writes DIR/post.lua: wrk POSTs the file named by $BODY_FILE as JSON
#   wait_ingest PID ADMIN LOG  waits until the ingest process PID is ready (/readyz on port
#                              ADMIN); if it exits first, prints LOG and exits 1
#   cpu_ticks PID              the process's user + system CPU time so far, in clock ticks
#                              ($clock_hz of them per second)
#   cpu_ticks_split PID        the same as "USER SYSTEM"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
# shellcheck source=scripts/env.sh
source scripts/env.sh
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

bench_events() {
  python3 - "$1" "${2:-100}" <<'PY'
import json, sys
work, batch = sys.argv[1], int(sys.argv[2])
def event(i):
    e = {"timestamp": "2026-11-25T21:00:00.000Z", "level": "INFO", "service": "checkout",
         "trace_id": "%032x" % i, "http": {"method": "POST", "path": "/api/v1/cart", "status": 200},
         "message": ""}
    pad = 1000 - len(json.dumps(e, separators=(",", ":")))
    e["message"] = ("request completed " * 100)[:pad]
    return json.dumps(e, separators=(",", ":"))
open(f"{work}/single.json", "w").write(event(1))
open(f"{work}/batch.json", "w").write("[" + ",".join(event(i) for i in range(batch)) + "]")
PY
}

ingest_env() {
  printf '%s\n' FIREHOSE_DELIVERY_STREAM=bench \
    "INGEST_LISTEN=127.0.0.1:$2" "INGEST_ADMIN_LISTEN=127.0.0.1:$3" \
    "AWS_ENDPOINT_URL=http://127.0.0.1:$1" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
}

# Starts examples/fake-firehose on a free port (set in fake_port), its log in DIR/fake.log, and
# waits until it answers.
start_fake_firehose() {
  fake_port=$(free_port)
  "$CARGO_TARGET_DIR/release/examples/fake-firehose" "127.0.0.1:$fake_port" >"$1/fake.log" 2>&1 &
  _server_pids+=("$!")
  wait_http "http://127.0.0.1:$fake_port/stats" 30
}

start_stand_ins() {
  local dir=$1 bin="$CARGO_TARGET_DIR/release" load=()
  shift
  (($#)) && load=(taskset -c "1-$(($(nproc) - 1))")
  fake_port=$(free_port)
  "${load[@]}" "$bin/examples/fake-firehose" "127.0.0.1:$fake_port" >"$dir/fake.log" 2>&1 &
  fake_pid=$!
  _server_pids+=("$fake_pid")
  minimal_port=$(free_port)
  "$@" "$bin/examples/minimal" "127.0.0.1:$minimal_port" >"$dir/minimal.log" 2>&1 &
  minimal_pid=$!
  _server_pids+=("$minimal_pid")
  wait_http "http://127.0.0.1:$fake_port/stats" 30
  wait_http "http://127.0.0.1:$minimal_port/" 30
}

wrk_post_script() {
  cat >"$1/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA
}

wait_ingest() {
  until curl -sf "http://127.0.0.1:$2/readyz" >/dev/null; do
    kill -0 "$1" 2>/dev/null || { cat "$3"; exit 1; }
    sleep 0.2
  done
}

# shellcheck disable=SC2034 # read by the scripts that source this file
clock_hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_ticks_split() { awk '{print $14, $15}' "/proc/$1/stat"; }
