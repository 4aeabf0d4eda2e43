#!/usr/bin/env bash
# Tests the Terraform module in terraform/: formatting, the README's generated tables, checkov,
# `terraform init -backend=false` + `terraform validate` for the module and every example, and
# `terraform test` (plans and applies against a mocked AWS provider). Run by scripts/test.sh; also
# works alone:
#
#   scripts/test-terraform.sh
#
# Offline: hashicorp/aws comes from the filesystem mirror in the machine image (TF_PLUGIN_MIRROR,
# default /opt/tf-plugins) through the CLI config terraform/tests/offline.tfrc. A missing tool
# (terraform, the provider mirror, the hcl2 module, checkov) fails under CI=true; for a developer the
# steps that need it are skipped with a message saying so and the others still run.
#
# Everything runs on a copy of terraform/ in a temporary directory, so no .terraform/ directory or
# lock file is left in the checkout and concurrent runs do not collide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh

log() { printf '\033[1;34mtest-terraform:\033[0m %s\n' "$*" >&2; }
skip() { printf '\033[1;33mtest-terraform: skipped:\033[0m %s\n' "$*" >&2; }
# A missing test tool fails CI and is a skip for a developer.
tool_missing() {
  if [ "${CI:-}" = "true" ]; then
    printf 'test-terraform: error: %s (CI=true, so this fails instead of skipping); run scripts/setup.sh\n' "$*" >&2
    exit 1
  fi
  skip "$*; run scripts/setup.sh, then source scripts/env.sh"
  echo "test-terraform: $*" >>"${TEST_SKIPPED:-/dev/null}"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/test-terraform.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$root" --exclude='.terraform' --exclude='.terraform.lock.hcl' --exclude='terraform.tfstate*' \
  -cf - terraform | tar -C "$work" -xf -
module="$work/terraform"

export CHECKPOINT_DISABLE=1 # no version check against checkpoint-api.hashicorp.com
export TF_IN_AUTOMATION=1 TF_INPUT=0
# Every terraform command uses the CLI config kept in the repository (provider mirror, no direct
# download of hashicorp/aws). It names the image's mirror path; for another TF_PLUGIN_MIRROR the
# temporary copy is rewritten to point there.
mirror="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
export TF_CLI_CONFIG_FILE="$module/tests/offline.tfrc"
if [ "$mirror" != /opt/tf-plugins ]; then
  sed "s|\"/opt/tf-plugins\"|\"$mirror\"|" "$root/terraform/tests/offline.tfrc" >"$TF_CLI_CONFIG_FILE"
fi

have_terraform=false
if command -v terraform >/dev/null 2>&1; then
  have_terraform=true
  log "terraform fmt -check -recursive ($(terraform version | head -n1))"
  terraform fmt -check -recursive -diff terraform
else
  tool_missing "terraform is not on PATH: fmt, init/validate and terraform test not run (install Terraform >= 1.9)"
fi

# --- generated README tables -------------------------------------------------------------------
if python3 -c 'import hcl2' >/dev/null 2>&1; then
  log "terraform/tools/tfdocs.py --check"
  python3 terraform/tools/tfdocs.py --check terraform
else
  tool_missing "the hcl2 module (bc-python-hcl2) is not importable, so terraform/README.md's tables were not checked"
fi

# --- checkov -----------------------------------------------------------------------------------
if command -v checkov >/dev/null 2>&1; then
  log "checkov on terraform/ (skips are justified in #checkov:skip comments)"
  BC_SKIP_MAPPING=TRUE checkov -d "$module" --framework terraform --skip-download --compact --quiet
else
  tool_missing "checkov is not on PATH, so terraform/ was not scanned"
fi

# --- init, validate, terraform test (need the provider mirror) ---------------------------------
if [ "$have_terraform" = true ]; then
  if [ ! -d "$mirror/registry.terraform.io/hashicorp/aws" ]; then
    tool_missing "no hashicorp/aws provider in the mirror at $mirror (set TF_PLUGIN_MIRROR to its directory): init, validate and terraform test not run"
  else
    dirs=("$module")
    for d in "$module"/examples/*/; do
      [ -d "$d" ] && dirs+=("${d%/}")
    done
    for d in "${dirs[@]}"; do
      rel=${d#"$work"/}
      log "terraform init -backend=false && terraform validate: $rel"
      if ! out=$(terraform -chdir="$d" init -backend=false -input=false -no-color 2>&1); then
        printf '%s\n' "$out" >&2
        exit 1
      fi
      terraform -chdir="$d" validate -no-color
    done

    log "terraform test (mocked aws provider): terraform/tests/*.tftest.hcl"
    terraform -chdir="$module" test -no-color
  fi
fi

log "ok"
