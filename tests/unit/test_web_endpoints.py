"""The web endpoints in-process: only Faust's web server runs, no broker is needed."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from web_client import free_port

from pipeline.app.app import AuditApp, build_app
from pipeline.app.dashboard import STATIC_DIR
from pipeline.app.web import request_from_params
from pipeline.core.query import OPS
from pipeline.settings import load_settings


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[AuditApp, str]]:
    port = free_port()
    env = {"INBOUND_AUDIT_WEB_PORT": str(port), "INBOUND_AUDIT_HOME": str(tmp_path), "INBOUND_AUDIT_MONITORS": "60,2"}
    audit = build_app(load_settings(env), "127.0.0.1:1")
    await audit.app.web.start()
    try:
        yield audit, f"http://127.0.0.1:{port}"
    finally:
        await audit.app.web.stop()


async def get(base: str, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + path, params=params) as response:
        return response.status, orjson.loads(await response.read())


async def metric_samples(base: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_follows_the_failure(served: tuple[AuditApp, str]) -> None:
    audit, base = served
    assert await get(base, "/healthz") == (200, {"ok": True, "reason": "alive"})
    audit.failure = "a write to Kafka failed"
    assert await get(base, "/healthz") == (503, {"ok": False, "reason": "a write to Kafka failed"})
    assert await get(base, "/ready") == (503, {"ready": False, "reason": "a write to Kafka failed"})


async def test_ready_and_queries_wait_for_recovery(served: tuple[AuditApp, str]) -> None:
    audit, base = served
    state = audit.settings.state_topic
    ask = {"op": "connections", "monitor": "60,2", "cluster": "true", "ip": "192.0.2.1"}
    assert await get(base, "/ready") == (503, {"ready": False, "reason": f"replaying {state}"})
    status, body = await get(base, "/query", ask)
    assert (status, body["error"]["code"]) == (503, "not_ready")
    assert (await metric_samples(base))["inbound_audit_ready[]"] == 0

    audit.manager.recovered.set()
    audit.summaries.published = 3
    status, body = await get(base, "/ready")
    assert status == 200 and body["ready"] is True
    assert await get(base, "/query", ask) == (200, {"ok": True, "value": 0})
    status, body = await get(base, "/query", {**ask, "endv": "2"})
    assert status == 400 and body["ok"] is False and body["error"]["code"] == "window_out_of_range"
    assert body["error"]["message"] == "endv=2 but monitor '60,2' keeps 2 window(s): 0..1"
    assert (await get(base, "/query", {**ask, "op": "x" * 50}))[1]["error"]["code"] == "unknown_op"

    samples = await metric_samples(base)
    assert samples["inbound_audit_ready[]"] == 1
    assert samples["inbound_audit_window_summaries_total[]"] == 3
    assert samples["inbound_audit_requests_total[('op', 'connections'), ('outcome', 'ok')]"] == 1
    assert samples["inbound_audit_requests_total[('op', 'connections'), ('outcome', 'window_out_of_range')]"] == 1
    # A request's own op text never becomes a label value.
    assert samples["inbound_audit_requests_total[('op', 'unknown'), ('outcome', 'unknown_op')]"] == 1
    assert samples["inbound_audit_query_latency_seconds_count[]"] == 3
    assert samples["inbound_audit_replica_addresses[('monitor', '60,2')]"] == 0


def test_query_parameters_are_typed_where_they_parse() -> None:
    params = {"op": "connections", "startv": "1", "endv": "x", "at": "1.5", "cluster": "false", "node": "mta-1"}
    assert request_from_params(params) == {
        "id": "http",
        "op": "connections",
        "node": "mta-1",
        "startv": 1,
        "endv": "x",  # parse_request refuses it as the bus would refuse "x"
        "at": 1.5,
        "cluster": False,
    }
    assert request_from_params({"cluster": "TRUE"})["cluster"] is True
    assert request_from_params({"cluster": "yes"})["cluster"] == "yes"


async def test_the_readme_lists_every_metric(served: tuple[AuditApp, str]) -> None:
    _, base = served
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        families = {f.name for f in text_string_to_metric_families(await response.text())}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(inbound_audit_\w+)` \|", readme, re.MULTILINE))
    counters = {name.removesuffix("_total") for name in listed}
    # prometheus_client adds a ``_created`` series (the start time) to its histogram.
    ours = {name for name in families if name.startswith("inbound_audit_") and not name.endswith("_created")}
    assert ours == counters
    assert any(name.startswith("process_") for name in families)


def test_the_scrape_example_targets_every_compose_worker() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    scrape = yaml.safe_load((deploy / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((deploy / "compose.yaml").read_text(encoding="utf-8"))
    published = {
        port.rsplit(":", 1)[0]
        for name, service in compose["services"].items()
        if name.startswith("worker")
        for port in service["ports"]
        if port.endswith(":6066")
    }
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert {t for c in job["static_configs"] for t in c["targets"]} == published


async def test_the_dashboard_and_its_assets_are_served_by_the_worker(served: tuple[AuditApp, str]) -> None:
    _, base = served
    async with aiohttp.ClientSession() as session:
        pages = []
        for path in ("/dashboard/", "/dashboard"):
            async with session.get(base + path) as response:
                assert response.status == 200 and response.content_type == "text/html"
                pages.append(await response.text())
        assert pages[0] == pages[1]
        assets = re.findall(r'(?:src|href)="([^"]+)"', pages[0])
        assert sorted(assets) == ["/dashboard/static/dashboard.css", "/dashboard/static/dashboard.js", "data:,"]
        for asset, kind in (
            ("dashboard.css", {"text/css"}),
            ("dashboard.js", {"text/javascript", "application/javascript"}),
        ):
            async with session.get(f"{base}/dashboard/static/{asset}") as response:
                assert response.status == 200 and response.content_type in kind
                assert await response.read() == (STATIC_DIR / asset).read_bytes()
    # No CDN, no other host: the script asks only the worker's own endpoints.
    for static in STATIC_DIR.iterdir():
        assert "//" not in re.sub(r"^\s*//.*$", "", static.read_text(encoding="utf-8"), flags=re.MULTILINE), static
    script = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    assert set(re.findall(r'fetch\("([^"?]+)', script)) == {"/dashboard/data", "/query"}


async def test_the_dashboard_data_follows_the_worker(served: tuple[AuditApp, str]) -> None:
    audit, base = served
    status, data = await get(base, "/dashboard/data")
    assert status == 200
    assert data["worker"] == {
        "ready": False,
        "reason": f"replaying {audit.settings.state_topic}",
        "group": "inbound-audit",
    }
    assert (data["monitors"], data["ops"]) == (["60,2"], list(OPS))
    assert data["levels"] == ["ipv4/24", "ipv4/32", "ipv6/64", "ipv6/128"]
    assert data["top"] == [] and data["rates"]["times"] == [] and data["dead_letters"] == []
    assert data["lag"]["consumer"] == {"partitions": 0, "total": 0, "max": 0, "worst": []}

    audit.manager.recovered.set()
    audit.ingester.dead_letter_reasons.update({"invalid_ip": 3, "too_late": 5})
    audit.responder.dead_letter_reasons["invalid_json"] = 1
    _, data = await get(base, "/dashboard/data")
    assert data["worker"]["ready"] is True
    assert data["dead_letters"] == [
        {"source": "events", "reason": "too_late", "count": 5},
        {"source": "events", "reason": "invalid_ip", "count": 3},
        {"source": "requests", "reason": "invalid_json", "count": 1},
    ]
    (monitor,) = data["top"]
    assert monitor["monitor"] == "60,2" and [w["label"] for w in monitor["windows"]] == ["current", "previous"]
    assert all(rows == [] for w in monitor["windows"] for rows in w["top"].values())


def test_the_package_data_ships_every_dashboard_file() -> None:
    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["pipeline.app"]
    app_dir = STATIC_DIR.parent
    shipped = {path for pattern in patterns for path in app_dir.glob(pattern)}
    assert set(STATIC_DIR.iterdir()) <= shipped and len(shipped) >= 3


async def test_series_counts_over_http_and_new_defines_only_on_the_bus(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "INBOUND_AUDIT_WEB_PORT": str(port),
        "INBOUND_AUDIT_HOME": str(tmp_path),
        "INBOUND_AUDIT_MONITORS": "60,2",
        "INBOUND_AUDIT_SERIES": "fails:cidr:60,2",
    }
    audit = build_app(load_settings(env), "127.0.0.1:1")
    await audit.app.web.start()
    base = f"http://127.0.0.1:{port}"
    try:
        audit.manager.recovered.set()
        definition = audit.definitions.catalog.get("fails")
        assert definition is not None
        now = audit.clock()
        audit.replica.series.apply_ops([("series_add", definition, "n1", now, 0xC0000207, 4)], now)
        ask = {"op": "series_count", "series": "fails", "key": "/24", "ip": "192.0.2.1", "cluster": "true"}
        assert await get(base, "/query", ask) == (200, {"ok": True, "value": 4})
        status, body = await get(base, "/query", {**ask, "key": "2001:db8::/32"})
        assert (status, body["error"]["code"]) == (400, "invalid_key")
        known = {"op": "series_define", "series": "fails", "type": "cidr", "interval": "60", "num_windows": "2"}
        assert await get(base, "/query", known) == (200, {"ok": True, "value": 1})
        status, body = await get(base, "/query", {**known, "series": "new"})
        assert (status, body["error"]["code"]) == (400, "invalid_request")
        status, body = await get(base, "/query", {**known, "interval": "30"})
        assert (status, body["error"]["code"]) == (400, "series_conflict")
    finally:
        await audit.app.web.stop()
