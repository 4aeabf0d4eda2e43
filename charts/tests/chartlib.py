"""Renders the ingest chart with the real Helm engine (helm-python-sdk) for the chart tests.

One place that knows where the chart, its CI scenarios and its dashboards are, and how to turn
values into Kubernetes objects, so `test_chart.py` (static checks) and `prometheus_live.py`
(PromQL against a real Prometheus) test exactly what `helm install` would ship.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ingest"
CI_DIR = CHART / "ci"
DASHBOARDS = CHART / "dashboards"
METRICS_DOC = REPO / "docs" / "metrics.md"

RELEASE = "ingest"
NAMESPACE = "ingest-test"


def ci_scenarios() -> dict[str, dict[str, Any]]:
    """Every `ci/*-values.yaml`, by file stem."""
    out = {}
    for path in sorted(CI_DIR.glob("*-values.yaml")):
        out[path.stem] = yaml.safe_load(path.read_text()) or {}
    return out


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), like `helm template`."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values or {}, name=name, namespace=namespace,
                            is_install=True)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a render (NOTES.txt and empty documents left out)."""
    objs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objs.append(doc)
    return objs


def manifest_text(rendered: dict[str, str]) -> str:
    """All objects as one multi-document YAML stream, for kubernetes-validate and checkov."""
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects(rendered))


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of one kind (and name, when given)."""
    return [o for o in objs if o.get("kind") == kind
            and (name is None or o["metadata"]["name"] == name)]


def validate_schema(values: dict[str, Any]) -> None:
    """Raises helm_python.HelmValuesError when values break values.schema.json."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)


def monitoring_values(**thresholds: Any) -> dict[str, Any]:
    """Values of a release with the PrometheusRule on (and optional threshold overrides)."""
    values: dict[str, Any] = {
        "config": {"deliveryStream": "events", "region": "us-east-1"},
        "apiKeys": {"enabled": False},
        "prometheusRule": {"enabled": True},
        # The alerts select the job the ServiceMonitor gives the scrape.
        "serviceMonitor": {"enabled": True},
    }
    if thresholds:
        values["prometheusRule"]["thresholds"] = thresholds
    return values


def rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The `spec.groups` of the rendered PrometheusRule: a Prometheus rule file's `groups`."""
    rules = find(objects(render(values)), "PrometheusRule")
    assert len(rules) == 1, f"expected one PrometheusRule, got {len(rules)}"
    return rules[0]["spec"]["groups"]


def alerts(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alert rule of the rendered PrometheusRule."""
    return [r for g in rule_groups(values) for r in g["rules"] if "alert" in r]


def dashboards() -> dict[str, dict[str, Any]]:
    """Dashboard JSON by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel with queries (rows and nested row panels flattened)."""
    out = []
    for p in dashboard.get("panels", []):
        out.extend(q for q in p.get("panels", []) if q.get("targets"))
        if p.get("targets"):
            out.append(p)
    return out


def contract_metrics() -> set[str]:
    """Metric family names listed in docs/metrics.md (the front door's metrics contract)."""
    names = set()
    for line in METRICS_DOC.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|", line)
        if m:
            names.add(m.group(1))
    return names


# PromQL words that look like metric names but are not.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "absent", "absent_over_time", "vector", "scalar", "time",
    "label_replace", "label_join", "clamp_min", "clamp_max", "abs", "ceil", "floor", "round",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "count_over_time",
    "changes", "resets", "deriv", "predict_linear", "sort", "sort_desc", "timestamp", "le",
    "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, strings and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)      # string literals
    text = re.sub(r"\{[^}]*\}", "{}", text)                # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)               # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)", text):
        word = m.group(1)
        if word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def family(name: str) -> str:
    """The metric family of a sample name (histogram series suffixes removed)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def substitute(expr: str, *, namespace: str, job: str, rate_interval: str = "5m") -> str:
    """A dashboard query with Grafana's variables replaced, ready for /api/v1/query."""
    return (expr.replace("$__rate_interval", rate_interval)
            .replace("$namespace", namespace)
            .replace("$job", job))
