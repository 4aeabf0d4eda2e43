"""Static tests of the ingest Helm chart: what `helm install` would create, checked with the
real Helm engine (helm-python-sdk), kubernetes-validate, checkov, hadolint and yamllint.

Run by scripts/test-chart.sh (`pytest charts/tests/test_chart.py`). The PromQL of the
dashboards and alerts is evaluated against a real Prometheus by scripts/test-prometheus.sh.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

import chartlib as c

SCENARIOS = c.ci_scenarios()
# Kubernetes versions the chart supports (Chart.yaml kubeVersion >= 1.31; EKS standard support).
KUBE_VERSIONS = ["1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0"]

# checkov findings we accept outside the production scenario, each with its reason. The
# production scenario must pass with no skip at all.
CHECKOV_SKIPS = {
    "CKV_K8S_10": "no default CPU requests: chart convention (prometheus-community review "
                  "guidelines), sizing is the operator's; production sets them",
    "CKV_K8S_11": "no default CPU limits: same convention; production sets them",
    "CKV_K8S_12": "no default memory requests: same convention; production sets them",
    "CKV_K8S_13": "no default memory limits: same convention; production sets them",
    "CKV_K8S_15": "pullPolicy IfNotPresent by default for immutable version tags; production "
                  "sets Always",
    "CKV_K8S_43": "the image digest is a value (image.digest); production pins one, dev builds "
                  "have none",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: run scripts/setup.sh and `source scripts/env.sh`"
    return path


def render_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return c.objects(c.render(values))


def deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    deps = c.find(objs, "Deployment", c.RELEASE)
    assert len(deps) == 1, f"expected the ingest Deployment, got {[d['metadata']['name'] for d in deps]}"
    return deps[0]


def ingest_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = deployment(objs)["spec"]["template"]["spec"]["containers"]
    return next(ct for ct in containers if ct["name"] == "ingest")


MINIMAL = SCENARIOS["minimal-values"]
PRODUCTION = SCENARIOS["production-values"]


# ---------------------------------------------------------------- lint, render, validate


def test_every_expected_scenario_exists():
    assert {"minimal-values", "production-values", "existing-secret-values"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube", ["v1.31.0", "v1.35.0"])
def test_lint_strict(scenario, kube):
    report = helm.lint(str(c.CHART), SCENARIOS[scenario], strict=True,
                       namespace=c.NAMESPACE, kube_version=kube)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, (report["errors"], problems)


def test_lint_catches_a_broken_template(tmp_path):
    # Lint must be able to fail, or the test above proves nothing. (helm lint, like the Helm
    # CLI, reports the template `fail` function only as info: test_render_refuses_* covers those.)
    copy_ = tmp_path / "ingest"
    shutil.copytree(c.CHART, copy_)
    (copy_ / "templates" / "broken.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.x }}\n")
    report = helm.lint(str(copy_), MINIMAL, strict=True, namespace=c.NAMESPACE)
    assert any("nil pointer" in e for e in report["errors"]), report


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kubernetes_validate_strict(scenario, tmp_path):
    manifest = tmp_path / f"{scenario}.yaml"
    manifest.write_text(c.manifest_text(c.render(SCENARIOS[scenario])))
    for version in KUBE_VERSIONS:
        run = subprocess.run([tool("kubernetes-validate"), "-k", version, "--strict", str(manifest)],
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"{scenario} on {version}:\n{run.stdout}{run.stderr}"
        assert "ERROR" not in run.stdout + run.stderr


def test_kubernetes_validate_catches_a_bad_manifest(tmp_path):
    # The validator must be able to fail, or the test above proves nothing.
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
    run = subprocess.run([tool("kubernetes-validate"), "-k", "1.33.0", "--strict", str(bad)],
                         capture_output=True, text=True, check=False)
    assert run.returncode != 0


def _checkov(target: list[str], framework: str, skips: list[str]) -> subprocess.CompletedProcess:
    cmd = [tool("checkov"), *target, "--framework", framework, "--skip-download", "--compact",
           "--quiet"]
    if skips:
        cmd += ["--skip-check", ",".join(skips)]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE")
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_checkov_production_is_clean_without_skips(tmp_path):
    manifest = tmp_path / "production.yaml"
    manifest.write_text(c.manifest_text(c.render(PRODUCTION)))
    run = _checkov(["-f", str(manifest)], "kubernetes", [])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Passed checks" in run.stdout


def test_checkov_every_scenario_with_documented_skips(tmp_path):
    for name, values in SCENARIOS.items():
        (tmp_path / f"{name}.yaml").write_text(c.manifest_text(c.render(values)))
    run = _checkov(["-d", str(tmp_path)], "kubernetes", sorted(CHECKOV_SKIPS))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Passed checks" in run.stdout


def test_checkov_dockerfile():
    # The one skip (CKV_DOCKER_2, no HEALTHCHECK) is inline in the Dockerfile with its reason.
    run = _checkov(["-f", str(c.REPO / "Dockerfile")], "dockerfile", [])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Failed checks: 0" in run.stdout


def test_hadolint_dockerfile():
    run = subprocess.run([tool("hadolint"), "--config", str(c.REPO / ".hadolint.yaml"),
                          str(c.REPO / "Dockerfile")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_yamllint():
    files = ["charts", "skaffold.yaml", ".hadolint.yaml", ".yamllint.yaml"]
    run = subprocess.run([tool("yamllint"), "--strict", "-c", ".yamllint.yaml", *files],
                         capture_output=True, text=True, check=False, cwd=c.REPO)
    assert run.returncode == 0, run.stdout + run.stderr


# ---------------------------------------------------------------- values and schema


def _walk_values(node: Any, schema: dict[str, Any], path: str, missing: list[str]) -> None:
    if not isinstance(node, dict) or schema.get("type") != "object" or "properties" not in schema:
        return
    for key, value in node.items():
        sub = schema["properties"].get(key)
        where = f"{path}.{key}" if path else key
        if sub is None:
            missing.append(f"{where}: not in schema")
            continue
        if not sub.get("description"):
            missing.append(f"{where}: no description")
        _walk_values(value, sub, where, missing)


def test_schema_covers_every_values_key():
    values = yaml.safe_load((c.CHART / "values.yaml").read_text())
    schema = json.loads((c.CHART / "values.schema.json").read_text())
    missing: list[str] = []
    _walk_values(values, schema, "", missing)
    assert not missing, missing
    assert schema.get("additionalProperties") is False


def test_values_yaml_documents_every_key():
    lines = (c.CHART / "values.yaml").read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=values.schema.json"
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            continue
        # A key is documented by a comment right above it (the `# --` line or its continuation).
        prev = lines[i - 1].strip() if i else ""
        if not prev.startswith("#"):
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    # Keys inside list items of defaults (e.g. ingress.paths[].path) are documented by their list.
    undocumented = [u for u in undocumented
                    if not re.search(r": (path|pathType|type|ports|port|protocol|namespaceSelector"
                                     r"|matchLabels|kubernetes|runAsNonRoot|runAsUser|runAsGroup"
                                     r"|fsGroup|seccompProfile|allowPrivilegeEscalation"
                                     r"|readOnlyRootFilesystem|privileged|capabilities|drop)$", u)]
    assert not undocumented, undocumented


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_schema_accepts_scenario(scenario):
    c.validate_schema(SCENARIOS[scenario])


BAD_VALUES = {
    "unknown top-level key": {"replicas": 3},
    "typo in nested key": {"config": {"deliverystream": "x"}},
    "negative replicas": {"replicaCount": -1},
    "string port": {"ports": {"admin": "9090"}},
    "port out of range": {"ports": {"http": 70000}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad digest": {"image": {"digest": "latest"}},
    "bad region": {"config": {"region": "US East"}},
    "bad stream name": {"config": {"deliveryStream": "has space"}},
    "duration without unit form": {"config": {"linger": "ten ms"}},
    "zero body cap": {"config": {"maxBodyBytes": 0}},
    "event cap under the smallest event": {"config": {"maxEventBytes": 1}},
    "event cap over a Firehose record": {"config": {"maxEventBytes": 1024000}},
    "bad role arn": {"serviceAccount": {"roleArn": "my-role"}},
    "bad service type": {"service": {"type": "ExternalName"}},
    "ingress path without slash": {"ingress": {"paths": [{"path": "v1", "pathType": "Exact"}]}},
    "ingress pathType": {"ingress": {"paths": [{"path": "/v1/events", "pathType": "Glob"}]}},
    "cpu percent over 100": {"autoscaling": {"targetCPUUtilizationPercentage": 150}},
    "error ratio over 1": {"prometheusRule": {"thresholds": {"errorRatio": 5}}},
    "bad scrape interval": {"serviceMonitor": {"interval": "often"}},
    "bad spread policy": {"topologySpread": {"whenUnsatisfiable": "Maybe"}},
    "empty runbook url": {"prometheusRule": {"runbookUrl": ""}},
    "unknown alert to leave out": {"prometheusRule": {"disabled": {"IngestNoSuchAlert": True}}},
    "a PDB that blocks every drain": {"podDisruptionBudget": {"maxUnavailable": 0}},
    "a PDB of 0 %": {"podDisruptionBudget": {"maxUnavailable": "0%"}},
    "bad unhealthy pod eviction policy": {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Never"}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case):
    values = _deep_merge(MINIMAL, BAD_VALUES[case])
    # The error names the property that is wrong, not some other one.
    leaf, node = None, BAD_VALUES[case]
    while isinstance(node, dict) and node:
        leaf, node = next(iter(node.items()))
    with pytest.raises(helm.HelmValuesError, match=re.escape(leaf)):
        c.validate_schema(values)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# Values that pass the schema but cannot work: the chart refuses them with a message that says
# what to fix.
REFUSED = {
    "no delivery stream": ({"config": {"deliveryStream": ""}}, "config.deliveryStream is required"),
    "no api keys": ({"apiKeys": {"keys": ""}}, "apiKeys"),
    "ingress routes /metrics": ({"ingress": {"enabled": True, "paths": [
        {"path": "/metrics", "pathType": "Exact"}]}}, "would route /metrics"),
    "ingress prefix / covers /metrics": ({"ingress": {"enabled": True, "paths": [
        {"path": "/", "pathType": "Prefix"}]}}, "would route /metrics"),
    "ingress routes /readyz": ({"ingress": {"enabled": True, "paths": [
        {"path": "/readyz", "pathType": "Exact"}]}}, "admin path"),
    "grace shorter than drain": ({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds"),
    "in-flight cap below body cap": ({"config": {"maxInflightBytes": 1024}}, "maxInflightBytes"),
    # The duration rules of ingest's Config::validate (services/ingest/src/config.rs).
    "shutdown grace below request timeout (GraceBelowTimeout)": (
        {"config": {"shutdownGraceSecs": 20}},
        "config.shutdownGraceSecs (20) must be at least config.requestTimeout (25s)"),
    "shutdown grace below request timeout in minutes": (
        {"config": {"requestTimeout": "0.5m", "shutdownGraceSecs": 29}},
        "config.shutdownGraceSecs (29) must be at least config.requestTimeout (0.5m)"),
    "request timeout not above budget + call + 1 s (TimeoutBelowBudget)": (
        {"config": {"retryBudget": "14s"}},
        "config.requestTimeout (25s) must be longer than config.retryBudget (14s) + "
        "config.firehoseCallTimeout (10s) + 1s"),
    "request timeout in ms not above budget + call + 1 s": (
        {"config": {"requestTimeout": "21000ms", "retryBudget": "10s", "firehoseCallTimeout": "10s",
                    "shutdownGraceSecs": 30}},
        "config.requestTimeout (21000ms) must be longer than config.retryBudget (10s)"),
    "a burst without a rate (BurstWithoutRate)": (
        {"config": {"rateLimitBurst": 400, "rateLimitRps": 0}},
        "config.rateLimitBurst (400) needs config.rateLimitRps above 0"),
    "linger past the send window (LingerTooLong)": (
        {"config": {"retryBudget": "1s", "linger": "14s"}},
        "config.linger (14s) must be shorter than config.requestTimeout (25s) - "
        "config.firehoseCallTimeout (10s) - 1s"),
    "zero call timeout": ({"config": {"firehoseCallTimeout": "0ms"}},
                          "config.firehoseCallTimeout (0ms) must be greater than 0"),
    "zero readiness interval": ({"config": {"readinessInterval": "0s"}},
                                "config.readinessInterval (0s) must be greater than 0"),
    # INGEST_READINESS_INTERVAL below 1 s: ingest exits at start (DescribeDeliveryStream quota).
    "readiness interval under a second": ({"config": {"readinessInterval": "500ms"}},
                                          "config.readinessInterval (500ms) must be at least 1s"),
    "key reload under a second": ({"config": {"apiKeysReload": "200ms"}},
                                  "config.apiKeysReload (200ms) must be at least 1s"),
    # 5 + 0 + 25 = 30, + 2 s for the admin listener.
    "grace covering the drain but not the admin listener": (
        {"terminationGracePeriodSeconds": 32}, "must be larger than preStopSleepSeconds + "
        "config.shutdownDelaySecs + config.shutdownGraceSecs + 2 s for the admin listener (32)"),
    "zero api keys reload": ({"config": {"apiKeysReload": "0"}},
                             "config.apiKeysReload (0) must be greater than 0"),
    "autoscaling without a CPU request": (
        {"autoscaling": {"enabled": True}},
        "autoscaling.enabled needs resources.requests.cpu"),
    "a memory limit the in-flight cap outgrows": (
        {"resources": {"limits": {"memory": "512Mi"}}},  # the default cap: 256 MiB x 2 + 64 MiB
        "resources.limits.memory (512Mi) is below 2 x config.maxInflightBytes + 64 MiB = 576 MiB"),
    "a memory limit in decimal units just short": (
        {"config": {"maxInflightBytes": 134217728}, "resources": {"limits": {"memory": "335M"}}},
        "resources.limits.memory (335M) is below 2 x config.maxInflightBytes + 64 MiB = 320 MiB"),
    "a memory limit as a bare number, too small": (
        {"resources": {"limits": {"memory": 536870912}}},
        "resources.limits.memory (5.36870912e+08) is below 2 x config.maxInflightBytes"),
    "a memory limit written in a form the check does not read": (
        {"resources": {"limits": {"memory": "1e9"}}},
        'resources.limits.memory "1e9": write it as a number with an optional Ki, Mi, Gi, Ti'),
    "ingress without a host": (
        {"ingress": {"enabled": True, "hosts": []}},
        "ingress.enabled needs at least one host in ingress.hosts"),
    "alerts without the ServiceMonitor whose job they select": (
        {"prometheusRule": {"enabled": True}},
        "prometheusRule.enabled needs serviceMonitor.enabled"),
    # prometheus-operator skips it: "scrapeTimeout greater than scrapeInterval".
    "a scrape timeout longer than the interval": (
        {"serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "1m"}},
        "serviceMonitor.scrapeTimeout (1m) is longer than serviceMonitor.interval (15s)"),
    "a scrape timeout longer than the interval by a millisecond": (
        {"serviceMonitor": {"enabled": True, "interval": "1m30s", "scrapeTimeout": "1m30s1ms"}},
        "serviceMonitor.scrapeTimeout (1m30s1ms) is longer than serviceMonitor.interval (1m30s)"),
    # Prometheus refuses units out of order or repeated; the schema's pattern lets them by.
    "a scrape interval Prometheus cannot read": (
        {"serviceMonitor": {"enabled": True, "interval": "1s1m"}},
        '"1s1m" is not a Prometheus duration'),
    "a no-traffic window with a unit twice": (
        {"serviceMonitor": {"enabled": True},
         "prometheusRule": {"enabled": True, "thresholds": {"noTrafficFor": "1m1m"}}},
        '"1m1m" is not a Prometheus duration'),
    # rate()[5m] with a scrape every 2 m: one missed scrape and the alerts see nothing.
    "alerts with scrapes too far apart for their 5-minute windows": (
        {"serviceMonitor": {"enabled": True, "interval": "2m", "scrapeTimeout": "10s"},
         "prometheusRule": {"enabled": True}},
        "serviceMonitor.interval (2m) is longer than a quarter of the alerts' shortest rate "
        "window, 5-minute windows, while prometheusRule.enabled"),
    # IngestNoTraffic's window set below 5 m: the limit follows it.
    "no-traffic window too short for the scrape interval": (
        {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s"},
         "prometheusRule": {"enabled": True, "thresholds": {"noTrafficFor": "1m"}}},
        "IngestNoTraffic's window (prometheusRule.thresholds.noTrafficFor = 1m)"),
    "role ARN without a ServiceAccount to put it on": (
        {"serviceAccount": {"create": False, "roleArn": "arn:aws:iam::123456789012:role/ingest"}},
        "serviceAccount.roleArn (arn:aws:iam::123456789012:role/ingest) is set but "
        "serviceAccount.create is false"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_render_refuses_values_that_cannot_work(case):
    over, message = REFUSED[case]
    values = _deep_merge(MINIMAL, over)
    c.validate_schema(values)  # schema-valid: it is the template that must refuse
    with pytest.raises(helm.HelmError) as err:
        c.render(values)
    assert message in str(err.value), str(err.value)


# Values right at the edge of ingest's duration rules, in every unit the schema allows: accepted.
DURATION_EDGES = {
    "budget + call + 1 s just below the timeout": {"retryBudget": "13.999s"},
    "linger just inside the send window": {"retryBudget": "1s", "linger": "13999ms"},
    "grace equal to a timeout in minutes": {"requestTimeout": "0.5m", "shutdownGraceSecs": 30},
    "bare numbers are seconds": {"requestTimeout": "30", "retryBudget": "18", "shutdownGraceSecs": 30},
    "zero linger and retry budget are allowed": {"linger": "0ms", "retryBudget": "0s"},
    "readiness interval of exactly a second": {"readinessInterval": "1000ms"},
}


@pytest.mark.parametrize("case", sorted(DURATION_EDGES))
def test_render_accepts_durations_at_the_edge_of_ingest_rules(case):
    values = _deep_merge(MINIMAL, {"config": DURATION_EDGES[case]})
    c.validate_schema(values)
    env = c.find(render_objects(values), "ConfigMap", c.RELEASE)[0]["data"]
    for key, value in DURATION_EDGES[case].items():
        if isinstance(value, str):
            name = {"retryBudget": "INGEST_RETRY_BUDGET", "linger": "INGEST_LINGER",
                    "requestTimeout": "INGEST_REQUEST_TIMEOUT",
                    "readinessInterval": "INGEST_READINESS_INTERVAL"}[key]
            assert env[name] == value


def test_ingress_exact_root_path_is_allowed():
    values = _deep_merge(MINIMAL, {"ingress": {"enabled": True, "paths": [
        {"path": "/", "pathType": "Exact"}, {"path": "/v1/events", "pathType": "Exact"}]}})
    ing = c.find(render_objects(values), "Ingress")
    assert [p["path"] for p in ing[0]["spec"]["rules"][0]["http"]["paths"]] == ["/", "/v1/events"]


def test_the_default_ingress_serves_the_old_endpoints_path_too():
    # Clients of the old API Gateway endpoint (a custom domain moved here) POST to "/".
    ing = c.find(render_objects(_deep_merge(MINIMAL, {"ingress": {"enabled": True}})), "Ingress")
    paths = ing[0]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/v1/events", "Exact"), ("/", "Exact")]


# ---------------------------------------------------------------- what matters in the objects


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_probes_hit_the_admin_port(scenario):
    objs = render_objects(SCENARIOS[scenario])
    ct = ingest_container(objs)
    ports = {p["name"]: p["containerPort"] for p in ct["ports"]}
    assert ports["admin"] == 9090 and ports["http"] == 8080
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = ct[probe]["httpGet"]
        assert get["port"] == "admin", f"{probe} must use the admin port, not {get['port']}"
        assert get["path"] == path
    # The admin listener shares the runtime with intake: readiness must not be tighter than
    # liveness, or saturated pods leave the Service in turn (helper-85).
    assert ct["readinessProbe"]["timeoutSeconds"] >= ct["livenessProbe"]["timeoutSeconds"]
    assert ct["readinessProbe"]["failureThreshold"] >= 3
    env = c.find(objs, "ConfigMap", c.RELEASE)[0]["data"]
    assert env["INGEST_ADMIN_LISTEN"].endswith(":9090")
    assert env["INGEST_LISTEN"].endswith(":8080")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pods_are_hardened(scenario):
    objs = render_objects(SCENARIOS[scenario])
    deployments = c.find(objs, "Deployment")
    assert deployments, f"{scenario} renders no Deployment"
    for dep in deployments:
        spec = dep["spec"]["template"]["spec"]
        name = dep["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for ct in spec["containers"]:
            sc = ct["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            assert sc.get("privileged") is False, name
            assert sc["runAsUser"] >= 10000, name


# Seconds the derived terminationGracePeriodSeconds adds after the drain: ingest flushes telemetry
# after draining (2 s for admin connections, then a final OTLP export the SDK waits up to 5 s for),
# so the margin must exceed that.
GRACE_MARGIN = 15


def test_termination_grace_exceeds_prestop_and_drain():
    for values in SCENARIOS.values():
        merged_values = _deep_merge(yaml.safe_load((c.CHART / "values.yaml").read_text()), values)
        objs = render_objects(values)
        spec = deployment(objs)["spec"]["template"]["spec"]
        pause = ingest_container(objs)["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = merged_values["config"]["shutdownDelaySecs"] + merged_values["config"]["shutdownGraceSecs"]
        assert pause == merged_values["preStopSleepSeconds"] and pause > 0
        # The chart refuses a set value not above this (2 s for the admin listener).
        assert spec["terminationGracePeriodSeconds"] > pause + drain + 2
        if not merged_values["terminationGracePeriodSeconds"]:
            assert spec["terminationGracePeriodSeconds"] == pause + drain + GRACE_MARGIN
        env = c.find(objs, "ConfigMap", c.RELEASE)[0]["data"]
        assert env["INGEST_SHUTDOWN_GRACE"] == f"{merged_values['config']['shutdownGraceSecs']}s"


def test_derived_grace_margin_outlasts_the_telemetry_flush():
    spec = deployment(render_objects(MINIMAL))["spec"]["template"]["spec"]
    # Defaults: preStop 5 + shutdownDelaySecs 0 + shutdownGraceSecs 25 + margin 15.
    margin = spec["terminationGracePeriodSeconds"] - (5 + 0 + 25)
    assert margin == GRACE_MARGIN
    # ingest's own admin drain, read from its source (a longer one must grow the margin), plus
    # the 5 s the OpenTelemetry SDK's batch processor waits for its final export.
    lib = (c.REPO / "services/ingest/src/lib.rs").read_text()
    admin_drain = int(re.search(
        r"pub const ADMIN_DRAIN: Duration = Duration::from_secs\((\d+)\);", lib).group(1))
    assert margin > admin_drain + 5
    readme = (c.CHART / "README.md").read_text()
    assert f"sum plus {GRACE_MARGIN} s" in readme


def test_zero_prestop_renders_no_hook():
    # Kubernetes < 1.33 refuses a preStop sleep of 0 seconds.
    objs = render_objects(_deep_merge(MINIMAL, {"preStopSleepSeconds": 0}))
    assert "lifecycle" not in ingest_container(objs)
    assert deployment(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == \
        0 + 25 + GRACE_MARGIN
    assert ingest_container(render_objects(MINIMAL))["lifecycle"]["preStop"]["sleep"]["seconds"] == 5


def test_pods_spread_across_zones():
    spec = deployment(render_objects(MINIMAL))["spec"]["template"]["spec"]
    keys = [t["topologyKey"] for t in spec["topologySpreadConstraints"]]
    assert "topology.kubernetes.io/zone" in keys
    for t in spec["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "ingest"
    off = _deep_merge(MINIMAL, {"topologySpread": {"enabled": False}})
    assert "topologySpreadConstraints" not in deployment(render_objects(off))["spec"]["template"]["spec"]


def test_irsa_role_annotation_on_service_account():
    objs = render_objects(PRODUCTION)
    sa = c.find(objs, "ServiceAccount")
    assert len(sa) == 1
    assert sa[0]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
        PRODUCTION["serviceAccount"]["roleArn"]
    assert deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"] == sa[0]["metadata"]["name"]
    # No role, no annotation.
    sa_min = c.find(render_objects(MINIMAL), "ServiceAccount")[0]
    assert "eks.amazonaws.com/role-arn" not in (sa_min["metadata"].get("annotations") or {})


def test_ingress_routes_only_the_events_path_to_the_public_port():
    objs = render_objects(PRODUCTION)
    public = c.find(objs, "Service", c.RELEASE)[0]
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    admin = c.find(objs, "Service", f"{c.RELEASE}-admin")[0]
    assert [p["targetPort"] for p in admin["spec"]["ports"]] == ["admin"]
    ingresses = c.find(objs, "Ingress")
    assert len(ingresses) == 1
    ing = ingresses[0]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert ing["spec"]["tls"][0]["hosts"] == ["events.example.com"]
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == public["metadata"]["name"]
            assert backend["port"] == {"name": "http"}
            assert not path["path"].startswith(("/metrics", "/healthz", "/readyz"))
            if path["pathType"] != "Exact":
                assert not "/metrics".startswith(path["path"])


def test_api_keys_secret_created_or_existing():
    created = render_objects(MINIMAL)
    secrets = c.find(created, "Secret")
    assert len(secrets) == 1 and "api-keys" in secrets[0]["data"]
    vol = next(v for v in deployment(created)["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert vol["secret"]["secretName"] == secrets[0]["metadata"]["name"]

    existing = render_objects(SCENARIOS["existing-secret-values"])
    assert c.find(existing, "Secret") == []
    vol = next(v for v in deployment(existing)["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert vol["secret"]["secretName"] == "ingest-keys-from-vault"
    assert vol["secret"]["items"][0]["key"] == "api-keys.txt"
    env = c.find(existing, "ConfigMap", c.RELEASE)[0]["data"]
    assert env["INGEST_API_KEYS_FILE"] == "/etc/ingest/api-keys/keys"
    # The key never appears outside the Secret.
    text = c.manifest_text(c.render(_deep_merge(MINIMAL, {"apiKeys": {"keys": "s3cr3t-key-xyz"}})))
    assert "s3cr3t-key-xyz" not in text


def test_config_env_names_are_ones_ingest_reads():
    sources = list((c.REPO / "services" / "ingest" / "src").rglob("*.rs"))
    assert sources, "services/ingest/src is missing"
    known = set()
    for src in sources:
        known |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', src.read_text()))
    # Read by aws-config, not clap (the credentials only in firehoseLocal mode).
    known |= {"AWS_ENDPOINT_URL_FIREHOSE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for values in SCENARIOS.values():
        env = c.find(render_objects(values), "ConfigMap", c.RELEASE)[0]["data"]
        unknown = sorted(set(env) - known)
        assert not unknown, f"ConfigMap sets variables ingest does not read: {unknown}"


def test_the_event_size_cap_reaches_ingest():
    def env(values):
        return c.find(render_objects(values), "ConfigMap", c.RELEASE)[0]["data"]
    assert env(MINIMAL)["INGEST_MAX_EVENT_BYTES"] == "1023999"
    lowered = _deep_merge(MINIMAL, {"config": {"maxEventBytes": 131072}})
    assert env(lowered)["INGEST_MAX_EVENT_BYTES"] == "131072"


def test_only_firehose_local_mode_gets_dummy_aws_credentials():
    # firehose-local checks no signatures, but with a stream configured ingest uses the SDK's
    # default credential chain: without credentials in the environment it would try IMDS and
    # never become ready on kind/minikube.
    dev = SCENARIOS["dev-firehose-local-values"]
    assert dev["firehoseLocal"]["enabled"] is True
    env = c.find(render_objects(dev), "ConfigMap", c.RELEASE)[0]["data"]
    assert env["AWS_ACCESS_KEY_ID"] == "local" and env["AWS_SECRET_ACCESS_KEY"] == "local"
    assert container_env(render_objects(dev))["AWS_REGION"] == "us-east-1"
    # No region set: firehose-local serves any, but the SDK needs one.
    no_region = _deep_merge(dev, {"config": {"region": ""}})
    assert container_env(render_objects(no_region))["AWS_REGION"] == "us-east-1"
    for name, values in SCENARIOS.items():
        if (values.get("firehoseLocal") or {}).get("enabled"):
            continue
        text = c.manifest_text(c.render(values))
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text, name
    # Without firehose-local and without a region, no AWS_REGION is invented.
    no_region = _deep_merge(MINIMAL, {"config": {"region": ""}})
    assert "AWS_REGION" not in container_env(render_objects(no_region))
    assert "AWS_REGION" not in c.find(render_objects(no_region), "ConfigMap", c.RELEASE)[0]["data"]


def container_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The ingest container's own `env` (name -> value), which wins over its `envFrom`."""
    return {e["name"]: e.get("value", "") for e in ingest_container(objs).get("env", [])}


