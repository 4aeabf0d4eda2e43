"""Proves the chart's dashboard and alerts on a real Prometheus scraping a real `ingest`.

Run by scripts/test-prometheus.sh (which finds the binaries and moto). Steps:

1. In moto (MOTO_ENDPOINT): an S3 bucket and a DirectPut delivery stream writing to it.
2. `ingest` on loopback ports, talking to moto through a small TCP relay owned by this script.
   The relay only forwards bytes; cutting it is how the test makes Firehose unreachable (a
   real transport failure, which ingest retries and then answers 503), since moto itself never
   fails a call.
3. `promtool check rules` and `promtool test rules` on the PrometheusRule the chart renders.
4. Prometheus on a free loopback port with its own TSDB, scraping ingest's admin port every
   second as job "ingest-admin" with namespace="ingest-test" (the labels a ServiceMonitor
   target of release "ingest" in namespace "ingest-test" gets), loading the shipped rules and a
   hair-trigger copy (thresholds at zero) of them.
5. A small synthetic load: good events (wrk), bad JSON, non-objects, schema failures, an
   oversized event, wrong content type, missing and wrong API keys, a burst that overruns the
   in-flight cap (shed), and requests while the relay is cut (Firehose errors, retries,
   unaccepted records).
6. Every query of the front-door dashboard and every alert expression through /api/v1/query:
   each must parse and each dashboard query must return data; every metric name must be one
   ingest exports; the dashboard's variable queries must find the target's labels; every
   shipped rule must evaluate without error and every hair-trigger alert must go pending.

Prints one line per check and "N passed, N failed"; exits 1 on any failure.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
import yaml

import chartlib as c

JOB = f"{c.RELEASE}-admin"
API_KEY = "prom-test-key"
REGION = "us-east-1"
DEADLINE_S = 60


class Checks:
    """Collects pass/fail lines and prints the summary."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed.append(what)
            print(f"FAIL  {what}{': ' + detail if detail else ''}")
        return ok

    @staticmethod
    def step(what: str) -> None:
        """A stage reached: printed, not counted (it cannot fail; a stage that is not reached
        raises, which fails the run as "test harness")."""
        print(f"..    {what}")

    def summary(self) -> int:
        print(f"\n{self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_on_free_ports(count: int, launch: Callable[[list[int]], Proc],
                        ready: Callable[[Proc, list[int]], None], procs: list[Proc],
                        attempts: int = 3) -> tuple[Proc, list[int]]:
    """Starts a process listening on `count` ports from free_port(), and waits with `ready`.

    free_port() only finds a port free; something else may take it before the process binds
    it. A process that exits saying so is started again on fresh ports."""
    for attempt in range(1, attempts + 1):
        ports = [free_port() for _ in range(count)]
        proc = launch(ports)
        procs.append(proc)
        try:
            ready(proc, ports)
            return proc, ports
        except RuntimeError:
            in_use = "address already in use" in proc.log.read_text(errors="replace").lower()
            if attempt == attempts or not in_use or proc.proc.poll() is None:
                raise
            print(f"{proc.name}: a port was taken before it could bind it; new ports")
            procs.remove(proc)
    raise AssertionError("unreachable")


def wait_for(what: str, probe: Callable[[], Any], timeout: float = DEADLINE_S,
             alive: Callable[[], None] | None = None) -> Any:
    """Polls `probe` until it returns something truthy; bounded, with a clear error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if alive:
            alive()
        try:
            last = probe()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as err:
            last = err
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s (last: {last!r})")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# ------------------------------------------------------------------------------ TCP relay


class Relay:
    """Loopback TCP relay to an upstream; `cut()` drops every connection and refuses new ones."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = True
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=10)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                # Cut while connecting upstream: this connection was not in `conns` for cut()
                # to shut, and would carry calls through the outage.
                if not self.open:
                    for s in (client, up):
                        s.close()
                    continue
                self.conns |= {client, up}
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            self.open = False
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


# ------------------------------------------------------------------------------ processes


