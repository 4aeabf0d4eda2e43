#!/usr/bin/env bash
# Peak memory of the front door against its in-flight cap, under overload (not part of
# scripts/test.sh).
#
#   scripts/mem-ingest.sh                          # the chart's default cap and the production example's
#   CAPS="33554432 134217728" CALLS=64 DELAY_MS=2000 scripts/mem-ingest.sh
#   CODING=gzip scripts/mem-ingest.sh              # 10 MB bodies sent gzip-compressed (or deflate, zstd)
#
# For each cap in CAPS (bytes) it starts the release ingest with INGEST_MAX_INFLIGHT_BYTES set
# to it and INGEST_MAX_CONCURRENT_CALLS=CALLS, against examples/fake-firehose answering each
# PutRecordBatch after DELAY_MS (a slow Firehose keeps calls, and their SDK copies, in flight),
# and loads it with wrk: CONNECTIONS connections (default: one per MiB of cap), each posting a
# 1 MiB JSON array of 128 events of 8 KB, for DURATION. That overruns the cap (most requests are
# shed with 503), which is the point: it shows what memory the cap does not see. With CODING set,
# each body is a 10 MB array of 1,250 such events, sent compressed (about 40 KB): what it
# inflates to must be counted too. It prints the
# peak RSS (VmHWM) before and after, the ratio (peak - idle) / cap, and what was accepted.
#
# INGEST_MAX_INFLIGHT_BYTES counts request bodies, records and each call's copies of them in the
# SDK, not per-connection buffers or the allocator's retained pages: services/ingest/README.md
# ("Sizing") and the chart's memory check use the ratio measured here.
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
CAPS="${CAPS:-268435456 134217728}"
CALLS="${CALLS:-32}"
DELAY_MS="${DELAY_MS:-0}"
DURATION="${DURATION:-20s}"

command -v wrk >/dev/null || { echo "wrk not found: run scripts/setup.sh" >&2; exit 1; }
cargo build --release --locked -p ingest --bin ingest --example fake-firehose
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap '_stop_servers; rm -rf "$work"' EXIT

CODING="${CODING:-}"
python3 - "$work/big.json" "$CODING" <<'PY'
import json, sys, zlib
path, coding = sys.argv[1], sys.argv[2]
pad = "x" * 8000
body = json.dumps([{"i": i, "message": pad} for i in range(1250 if coding else 128)]).encode()
if coding == "gzip":
    c = zlib.compressobj(6, zlib.DEFLATED, 31); body = c.compress(body) + c.flush()
elif coding == "deflate":
    body = zlib.compress(body, 6)
elif coding == "zstd":
    import subprocess; body = subprocess.run(["zstd", "-q", "-c"], input=body, check=True, capture_output=True).stdout
elif coding:
    sys.exit(f"CODING={coding}: gzip, deflate or zstd")
open(path, "wb").write(body)
PY
wrk_post_script "$work"
[[ -z "$CODING" ]] || echo "wrk.headers[\"Content-Encoding\"] = \"$CODING\"" >>"$work/post.lua"
fake_port=$(free_port)
FAKE_FIREHOSE_DELAY_MS=$DELAY_MS "$bin/examples/fake-firehose" "127.0.0.1:$fake_port" >"$work/fake.log" 2>&1 &
_server_pids+=("$!")
wait_http "http://127.0.0.1:$fake_port/stats" 30

echo "== ${CODING:+$CODING-compressed }$([[ -n "$CODING" ]] && echo "10 MB bodies (1,250" || echo "1 MiB bodies (128") x 8 KB events), $DURATION per cap, $CALLS concurrent calls, Firehose answering after ${DELAY_MS} ms"
for cap in $CAPS; do
  mib=$((cap / 1048576))
  conns="${CONNECTIONS:-$mib}"
  ingest_port=$(free_port)
  admin_port=$(free_port)
  mapfile -t vars < <(ingest_env "$fake_port" "$ingest_port" "$admin_port")
  env "${vars[@]}" INGEST_MAX_INFLIGHT_BYTES="$cap" INGEST_MAX_CONCURRENT_CALLS="$CALLS" \
    RUST_LOG=warn "$bin/ingest" >"$work/ingest-$cap.log" 2>&1 &
  pid=$!
  _server_pids+=("$pid")
  wait_ingest "$pid" "$admin_port" "$work/ingest-$cap.log"
  idle=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  out=$(BODY_FILE="$work/big.json" wrk -t2 -c"$conns" -d"$DURATION" -s "$work/post.lua" \
    "http://127.0.0.1:$ingest_port/v1/events")
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
  accepted=$(awk '/^ingest_events_accepted_total / {print $2}' <<<"$metrics")
  shed=$(awk '/^ingest_requests_rejected_total\{reason="shed"\}/ {print $2}' <<<"$metrics")
  awk -v cap="$cap" -v mib="$mib" -v idle="$idle" -v peak="$peak" -v conns="$conns" \
    -v accepted="${accepted:-0}" -v shed="${shed:-0}" -v rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" 'BEGIN {
      printf "cap %4d MiB, %4d connections: peak RSS %4d MiB (idle %d MiB), (peak - idle) / cap = %.2f; %d events accepted, %d requests shed, %.0f req/s\n",
        mib, conns, peak / 1024, idle / 1024, (peak - idle) * 1024 / cap, accepted, shed, rps }'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  unset '_server_pids[-1]'
done
