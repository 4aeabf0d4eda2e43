#!/usr/bin/env bash
# Chart stage: the Helm chart, Dockerfile and YAML, checked with the real tools.
#
#   scripts/test-chart.sh            # alone, or as a stage of scripts/test.sh
#
# Runs charts/tests/test_chart.py with pytest from the tools venv: helm-python-sdk lint (strict)
# and render of every charts/ingest/ci/*-values.yaml, kubernetes-validate --strict for each
# supported Kubernetes version, checkov on the rendered manifests and the Dockerfile, schema
# rejection of bad values, assertions on probes / security context / IRSA / ingress, hadolint and
# yamllint. Needs no server and no cargo build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh

py="$TOOLS_VENV/bin/python"
for t in "$py" kubernetes-validate checkov hadolint yamllint; do
  if ! command -v "$t" >/dev/null 2>&1; then
    echo "test-chart: $t is missing: run scripts/setup.sh" >&2
    exit 1
  fi
done
if ! "$py" -c 'import helm_python, pytest, yaml' 2>/dev/null; then
  echo "test-chart: helm-python-sdk, pytest or PyYAML missing from $TOOLS_VENV: run scripts/setup.sh" >&2
  exit 1
fi

# No .pyc or .pytest_cache in the checkout.
export PYTHONDONTWRITEBYTECODE=1
"$py" -m pytest -p no:cacheprovider -q -rfE charts/tests/test_chart.py
