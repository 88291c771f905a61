"""deploy/grafana/inbound-audit.json names only metrics a worker exports, and is a sound dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app.app import build_app
from pipeline.app.web import metrics_registry
from pipeline.settings import load_settings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "inbound-audit.json"

#: Series names a family of each type exposes (counters also a ``_created`` one, never used here).
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("",)}
#: PromQL words that are neither metrics nor functions.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


def exported_series(tmp_path: Path) -> set[str]:
    """Every series name a worker's registry exposes (read from its text exposition)."""
    settings = load_settings({"INBOUND_AUDIT_HOME": str(tmp_path), "INBOUND_AUDIT_WEB_PORT": "0"})
    text = generate_latest(metrics_registry(build_app(settings, "127.0.0.1:1"))).decode()
    return {family.name + suffix for family in text_string_to_metric_families(text) for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers that are not functions (followed by
    ``(``), keywords, or inside label matchers, grouping lists, ranges and strings."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        following = bare[match.end() :].lstrip()
        if not following.startswith("(") and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def test_every_expression_names_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = exported_series(tmp_path)
    exprs = [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"]["query"])
            assert selector is not None, variable
            exprs.append(selector.group(1))
    assert len(exprs) > 20
    unknown = {expr: metric_names(expr) - exported for expr in exprs if not metric_names(expr) <= exported}
    assert not unknown, unknown
    assert all(metric_names(expr) for expr in exprs)
    # And every inbound_audit series is on it (but the histogram's start time).
    used = set().union(*map(metric_names, exprs))
    assert not {name for name in exported - used if name.startswith("inbound_audit_") and not name.endswith("_created")}


def test_the_lexer_finds_only_metric_names() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"x|y", le!="1"}[5m]))) / on(job) group_left b'
    assert metric_names(expr) == {"a_bucket", "b"}


def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    all_panels = list(panels(dashboard["panels"]))
    assert len({p["id"] for p in all_panels}) == len(all_panels)
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dashboard["templating"]["list"])
    for panel in all_panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    # No two panels overlap on the 24-column grid.
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in all_panels
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