class Proc:
    """A child process with its log in the work dir, stopped on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path) -> None:
        self.name = name
        self.log = work / f"{name}.log"
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------ load


def post(port: int, body: bytes, content_type: str | None = "application/json",
         key: str | None = API_KEY, path: str = "/v1/events") -> int:
    return post_answer(port, body, content_type, key, path)[0]


def post_answer(port: int, body: bytes, content_type: str | None = "application/json",
                key: str | None = API_KEY, path: str = "/v1/events") -> tuple[int, bytes]:
    """The status and body of one POST; (0, b"") when the connection fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def wrk(url: str, body: str, seconds: int, connections: int, work: Path) -> str:
    script = work / f"post-{connections}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    run = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = (run.stdout + run.stderr).strip().splitlines()
    return f"wrk -c{connections} {seconds}s: " + " | ".join(lines[-3:])


def scrape(admin: int) -> str:
    """ingest's /metrics text; an error unless it answers 200."""
    status, text = http_get(f"http://127.0.0.1:{admin}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return text


def inflight_bytes(admin: int) -> float:
    for line in scrape(admin).splitlines():
        if line.startswith("ingest_inflight_bytes "):
            return float(line.split()[1])
    raise RuntimeError("ingest_inflight_bytes is not exported")


def synthetic_load(port: int, admin: int, relay: Relay, work: Path, checks: Checks) -> None:
    url = f"http://127.0.0.1:{port}/v1/events"
    event = {"message": "hello from the prometheus test", "service": "chart-test"}
    # Good traffic, with some batching: wrk for volume, plus arrays and NDJSON.
    print(wrk(url, json.dumps(event), 3, 8, work))
    statuses = [post(port, json.dumps([event] * 20).encode()) for _ in range(20)]
    statuses += [post(port, b"\n".join(json.dumps(event).encode() for _ in range(10)),
                      "application/x-ndjson") for _ in range(10)]
    checks.check(statuses.count(200) == len(statuses), "good events are accepted (200)",
                 f"statuses {sorted(set(statuses))}")
    # Bad traffic: one kind per rejection reason the contract lists.
    # Each with the status the contract (services/ingest/README.md) gives it: an event over
    # the record limit is an invalid event (400); the body cap (413) is 10 MiB here.
    bad = {
        "invalid_json": (post(port, b'{"message": '), 400),
        "not_object": (post(port, b'[1, 2, 3]'), 400),
        "schema": (post(port, json.dumps({"no_message": True}).encode()), 400),
        "too_large": (post(port, json.dumps({"message": "x" * 1_100_000}).encode()), 400),
        "content_type": (post(port, b"hello", "text/plain"), 415),
        "unauthorized (missing)": (post(port, json.dumps(event).encode(), key=None), 401),
        "unauthorized (wrong)": (post(port, json.dumps(event).encode(), key="nope"), 401),
    }
    for reason, (status, want) in bad.items():
        checks.check(status == want, f"bad request '{reason}' is refused with {want}", str(status))
    # Overrun the in-flight cap: many concurrent large events, so some are shed with 503.
    big = json.dumps({"message": "y" * 200_000})
    print(wrk(url, big, 3, 64, work))
    # Firehose unreachable: cut the relay; requests are retried, then answered 503. First let
    # the overrun drain: records still in flight toward a slow moto would get these requests
    # shed (503 without a call), and the Firehose alerts below would never see a failed call
    # or an unaccepted record (a fresh-checkout CI run did that).
    wait_for("the in-flight bytes to drain after the overrun", lambda: inflight_bytes(admin) == 0)
    relay.cut()
    outage = [post_answer(port, json.dumps(event).encode()) for _ in range(5)]
    relay.restore()
    # Firehose's 503 lists the events not accepted; load shedding's does not.
    checks.check(all(s == 503 and b'"unaccepted"' in body for s, body in outage),
                 "requests during a Firehose outage get 503 naming the unaccepted events",
                 str(outage))
    # And good traffic again, so the accepted rate has recent samples.
    print(wrk(url, json.dumps(event), 2, 4, work))


# ------------------------------------------------------------------------------ Prometheus


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, text = http_get(url)
        body = json.loads(text)
        body["_http"] = status
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def target_up(self) -> bool:
        targets = self.api("targets")["data"]["activeTargets"]
        return any(t["labels"].get("job") == JOB and t["health"] == "up" for t in targets)

    def last_scrape_after(self, when: float) -> bool:
        # The time of the newest successful scrape, as Unix seconds from PromQL. Not the targets
        # API's `lastScrape`: Prometheus writes that in the server's local time zone (with its
        # offset), so reading it as UTC failed west of UTC and passed too early east of it
        # (helper-89, M1).
        # timestamp() gives the sample's own time only for a bare selector (for any other
        # expression, the evaluation time): filter to successful scrapes with `and`.
        up = f'up{{job="{JOB}"}}'
        result = self.query(f"timestamp({up}) and on() ({up} == 1)")["data"]["result"]
        return any(float(r["value"][1]) > when + 1 for r in result)


def rules_file(path: Path, values: dict[str, Any], group: str | None = None) -> Path:
    groups = c.rule_groups(values)
    if group:
        for g in groups:
            g["name"] = group
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=200))
    return path


