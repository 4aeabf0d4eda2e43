#!/usr/bin/env python3
"""Start-up time of a Lambda custom-runtime bootstrap: process start -> first /invocation/next.

    python3 scripts/lambda-startup.py BOOTSTRAP [STARTS]

Serves a stub Lambda Runtime API on a free loopback port, starts BOOTSTRAP with
AWS_LAMBDA_RUNTIME_API pointing at it, and times from just before the process is spawned to
the moment its first `GET /2018-06-01/runtime/invocation/next` arrives. The stub never answers
that request (the bootstrap waits, as it would for an event); the process is then killed.
Prints the median, min and max over STARTS starts (default 5). Used by bench-transform.sh.
"""

import http.server
import os
import statistics
import subprocess
import sys
import threading
import time


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    first = threading.Event()
    seen = 0.0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.endswith("/runtime/invocation/next") and not RuntimeApi.first.is_set():
            RuntimeApi.seen = time.perf_counter()
            RuntimeApi.first.set()
        time.sleep(2)  # never answer within the measurement

    def log_message(self, *args):
        pass


def main():
    bootstrap = sys.argv[1]
    starts = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="transform",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        AWS_LAMBDA_LOG_GROUP_NAME="bench",
    )
    times = []
    for _ in range(starts):
        RuntimeApi.first.clear()
        started = time.perf_counter()
        proc = subprocess.Popen([bootstrap], env=env, stdout=subprocess.DEVNULL)
        arrived = RuntimeApi.first.wait(10)
        proc.kill()
        proc.wait()
        if not arrived:
            sys.exit(f"{bootstrap} never asked the Runtime API for an invocation")
        times.append((RuntimeApi.seen - started) * 1000)
    print(
        "startup (process start -> first /invocation/next): "
        f"median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, "
        f"max {max(times):.1f} ms over {len(times)} starts"
    )


if __name__ == "__main__":
    main()
