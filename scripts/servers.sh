# Sourced by scripts/test.sh: starts third-party servers on free loopback ports and stops them
# when the calling shell exits. Each exports the address the tests read.
# shellcheck shell=bash

_server_pids=()
_stop_servers() {
  local pid
  for pid in "${_server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${_server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap _stop_servers EXIT

# Prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something answers HTTP at $1, for up to $2 seconds.
wait_http() {
  local url=$1 deadline=$((SECONDS + ${2:-30}))
  until curl -s -o /dev/null "$url"; do
    if ((SECONDS > deadline)); then
      echo "no answer from $url" >&2
      return 1
    fi
    sleep 0.2
  done
}

# moto_server: the real Firehose and S3 APIs, for the aws-sdk wiring tests. Exports MOTO_ENDPOINT.
start_moto() {
  local port log
  port=$(free_port)
  log="${CARGO_TARGET_DIR:-target}/moto.log"
  mkdir -p "$(dirname "$log")"
  moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  _server_pids+=("$!")
  wait_http "http://127.0.0.1:$port/moto-api/" 60
  export MOTO_ENDPOINT="http://127.0.0.1:$port"
  echo "moto_server at $MOTO_ENDPOINT (log: $log)"
}
