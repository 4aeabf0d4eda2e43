#!/usr/bin/env bash
# Instructions per request of the front door and of the minimal handler, counted by callgrind:
# a load-independent figure for a host whose wall-clock speed drifts (not part of the tests).
#
#   scripts/callgrind-ingest.sh                 # 2,000 single 1 KB events over 32 connections
#   REQUESTS=4000 CONNECTIONS=64 scripts/callgrind-ingest.sh
#
# Each server runs under `valgrind --tool=callgrind` (the `--profile profiling` build: release
# code with symbols), gets a warm-up, has its counters zeroed (`callgrind_control -z`), serves
# REQUESTS POSTs of one 1 KB event from a Python keep-alive client, and is dumped. It prints the
# user-space instructions per request (kernel work is not counted, and it is about the same for
# both servers), and for ingest the share of its Firehose client (`put_batch`: SigV4, JSON and
# base64, its HTTP round trip) and of the access-log line. Under valgrind SHA-256 runs without
# SHA-NI, which inflates the Firehose client's share several times over; the figure "outside
# the Firehose client" is the one to compare with the minimal handler.
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
REQUESTS="${REQUESTS:-2000}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-256}"

for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install valgrind" >&2; exit 1; }
done
cargo build --profile profiling --locked -p ingest --bin ingest --example fake-firehose --example minimal
bin="$CARGO_TARGET_DIR/profiling"
work=$(mktemp -d)
[[ -n "${KEEP:-}" ]] && echo "work dir: $work (kept)"
trap '_stop_servers; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

bench_events "$work" 1
cat >"$work/load.py" <<'PY'
# load.py PORT REQUESTS CONNECTIONS FILE: POSTs FILE REQUESTS times over keep-alive connections.
import http.client, sys, threading
port, total, conns, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = open(path, "rb").read()
failed = []
def client(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for _ in range(n):
        c.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failed.append(r.status)
threads = [threading.Thread(target=client, args=(total // conns + (i < total % conns),))
           for i in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if failed:
    sys.exit(f"{len(failed)} requests failed, e.g. {failed[0]}")
PY

# measure NAME PORT PID: warm up, zero, load, dump; prints the dump file's name.
measure() {
  local name=$1 port=$2 pid=$3
  python3 "$work/load.py" "$port" "$WARMUP" "$CONNECTIONS" "$work/single.json"
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$work/load.py" "$port" "$REQUESTS" "$CONNECTIONS" "$work/single.json"
  callgrind_control -d "$name" "$pid" >/dev/null 2>&1
  # The first dump after the zeroing: <out-file>.1
  [[ -s "$work/$name.out.1" ]] || { echo "callgrind wrote no dump for $name" >&2; exit 1; }
  echo "$work/$name.out.1"
}
# inclusive INSTRUCTIONS of the first function matching PATTERN in dump FILE (0 if none).
inclusive() {
  callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
    awk -v pat="$2" '!found && index($0, pat) {gsub(",", "", $1); ir = $1; found = 1} END {print found ? ir : 0}'
}
total() {
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
}

port=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$work/minimal.out" \
  "$bin/examples/minimal" "127.0.0.1:$port" >"$work/minimal.log" 2>&1 &
minimal_pid=$!
_server_pids+=("$minimal_pid")
wait_http "http://127.0.0.1:$port/" 120
minimal_dump=$(measure minimal "$port" "$minimal_pid")

start_fake_firehose "$work"
port=$(free_port)
admin_port=$(free_port)
mapfile -t ingest_vars < <(ingest_env "$fake_port" "$port" "$admin_port")
env "${ingest_vars[@]}" INGEST_READINESS_INTERVAL=60m RUST_LOG=info \
  valgrind --tool=callgrind --callgrind-out-file="$work/ingest.out" \
  "$bin/ingest" >"$work/ingest.log" 2>"$work/ingest.err" &
ingest_pid=$!
_server_pids+=("$ingest_pid")
wait_ingest "$ingest_pid" "$admin_port" "$work/ingest.err"
ingest_dump=$(measure ingest "$port" "$ingest_pid")

minimal_ir=$(total "$minimal_dump")
ingest_ir=$(total "$ingest_dump")
client_ir=$(inclusive "$ingest_dump" "RecordSink>::put_batch::{{closure}}")
access_ir=$(inclusive "$ingest_dump" "ingest::access_log::format_line")
awk -v n="$REQUESTS" -v m="$minimal_ir" -v i="$ingest_ir" -v c="$client_ir" -v a="$access_ir" 'BEGIN {
  printf "== %d single 1 KB events, user-space instructions per request (callgrind)\n", n
  printf "minimal handler                     %8.0f\n", m / n
  printf "ingest, all                         %8.0f\n", i / n
  printf "  in the Firehose client (put_batch) %7.0f  (SHA-256 without SHA-NI under valgrind)\n", c / n
  printf "  formatting the access-log line    %8.0f\n", a / n
  printf "ingest outside the Firehose client  %8.0f  = %.2fx the minimal handler\n", (i - c) / n, (i - c) / m
}'
