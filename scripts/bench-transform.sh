#!/usr/bin/env bash
# Compares the Rust transform with the Python baseline on the same realistic event, in one run.
#
#   scripts/bench-transform.sh [--criterion]
#
# 1. writes a 3 MB (decoded) event and a ~6 MB event with ../shared/bench/make_firehose_event.py
# 2. runs ../shared/bench/reference_transform.py (the seed's Python Lambda) on the 3 MB event
# 3. runs the Rust transform (release build, examples/run_event.rs) on the same event
# 4. prints both lines and the throughput ratio (Rust / Python); no absolute target is asserted
# 5. prints the peak RSS of one process transforming the ~6 MB event (/usr/bin/time -v)
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

python_line=$(python3 "$shared/reference_transform.py" "$event3" 5)
rust_line=$("$runner" --repeat 30 "$event3")
echo "python: $python_line"
echo "rust:   $rust_line"
mbps() { sed -n 's/.*decoded_MBps=\([0-9.]*\).*/\1/p' <<<"$1"; }
python3 - "$(mbps "$python_line")" "$(mbps "$rust_line")" <<'PY'
import sys
py, rs = float(sys.argv[1]), float(sys.argv[2])
print(f"ratio: Rust is {rs / py:.1f}x the Python baseline's throughput ({rs:.0f} vs {py:.1f} MB/s decoded)")
PY

peak_kb=$(/usr/bin/time -f '%M' "$runner" "$event6" 2>&1 >/dev/null | tail -n 1)
echo "peak RSS transforming the 6 MB event in one process: $((peak_kb / 1024)) MiB ($peak_kb KiB)"

if [ "${1:-}" = "--criterion" ]; then
  TRANSFORM_BENCH_EVENT="$event3" cargo bench --locked -p transform --bench transform
fi
