#!/usr/bin/env bash
# Builds the transform Lambda's deployment zip for the `provided.al2023` runtime and prints its path.
#
#   scripts/build-lambda-zip.sh            # x86_64 -> target/lambda/transform/bootstrap.zip
#   scripts/build-lambda-zip.sh arm64      # arm64  -> target/lambda-arm64/transform/bootstrap.zip
#
# The zip holds one file, `bootstrap` (the `transform` binary), as the OS-only runtimes expect.
# terraform/ deploys target/lambda/transform/bootstrap.zip (x86_64; set the function's
# architectures to ["arm64"] and point at the arm64 zip to use Graviton).
# Needs cargo-lambda and ziglang from the tools venv (scripts/setup.sh installs them); arm64 also
# needs the aarch64-unknown-linux-gnu standard library, which this script adds with rustup.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh

arch="${1:-x86_64}"
case "$arch" in
  x86_64)
    flag=--x86-64
    triple=x86_64-unknown-linux-gnu
    lambda_dir=target/lambda
    ;;
  arm64)
    flag=--arm64
    triple=aarch64-unknown-linux-gnu
    lambda_dir=target/lambda-arm64
    ;;
  *)
    echo "usage: $0 [x86_64|arm64]" >&2
    exit 2
    ;;
esac

if ! command -v cargo-lambda >/dev/null; then
  echo "cargo-lambda is not on PATH: run scripts/setup.sh (it installs cargo-lambda and ziglang into $TOOLS_VENV)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$triple"; then
  echo "adding the $triple standard library with rustup" >&2
  rustup target add "$triple" >&2
fi

# stdout carries only the zip path; cargo's progress goes to stderr.
cargo lambda build --release "$flag" --output-format zip \
  --package transform --bin transform --lambda-dir "$lambda_dir" >&2

zip="$lambda_dir/transform/bootstrap.zip"
if [ ! -s "$zip" ]; then
  echo "cargo lambda build finished but $zip is missing" >&2
  exit 1
fi
echo "$root/$zip"
