# Sourced by the scripts: where the project's tools live. Safe to source more than once.
# shellcheck shell=bash
export TOOLS_VENV="${TOOLS_VENV:-$HOME/.cache/firehose-nr/venv}"
case ":$PATH:" in
  *":$TOOLS_VENV/bin:"*) ;;
  *) export PATH="$TOOLS_VENV/bin:$PATH" ;;
esac