def test_the_chart_takes_globals_as_a_dependency_gets_them():
    # Helm adds `global` to a dependency's values; a schema refusing it broke the chart inside
    # an umbrella chart (helper-75, M5).
    c.validate_schema(_deep_merge(MINIMAL, {"global": {"imageRegistry": "example.com"}}))
    render_objects(_deep_merge(MINIMAL, {"global": {"imageRegistry": "example.com"}}))


def test_app_version_is_the_workspace_version():
    # ingest_build_info reports the crate's version; the chart's appVersion (the default image
    # tag) must name the same release.
    cargo = (c.REPO / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    chart = yaml.safe_load((c.CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version


def test_values_the_cluster_would_refuse_or_crash_on_are_refused_at_render():
    # helper-85: one port for both listeners crash-loops the pod; min above max replicas is
    # refused by the API server after the rest of the release was applied.
    with pytest.raises(helm.HelmError, match="ports.http and ports.admin are both 9090"):
        c.render(_deep_merge(MINIMAL, {"ports": {"http": 9090}}))
    cpu = {"resources": {"requests": {"cpu": "500m"}}}
    too_few = {**cpu, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}
    with pytest.raises(helm.HelmError, match=r"minReplicas \(5\) is above autoscaling.maxReplicas \(3\)"):
        c.render(_deep_merge(MINIMAL, too_few))
    equal = {**cpu, "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 3}}
    assert c.find(render_objects(_deep_merge(MINIMAL, equal)), "HorizontalPodAutoscaler")
    # ingest refuses any duration over 7 days (MAX_DURATION): the pod would crash-loop.
    with pytest.raises(helm.HelmError, match=r"config.apiKeysReload \(10081m\) is longer than 7 days"):
        c.render(_deep_merge(MINIMAL, {"config": {"apiKeysReload": "10081m"}}))
    week = _deep_merge(MINIMAL, {"config": {"apiKeysReload": "10080m"}})
    assert c.find(render_objects(week), "Deployment")
    # A timeout equal to the interval, and alerts with a scrape every 75 s (1m15s), render.
    edge = {"serviceMonitor": {"enabled": True, "interval": "1m15s", "scrapeTimeout": "75000ms"},
            "prometheusRule": {"enabled": True}}
    objects = render_objects(_deep_merge(MINIMAL, edge))
    endpoint = c.find(objects, "ServiceMonitor")[0]["spec"]["endpoints"][0]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("1m15s", "75000ms")
    assert c.find(objects, "PrometheusRule")
    # The short no-traffic window does not count when that alert is off.
    quiet = {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s"},
             "prometheusRule": {"enabled": True, "thresholds": {"noTrafficFor": "1m"},
                                "disabled": {"IngestNoTraffic": True}}}
    assert c.find(render_objects(_deep_merge(MINIMAL, quiet)), "PrometheusRule")
    # Without the alerts a long interval is the user's choice.
    slow = {"serviceMonitor": {"enabled": True, "interval": "5m", "scrapeTimeout": "10s"}}
    assert c.find(render_objects(_deep_merge(MINIMAL, slow)), "ServiceMonitor")


def test_an_empty_admin_from_is_refused_not_opened_to_everyone():
    # `from: []` in a NetworkPolicy rule means every peer (helper-75, M3).
    with pytest.raises(helm.HelmError, match="networkPolicy.adminFrom is empty"):
        c.render(_deep_merge(MINIMAL, {"networkPolicy": {"adminFrom": []}}))
    off = _deep_merge(MINIMAL, {"networkPolicy": {"enabled": False, "adminFrom": []}})
    assert not c.find(render_objects(off), "NetworkPolicy", c.RELEASE)


def test_the_region_is_in_the_container_env_where_the_eks_webhook_cannot_override_it():
    # The pod identity webhook adds the cluster's AWS_REGION and AWS_DEFAULT_REGION to env unless
    # env names them, and env wins over envFrom (aws/amazon-eks-pod-identity-webhook#248): in
    # the ConfigMap, a stream in another region than the cluster was never found.
    values = _deep_merge(MINIMAL, {"config": {"region": "eu-west-1"}})
    objs = render_objects(values)
    env = container_env(objs)
    assert env["AWS_REGION"] == "eu-west-1" and env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_REGION" not in c.find(objs, "ConfigMap", c.RELEASE)[0]["data"]
    # extraEnv that names one keeps its own value, and the name appears once.
    extra = [{"name": "AWS_REGION", "value": "us-west-2"}, {"name": "OTHER", "value": "x"}]
    objs = render_objects(_deep_merge(values, {"extraEnv": extra}))
    names = [e["name"] for e in ingest_container(objs)["env"]]
    assert names.count("AWS_REGION") == 1 and "OTHER" in names, names
    env = container_env(objs)
    assert env["AWS_REGION"] == "us-west-2" and env["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_firehose_local_env_names_are_ones_it_reads():
    known = set()
    for src in (c.REPO / "services" / "firehose-local" / "src").rglob("*.rs"):
        known |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', src.read_text()))
    assert known, "services/firehose-local/src declares no env variables"
    dep = c.find(render_objects(SCENARIOS["dev-firehose-local-values"]), "Deployment",
                 f"{c.RELEASE}-firehose-local")[0]
    env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env <= known, f"firehose-local does not read {sorted(env - known)}"


def test_hpa_pdb_networkpolicy():
    objs = render_objects(PRODUCTION)
    hpa = c.find(objs, "HorizontalPodAutoscaler")[0]
    kinds = [m["type"] for m in hpa["spec"]["metrics"]]
    assert kinds == ["Resource", "Pods"]
    assert "replicas" not in deployment(objs)["spec"]
    pdb = c.find(objs, "PodDisruptionBudget")[0]["spec"]
    assert pdb["maxUnavailable"] == 1
    # Running but unready pods may always be evicted: an all-unready fleet never blocks a drain.
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    other = _deep_merge(MINIMAL, {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"}})
    assert c.find(render_objects(other), "PodDisruptionBudget")[0]["spec"]["unhealthyPodEvictionPolicy"] \
        == "IfHealthyBudget"
    assert "unhealthyPodEvictionPolicy" in (c.CHART / "README.md").read_text()
    np_ = c.find(objs, "NetworkPolicy")[0]["spec"]
    # By number: the EKS VPC CNI's controller has had bugs resolving named ports.
    ports = {p["name"]: p["containerPort"] for p in ingest_container(objs)["ports"]}
    assert sorted(r["ports"][0]["port"] for r in np_["ingress"]) == sorted(ports.values())
    admin_rule = next(r for r in np_["ingress"] if r["ports"][0]["port"] == ports["admin"])
    assert admin_rule["from"], "the admin port must not be open to everyone"
    assert c.find(render_objects(MINIMAL), "HorizontalPodAutoscaler") == []


def test_monitoring_objects_are_off_by_default_and_switched_by_values():
    default = render_objects(MINIMAL)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert c.find(default, kind) == []
    assert not [cm for cm in c.find(default, "ConfigMap") if "dashboard" in cm["metadata"]["name"]]
    prod = render_objects(PRODUCTION)
    sm = c.find(prod, "ServiceMonitor")[0]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "admin"
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "admin"
    admin = c.find(prod, "Service", f"{c.RELEASE}-admin")[0]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert admin["metadata"]["labels"][k] == v
    public = c.find(prod, "Service", c.RELEASE)[0]
    assert public["metadata"]["labels"]["app.kubernetes.io/component"] != "admin"
    assert c.find(prod, "PrometheusRule")[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_a_long_release_name_keeps_every_name_valid_and_the_alerts_on_the_admin_job():
    release = "r" * 62  # fullname: "<release>-ingest" cut to 63 characters
    for values in (SCENARIOS["dev-firehose-local-values"],
                   _deep_merge(PRODUCTION, {"dashboards": {"enabled": True}})):
        objs = c.objects(c.render(values, name=release))
        names = [(o["kind"], o["metadata"]["name"]) for o in objs]
        for kind, name in names:
            assert len(name) <= 63, (kind, name)
        # Cut after their suffix, the dashboards' ConfigMaps (and firehose-local's objects)
        # took one another's names, or the main ones' (helper-75, M4).
        assert len(names) == len(set(names)), sorted(names)
    objs = c.objects(c.render(PRODUCTION, name=release))
    admin = [s for s in c.find(objs, "Service")
             if s["metadata"]["labels"].get("app.kubernetes.io/component") == "admin"]
    assert len(admin) == 1
    name = admin[0]["metadata"]["name"]
    assert name.endswith("-admin") and len(name) <= 63, name
    rules = c.find(objs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]
    assert all(f'job="{name}"' in r["expr"] for r in rules if "expr" in r), \
        "every alert selects the admin Service's job"


def test_dashboards_configmaps_carry_the_sidecar_label():
    prod = render_objects(PRODUCTION)
    cms = [cm for cm in c.find(prod, "ConfigMap") if "dashboard" in cm["metadata"]["name"]]
    assert sorted(k for cm in cms for k in cm["data"]) == sorted(f"{n}.json" for n in c.dashboards())
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Ingest"
        for text in cm["data"].values():
            assert json.loads(text)["uid"]
    custom = _deep_merge(MINIMAL, {"dashboards": {"enabled": True, "label": "my_dash", "labelValue": "yes"}})
    cms = [cm for cm in c.find(render_objects(custom), "ConfigMap") if "dashboard" in cm["metadata"]["name"]]
    assert cms and all(cm["metadata"]["labels"]["my_dash"] == "yes" for cm in cms)


def test_dev_scenario_points_ingest_at_firehose_local():
    objs = render_objects(SCENARIOS["dev-firehose-local-values"])
    env = c.find(objs, "ConfigMap", c.RELEASE)[0]["data"]
    svc = c.find(objs, "Service", f"{c.RELEASE}-firehose-local")[0]
    port = svc["spec"]["ports"][0]["port"]
    url = f"http://{svc['metadata']['name']}.{c.NAMESPACE}.svc:{port}"
    assert env["AWS_ENDPOINT_URL_FIREHOSE"] == url
    # Never the global override: it would also move STS, which IRSA needs
    # (services/ingest/tests/it/binary.rs proves the Firehose-only variable is enough).
    assert "AWS_ENDPOINT_URL" not in env
    assert env["FIREHOSE_DELIVERY_STREAM"] == "dev-events"
    minimal = c.find(render_objects(MINIMAL), "ConfigMap", c.RELEASE)[0]["data"]
    assert not {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_FIREHOSE"} & set(minimal)


def test_notes_tell_how_to_send_the_first_event():
    notes = c.render(MINIMAL)["ingest/templates/NOTES.txt"]
    assert "curl" in notes and "/v1/events" in notes and "Authorization: Bearer" in notes
    notes = c.render(PRODUCTION)["ingest/templates/NOTES.txt"]
    assert "https://events.example.com/v1/events" in notes


def test_notes_warn_when_the_events_port_is_open_to_the_cluster():
    # ingest relies on the ingress for client timeouts (its README): an events port every pod
    # can reach, or one exposed without the ingress, is said at install (helper-85).
    open_port = "WARNING: every pod in the cluster can reach the events port"
    no_ingress = "exposes the events port without the ingress"
    notes = c.render(MINIMAL)["ingest/templates/NOTES.txt"]
    assert open_port in notes and "networkPolicy.httpFrom is empty" in notes
    assert no_ingress not in notes
    notes = c.render(PRODUCTION)["ingest/templates/NOTES.txt"]
    assert open_port not in notes and no_ingress not in notes
    off = _deep_merge(PRODUCTION, {"networkPolicy": {"enabled": False}})
    assert "networkPolicy.enabled=false" in c.render(off)["ingest/templates/NOTES.txt"]
    lb = _deep_merge(PRODUCTION, {"service": {"type": "LoadBalancer"}})
    assert "service.type=LoadBalancer " + no_ingress in c.render(lb)["ingest/templates/NOTES.txt"]


# ---------------------------------------------------------------- dashboards and alerts (static)


def test_front_door_dashboard_uses_only_contract_metrics_and_shows_them_all():
    contract = c.contract_metrics()
    assert len(contract) >= 15, "docs/metrics.md table not found"
    used = set()
    for panel in c.panels(c.dashboards()["ingest-front-door"]):
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            names = {c.family(n) for n in c.metric_names(target["expr"])}
            assert names, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
            stray = names - contract - {"up"}
            assert not stray, f"panel {panel['title']!r} uses metrics outside docs/metrics.md: {stray}"
            used |= names
    assert contract - used == set(), f"contract metrics with no panel: {contract - used}"


AWS_METRICS = {
    # firehose-facts.md section 7 (AWS/Firehose, dimension DeliveryStreamName).
    "AWS/Firehose": {
        "DeliveryToHttpEndpoint.Bytes", "DeliveryToHttpEndpoint.Records",
        "DeliveryToHttpEndpoint.DataFreshness", "DeliveryToHttpEndpoint.Success",
        "ExecuteProcessing.Duration", "ExecuteProcessing.Success", "SucceedProcessing.Records",
        "BackupToS3.Records", "BackupToS3.Success", "IncomingRecords", "IncomingBytes",
        "ThrottledRecords", "BytesPerSecondLimit",
    },
    # Standard Lambda function metrics (dimension FunctionName).
    "AWS/Lambda": {"Errors", "Throttles", "Invocations", "Duration"},
    # The transform's own EMF metrics (services/transform/src/telemetry.rs, `Emf::line`;
    # dimensions FunctionName and DeliveryStream).
    "FirehoseTransform": {
        "Records", "Ok", "OkLines", "OkBrokenObject", "Dropped", "Failed",
        "FailedInvalidBase64", "FailedInvalidUtf8", "FailedGzipCompressed",
        "UnenrichedOverBudget", "UnenrichedOverRecordLimit", "ResponseBytes",
    },
}

# The dimensions each namespace's panels must query by.
AWS_DIMENSIONS = {
    "AWS/Firehose": ["DeliveryStreamName"],
    "AWS/Lambda": ["FunctionName"],
    "FirehoseTransform": ["FunctionName", "DeliveryStream"],
}


def test_transform_metrics_listed_here_are_the_ones_it_writes():
    source = (c.REPO / "services" / "transform" / "src" / "telemetry.rs").read_text()
    written = set(re.findall(r'\(\s*"([A-Za-z0-9]+)",\s*"(?:Count|Bytes)",\s*stats\.', source))
    assert written == AWS_METRICS["FirehoseTransform"], written ^ AWS_METRICS["FirehoseTransform"]
    assert 'pub const EMF_NAMESPACE: &str = "FirehoseTransform";' in source


def test_aws_dashboard_uses_cloudwatch_and_documented_metrics():
    dash = c.dashboards()["ingest-aws"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["cloudwatch"]["type"] == "datasource" and variables["cloudwatch"]["query"] == "cloudwatch"
    seen = set()
    for panel in c.panels(dash):
        for t in panel["targets"]:
            assert t["datasource"] == {"type": "cloudwatch", "uid": "${cloudwatch}"}
            assert t["metricName"] in AWS_METRICS[t["namespace"]], t["metricName"]
            assert list(t["dimensions"]) == AWS_DIMENSIONS[t["namespace"]], t
            seen.add(t["metricName"])
    for needed in ("DeliveryToHttpEndpoint.Success", "DeliveryToHttpEndpoint.DataFreshness",
                   "BackupToS3.Records", "ExecuteProcessing.Success", "ExecuteProcessing.Duration",
                   "Errors", "FailedInvalidBase64", "FailedGzipCompressed", "OkBrokenObject"):
        assert needed in seen, needed


def test_alerts_cover_the_issue_and_link_a_runbook_section():
    rules = c.alerts(c.monitoring_values())
    names = {r["alert"] for r in rules}
    assert {"IngestHighErrorRatio", "IngestHighLatencyP99", "IngestFirehoseFailures",
            "IngestFirehoseRecordsUnaccepted", "IngestFirehoseUnacceptedRatio",
            "IngestLoadShedding", "IngestNoTraffic", "IngestPodsDown"} <= names
    readme = (c.CHART / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}
        anchor = r["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == r["alert"].lower()
        assert anchor in anchors, f"README has no runbook section for {r['alert']}"
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_alerts_are_scoped_to_the_release_and_use_contract_metrics():
    contract = c.contract_metrics() | {"up"}
    for r in c.alerts(c.monitoring_values()):
        assert f'job="{c.RELEASE}-admin"' in r["expr"] and f'namespace="{c.NAMESPACE}"' in r["expr"]
        names = {c.family(n) for n in c.metric_names(r["expr"])}
        assert names and names <= contract, (r["alert"], names - contract)


def test_alert_thresholds_come_from_values():
    rules = {r["alert"]: r for r in c.alerts(c.monitoring_values(
        errorRatio=0.25, minRequestsPerSecond=7, latencyP99Seconds=3, unacceptedRatio=0.125))}
    ratio = rules["IngestHighErrorRatio"]["expr"]
    assert "> 0.25\n" in ratio and ratio.rstrip().endswith(">= 7"), ratio
    assert rules["IngestHighLatencyP99"]["expr"].rstrip().endswith("> 3")
    assert rules["IngestFirehoseUnacceptedRatio"]["expr"].rstrip().endswith("> 0.125")


@pytest.mark.parametrize("memory", ["576Mi", "0.5625Gi", "604M", "603979776", 603979776])
def test_a_memory_limit_that_covers_the_in_flight_cap_renders(memory):
    # 2 x 256 MiB + 64 MiB = 576 MiB = 603,979,776 bytes, in each unit.
    c.render(_deep_merge(MINIMAL, {"resources": {"limits": {"memory": memory}}}))


def test_listeners_bind_ipv6_when_asked():
    def env(values: dict[str, Any]) -> dict[str, str]:
        maps = c.find(c.objects(c.render(values)), "ConfigMap")
        return next(m["data"] for m in maps if "INGEST_LISTEN" in m.get("data", {}))

    assert env(MINIMAL)["INGEST_LISTEN"] == "0.0.0.0:8080"
    six = env(_deep_merge(MINIMAL, {"ports": {"bindAddress": "::", "admin": 9191}}))
    # ingest parses these as Rust socket addresses: an IPv6 one needs its brackets.
    assert (six["INGEST_LISTEN"], six["INGEST_ADMIN_LISTEN"]) == ("[::]:8080", "[::]:9191")


def test_alerts_can_be_left_out_by_name():
    every = {r["alert"] for r in c.alerts(c.monitoring_values())}
    values = c.monitoring_values()
    values["prometheusRule"]["disabled"] = {"IngestNoTraffic": True, "IngestHighLatencyP99": False}
    c.validate_schema(values)
    left = {r["alert"] for r in c.alerts(values)}
    assert left == every - {"IngestNoTraffic"}, every ^ left
    # The schema's list of names is the template's: each one can be left out.
    names = json.loads((c.CHART / "values.schema.json").read_text())[
        "properties"]["prometheusRule"]["properties"]["disabled"]["propertyNames"]["enum"]
    assert set(names) == every


def test_readme_values_table_lists_every_key():
    schema = json.loads((c.CHART / "values.schema.json").read_text())
    leaves = []

    def walk(s: dict[str, Any], path: str) -> None:
        for k, sub in s.get("properties", {}).items():
            p = f"{path}.{k}" if path else k
            if sub.get("type") == "object" and sub.get("additionalProperties") is False:
                walk(sub, p)
            else:
                leaves.append(p)

    walk(schema, "")
    readme = (c.CHART / "README.md").read_text()
    missing = [k for k in leaves if f"| `{k}` |" not in readme]
    assert not missing, f"README values table misses: {missing}"


def _schema_has(path: str) -> bool:
    node = json.loads((c.CHART / "values.schema.json").read_text())
    for key in path.split("."):
        props = node.get("properties")
        if not props or key not in props:
            return False
        node = props[key]
    return True


def test_skaffold_deploys_the_chart_with_the_built_images():
    cfg = yaml.safe_load((c.REPO / "skaffold.yaml").read_text())
    assert cfg["apiVersion"].startswith("skaffold/v4")
    configs = [("default", cfg["build"], cfg["deploy"])]
    configs += [(p["name"], p["build"], p["deploy"]) for p in cfg.get("profiles", [])]
    for name, build, deploy in configs:
        # Skaffold turns `.`, `-` and `/` of image names into `_` in template keys.
        images = {re.sub(r"[./-]", "_", a["image"]) for a in build["artifacts"]}
        for a in build["artifacts"]:
            assert a["docker"]["dockerfile"] == "Dockerfile"
        for release in deploy["helm"]["releases"]:
            assert release["chartPath"] == "charts/ingest"
            templates = release.get("setValueTemplates", {})
            for key in list(templates) + list(release.get("setValues", {})):
                assert _schema_has(key), f"profile {name}: {key} is not a chart value"
            used = set(re.findall(r"IMAGE_(?:REPO|TAG|DIGEST)_(\w+)", " ".join(templates.values())))
            assert used == images, f"profile {name}: templates use {used}, artifacts are {images}"
            assert templates["image.repository"] == "{{.IMAGE_REPO_ingest}}"
            # The image built, by digest: a digest from a values file would deploy that image
            # instead, and a tag alone can name an older build of the same tag on a node.
            if name == "default":
                assert "image.digest" not in release.get("setValues", {})
                assert templates["image.digest"] == \
                    "{{if .IMAGE_DIGEST_ingest}}{{.IMAGE_DIGEST_ingest}}{{end}}"
    dev = next(p for p in cfg["profiles"] if p["name"] == "dev")
    release = dev["deploy"]["helm"]["releases"][0]
    # Dev deploys exactly the chart's dev scenario (what the README says and these tests render).
    assert release["valuesFiles"] == ["charts/ingest/ci/dev-firehose-local-values.yaml"]
    assert not release.get("setValues"), "dev values belong in ci/dev-firehose-local-values.yaml"
    bins = {a["image"]: a["docker"]["buildArgs"]["BIN"] for a in dev["build"]["artifacts"]}
    assert bins == {"ingest": "ingest", "firehose-local": "firehose-local"}
    values = yaml.safe_load((c.REPO / release["valuesFiles"][0]).read_text())
    assert values["firehoseLocal"]["enabled"] is True
    c.validate_schema(values)
    assert c.find(render_objects(values), "Deployment", f"{c.RELEASE}-firehose-local")
    readme = (c.CHART / "README.md").read_text()
    assert "`skaffold dev -p dev`" in readme and "ci/dev-firehose-local-values.yaml" in readme


def test_alb_targets_are_health_checked_on_the_admin_port():
    # ingest answers GET / with 405, so the ALB's default check (GET / on the traffic port,
    # expecting 200) would mark every target unhealthy. Any scenario with an ALB ingress must
    # point the check at /readyz on the admin port and let the VPC reach that port.
    albs = 0
    for name, values in SCENARIOS.items():
        objs = render_objects(values)
        for ing in c.find(objs, "Ingress"):
            if ing["spec"].get("ingressClassName") != "alb":
                continue
            albs += 1
            ann = ing["metadata"]["annotations"]
            admin_port = ingest_container(objs)["ports"][1]
            assert admin_port["name"] == "admin"
            assert ann["alb.ingress.kubernetes.io/healthcheck-port"] == str(admin_port["containerPort"]), name
            assert ann["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz", name
            np_ = c.find(objs, "NetworkPolicy", c.RELEASE)[0]["spec"]
            http_port = ingest_container(objs)["ports"][0]["containerPort"]
            http_rule = next(r for r in np_["ingress"] if r["ports"][0]["port"] == http_port)
            admin_rule = next(r for r in np_["ingress"]
                              if r["ports"][0]["port"] == admin_port["containerPort"])
            alb_blocks = [p["ipBlock"] for p in http_rule.get("from", []) if "ipBlock" in p]
            assert alb_blocks, f"{name}: the ALB's addresses are not in networkPolicy.httpFrom"
            for block in alb_blocks:
                assert {"ipBlock": block} in admin_rule["from"], \
                    f"{name}: the ALB cannot reach the admin port for its health checks"
            # Prometheus still reaches it too.
            assert any("namespaceSelector" in p for p in admin_rule["from"]), name
            # The ALB deregisters slowly: the preStop pause must cover it.
            assert ingest_container(objs)["lifecycle"]["preStop"]["sleep"]["seconds"] >= 15, name
    assert albs, "no scenario exercises an ALB ingress"
    readme = (c.CHART / "README.md").read_text()
    assert "elbv2.k8s.aws/pod-readiness-gate-inject" in readme


def test_values_do_not_claim_prestop_covers_load_balancers():
    text = (c.CHART / "values.yaml").read_text() + (c.CHART / "values.schema.json").read_text()
    assert "already covers endpoint removal" not in text
    assert "target-type ip" in text


def test_extra_env_documents_the_egress_needed_for_otlp():
    values_text = (c.CHART / "values.yaml").read_text()
    block = values_text[values_text.index("OTEL_EXPORTER_OTLP_ENDPOINT") - 200:values_text.index("extraEnv: []")]
    assert "networkPolicy.egress" in block and "4318" in block
    rule = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "otel"}}}],
            "ports": [{"port": 4318, "protocol": "TCP"}]}
    values = _deep_merge(MINIMAL, {"networkPolicy": {"egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}, rule]}})
    egress = c.find(render_objects(values), "NetworkPolicy", c.RELEASE)[0]["spec"]["egress"]
    assert rule in egress


def test_runbook_url_is_rendered_as_a_string():
    # Unquoted, a URL with ": " (or an empty one, now refused by the schema) broke the YAML.
    url = "https://wiki.example.com/Ingest: runbooks"
    values = c.monitoring_values()
    values["prometheusRule"]["runbookUrl"] = url
    for r in c.alerts(values):
        assert r["annotations"]["runbook_url"] == f"{url}#{r['alert'].lower()}"


def test_dockerfile_builds_ingest_without_the_embedded_firehose():
    text = (c.REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG CARGO_FEATURE_FLAGS=--no-default-features$", text, re.M)
    cook = re.search(r"^RUN cargo chef cook .*?(?<!\\)$", text, re.M | re.S)
    build = re.search(r"^RUN cargo build .*?(?<!\\)$", text, re.M | re.S)
    assert cook and build
    for step in (cook.group(0), build.group(0)):
        assert "--locked" in step, step
        assert "${CARGO_FEATURE_FLAGS}" in step, step
        assert '--package "${BIN}"' in step, step
    # The embedded Firehose is what ingest's default features add.
    cargo = (c.REPO / "services" / "ingest" / "Cargo.toml").read_text()
    assert 'default = ["embedded"]' in cargo
    # firehose-local (the dev image, BIN=firehose-local) has no default features to lose.
    assert "[features]" not in (c.REPO / "services" / "firehose-local" / "Cargo.toml").read_text()


def test_prometheus_stage_alone_builds_ingest_before_testing_it(tmp_path):
    # Run the script with stub tools: alone (no INGEST_BIN) it must call `cargo build` even
    # though a binary exists already in its target dir (a stale binary would be tested
    # otherwise); the stub cargo fails, which must stop the stage there. With INGEST_BIN it
    # must not build, and a path that is not an executable is refused.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "cargo-calls"
    (stubs / "cargo").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 3\n')
    for tool in ("prometheus", "promtool", "wrk"):
        (stubs / tool).write_text("#!/bin/sh\nexit 0\n")
    for f in stubs.iterdir():
        f.chmod(0o755)
    target = tmp_path / "target"
    (target / "debug").mkdir(parents=True)
    (target / "debug" / "ingest").write_text("#!/bin/sh\nexit 0\n")
    (target / "debug" / "ingest").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("INGEST_BIN", "CI", "MOTO_ENDPOINT")}
    env.setdefault("TOOLS_VENV", sys.prefix)
    # The venv's bin already on PATH (after the stubs), so env.sh does not put it in front.
    env["PATH"] = f"{stubs}:{env['TOOLS_VENV']}/bin:{env['PATH']}"
    env["CARGO_TARGET_DIR"] = str(target)
    script = str(c.REPO / "scripts" / "test-prometheus.sh")
    alone = subprocess.run(["bash", script], env=env, capture_output=True, text=True, check=False)
    assert alone.returncode == 3, alone.stdout + alone.stderr
    assert calls.read_text().splitlines() == ["build -p ingest --locked"]
    calls.unlink()
    given = subprocess.run(["bash", script], env={**env, "INGEST_BIN": str(tmp_path / "none")},
                           capture_output=True, text=True, check=False)
    assert given.returncode == 1 and "is not an executable" in given.stderr, given.stderr
    assert not calls.exists()


def test_aws_dashboard_plots_bytes_per_second_against_the_limit():
    # IncomingBytes is a Sum per period; BytesPerSecondLimit is per second. On one axis the
    # incoming side must be metric math over the period.
    for panel in c.panels(c.dashboards()["ingest-aws"]):
        limit = [t for t in panel["targets"] if t.get("metricName") == "BytesPerSecondLimit"
                 and t.get("metricEditorMode", 0) == 0]
        if not limit:
            continue
        ids = {t["id"]: t for t in panel["targets"] if t.get("id")}
        visible = [t for t in panel["targets"] if not t.get("hide") and t not in limit]
        assert visible, panel["title"]
        for t in visible:
            assert t["metricEditorMode"] == 1, f"{panel['title']}: {t['refId']} is not per second"
            m = re.fullmatch(r"(\w+)/PERIOD\(\1\)", t["expression"].replace(" ", ""))
            assert m, t["expression"]
            source = ids[m.group(1)]
            assert source["metricName"] == "IncomingBytes" and source["statistic"] == "Sum"
            assert source["hide"] is True
        assert panel["fieldConfig"]["defaults"]["unit"] == "Bps"
        return
    pytest.fail("no panel plots BytesPerSecondLimit")


def test_readme_names_dashboard_panels_that_exist():
    titles = {p["title"] for d in c.dashboards().values() for p in c.panels(d)}
    dash_titles = [d["title"] for d in c.dashboards().values()]
    readme = (c.CHART / "README.md").read_text()
    named = {m for m in re.findall(r"\*([A-Z][^*]*[^:*])\*", readme)}
    assert "Request latency" in named
    for name in named:
        assert name in titles or any(t.startswith(name) for t in dash_titles), \
            f"README names a panel or dashboard {name!r} that does not exist"


def test_docs_name_real_terraform_outputs():
    outputs = set(re.findall(r'^output "([a-z_]+)"', (c.REPO / "terraform" / "outputs.tf").read_text(), re.M))
    assert "irsa_role_arn" in outputs
    for path in (c.REPO / "skaffold.yaml", c.CHART / "README.md", c.CHART / "values.yaml"):
        for name in set(re.findall(r"\b[a-z]+(?:_[a-z]+)*_(?:arn|name)\b", path.read_text())):
            assert name in outputs, f"{path.name} names Terraform output {name}, which does not exist"


def test_docs_list_every_firehose_action_the_role_needs():
    granted = set(re.findall(r'"firehose:(\w+)"', (c.REPO / "terraform" / "irsa.tf").read_text()))
    # ingest calls PutRecordBatch for events and DescribeDeliveryStream for /readyz.
    needed = {"PutRecordBatch", "DescribeDeliveryStream"}
    assert needed <= granted
    schema = json.loads((c.CHART / "values.schema.json").read_text())
    texts = {
        "values.schema.json": schema["properties"]["serviceAccount"]["properties"]["roleArn"]["description"],
        "values.yaml": (c.CHART / "values.yaml").read_text(),
        "README.md values table": next(line for line in (c.CHART / "README.md").read_text().splitlines()
                                        if line.startswith("| `serviceAccount.roleArn`")),
    }
    for where, text in texts.items():
        for action in needed:
            assert f"firehose:{action}" in text, f"{where} does not name firehose:{action}"