HAIR_TRIGGER = {"errorRatio": 0, "minRequestsPerSecond": 0, "latencyP99Seconds": 0,
                "firehoseFailureRatio": 0, "unacceptedRatio": 0, "shedPerSecond": 0, "logWriteErrors": 0, "logLinesDropped": 0,
                "apiKeyFileErrors": 0,
                "minEventsPerSecond": 1e9,
                "minReadyPods": 2}


def promtool_static(work: Path, checks: Checks) -> Path:
    shipped = rules_file(work / "ingest-alerts.rules.yaml", c.monitoring_values())
    run = subprocess.run(["promtool", "check", "rules", str(shipped)],
                         capture_output=True, text=True, check=False)
    checks.check(run.returncode == 0, "promtool check rules (rendered PrometheusRule)",
                 run.stdout + run.stderr)
    test = work / "alerts_test.yaml"
    shutil.copy(Path(__file__).with_name("alerts_test.yaml"), test)
    run = subprocess.run(["promtool", "test", "rules", str(test)],
                         capture_output=True, text=True, check=False)
    checks.check(run.returncode == 0 and "SUCCESS" in run.stdout,
                 "promtool test rules (charts/tests/alerts_test.yaml)", run.stdout + run.stderr)
    return shipped


def exported_families(admin: int) -> set[str]:
    return set(re.findall(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ", scrape(admin), flags=re.M))


def evaluate(prom: Prom, admin: int, shipped_groups: str, checks: Checks) -> None:
    families = exported_families(admin)
    contract = c.contract_metrics()
    checks.check(contract <= families, "ingest exports every metric of docs/metrics.md",
                 f"missing: {sorted(contract - families)}")

    def names_known(expr: str, where: str) -> None:
        names = {c.family(n) for n in c.metric_names(expr)}
        unknown = sorted(n for n in names if n not in families and n != "up")
        checks.check(bool(names) and not unknown, f"{where}: metric names exported by ingest",
                     f"unknown {unknown}" if unknown else "no metric found")

    # Canary: the checks below must be able to fail. A misspelled metric returns no data and
    # is not among the exported names.
    typo = f'sum(rate(ingest_http_request_total{{namespace="{c.NAMESPACE}", job="{JOB}"}}[5m]))'
    res = prom.query(typo)
    checks.check(res.get("status") == "success" and not res["data"]["result"]
                 and "ingest_http_request_total" not in families,
                 "canary: a misspelled metric returns no data and is not exported")

    dash = c.dashboards()["ingest-front-door"]
    for panel in c.panels(dash):
        for t in panel["targets"]:
            expr = c.substitute(t["expr"], namespace=c.NAMESPACE, job=JOB)
            where = f"panel {panel['title']!r} [{t['refId']}]"
            res = prom.query(expr)
            if not checks.check(res.get("status") == "success", f"{where}: parses and evaluates",
                                res.get("error", "")):
                continue
            checks.check(bool(res["data"]["result"]), f"{where}: returns data", expr)
            names_known(t["expr"], where)
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
        if not checks.check(bool(m), f"variable {var['name']}: label_values(selector, label)"):
            continue
        selector = c.substitute(m.group(1), namespace=c.NAMESPACE, job=JOB)
        got = prom.api(f"label/{m.group(2)}/values", **{"match[]": selector})
        want = {"namespace": c.NAMESPACE, "job": JOB}[var["name"]]
        checks.check(want in got.get("data", []), f"variable {var['name']}: finds {want!r}",
                     str(got.get("data")))

    for rule in c.alerts(c.monitoring_values()):
        where = f"alert {rule['alert']}"
        res = prom.query(rule["expr"])
        checks.check(res.get("status") == "success", f"{where}: parses and evaluates",
                     res.get("error", ""))
        names_known(rule["expr"], where)

    # Rule engine: every shipped rule evaluated cleanly; every hair-trigger alert is active.
    def rule_states() -> dict[str, dict[str, dict[str, Any]]] | None:
        groups = prom.api("rules")["data"]["groups"]
        out = {g["name"]: {r["name"]: r for r in g["rules"]} for g in groups}
        hair = out.get("hair-trigger", {})
        if hair and all(r["state"] in ("pending", "firing") for r in hair.values()):
            return out
        return None

    try:
        states = wait_for("every hair-trigger alert to go pending", rule_states, timeout=30)
    except TimeoutError as err:
        checks.check(False, "hair-trigger alerts go pending", str(err))
        groups = prom.api("rules")["data"]["groups"]
        states = {g["name"]: {r["name"]: r for r in g["rules"]} for g in groups}
    for name, r in states.get("hair-trigger", {}).items():
        checks.check(r["state"] in ("pending", "firing"), f"alert {name} (hair-trigger): active",
                     f"state {r['state']}, health {r['health']}, {r.get('lastError', '')}")
    shipped = states.get(shipped_groups, {})
    want = {r["alert"] for r in c.alerts(c.monitoring_values())}
    checks.check(bool(want) and want <= set(shipped),
                 f"rule group {shipped_groups} holds all {len(want)} shipped alerts",
                 f"missing {sorted(want - set(shipped))}; groups {sorted(states)}")
    for name, r in shipped.items():
        checks.check(r["health"] == "ok", f"alert {name} (shipped thresholds): rule health ok",
                     r.get("lastError", ""))


# ------------------------------------------------------------------------------ main


def main() -> int:
    ingest_bin = os.environ["INGEST_BIN"]
    moto = os.environ["MOTO_ENDPOINT"]
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="ingest-prom-"))
    keep = False
    procs: list[Proc] = []
    relay = None
    try:
        shipped = promtool_static(work, checks)
        hair = rules_file(work / "hair-trigger.rules.yaml",
                          c.monitoring_values(**HAIR_TRIGGER), group="hair-trigger")

        # moto: a bucket and a DirectPut stream.
        aws = dict(endpoint_url=moto, region_name=REGION, aws_access_key_id="test",
                   aws_secret_access_key="test")
        suffix = uuid.uuid4().hex[:8]
        bucket, stream = f"ingest-prom-{suffix}", f"ingest-prom-{suffix}"
        boto3.client("s3", **aws).create_bucket(Bucket=bucket)
        boto3.client("firehose", **aws).create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}",
                # Without these moto's DescribeDeliveryStream answer lacks CompressionFormat,
                # which aws-sdk-firehose requires: ingest's readiness check would fail on it.
                "CompressionFormat": "UNCOMPRESSED",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            })

        parsed = urllib.parse.urlparse(moto)
        relay = Relay((parsed.hostname or "127.0.0.1", parsed.port or 80))
        (work / "keys").write_text(f"# test key\n{API_KEY}\n")
        (work / "schema.json").write_text(json.dumps(
            {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "RUST_LOG": "info",
            "FIREHOSE_DELIVERY_STREAM": stream,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "INGEST_API_KEYS_FILE": str(work / "keys"),
            "INGEST_SCHEMA_FILE": str(work / "schema.json"),
            # Small caps so the load can overrun them: body 2 MiB (an event over Firehose's
            # 1,000 KiB record limit still fits), in-flight 4 MiB.
            "INGEST_MAX_BODY_BYTES": str(2 * 1024 * 1024),
            "INGEST_MAX_INFLIGHT_BYTES": str(4 * 1024 * 1024),
            "INGEST_LINGER": "100ms",
            # A short budget, so requests during the outage (whose calls fail at once: the
            # relay shuts its sockets) get their 503 within about a second; a long call
            # timeout, so one slow answer from moto (Python, on a busy host) is not a 503.
            # The request timeout must exceed budget + call timeout + 1 s.
            "INGEST_RETRY_BUDGET": "1s",
            "INGEST_FIREHOSE_CALL_TIMEOUT": "10s",
            "INGEST_REQUEST_TIMEOUT": "15s",
            "INGEST_READINESS_INTERVAL": "1s",
        }

        def launch_ingest(ports: list[int]) -> Proc:
            listen = {"INGEST_LISTEN": f"127.0.0.1:{ports[0]}",
                      "INGEST_ADMIN_LISTEN": f"127.0.0.1:{ports[1]}"}
            return Proc("ingest", [ingest_bin], env | listen, work)

        def ingest_ready(proc: Proc, ports: list[int]) -> None:
            wait_for("ingest /readyz 200",
                     lambda: http_get(f"http://127.0.0.1:{ports[1]}/readyz")[0] == 200,
                     alive=proc.alive)

        ingest, (public, admin) = start_on_free_ports(2, launch_ingest, ingest_ready, procs)
        checks.step(f"ingest ready on 127.0.0.1:{public} (admin {admin})")

        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(shipped), str(hair)],
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{admin}"],
                                    "labels": {"namespace": c.NAMESPACE}}],
            }],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        run = subprocess.run(["promtool", "check", "config", str(work / "prometheus.yml")],
                             capture_output=True, text=True, check=False)
        checks.check(run.returncode == 0, "promtool check config", run.stdout + run.stderr)

        def launch_prometheus(ports: list[int]) -> Proc:
            return Proc("prometheus", [
                "prometheus", f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / f'tsdb-{ports[0]}'}",
                f"--web.listen-address=127.0.0.1:{ports[0]}",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"], dict(os.environ), work)

        def prometheus_ready(proc: Proc, ports: list[int]) -> None:
            wait_for("Prometheus ready",
                     lambda: http_get(f"{Prom(ports[0]).base}/-/ready")[0] == 200,
                     alive=proc.alive)

        prometheus, (prom_port,) = start_on_free_ports(1, launch_prometheus, prometheus_ready,
                                                       procs)
        prom = Prom(prom_port)
        wait_for("the ingest target to be up", prom.target_up, alive=prometheus.alive)
        checks.step(f"Prometheus on 127.0.0.1:{prom_port} scrapes ingest")

        synthetic_load(public, admin, relay, work, checks)
        ingest.alive()
        done = time.time()
        wait_for("a scrape after the load", lambda: prom.last_scrape_after(done))
        evaluate(prom, admin, f"{c.RELEASE}.rules", checks)
    except Exception as err:  # noqa: BLE001 - report any harness failure as a failed check
        checks.check(False, "test harness", f"{type(err).__name__}: {err}")
        keep = True
    finally:
        for p in reversed(procs):
            p.stop()
        if relay:
            relay.close()
    if checks.failed or keep:
        for p in procs:
            print(f"\n--- {p.name} log (last lines, full log in {p.log}) ---\n{p.tail()}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    # A SIGTERM (CI's timeout, a kill of the stage) unwinds through main's `finally`, which stops
    # ingest and Prometheus; by default it would end Python at once and leave them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
