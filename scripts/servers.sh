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

# Waits until something answers HTTP at $1, for up to $2 seconds; with a process id as $3,
# gives up as soon as that process has exited (it will never answer).
wait_http() {
  local url=$1 deadline=$((SECONDS + ${2:-30})) pid=${3:-}
  until curl -s --max-time 2 -o /dev/null "$url"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "the server for $url exited before answering" >&2
      return 1
    fi
    if ((SECONDS > deadline)); then
      echo "no answer from $url" >&2
      return 1
    fi
    sleep 0.2
  done
}

# moto_server: the real Firehose and S3 APIs, for the aws-sdk wiring tests. Exports MOTO_ENDPOINT.
# A port taken by another process between free_port and moto's bind makes moto exit: it is
# tried again on a new port, three times in all.
start_moto() {
  local port log pid attempt
  log="${CARGO_TARGET_DIR:-target}/moto.log"
  mkdir -p "$(dirname "$log")"
  for attempt in 1 2 3; do
    port=$(free_port)
    moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    _server_pids+=("$pid")
    # Answered, and by our moto: another process may hold the port it could not bind.
    if wait_http "http://127.0.0.1:$port/moto-api/" 60 "$pid" && kill -0 "$pid" 2>/dev/null; then
      export MOTO_ENDPOINT="http://127.0.0.1:$port"
      echo "moto_server at $MOTO_ENDPOINT (log: $log)"
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Reaped: its id may be reused, so it is not ours to kill at exit.
    unset '_server_pids[-1]'
    echo "moto_server did not start on port $port (attempt $attempt of 3); its log:" >&2
    tail -n 20 "$log" >&2 || true
  done
  return 1
}
