#!/usr/bin/env bash
# Prometheus stage: the chart's alerts and front-door dashboard, proven on a real Prometheus.
#
#   scripts/test-prometheus.sh       # alone, or as a stage of scripts/test.sh
#
# promtool check/test rules on the rendered PrometheusRule, then a real Prometheus (Debian
# package) on a free loopback port scraping a running `ingest` (against moto) under a small
# synthetic load; every dashboard query and alert expression is evaluated through the HTTP API
# (charts/tests/prometheus_live.py prints each check and "N passed, N failed").
#
# Uses MOTO_ENDPOINT when set (scripts/test.sh exports it), else starts moto_server itself.
# A missing tool skips the stage with a message, except under CI (CI=true), where it fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

missing() {
  if [ "${CI:-}" = "true" ]; then
    echo "test-prometheus: FAILED: $1 (required under CI; run scripts/setup.sh)" >&2
    exit 1
  fi
  echo "test-prometheus: skipped: $1 (run scripts/setup.sh, then source scripts/env.sh)"
  echo "test-prometheus: $1" >>"${TEST_SKIPPED:-/dev/null}"
  exit 0
}

for t in prometheus promtool wrk; do
  command -v "$t" >/dev/null 2>&1 || missing "$t is not installed"
done
py="$TOOLS_VENV/bin/python"
"$py" -c 'import boto3, helm_python, yaml' 2>/dev/null || missing "boto3/helm-python-sdk not in $TOOLS_VENV"

# Alone, always build (a no-op when the binary is fresh), so a stale binary is never tested.
# INGEST_BIN names a binary to test as it is: scripts/test.sh passes the one its nextest stage
# has just built (building here would rebuild tokio and the SDK with other features).
if [ -n "${INGEST_BIN:-}" ]; then
  bin="$INGEST_BIN"
  [ -x "$bin" ] || { echo "test-prometheus: INGEST_BIN=$bin is not an executable" >&2; exit 1; }
else
  echo "test-prometheus: building ingest (cargo build -p ingest --locked)"
  cargo build -p ingest --locked
  bin="$CARGO_TARGET_DIR/debug/ingest"
fi

if [ -z "${MOTO_ENDPOINT:-}" ]; then
  command -v moto_server >/dev/null 2>&1 || missing "moto_server is not installed and MOTO_ENDPOINT is unset"
  # shellcheck source=scripts/servers.sh
  source scripts/servers.sh
  start_moto
fi

export PYTHONDONTWRITEBYTECODE=1
INGEST_BIN="$bin" MOTO_ENDPOINT="$MOTO_ENDPOINT" PYTHONPATH="$root/charts/tests" \
  "$py" charts/tests/prometheus_live.py
