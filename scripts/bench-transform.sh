#!/usr/bin/env bash
# Compares the Rust transform with the Python baseline on the same realistic event, in one run.
#
#   scripts/bench-transform.sh [--criterion]
#
# 1. writes a 3 MB (decoded) event and a ~6 MB event with ../shared/bench/make_firehose_event.py
# 2. runs ../shared/bench/reference_transform.py (the seed's Python Lambda) and the Rust transform
#    (release build, examples/run_event.rs) on the 3 MB event, alternating, ROUNDS times each
#    (default 3) so that both see the same machine, and keeps each one's best round
# 3. prints both best lines and the throughput ratio (Rust / Python); no absolute target is asserted
# 4. prints the peak RSS of one process transforming the ~6 MB event (/usr/bin/time -v)
# 5. builds the release `transform` binary (the Lambda bootstrap) and prints the time from process
#    start to its first GET /runtime/invocation/next (scripts/lambda-startup.py, 5 starts)
# With --criterion it also runs the criterion bench (services/transform/benches) on the 3 MB event.
# The shared directory must sit beside the repo (../shared); if it is missing this script fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh

shared="$root/../shared/bench"
for f in make_firehose_event.py reference_transform.py; do
  if [ ! -f "$shared/$f" ]; then
    echo "missing $shared/$f: the shared bench directory must be checked out beside the repo (../shared)" >&2
    exit 1
  fi
done

# Absolute: cargo bench runs the bench from the package directory.
out=$(realpath -m "${CARGO_TARGET_DIR:-$root/target}/transform-bench")
mkdir -p "$out"
event3="$out/event-3mb.json"
event6="$out/event-6mb.json"
python3 "$shared/make_firehose_event.py" "$event3" 3000000 7 >&2
# 4.1 MB decoded is ~6.0 MB of event JSON: the largest event Lambda accepts (6 MB request limit).
python3 "$shared/make_firehose_event.py" "$event6" 4100000 8 >&2
echo "6 MB event: $(stat -c %s "$event6") bytes of JSON" >&2

cargo build --release --locked -p transform --example run_event >&2
runner="${CARGO_TARGET_DIR:-$root/target}/release/examples/run_event"

mbps() { sed -n 's/.*decoded_MBps=\([0-9.]*\).*/\1/p' <<<"$1"; }
faster() { # LINE CANDIDATE -> whichever has more MB/s (CANDIDATE when LINE is empty)
  if [ -z "$1" ] || awk -v a="$(mbps "$1")" -v b="$(mbps "$2")" 'BEGIN { exit !(b > a) }'; then
    echo "$2"
  else
    echo "$1"
  fi
}
python_line="" rust_line=""
for round in $(seq "${ROUNDS:-3}"); do
  p=$(python3 "$shared/reference_transform.py" "$event3" 5)
  r=$("$runner" --repeat 30 "$event3")
  echo "round $round: python $(mbps "$p") MB/s, rust $(mbps "$r") MB/s" >&2
  python_line=$(faster "$python_line" "$p")
  rust_line=$(faster "$rust_line" "$r")
done
echo "python: $python_line"
echo "rust:   $rust_line"
awk -v py="$(mbps "$python_line")" -v rs="$(mbps "$rust_line")" \
  'BEGIN { printf "ratio: Rust is %.1fx the Python baseline'"'"'s throughput (%.0f vs %.1f MB/s decoded)\n", rs / py, rs, py }'

peak_kb=$(/usr/bin/time -f '%M' "$runner" "$event6" 2>&1 >/dev/null | tail -n 1)
echo "peak RSS transforming the 6 MB event in one process: $((peak_kb / 1024)) MiB ($peak_kb KiB)"

cargo build --release --locked -p transform --bin transform >&2
python3 scripts/lambda-startup.py "${CARGO_TARGET_DIR:-$root/target}/release/transform" 5

if [ "${1:-}" = "--criterion" ]; then
  TRANSFORM_BENCH_EVENT="$event3" cargo bench --locked -p transform --bench transform
fi
