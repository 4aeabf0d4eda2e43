#!/usr/bin/env bash
# Runs every test of the project: the one command CI runs (`.ci/run`) and the README shows.
#
#   scripts/test.sh
#
# Stages, in order, stopping at the first failure:
#   1. install the tools the tests need (scripts/setup.sh, idempotent)
#   2. cargo fmt --check, shellcheck on the scripts
#   3. cargo clippy -D warnings on every target, then on ingest with --no-default-features (the
#      configuration the Dockerfile builds, which nothing else compiles)
#   4. start the third-party servers the tests use (moto_server on a free loopback port)
#   5. cargo nextest on the whole workspace (unit, integration, binaries over real protocols),
#      then doc tests
#   6. the stage scripts beside this one: test-*.sh (Terraform, Helm chart, Prometheus, …)
#
# One cargo target dir is shared by every stage (CARGO_TARGET_DIR, default ./target).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export RUST_BACKTRACE=1

stage() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }
started=$SECONDS
# The stage scripts append a line here for every check they skip because a tool is missing (only
# possible without CI=true, where a missing tool fails instead): listed at the end, so that a green
# run that skipped something says so where it is read.
TEST_SKIPPED=$(mktemp "${TMPDIR:-/tmp}/test-skipped.XXXXXX")
export TEST_SKIPPED
trap 'rm -f "$TEST_SKIPPED"' EXIT

stage "setup"
scripts/setup.sh

stage "format and shell lint"
cargo fmt --all -- --check
shellcheck -x scripts/*.sh .ci/run

stage "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "clippy: ingest --no-default-features (the Dockerfile's build)"
cargo clippy -p ingest --no-default-features --all-targets --locked -- -D warnings

stage "third-party servers"
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
# servers.sh set its own EXIT trap (stop the servers); keep removing the skip list too.
trap '_stop_servers; rm -f "$TEST_SKIPPED"' EXIT
start_moto

stage "cargo nextest"
cargo nextest run --workspace --all-targets --locked --profile ci
cargo test --workspace --doc --locked
# The stages test the ingest binary nextest has just built (its integration tests run it). A
# `cargo build -p ingest` here would resolve features without the dev-dependencies' (tokio's
# test-util) and rebuild tokio and everything on it: 73 crates, 3 minutes of CI.
export INGEST_BIN="$CARGO_TARGET_DIR/debug/ingest"

for s in scripts/test-*.sh; do
  [ -e "$s" ] || continue
  stage "$s"
  "$s"
done

if [ -s "$TEST_SKIPPED" ]; then
  stage "tests passed in $((SECONDS - started)) s, but these checks were SKIPPED (a tool is missing; CI=true makes this fail):"
  sed 's/^/  - /' "$TEST_SKIPPED"
else
  stage "all tests passed in $((SECONDS - started)) s"
fi
